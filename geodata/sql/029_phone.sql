-- The grid worker's phone page (/m, issue 15): "my reports" and "my tasks" read by index, not by a
-- scan of the trail or of the cases.
--
-- My reports: the cases whose intake row in the trail (action 'report') names me as its actor
-- (actor_kind + actor_id, 016). Partial: only intake rows, a small part of the trail.
CREATE INDEX case_events_reporter_idx ON case_events (actor_kind, actor_id, occurred_at DESC)
    WHERE action = 'report';
-- My tasks waiting for the follow-up visit (回访): closed cases by assignee. The open ones use
-- cases_assignee_open_idx (025).
CREATE INDEX cases_assignee_closed_idx ON cases ((assignee ->> 'kind'), (assignee ->> 'id'), closed_at DESC)
    WHERE step = 'closed';

-- A session's idle rule, in one place for the guard's lookup (session_principal.sql) and the live
-- stream's re-check (services/identity.py session_alive): wall screens never idle out; grid workers and van crews,
-- whose phones go without network for hours, after field_idle_seconds (YITU_SESSION_FIELD_IDLE_MINUTES,
-- a shift); everyone else after idle_seconds (YITU_SESSION_IDLE_MINUTES).
CREATE FUNCTION yitu_session_fresh(kind text, role text, last_seen timestamptz, idle_seconds float8,
                                   field_idle_seconds float8) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT kind = 'screen'
          OR last_seen > now() - make_interval(secs => CASE WHEN role IN ('grid_worker', 'van') THEN field_idle_seconds
                                                            ELSE idle_seconds END) $$;

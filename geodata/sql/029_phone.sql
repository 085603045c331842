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

-- Intake of a batch of cases in one statement (one round trip, one transaction): for each
-- request, the point's grid chain (deepest area hit; codes of the levels above are prefixes of
-- it), the 50 m boundary flag, the banner-level unassigned queue for a point outside the
-- territory, the reporter's area scope, the per-day case code, the Idempotency-Key row, the case
-- and its first audit row (at the server's time ``now``; a reported_at the client sent is kept
-- beside it as client_at, never instead). ``rows`` is a JSON array of requests (see geodata/cases.py,
-- _intake_row); one output row per request, in the order of ``i``.
-- A batch is what the app's intake lanes found waiting (api/intake.py): a request is never held
-- back to fill one, and a single request is a batch of one. Rows are locked in one order in every
-- batch (the Idempotency-Keys by token and key, a day's first case code by banner and day), so two
-- batches running at once wait for each other rather than deadlock.
-- The cells are tried first: a point in a cell never pays for the point-in-polygon test against
-- its (far more detailed) village, town and banner outlines; those are tried only for a point
-- in no cell.
-- The boundary distance is planar on a locally scaled plane (0.2 ms); only near the 50 m
-- threshold is the exact spheroidal distance computed (several ms on detailed cells).
-- Deadlines for every possible level come in with each request (computed by geodata/workflow.py),
-- the league's (or the settings') in dl_grid … dl_banner and, for the banners with deadlines of their
-- own (geodata/deadlines.py), theirs in ``dl_by`` (banner → level → deadline; NULL without any),
-- and the one of the case's banner and the level found is used: the level of the deepest area hit, or the triage's
-- (``start_rank``, from the severity: 0 grid … 3 banner) when that is higher; ``group_flag`` is
-- the 群体性 flag when the report involves enough people. ``scope`` (an area code of any level, or NULL) is the
-- reporting token's area: a point whose chain does not contain it writes nothing (in_scope is
-- false). No case columns in a row: unknown type, no territory, out of scope, or the key was used
-- before (the caller then looks the case up by key).
-- Each case made writes its ``case.created`` event to the outbox in this same statement (``ob``),
-- in the order of ``i``: the shape of geodata/cases.py event_of, timestamps as Python writes them
-- (yitu_isoformat), ``at`` as the app sent it (tests/test_outbox.py compares the two).
WITH
r AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
        i int, type text, description text, lon float8, lat float8, channel text, parties jsonb,
        reporter text, reported_at timestamptz, now timestamptz, day date, token_id bigint, key text,
        request_hash text, actor text, role text, actor_kind text, actor_id bigint, client_at timestamptz,
        scope text, at text, severity text, people_involved int, amount_yuan numeric, start_rank int,
        group_flag text,
        dl_grid timestamptz, dl_village timestamptz, dl_town timestamptz, dl_banner timestamptz, dl_by jsonb)
),
p AS (
    SELECT r.*, ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326) AS g,
           EXISTS (SELECT 1 FROM case_types t WHERE t.code = r.type AND t.active) AS type_ok
    FROM r
),
info AS (
    SELECT p.*, h.code AS deep, h.level AS deep_level, h.m AS boundary_m,
           CASE WHEN h.level >= 4 THEN left(h.code, 15) END AS grid,
           CASE WHEN h.level >= 3 THEN left(h.code, 12) END AS village,
           CASE WHEN h.level >= 2 THEN left(h.code, 9) END AS town,
           coalesce(left(h.code, 6),
                    (SELECT a.code FROM areas a WHERE a.level = 1 ORDER BY a.geom <-> p.g LIMIT 1)) AS banner
    FROM p LEFT JOIN LATERAL (
        SELECT hit.code, hit.level,
               CASE WHEN near.approx_m < 40 OR near.approx_m > 60 THEN near.approx_m
                    ELSE ST_Distance(ST_Boundary(hit.geom)::geography, p.g::geography) END AS m
        FROM ((SELECT a.code, a.level, a.geom FROM areas a
               WHERE a.level = 4 AND ST_Intersects(a.geom, p.g) ORDER BY a.code LIMIT 1)
              UNION ALL
              (SELECT a.code, a.level, a.geom FROM areas a
               WHERE a.level BETWEEN 1 AND 3 AND ST_Intersects(a.geom, p.g) ORDER BY a.level DESC, a.code LIMIT 1)
              LIMIT 1) hit,
             LATERAL (SELECT ST_Distance(ST_Scale(ST_Boundary(hit.geom), cos(radians(p.lat)), 1),
                                         ST_Scale(p.g, cos(radians(p.lat)), 1)) * 111195.08 AS approx_m) near
    ) h ON true
),
ok AS (
    SELECT info.*, info.scope IS NULL OR info.scope IN (info.grid, info.village, info.town, info.banner) AS in_scope
    FROM info
),
id AS (
    SELECT ok.i, nextval(pg_get_serial_sequence('cases', 'id')) AS id
    FROM ok WHERE ok.banner IS NOT NULL AND ok.in_scope AND ok.type_ok
),
k AS (
    INSERT INTO case_idempotency_keys (token_id, key, case_id, request_hash)
    SELECT ok.token_id, ok.key, id.id, ok.request_hash FROM id JOIN ok ON ok.i = id.i WHERE ok.key IS NOT NULL
    ORDER BY ok.token_id, ok.key
    ON CONFLICT (token_id, key) DO NOTHING
    RETURNING case_id
),
go AS (
    SELECT id.i, id.id FROM id JOIN ok ON ok.i = id.i
    WHERE ok.key IS NULL OR id.id IN (SELECT k.case_id FROM k)
),
c AS (
    INSERT INTO cases (id, code, type, description, parties, geom, grid_code, village_code, town_code, banner_code,
                       channel, reporter, level, step, deadline, attempts, flags, reported_at, updated_at,
                       severity, people_involved, amount_yuan)
    SELECT go.id, yitu_next_case_code(ok.banner, ok.day), ok.type, ok.description, ok.parties,
           ok.g, ok.grid, ok.village, ok.town, ok.banner, ok.channel, ok.reporter, lv.level, 'reported',
           coalesce((ok.dl_by -> ok.banner ->> lv.level)::timestamptz,
                    CASE lv.level WHEN 'grid' THEN ok.dl_grid WHEN 'village' THEN ok.dl_village
                                  WHEN 'town' THEN ok.dl_town ELSE ok.dl_banner END),
           0,
           array_remove(ARRAY[CASE WHEN ok.deep IS NULL THEN 'outside_territory' END,
                              CASE WHEN ok.boundary_m < 50 THEN 'near_boundary' END, ok.group_flag], NULL),
           coalesce(ok.reported_at, ok.now), ok.now, ok.severity, ok.people_involved, ok.amount_yuan
    FROM go JOIN ok ON ok.i = go.i,
         LATERAL (SELECT (ARRAY['grid', 'village', 'town', 'banner'])[
                             greatest(CASE ok.deep_level WHEN 4 THEN 0 WHEN 3 THEN 1 WHEN 2 THEN 2 ELSE 3 END,
                                      coalesce(ok.start_rank, 0)) + 1] AS level) lv
    ORDER BY ok.banner, ok.day, go.i
    RETURNING *
),
ev AS (
    INSERT INTO case_events (case_id, occurred_at, client_at, actor, role, actor_kind, actor_id,
                             action, from_step, to_step, level, data)
    SELECT c.id, ok.now, ok.client_at, ok.actor, ok.role, ok.actor_kind, ok.actor_id, 'report', NULL, 'reported', c.level,
           jsonb_build_object('channel', c.channel, 'flags', c.flags, 'received_at', ok.now)
    FROM c JOIN go ON go.id = c.id JOIN ok ON ok.i = go.i
),
ob AS (
    INSERT INTO outbox (type, event)
    SELECT 'case.created',
           json_build_object('type', 'case.created', 'code', c.code, 'step', c.step, 'level', c.level,
                             'grid', json_build_array(c.grid_code, c.village_code, c.town_code, c.banner_code),
                             'lon', ST_X(c.geom), 'lat', ST_Y(c.geom), 'case_type', c.type, 'flags', c.flags,
                             'deadline', yitu_isoformat(c.deadline), 'at', ok.at, 'channel', c.channel)
    FROM c JOIN go ON go.id = c.id JOIN ok ON ok.i = go.i
    ORDER BY go.i
)
SELECT ok.i, ok.type_ok, ok.banner AS territory, ok.in_scope, coalesce(ok.grid, ok.village, ok.town, ok.banner) AS area,
       c.id, c.code, c.type, c.description, c.parties, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
       c.grid_code, c.village_code, c.town_code, c.banner_code, c.channel, c.reporter, c.level, c.step,
       c.deadline, c.attempts, c.outcome, c.satisfaction, c.followup_note, c.flags, c.assignee, c.duplicate_of,
       c.reported_at, c.closed_at, c.updated_at, c.version, c.severity, c.people_involved, c.amount_yuan
FROM ok LEFT JOIN go ON go.i = ok.i LEFT JOIN c ON c.id = go.id
ORDER BY ok.i

-- Intake of one case in one statement (one round trip, one transaction): the point's grid chain
-- (deepest area hit; codes of the levels above are prefixes of it), the 50 m boundary flag, the
-- banner-level unassigned queue for a point outside the territory, the reporter's area scope, the
-- per-day case code, the Idempotency-Key row, the case and its first audit row.
-- The cells are tried first: a point in a cell never pays for the point-in-polygon test against
-- its (far more detailed) village, town and banner outlines; those are tried only for a point
-- in no cell.
-- The boundary distance is planar on a locally scaled plane (0.2 ms); only near the 50 m
-- threshold is the exact spheroidal distance computed (several ms on detailed cells).
-- Deadlines for every possible level come in as parameters (computed by geodata/workflow.py),
-- and the one of the level found is used. ``scope`` (an area code of any level, or NULL) is the
-- reporting token's area: a point whose chain does not contain it writes nothing (in_scope is
-- false). No row in ``c``: unknown type, no territory, out of scope, or the key was used before
-- (the caller then looks the case up by key).
WITH
t AS (SELECT 1 FROM case_types WHERE code = %(type)s AND active),
p AS (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) AS g),
hit AS (
    (SELECT a.code, a.level, a.geom FROM areas a, p
     WHERE a.level = 4 AND ST_Intersects(a.geom, p.g) ORDER BY a.code LIMIT 1)
    UNION ALL
    (SELECT a.code, a.level, a.geom FROM areas a, p
     WHERE a.level < 4 AND ST_Intersects(a.geom, p.g) ORDER BY a.level DESC, a.code LIMIT 1)
    LIMIT 1
),
near AS (
    SELECT ST_Distance(ST_Scale(ST_Boundary(hit.geom), cos(radians(%(lat)s)), 1),
                       ST_Scale(p.g, cos(radians(%(lat)s)), 1)) * 111195.08 AS approx_m,
           hit.geom, p.g
    FROM hit, p
),
edge AS (
    SELECT CASE WHEN approx_m < 40 OR approx_m > 60 THEN approx_m
                ELSE ST_Distance(ST_Boundary(near.geom)::geography, near.g::geography) END AS m
    FROM near
),
info AS (
    SELECT hit.code AS deep, hit.level AS deep_level, edge.m AS boundary_m,
           CASE WHEN hit.level >= 4 THEN left(hit.code, 15) END AS grid,
           CASE WHEN hit.level >= 3 THEN left(hit.code, 12) END AS village,
           CASE WHEN hit.level >= 2 THEN left(hit.code, 9) END AS town,
           coalesce(left(hit.code, 6),
                    (SELECT a.code FROM areas a, p WHERE a.level = 1 ORDER BY a.geom <-> p.g LIMIT 1)) AS banner
    FROM (SELECT 1) one LEFT JOIN hit ON true LEFT JOIN edge ON true
),
scope AS (
    SELECT %(scope)s::text IS NULL OR %(scope)s::text IN (info.grid, info.village, info.town, info.banner) AS ok
    FROM info
),
id AS (
    SELECT nextval(pg_get_serial_sequence('cases', 'id')) AS id
    FROM info, scope WHERE info.banner IS NOT NULL AND scope.ok AND EXISTS (SELECT 1 FROM t)
),
k AS (
    INSERT INTO case_idempotency_keys (token_id, key, case_id, request_hash)
    SELECT %(token_id)s, %(key)s, id.id, %(request_hash)s FROM id WHERE %(key)s::text IS NOT NULL
    ON CONFLICT (token_id, key) DO NOTHING
    RETURNING case_id
),
go AS (SELECT id.id FROM id WHERE %(key)s::text IS NULL OR EXISTS (SELECT 1 FROM k)),
c AS (
    INSERT INTO cases (id, code, type, description, parties, geom, grid_code, village_code, town_code, banner_code,
                       channel, reporter, level, step, deadline, attempts, flags, reported_at, updated_at)
    SELECT go.id, yitu_next_case_code(info.banner, %(day)s::date), %(type)s, %(description)s, %(parties)s::jsonb,
           p.g, info.grid, info.village, info.town, info.banner, %(channel)s, %(reporter)s, lv.level, 'reported',
           CASE lv.level WHEN 'grid' THEN %(dl_grid)s::timestamptz WHEN 'village' THEN %(dl_village)s::timestamptz
                         WHEN 'town' THEN %(dl_town)s::timestamptz ELSE %(dl_banner)s::timestamptz END,
           0,
           array_remove(ARRAY[CASE WHEN info.deep IS NULL THEN 'outside_territory' END,
                              CASE WHEN info.boundary_m < 50 THEN 'near_boundary' END], NULL),
           %(reported_at)s, %(now)s
    FROM go, info, p,
         LATERAL (SELECT CASE info.deep_level WHEN 4 THEN 'grid' WHEN 3 THEN 'village' WHEN 2 THEN 'town'
                                              ELSE 'banner' END AS level) lv
    RETURNING *
),
ev AS (
    INSERT INTO case_events (case_id, occurred_at, actor, role, action, from_step, to_step, level, data)
    SELECT c.id, c.reported_at, %(actor)s, %(role)s, 'report', NULL, 'reported', c.level,
           jsonb_build_object('channel', c.channel, 'flags', c.flags, 'received_at', %(now)s::timestamptz)
    FROM c
)
SELECT EXISTS (SELECT 1 FROM t) AS type_ok, (SELECT banner FROM info) AS territory,
       (SELECT ok FROM scope) AS in_scope, (SELECT coalesce(grid, village, town, banner) FROM info) AS area,
       c.id, c.code, c.type, c.description, c.parties, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
       c.grid_code, c.village_code, c.town_code, c.banner_code, c.channel, c.reporter, c.level, c.step,
       c.deadline, c.attempts, c.outcome, c.satisfaction, c.followup_note, c.flags, c.assignee, c.duplicate_of,
       c.reported_at, c.closed_at, c.updated_at, c.version
FROM (SELECT 1) one LEFT JOIN c ON true

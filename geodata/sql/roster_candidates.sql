-- Who a case could be dispatched to (issue 14): the active mediators and units of the roster
-- (025_roster.sql) that serve the case's area — their area is the case's grid, village, town or
-- banner — best first by
--   1. specialty: the case's type is one of theirs;
--   2. level: how many levels between theirs and the case's (0: the level the case is at);
--   3. load: their open cases (cases.assignee names them; cases_assignee_open_idx);
--   4. distance: ellipsoidal metres from the case to where they sit: a mediator's centre, else their
--      van's last position, else a point inside their area; a unit a point inside its area.
-- %(kind)s NULL: both kinds; %(limit)s rows at most.
WITH c AS (
    SELECT geom, type, level, grid_code, village_code, town_code, banner_code
    FROM cases WHERE code = %(code)s
),
lv (level, n) AS (VALUES ('grid', 1), ('village', 2), ('town', 3), ('banner', 4)),
who AS (
    SELECT 'mediator' AS kind, m.id, m.name, m.phone, m.level, m.area_code, m.specialties,
           coalesce(mc.geom, v.geom) AS at, u.name AS unit_name
    FROM mediators m
    LEFT JOIN mediation_centers mc ON mc.id = m.center_id
    LEFT JOIN vans v ON v.id = m.van_id
    LEFT JOIN units u ON u.id = m.unit_id
    WHERE m.active AND coalesce(%(kind)s, 'mediator') = 'mediator'
    UNION ALL
    SELECT 'unit', u.id, u.name, u.phone, u.level, u.area_code, u.specialties, NULL::geometry, NULL
    FROM units u
    WHERE u.active AND coalesce(%(kind)s, 'unit') = 'unit'
),
cand AS (
    SELECT w.*, coalesce(w.at, ST_PointOnSurface(a.geom)) AS g,
           c.type = ANY (w.specialties) AS specialty,
           abs(wl.n - cl.n) AS level_gap,
           c.geom AS case_geom
    FROM who w
    JOIN c ON w.area_code IN (c.grid_code, c.village_code, c.town_code, c.banner_code)
    JOIN lv wl ON wl.level = w.level
    JOIN lv cl ON cl.level = c.level
    LEFT JOIN areas a ON a.code = w.area_code
)
SELECT cand.kind, cand.id::text AS id, cand.name, cand.phone, cand.level, cand.area_code, cand.specialties,
       cand.unit_name, cand.specialty, cand.level_gap,
       (SELECT count(*) FROM cases o
        WHERE o.assignee ->> 'kind' = cand.kind AND o.assignee ->> 'id' = cand.id::text
          AND o.step NOT IN ('closed', 'evaluated', 'rejected'))::int AS load,
       CASE WHEN cand.g IS NULL OR cand.case_geom IS NULL THEN NULL
            ELSE ST_DistanceSpheroid(cand.g, cand.case_geom, 'SPHEROID["WGS 84",6378137,298.257223563]')
       END AS distance_m
FROM cand
ORDER BY specialty DESC, level_gap, load, distance_m NULLS LAST, kind, id
LIMIT %(limit)s

-- The vans that could go to one case, each with its travel distance and ETA, dispatchable first.
--
-- Both ends (the case and each located van) are snapped onto their nearest road — the nearest
-- point of the nearest edge, ellipsoidal metres (yitu_snap_to_road) — when one lies within
-- %(snap_max)s metres. The route is then: off-road leg (great circle × %(detour)s) + along the
-- road network + off-road leg, the road part found by ONE pgr_dijkstra call from the two ends of
-- the case's edge to the two ends of every van's edge (a snapped point reaches its edge's source
-- after fraction × length and its target after the rest; two points on one edge may also just
-- drive along it).
-- An end with no road that near, or no road path between them, gives method 'great_circle': the
-- straight ellipsoidal distance × %(detour)s. Edges are two-way; a road's geometry runs from
-- its source to its target (the fraction is measured along it). ETA: each edge's share at its
-- kind's speed, off-road legs at %(offroad_kmh)s.
--
-- %(van)s NULL: every van; else only that one (the route a dispatch records). Either way only the
-- vans a dispatcher scoped to %(scope)s may send: its banner's and the league's
-- (yitu_van_in_scope, 039_van_banner.sql); NULL: every van.
WITH c AS (
    SELECT id, code, geom FROM cases WHERE code = %(code)s AND geom IS NOT NULL
),
speeds (kind, mps) AS (
    VALUES ('trunk', %(trunk_kmh)s::float8 / 3.6), ('county', %(county_kmh)s::float8 / 3.6),
           ('village', %(village_kmh)s::float8 / 3.6)
),
located AS (
    SELECT NULL::text AS van_id, c.geom FROM c
    UNION ALL
    SELECT v.id, v.geom FROM vans v, c
    WHERE v.geom IS NOT NULL AND (%(van)s::text IS NULL OR v.id = %(van)s)
      AND yitu_van_in_scope(%(scope)s::text, yitu_van_banner(v.base_center_id))
),
snap AS (
    SELECT l.van_id, s.edge, s.source, s.target, s.length_m, s.fraction, s.snap_m, sp.mps
    FROM located l
    CROSS JOIN LATERAL yitu_snap_to_road(l.geom) s  -- 013_road_snap.sql
    JOIN speeds sp ON sp.kind = s.kind
    WHERE s.snap_m <= %(snap_max)s
),
cs AS (SELECT * FROM snap WHERE van_id IS NULL),
vs AS (SELECT * FROM snap WHERE van_id IS NOT NULL),
c_ends AS (  -- (vertex, metres and seconds from the case's road point to it along its edge)
    SELECT source AS vid, fraction * length_m AS m, fraction * length_m / mps AS s FROM cs
    UNION ALL
    SELECT target, (1 - fraction) * length_m, (1 - fraction) * length_m / mps FROM cs
),
v_ends AS (
    SELECT van_id, source AS vid, fraction * length_m AS m, fraction * length_m / mps AS s FROM vs
    UNION ALL
    SELECT van_id, target, (1 - fraction) * length_m, (1 - fraction) * length_m / mps FROM vs
),
paths AS (
    SELECT p.start_vid, p.end_vid, p.edge, p.cost
    FROM pgr_dijkstra(
        'SELECT id, source, target, length_m AS cost, length_m AS reverse_cost FROM roads',
        (SELECT array_agg(DISTINCT vid) FROM c_ends),  -- NULL when the case is off-road: no rows
        (SELECT array_agg(DISTINCT vid) FROM v_ends),
        directed => false) p
    WHERE p.edge <> -1
),
legs AS (  -- road metres and seconds between two vertices (a vertex to itself: 0)
    SELECT p.start_vid, p.end_vid, sum(p.cost) AS m, sum(p.cost / sp.mps) AS s
    FROM paths p JOIN roads r ON r.id = p.edge JOIN speeds sp ON sp.kind = r.kind
    GROUP BY p.start_vid, p.end_vid
    UNION ALL
    SELECT vid, vid, 0, 0 FROM (SELECT vid FROM c_ends INTERSECT SELECT vid FROM v_ends) same
),
routes AS (
    SELECT ve.van_id, ce.m + l.m + ve.m AS m, ce.s + l.s + ve.s AS s
    FROM c_ends ce
    JOIN legs l ON l.start_vid = ce.vid
    JOIN v_ends ve ON ve.vid = l.end_vid
    UNION ALL
    SELECT vs.van_id, abs(vs.fraction - cs.fraction) * vs.length_m,
           abs(vs.fraction - cs.fraction) * vs.length_m / vs.mps
    FROM vs JOIN cs ON cs.edge = vs.edge
),
best AS (
    SELECT DISTINCT ON (van_id) van_id, m, s FROM routes ORDER BY van_id, m
),
scored AS (
    SELECT v.id, v.name, v.plate, v.status AS dispatch_status,
           yitu_van_status(v.status, v.last_seen_at, make_interval(secs => %(offline_seconds)s), %(at)s) AS status,
           ST_X(v.geom) AS lon, ST_Y(v.geom) AS lat, v.last_seen_at,
           d.id AS active_dispatch,
           CASE WHEN b.van_id IS NOT NULL THEN 'road' WHEN v.geom IS NOT NULL AND c.geom IS NOT NULL
                THEN 'great_circle' END AS method,
           CASE WHEN b.van_id IS NOT NULL THEN %(detour)s * (vs.snap_m + cs.snap_m) + b.m
                ELSE %(detour)s * ST_DistanceSpheroid(v.geom, c.geom, 'SPHEROID["WGS 84",6378137,298.257223563]')
           END AS distance_m,
           CASE WHEN b.van_id IS NOT NULL THEN %(detour)s * (vs.snap_m + cs.snap_m) / (%(offroad_kmh)s / 3.6) + b.s
                ELSE %(detour)s * ST_DistanceSpheroid(v.geom, c.geom, 'SPHEROID["WGS 84",6378137,298.257223563]')
                     / (%(offroad_kmh)s / 3.6)
           END AS eta_s
    FROM vans v
    LEFT JOIN c ON true
    LEFT JOIN best b ON b.van_id = v.id
    LEFT JOIN vs ON vs.van_id = v.id
    LEFT JOIN cs ON true
    LEFT JOIN dispatches d ON d.van_id = v.id AND d.status IN ('en_route', 'on_site')
    WHERE (%(van)s::text IS NULL OR v.id = %(van)s)
      AND yitu_van_in_scope(%(scope)s::text, yitu_van_banner(v.base_center_id))
)
SELECT *, (status = 'available' AND active_dispatch IS NULL AND distance_m IS NOT NULL) AS dispatchable
FROM scored
ORDER BY dispatchable DESC, distance_m NULLS LAST, id

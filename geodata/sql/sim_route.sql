-- The road a simulated van drives from one point to another (yitu simulate), as the ordered
-- vertices of its pieces of road, each with the kind of road that leads to it.
--
-- Both ends are snapped onto their nearest road (yitu_snap_to_road, as van_candidates.sql does,
-- but with no distance limit: a van drives the road as far as it goes, the caller adds the
-- straight off-road legs). ONE pgr_dijkstra call goes from the two ends of
-- the start's edge to the two ends of the destination's; the cheapest of those four routes (or
-- driving along one shared edge) wins, with the same cost as the dispatch ranking (metres). A
-- road's geometry runs from its source to its target, so an edge driven the other way is
-- reversed. No row: no roads (the caller then drives straight).
WITH ends (which, geom) AS (
    VALUES ('from', ST_SetSRID(ST_MakePoint(%(from_lon)s, %(from_lat)s), 4326)),
           ('to', ST_SetSRID(ST_MakePoint(%(to_lon)s, %(to_lat)s), 4326))
),
snap AS (
    SELECT e.which, s.*
    FROM ends e
    CROSS JOIN LATERAL yitu_snap_to_road(e.geom) s  -- 013_road_snap.sql
),
f AS (SELECT * FROM snap WHERE which = 'from'),
t AS (SELECT * FROM snap WHERE which = 'to'),
f_ends AS (  -- leaving the start's edge by one of its ends: the vertex, metres, the piece driven
    SELECT source AS vid, fraction * length_m AS m, ST_Reverse(ST_LineSubstring(road, 0, fraction)) AS piece,
           kind FROM f
    UNION ALL
    SELECT target, (1 - fraction) * length_m, ST_LineSubstring(road, fraction, 1), kind FROM f
),
t_ends AS (  -- entering the destination's edge by one of its ends
    SELECT source AS vid, fraction * length_m AS m, ST_LineSubstring(road, 0, fraction) AS piece, kind FROM t
    UNION ALL
    SELECT target, (1 - fraction) * length_m, ST_Reverse(ST_LineSubstring(road, fraction, 1)), kind FROM t
),
paths AS (
    SELECT p.start_vid, p.end_vid, p.path_seq, p.node, p.edge, p.agg_cost
    FROM pgr_dijkstra(
        'SELECT id, source, target, length_m AS cost, length_m AS reverse_cost FROM roads',
        (SELECT array_agg(DISTINCT vid) FROM f_ends),
        (SELECT array_agg(DISTINCT vid) FROM t_ends),
        directed => false) p
),
legs AS (  -- road metres between two vertices (the last row of a path carries the total; a vertex to itself: 0)
    SELECT start_vid, end_vid, max(agg_cost) AS m FROM paths GROUP BY start_vid, end_vid
    UNION ALL
    SELECT vid, vid, 0 FROM (SELECT vid FROM f_ends INTERSECT SELECT vid FROM t_ends) same
),
options AS (
    SELECT fe.vid AS start_vid, te.vid AS end_vid, fe.m + l.m + te.m AS m, false AS same_edge
    FROM f_ends fe
    JOIN legs l ON l.start_vid = fe.vid
    JOIN t_ends te ON te.vid = l.end_vid
    UNION ALL
    SELECT NULL, NULL, abs(f.fraction - t.fraction) * f.length_m, true
    FROM f JOIN t ON t.edge = f.edge
),
best AS (
    SELECT * FROM options ORDER BY m, same_edge DESC LIMIT 1
),
pieces AS (  -- (order, piece of road in driving direction, its kind)
    SELECT 0 AS ord, fe.piece AS geom, fe.kind
    FROM best b JOIN f_ends fe ON fe.vid = b.start_vid
    WHERE NOT b.same_edge
    UNION ALL
    SELECT p.path_seq, CASE WHEN p.node = r.source THEN r.geom ELSE ST_Reverse(r.geom) END, r.kind
    FROM best b
    JOIN paths p ON p.start_vid = b.start_vid AND p.end_vid = b.end_vid
    JOIN roads r ON r.id = p.edge
    WHERE NOT b.same_edge
    UNION ALL
    SELECT 2147483647, te.piece, te.kind
    FROM best b JOIN t_ends te ON te.vid = b.end_vid
    WHERE NOT b.same_edge
    UNION ALL
    SELECT 0, CASE WHEN f.fraction <= t.fraction THEN ST_LineSubstring(f.road, f.fraction, t.fraction)
                   ELSE ST_Reverse(ST_LineSubstring(f.road, t.fraction, f.fraction)) END, f.kind
    FROM best b JOIN f ON b.same_edge JOIN t ON t.edge = f.edge
)
SELECT ST_X(d.geom) AS lon, ST_Y(d.geom) AS lat, p.kind
FROM pieces p
CROSS JOIN LATERAL ST_DumpPoints(p.geom) d
ORDER BY p.ord, d.path

-- Snapping a point onto the road network, written once for every route (van_candidates.sql ranks
-- the vans for a case, sim_route.sql drives a simulated van): the nearest point of the nearest
-- edge in ellipsoidal metres, chosen among the 8 edges nearest by the GiST index (KNN: the
-- index's planar order is close, the exact metres decide), ties by edge id so the answer is
-- stable. One row; none when there are no roads. A caller that wants a distance limit filters
-- on snap_m.
--   edge, kind, source, target, length_m, road   the edge (road = its geometry, source → target)
--   fraction   where along the edge the nearest point lies, 0 at source … 1 at target
--   snap_m     metres from the point to that nearest point
-- LANGUAGE sql and STABLE: the planner inlines it into the caller's LATERAL join.
CREATE FUNCTION yitu_snap_to_road(pt geometry)
RETURNS TABLE (edge bigint, kind text, source bigint, target bigint, length_m float8, road geometry,
               fraction float8, snap_m float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT s.*
    FROM (
        SELECT r.id, r.kind, r.source, r.target, r.length_m, r.geom,
               ST_LineLocatePoint(r.geom, pt),
               ST_DistanceSpheroid(ST_ClosestPoint(r.geom, pt), pt, 'SPHEROID["WGS 84",6378137,298.257223563]')
                   AS snap_m
        FROM (SELECT * FROM roads ORDER BY roads.geom <-> pt LIMIT 8) r
    ) s
    ORDER BY s.snap_m, s.id
    LIMIT 1
$$;

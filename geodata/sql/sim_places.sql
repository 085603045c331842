-- Where the simulator's cases happen (yitu simulate): every town and village/community with its
-- seat (areas.props->'seat', set by the demo generator; else a point on the area's surface), its
-- name, its town's name and its kind (community or not), in code order so a seed replays.
SELECT a.code, a.name, a.level, a.props->>'kind' AS kind,
       CASE WHEN a.level = 2 THEN a.name ELSE t.name END AS town_name,
       coalesce((a.props->'seat'->>0)::float8, ST_X(ST_PointOnSurface(a.geom))) AS lon,
       coalesce((a.props->'seat'->>1)::float8, ST_Y(ST_PointOnSurface(a.geom))) AS lat
FROM areas a
LEFT JOIN areas t ON t.code = a.parent_code AND t.level = 2
WHERE a.level IN (2, 3)
ORDER BY a.code

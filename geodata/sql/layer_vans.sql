-- Vans with their latest position, and their trail over the last %(trail_minutes)s minutes,
-- simplified to ~5 m (0.00005°: a van reporting every second on a straight road is two points,
-- not 3,600 an hour; a bend keeps its shape at any zoom the wall uses).
-- A van silent for %(offline_seconds)s seconds shows offline (yitu_van_status, as GET /api/v1/vans).
-- %(scope)s: the reader's area (NULL: everywhere): only its banner's vans and the league's, and
-- their trails (yitu_van_in_scope, 039_van_banner.sql).
SELECT json_build_object(
    'type', 'FeatureCollection',
    'features', coalesce((SELECT json_agg(f ORDER BY f->'properties'->>'id', f->'properties'->>'kind') FROM (
        SELECT json_build_object(
            'type', 'Feature',
            'geometry', ST_AsGeoJSON(v.geom, 6)::json,
            'properties', json_build_object('id', v.id, 'kind', 'van', 'name', v.name, 'status', yitu_van_status(v.status, v.last_seen_at, make_interval(secs => %(offline_seconds)s)),
                                            'heading', v.heading, 'speed', v.speed_kmh, 'seen', v.last_seen_at)
        ) AS f
        FROM vans v
        WHERE v.geom IS NOT NULL AND yitu_van_in_scope(%(scope)s::text, yitu_van_banner(v.base_center_id))
        UNION ALL
        SELECT json_build_object(
            'type', 'Feature',
            'geometry', ST_AsGeoJSON(ST_Simplify(ST_MakeLine(p.geom ORDER BY p.recorded_at), 0.00005, true), 6)::json,
            'properties', json_build_object('id', p.van_id, 'kind', 'trail')
        )
        FROM van_positions p JOIN vans v ON v.id = p.van_id
        WHERE p.recorded_at > now() - make_interval(mins => %(trail_minutes)s)
          AND yitu_van_in_scope(%(scope)s::text, yitu_van_banner(v.base_center_id))
        GROUP BY p.van_id
        HAVING count(*) > 1
    ) t), '[]'::json)
)::text

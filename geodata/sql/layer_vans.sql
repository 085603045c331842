-- Vans with their latest position, and their trail over the last %(trail_minutes)s minutes.
-- A van silent for %(offline_seconds)s seconds shows offline (yitu_van_status, as GET /api/v1/vans).
SELECT json_build_object(
    'type', 'FeatureCollection',
    'features', coalesce((SELECT json_agg(f ORDER BY f->'properties'->>'id', f->'properties'->>'kind') FROM (
        SELECT json_build_object(
            'type', 'Feature',
            'geometry', ST_AsGeoJSON(v.geom, 6)::json,
            'properties', json_build_object('id', v.id, 'kind', 'van', 'name', v.name, 'status', yitu_van_status(v.status, v.last_seen_at, make_interval(secs => %(offline_seconds)s)),
                                            'heading', v.heading, 'speed', v.speed_kmh, 'seen', v.last_seen_at)
        ) AS f
        FROM vans v WHERE v.geom IS NOT NULL
        UNION ALL
        SELECT json_build_object(
            'type', 'Feature',
            'geometry', ST_AsGeoJSON(ST_MakeLine(p.geom ORDER BY p.recorded_at), 6)::json,
            'properties', json_build_object('id', p.van_id, 'kind', 'trail')
        )
        FROM van_positions p
        WHERE p.recorded_at > now() - make_interval(mins => %(trail_minutes)s)
        GROUP BY p.van_id
        HAVING count(*) > 1
    ) t), '[]'::json)
)::text

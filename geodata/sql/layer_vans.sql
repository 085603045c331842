-- Vans with their latest position, and their trail over the last %(trail_minutes)s minutes,
-- simplified to ~5 m (0.00005°: a van reporting every second on a straight road is two points,
-- not 3,600 an hour; a bend keeps its shape at any zoom the wall uses). The trail is read from
-- van_trail, where the scheduler keeps it simplified as it goes (040_van_trail.sql), plus the
-- fixes since its end: a reload reads the trail's points of shape, not every fix of the hour.
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
            'geometry', ST_AsGeoJSON(ST_Simplify(ST_MakeLine(p.geom ORDER BY p.at), 0.00005, true), 6)::json,
            'properties', json_build_object('id', p.van_id, 'kind', 'trail')
        )
        FROM (
            -- the trail as the scheduler rolled it (its points of shape, 040_van_trail.sql) ...
            SELECT t.van_id, t.at, t.geom
            FROM van_trail t
            WHERE t.at > now() - make_interval(mins => %(trail_minutes)s)
            UNION ALL
            -- ... and the fixes stored since its end (all of them when no trail was rolled)
            SELECT v.id, p.recorded_at, p.geom
            FROM vans v
            LEFT JOIN van_trail_until u ON u.van_id = v.id
            CROSS JOIN LATERAL (  -- per van, by the history's key: never a scan of it
                SELECT p.recorded_at, p.geom
                FROM van_positions p
                WHERE p.van_id = v.id AND p.recorded_at > greatest(u.until, now() - make_interval(mins => %(trail_minutes)s))
                OFFSET 0  -- kept a subquery, run per van: the planner would join the whole history
            ) p
            UNION ALL
            -- ... and where it was when the window opened: its first fix in it (a straight road is
            -- two trail points however long, and the first may lie before the window)
            SELECT v.id, f.recorded_at, f.geom
            FROM vans v
            CROSS JOIN LATERAL (
                SELECT p.recorded_at, p.geom
                FROM van_positions p
                WHERE p.van_id = v.id AND p.recorded_at > now() - make_interval(mins => %(trail_minutes)s)
                ORDER BY p.recorded_at
                LIMIT 1
            ) f
        ) p
        JOIN vans v ON v.id = p.van_id
        WHERE yitu_van_in_scope(%(scope)s::text, yitu_van_banner(v.base_center_id))
        GROUP BY p.van_id
        HAVING count(*) > 1
    ) t), '[]'::json)
)::text

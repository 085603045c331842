-- The test layer of tests/layer_area_points.py: one point inside each area of %(level)s in a box.
SELECT json_build_object(
    'type', 'FeatureCollection',
    'features', coalesce(json_agg(json_build_object(
        'type', 'Feature',
        'geometry', ST_AsGeoJSON(ST_PointOnSurface(a.geom), 6)::json,
        'properties', json_build_object('code', a.code, 'name', a.name, 'level', a.level)
    ) ORDER BY a.code), '[]'::json)
)::text
FROM areas a
WHERE a.level = %(level)s
  AND a.geom && ST_MakeEnvelope(%(minx)s, %(miny)s, %(maxx)s, %(maxy)s, 4326)

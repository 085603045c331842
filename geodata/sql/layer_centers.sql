-- Mediation centres (banner centre, town stations, village rooms) inside a box.
SELECT json_build_object(
    'type', 'FeatureCollection',
    'features', coalesce(json_agg(json_build_object(
        'type', 'Feature',
        'geometry', ST_AsGeoJSON(m.geom, 6)::json,
        'properties', json_build_object('id', m.id, 'code', m.code, 'name', m.name, 'level', m.level,
                                        'mediators', m.mediators)
    ) ORDER BY m.level, m.code), '[]'::json)
)::text
FROM mediation_centers m
WHERE m.geom && ST_MakeEnvelope(%(minx)s, %(miny)s, %(maxx)s, %(maxy)s, 4326)
  AND m.level <= %(max_level)s

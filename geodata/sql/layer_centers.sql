-- Mediation centres (banner centre, town stations, village rooms) inside a box. %(scope)s: the
-- reader's area (NULL: everywhere): the centres of its banner and the league's own, the rule of the
-- vans based at them (039_van_banner.sql: a centre's banner is its area code's first six digits).
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
  AND yitu_van_in_scope(%(scope)s::text, CASE WHEN length(m.area_code) >= 6 THEN left(m.area_code, 6) END)

-- Cameras inside a box, compact properties (details come on click). At most %(max_features)s are read
-- (the cap + 1); the second column is how many (layers/base.py refuses a box with too many).
-- %(scope)s: the reader's area (NULL: everywhere): the cameras inside it only (layers/cameras.py).
SELECT json_build_object(
    'type', 'FeatureCollection',
    'features', coalesce(json_agg(f.feature ORDER BY f.id), '[]'::json)
)::text, count(*)
FROM (
SELECT c.id, json_build_object(
        'type', 'Feature',
        'geometry', json_build_object('type', 'Point', 'coordinates', json_build_array(round(ST_X(c.geom)::numeric, 6), round(ST_Y(c.geom)::numeric, 6))),
        'properties', json_build_object('id', c.id, 'kind', c.kind, 'status', c.status)
    ) AS feature
FROM cameras c
WHERE c.geom && ST_MakeEnvelope(%(minx)s, %(miny)s, %(maxx)s, %(maxy)s, 4326)
  AND (%(status)s::text IS NULL OR c.status = %(status)s)
  AND (%(kind)s::text IS NULL OR c.kind = %(kind)s)
  AND yitu_area_in_scope(%(scope)s::text, c.area_code)
ORDER BY c.id
LIMIT %(max_features)s
) f

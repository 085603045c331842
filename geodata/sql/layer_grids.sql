-- Grid polygons of one level inside a box, as a GeoJSON FeatureCollection built by PostGIS.
-- %(tol)s simplifies to about a pixel at the requested zoom (0: exact); %(parent)s narrows to the
-- children of one area. Choropleth numbers travel separately (hideout), so this stays cacheable.
SELECT json_build_object(
    'type', 'FeatureCollection',
    'features', coalesce(json_agg(ST_AsGeoJSON(f.*, 'geom', 6)::json ORDER BY f.code), '[]'::json)
)::text
FROM (
    SELECT a.code, a.name, a.level, a.parent_code,
           CASE WHEN %(tol)s > 0 THEN ST_SimplifyPreserveTopology(a.geom, %(tol)s) ELSE a.geom END AS geom,
           ST_X(ST_PointOnSurface(a.geom)) AS lx, ST_Y(ST_PointOnSurface(a.geom)) AS ly
    FROM areas a
    WHERE a.level = %(level)s
      AND a.geom && ST_MakeEnvelope(%(minx)s, %(miny)s, %(maxx)s, %(maxy)s, 4326)
      AND (%(parent)s::text IS NULL OR a.parent_code = %(parent)s)
) f

-- What one tile of the own base map shows (geodata/basemap.py draws it), in the tile's pixel space:
-- ST_AsMVTGeom puts each geometry in Web Mercator on the tile's grid of pixels, origin top left,
-- y down, clipped a margin beyond the tile (a road's stroke reaches over it) and
-- simplified to the pixel. Drawing order: land, water, roads (village under county under trunk).
-- Which roads a zoom shows is decided here, so a tile never reads what it does not draw. The places
-- are read once for the whole map (basemap_places.sql).
WITH tile AS (
    SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS env,
           ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => %(margin)s), 4326) AS box
),
land AS (  -- the banner(s): a faint land colour inside the deployment's territory
    SELECT 0 AS layer, 0 AS rank, NULL::text AS kind, NULL::text AS name,
           ST_AsMVTGeom(ST_Transform(a.geom, 3857), t.env, %(extent)s, %(buffer)s, true) AS g
    FROM areas a, tile t
    WHERE a.level = 1 AND a.geom && t.box
),
waters AS (
    SELECT 1, CASE WHEN GeometryType(w.geom) LIKE '%%POLYGON' THEN 0 ELSE 1 END, w.kind, w.name,
           ST_AsMVTGeom(ST_Transform(w.geom, 3857), t.env, %(extent)s, %(buffer)s, true)
    FROM water w, tile t
    WHERE w.geom && t.box
      AND (w.kind IN ('river', 'canal', 'lake', 'reservoir') OR %(z)s >= 11)
),
road AS (
    SELECT 2, CASE r.kind WHEN 'village' THEN 0 WHEN 'county' THEN 1 ELSE 2 END, r.kind, r.name,
           ST_AsMVTGeom(ST_Transform(r.geom, 3857), t.env, %(extent)s, %(buffer)s, true)
    FROM roads r, tile t
    WHERE r.geom && t.box
      AND (r.kind = 'trunk' OR (r.kind = 'county' AND %(z)s >= 8) OR (r.kind = 'village' AND %(z)s >= 10))
)
SELECT layer, rank, kind, name, ST_AsBinary(g) AS wkb
FROM (
    SELECT * FROM land UNION ALL SELECT * FROM waters UNION ALL SELECT * FROM road
) f
WHERE g IS NOT NULL AND NOT ST_IsEmpty(g)
ORDER BY layer, rank

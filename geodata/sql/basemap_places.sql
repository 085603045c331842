-- The towns (level 2) and villages (level 3) of the own base map (geodata/basemap.py), each at its
-- seat: props.seat [lon, lat] when the import or the demo gave one, else a point inside its polygon.
SELECT a.level, a.name,
       ST_X(p.at) AS lon, ST_Y(p.at) AS lat
FROM areas a
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN jsonb_typeof(a.props -> 'seat' -> 0) = 'number' AND jsonb_typeof(a.props -> 'seat' -> 1) = 'number'
        THEN ST_SetSRID(ST_MakePoint((a.props -> 'seat' ->> 0)::float8, (a.props -> 'seat' ->> 1)::float8), 4326)
        ELSE ST_PointOnSurface(a.geom)
    END AS at
) p
WHERE a.level IN (2, 3)
ORDER BY a.level, a.name, a.code

-- A point → its grid chain, deepest level first, and how far the point is from the deepest
-- area's boundary (metres, on the spheroid). No row: the point is outside the territory.
-- Points exactly on a shared edge go to the lower code, deterministically.
WITH RECURSIVE
p AS (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) AS g),
hit AS (
    SELECT a.code, a.geom
    FROM areas a, p
    WHERE ST_Intersects(a.geom, p.g)
    ORDER BY a.level DESC, a.code
    LIMIT 1
),
chain AS (
    SELECT a.code, a.name, a.level, a.parent_code FROM areas a JOIN hit USING (code)
    UNION ALL
    SELECT a.code, a.name, a.level, a.parent_code FROM areas a JOIN chain c ON a.code = c.parent_code
)
SELECT chain.code, chain.name, chain.level,
       ST_Distance(ST_Boundary(hit.geom)::geography, p.g::geography) AS boundary_m
FROM chain, hit, p
ORDER BY chain.level DESC

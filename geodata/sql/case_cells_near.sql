-- The grid cells a case could belong to (the case page's "move to the right cell" and "assign a
-- cell"): the cells within %(radius)s metres of the case's point, nearest first (0 for the one
-- containing it), each with its name and its chain. The GiST index picks them by box first.
WITH c AS (SELECT geom FROM cases WHERE code = %(code)s)
SELECT a.code, a.name, a.parent_code AS village_code, v.parent_code AS town_code, left(a.code, 6) AS banner_code,
       ST_DistanceSpheroid(ST_ClosestPoint(a.geom, c.geom), c.geom, 'SPHEROID["WGS 84",6378137,298.257223563]')
           AS distance_m
FROM areas a
JOIN areas v ON v.code = a.parent_code
CROSS JOIN c
WHERE a.level = 4
  AND a.geom && ST_Expand(c.geom, %(radius)s / 80000.0)
ORDER BY distance_m, a.code
LIMIT %(limit)s

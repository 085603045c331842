-- Areas of the same level sharing an edge with the given one (touching at a single point is not
-- enough): interiors disjoint, boundaries meeting along a line.
SELECT b.code, b.name, b.level, b.parent_code
FROM areas a
JOIN areas b ON b.level = a.level AND b.code <> a.code AND b.geom && a.geom
WHERE a.code = %(code)s
  AND ST_Relate(a.geom, b.geom, 'F***1****')
ORDER BY b.code

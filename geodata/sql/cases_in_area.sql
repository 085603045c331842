-- The cases of an area of any level, newest first, with optional filters. Cases carry their grid
-- chain from intake (grid/village/town/banner codes), so this is an indexed equality on the
-- column of the area's level, never a polygon test over every case; a case keeps its area even
-- if the territory is re-imported later. {column} is filled by psycopg.sql from a fixed list.
SELECT c.id, c.code, c.type, c.step, c.level, c.deadline, c.reported_at, c.grid_code,
       ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat
FROM cases c
WHERE {column} = %(code)s
  AND (%(step)s::text IS NULL OR c.step = %(step)s)
  AND (%(type)s::text IS NULL OR c.type = %(type)s)
  AND (%(since)s::timestamptz IS NULL OR c.reported_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR c.reported_at < %(until)s)
ORDER BY c.reported_at DESC, c.id DESC
LIMIT %(limit)s OFFSET %(offset)s

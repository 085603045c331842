-- One page of an area's cases for the area view and its CSV export: filters, a sort column chosen
-- by psycopg.sql from a fixed list ({order} {direction}), then the id for a stable order. %(scope)s: the
-- reader's area (NULL: everywhere).
SELECT c.code, c.type, t.name_zh AS type_zh, t.name_en AS type_en, c.step, c.level,
       c.reported_at, c.deadline, c.grid_code AS grid, a.name AS grid_name,
       yitu_step_open(c.step) AND c.deadline < now() AS overdue
FROM cases c
JOIN case_types t ON t.code = c.type
LEFT JOIN areas a ON a.code = c.grid_code
WHERE {column} = %(code)s
  AND yitu_in_scope(%(scope)s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)
  AND (%(step)s::text IS NULL OR c.step = %(step)s)
  AND (%(type)s::text IS NULL OR c.type = %(type)s)
  AND (%(since)s::timestamptz IS NULL OR c.reported_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR c.reported_at < %(until)s)
ORDER BY {order} {direction}, c.id {direction}
LIMIT %(limit)s OFFSET %(offset)s

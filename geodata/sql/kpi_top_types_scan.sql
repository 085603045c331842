-- The ten most frequent case types of an area among the cases reported on the days [%(first)s,
-- %(after)s) (China time), counted from the cases: the baseline of kpi_top_types.sql.
SELECT c.type, t.name_zh, t.name_en, count(*) AS n
FROM cases c JOIN case_types t ON t.code = c.type
WHERE {column} = %(code)s
  AND c.reported_at >= %(first)s::date::timestamp AT TIME ZONE 'Asia/Shanghai'
  AND c.reported_at < %(after)s::date::timestamp AT TIME ZONE 'Asia/Shanghai'
GROUP BY c.type, t.name_zh, t.name_en
ORDER BY n DESC, c.type
LIMIT 10

-- The ten most frequent case types of an area this quarter (会商研判: the top ten causes).
SELECT c.type, t.name_zh, t.name_en, count(*) AS n
FROM cases c JOIN case_types t ON t.code = c.type
WHERE {column} = %(code)s
  AND c.reported_at >= date_trunc('quarter', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai'
GROUP BY c.type, t.name_zh, t.name_en
ORDER BY n DESC, c.type
LIMIT 10

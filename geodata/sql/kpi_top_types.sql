-- The ten most frequent case types of an area this quarter (会商研判: the top ten causes), from
-- the monthly counters (a quarter is whole months; kpi_top_types_scan.sql counts the same from
-- the cases).
SELECT k.type, t.name_zh, t.name_en, sum(k.n)::bigint AS n
FROM case_counters_month k JOIN case_types t ON t.code = k.type
WHERE k.area_code = %(code)s
  AND k.month >= date_trunc('quarter', now() AT TIME ZONE 'Asia/Shanghai')::date
GROUP BY k.type, t.name_zh, t.name_en
HAVING sum(k.n) > 0
ORDER BY n DESC, k.type
LIMIT 10

-- The ten most frequent case types of an area among the cases reported on the days [%(first)s,
-- %(after)s) (China time; 会商研判: the top ten causes of the wall's period), from the counters:
-- the period's whole months from the monthly rows, its ragged ends from the daily ones
-- (yitu_counters_reported, 033_counters.sql). kpi_top_types_scan.sql counts the same from the cases.
SELECT k.type, t.name_zh, t.name_en, sum(k.n)::bigint AS n
FROM yitu_counters_reported(%(code)s, %(first)s, %(after)s) k JOIN case_types t ON t.code = k.type
GROUP BY k.type, t.name_zh, t.name_en
HAVING sum(k.n) > 0
ORDER BY n DESC, k.type
LIMIT 10

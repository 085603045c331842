-- Cases of an area by workflow step: open ones now, and this year's closed/evaluated ones
-- (from the counters; kpi_steps_scan.sql counts the same from the cases).
SELECT step, sum(n)::bigint AS n
FROM case_counters
WHERE area_code = %(code)s
  AND (yitu_step_open(step) OR day >= date_trunc('year', now() AT TIME ZONE 'Asia/Shanghai')::date)
GROUP BY step
HAVING sum(n) > 0

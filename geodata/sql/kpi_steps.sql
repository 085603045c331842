-- Cases of an area by workflow step: open ones now (the open cases' counters), and this year's
-- closed, evaluated and rejected ones (the monthly counters); kpi_steps_scan.sql counts the same
-- from the cases.
SELECT step, sum(n)::bigint AS n
FROM (
    SELECT step, n FROM case_counters_open WHERE area_code = %(code)s
    UNION ALL
    SELECT step, n FROM case_counters_month
    WHERE area_code = %(code)s AND NOT yitu_step_open(step)
      AND month >= date_trunc('year', now() AT TIME ZONE 'Asia/Shanghai')::date
) k
GROUP BY step
HAVING sum(n) > 0

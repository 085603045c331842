-- Reported and resolved cases per day (China time) over the last %(days)s days, zero-filled, from
-- the per-area daily counters (kpi_trend_scan.sql counts the same from the cases).
WITH days AS (
    SELECT generate_series(
        (date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') - make_interval(days => %(days)s - 1))::date,
        date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai')::date, interval '1 day')::date AS day
),
k AS (
    SELECT k.day, sum(k.n) AS reported, sum(k.resolved_on_n) AS resolved
    FROM case_counters_area_day k
    WHERE k.area_code = %(code)s
      AND k.day >= (date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') - make_interval(days => %(days)s - 1))::date
    GROUP BY 1
)
SELECT days.day, coalesce(k.reported, 0)::bigint AS reported, coalesce(k.resolved, 0)::bigint AS resolved
FROM days LEFT JOIN k USING (day)
ORDER BY days.day

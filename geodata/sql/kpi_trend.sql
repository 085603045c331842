-- Reported and resolved cases per day (China time) over the last %(days)s days, zero-filled, from
-- the counters (kpi_trend_scan.sql counts the same from the cases).
WITH days AS (
    SELECT generate_series(
        (date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') - make_interval(days => %(days)s - 1))::date,
        date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai')::date, interval '1 day')::date AS day
),
since AS (SELECT min(day) AS d FROM days),
rep AS (
    SELECT k.day, sum(k.n) AS n FROM case_counters k, since
    WHERE k.area_code = %(code)s AND k.day >= since.d GROUP BY 1
),
res AS (
    SELECT k.resolved_day AS day, sum(k.n) AS n FROM case_counters k, since
    WHERE k.area_code = %(code)s AND k.resolved_day >= since.d GROUP BY 1
)
SELECT days.day, coalesce(rep.n, 0)::bigint AS reported, coalesce(res.n, 0)::bigint AS resolved
FROM days LEFT JOIN rep USING (day) LEFT JOIN res USING (day)
ORDER BY days.day

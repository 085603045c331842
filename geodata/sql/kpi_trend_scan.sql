-- Reported and resolved cases per day (China time) over the last %(days)s days, zero-filled.
WITH days AS (
    SELECT generate_series(
        (date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') - make_interval(days => %(days)s - 1))::date,
        date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai')::date, interval '1 day')::date AS day
),
since AS (SELECT (min(day)::timestamp AT TIME ZONE 'Asia/Shanghai') AS t FROM days),
rep AS (
    SELECT (reported_at AT TIME ZONE 'Asia/Shanghai')::date AS day, count(*) AS n
    FROM cases, since WHERE {column} = %(code)s AND reported_at >= since.t GROUP BY 1
),
res AS (
    SELECT (closed_at AT TIME ZONE 'Asia/Shanghai')::date AS day, count(*) AS n
    FROM cases, since WHERE {column} = %(code)s AND closed_at >= since.t
      AND outcome IN ('mediated', 'judicial_confirmation') GROUP BY 1
)
SELECT days.day, coalesce(rep.n, 0) AS reported, coalesce(res.n, 0) AS resolved
FROM days LEFT JOIN rep USING (day) LEFT JOIN res USING (day)
ORDER BY days.day

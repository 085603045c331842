-- The wall screen's KPI tiles for one area, from the counters (033_counters.sql); the same figures
-- as kpi_area_scan.sql computes from the cases (its header defines them). %(start)s / %(end)s:
-- the period's first day and the day after its last (China time); NULL: the year to date.
-- Overdue depends on the clock, not on a write: counted from the open cases (cases_open_idx).
WITH t AS (
    SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date AS today,
           coalesce(%(start)s::date, date_trunc('year', now() AT TIME ZONE 'Asia/Shanghai')::date) AS year,
           coalesce(%(end)s::date, 'infinity'::date) AS until
),
k AS (
    SELECT coalesce(sum(n) FILTER (WHERE day >= t.today), 0)::bigint                          AS new_today,
           coalesce(sum(n) FILTER (WHERE yitu_step_open(step)), 0)::bigint                     AS in_progress,
           coalesce(sum(n) FILTER (WHERE resolved_day >= t.year AND resolved_day < t.until), 0)::bigint
                                                                                                AS resolved_ytd,
           coalesce(sum(n) FILTER (WHERE day >= t.year AND day < t.until), 0)::bigint           AS reported_ytd,
           coalesce(sum(n) FILTER (WHERE day >= t.year AND day < t.until AND resolved), 0)::bigint
                                                                                                AS resolved_of_reported_ytd,
           coalesce(sum(n) FILTER (WHERE resolved_day >= t.year AND resolved_day < t.until
                                     AND level IN ('grid', 'village')), 0)::bigint              AS resolved_low_ytd,
           coalesce(sum(n) FILTER (WHERE yitu_step_open(step) AND major), 0)::bigint            AS open_major,
           coalesce(sum(n) FILTER (WHERE yitu_step_open(step) AND grp), 0)::bigint              AS open_group
    FROM case_counters, t
    WHERE area_code = %(code)s
      AND (yitu_step_open(step) OR (day >= t.year AND day < t.until)
           OR (resolved_day >= t.year AND resolved_day < t.until))
),
o AS (
    SELECT count(*) FILTER (WHERE level = 'grid')    AS overdue_grid,
           count(*) FILTER (WHERE level = 'village') AS overdue_village,
           count(*) FILTER (WHERE level = 'town')    AS overdue_town,
           count(*) FILTER (WHERE level = 'banner')  AS overdue_banner
    FROM cases
    WHERE {column} = %(code)s AND yitu_step_open(step) AND deadline < now()
)
SELECT k.new_today, k.in_progress, k.resolved_ytd, k.reported_ytd, k.resolved_of_reported_ytd, k.resolved_low_ytd,
       o.overdue_grid, o.overdue_village, o.overdue_town, o.overdue_banner, k.open_major, k.open_group
FROM k, o

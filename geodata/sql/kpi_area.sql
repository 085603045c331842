-- The wall screen's KPI tiles for one area, from the counters (033_counters.sql); the same figures
-- as kpi_area_scan.sql computes from the cases (its header defines them). %(start)s / %(end)s:
-- the period's first day and the day after its last (China time); NULL: the year to date. The
-- period's figures come from the monthly counters for its whole months and the daily ones for the
-- rest; the as-of-now ones from the open cases' counters. Overdue depends on the clock, not on a
-- write: counted from the open cases (cases_open_idx). Today's new cases: the per-area daily counters.
WITH t AS (
    SELECT coalesce(%(start)s::date, date_trunc('year', now() AT TIME ZONE 'Asia/Shanghai')::date) AS first,
           %(end)s::date AS after
),
rep AS (
    SELECT coalesce(sum(r.n), 0)::bigint AS reported_ytd,
           coalesce(sum(r.n) FILTER (WHERE r.resolved), 0)::bigint AS resolved_of_reported_ytd
    FROM t, yitu_counters_reported(%(code)s, t.first, t.after) r
),
res AS (
    SELECT coalesce(sum(r.n), 0)::bigint AS resolved_ytd,
           coalesce(sum(r.n) FILTER (WHERE r.level IN ('grid', 'village')), 0)::bigint AS resolved_low_ytd
    FROM t, yitu_counters_resolved(%(code)s, t.first, t.after) r
),
new AS (
    SELECT coalesce(sum(k.n), 0)::bigint AS new_today
    FROM case_counters_area_day k
    WHERE k.area_code = %(code)s AND k.day >= (now() AT TIME ZONE 'Asia/Shanghai')::date
),
open AS (
    SELECT coalesce(sum(n), 0)::bigint AS in_progress,
           coalesce(sum(n) FILTER (WHERE major), 0)::bigint AS open_major,
           coalesce(sum(n) FILTER (WHERE grp), 0)::bigint AS open_group
    FROM case_counters_open
    WHERE area_code = %(code)s
),
o AS (
    SELECT count(*) FILTER (WHERE level = 'grid')    AS overdue_grid,
           count(*) FILTER (WHERE level = 'village') AS overdue_village,
           count(*) FILTER (WHERE level = 'town')    AS overdue_town,
           count(*) FILTER (WHERE level = 'banner')  AS overdue_banner
    FROM cases
    WHERE {column} = %(code)s AND yitu_step_open(step) AND deadline < now()
)
SELECT new.new_today, open.in_progress, res.resolved_ytd, rep.reported_ytd, rep.resolved_of_reported_ytd,
       res.resolved_low_ytd, o.overdue_grid, o.overdue_village, o.overdue_town, o.overdue_banner, open.open_major,
       open.open_group
FROM new, open, res, rep, o

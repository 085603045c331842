-- 月通报、季排名 from the counters (033_counters.sql): the areas of one level under a parent, ranked
-- for a period of whole days [%(start)s, %(end)s) (China time). The formula and the figures are
-- those of ranking_scan.sql, which counts them from the cases. The period's figures come from the
-- per-area monthly counters for its whole months and the per-area daily ones for the days around
-- them (plain index ranges: the bounds fold to constants); open from the open cases' counters.
-- Overdue depends on the clock and is counted from the open cases (cases_open_idx). {column} is the grid-chain column of the ranked level, {parent} that of the
-- parent's level (psycopg.sql, from a fixed table).
WITH per AS (
    SELECT code, sum(n) AS reported, sum(resolved_n) AS resolved,
           (sum(sat_sum)::numeric / nullif(sum(sat_n), 0))::float8 AS satisfaction
    FROM (
        SELECT k.area_code AS code, k.n, k.resolved_n, k.sat_sum, k.sat_n
        FROM case_counters_area_month k
        WHERE k.area_level = %(level)s AND starts_with(k.area_code, %(parent_code)s)
          AND k.month >= (yitu_month_span(%(start)s, %(end)s)).m_first
          AND k.month < (yitu_month_span(%(start)s, %(end)s)).m_after
        UNION ALL
        SELECT k.area_code, k.n, k.resolved_n, k.sat_sum, k.sat_n
        FROM case_counters_area_day k
        WHERE k.area_level = %(level)s AND starts_with(k.area_code, %(parent_code)s)
          AND k.day >= %(start)s AND k.day < (yitu_month_span(%(start)s, %(end)s)).m_first
        UNION ALL
        SELECT k.area_code, k.n, k.resolved_n, k.sat_sum, k.sat_n
        FROM case_counters_area_day k
        WHERE k.area_level = %(level)s AND starts_with(k.area_code, %(parent_code)s)
          AND k.day >= (yitu_month_span(%(start)s, %(end)s)).m_after AND k.day < %(end)s
    ) k
    GROUP BY 1
),
open AS (
    SELECT k.area_code AS code, sum(k.n) AS open
    FROM case_counters_open k
    WHERE k.area_level = %(level)s AND starts_with(k.area_code, %(parent_code)s)
    GROUP BY 1
),
late AS (
    SELECT {column} AS code, count(*) AS overdue
    FROM cases c
    WHERE {parent} = %(parent_code)s AND {column} IS NOT NULL
      AND yitu_step_open(c.step) AND c.deadline < %(now)s
    GROUP BY 1
),
scored AS (
    SELECT a.code, a.name, coalesce(per.reported, 0)::bigint AS reported, coalesce(per.resolved, 0)::bigint AS resolved,
           coalesce(open.open, 0)::bigint AS open, coalesce(late.overdue, 0) AS overdue, per.satisfaction,
           coalesce(per.resolved::float8 / nullif(per.reported, 0), 0) AS resolution_rate,
           coalesce(late.overdue::float8 / nullif(open.open, 0), 0) AS overdue_share
    FROM areas a LEFT JOIN per ON per.code = a.code LEFT JOIN open ON open.code = a.code
         LEFT JOIN late ON late.code = a.code
    WHERE a.level = %(level)s AND starts_with(a.code, %(parent_code)s)  -- codes nest: banners too, root or not
)
SELECT rank() OVER (ORDER BY s.score DESC) AS rank, s.*
FROM (SELECT scored.*,
             round((60 * resolution_rate + 25 * (1 - overdue_share)
                    + 15 * (coalesce(satisfaction, 3) - 1) / 4)::numeric, 1)::float8 AS score
      FROM scored) s
ORDER BY s.score DESC, s.code

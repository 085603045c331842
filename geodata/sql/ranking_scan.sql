-- 月通报、季排名: the areas of one level under a parent, ranked for a period [start, end).
--   score = 60 × R + 25 × (1 − O) + 15 × (S − 1) / 4
--   R = resolved ÷ reported in the period (0 with no report),
--   O = overdue ÷ open at %(now)s (0 with nothing open),
--   S = mean satisfaction (1–5) of the period's evaluated cases (3, neutral, with none).
-- {column} is the grid-chain column of the ranked level, {parent} that of the parent's level
-- (psycopg.sql, from a fixed table). The wall screen ranks its towns with this too.
WITH per AS (
    SELECT {column} AS code,
           count(*) FILTER (WHERE c.reported_at >= %(start)s AND c.reported_at < %(end)s) AS reported,
           count(*) FILTER (WHERE c.reported_at >= %(start)s AND c.reported_at < %(end)s
                              AND c.outcome IN ('mediated', 'judicial_confirmation')) AS resolved,
           count(*) FILTER (WHERE yitu_step_open(c.step)) AS open,
           count(*) FILTER (WHERE yitu_step_open(c.step)
                              AND c.deadline < %(now)s) AS overdue,
           avg(c.satisfaction) FILTER (WHERE c.reported_at >= %(start)s AND c.reported_at < %(end)s)::float8
               AS satisfaction
    FROM cases c
    WHERE {parent} = %(parent_code)s AND {column} IS NOT NULL
      AND ((c.reported_at >= %(start)s AND c.reported_at < %(end)s)
           OR yitu_step_open(c.step))
    GROUP BY 1
),
scored AS (
    SELECT a.code, a.name, coalesce(per.reported, 0) AS reported, coalesce(per.resolved, 0) AS resolved,
           coalesce(per.open, 0) AS open, coalesce(per.overdue, 0) AS overdue, per.satisfaction,
           coalesce(per.resolved::float8 / nullif(per.reported, 0), 0) AS resolution_rate,
           coalesce(per.overdue::float8 / nullif(per.open, 0), 0) AS overdue_share
    FROM areas a LEFT JOIN per ON per.code = a.code
    WHERE a.level = %(level)s AND a.parent_code LIKE %(parent_code)s || '%%'
)
SELECT rank() OVER (ORDER BY s.score DESC) AS rank, s.*
FROM (SELECT scored.*,
             round((60 * resolution_rate + 25 * (1 - overdue_share)
                    + 15 * (coalesce(satisfaction, 3) - 1) / 4)::numeric, 1)::float8 AS score
      FROM scored) s
ORDER BY s.score DESC, s.code

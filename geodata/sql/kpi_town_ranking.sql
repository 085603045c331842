-- 季排名: the towns of a banner ranked for the current quarter (China time).
-- score = 60 × resolution rate + 25 × (1 − overdue share of open cases) + 15 × (satisfaction − 1) / 4,
-- each part in [0, 1] (satisfaction 1–5, a town with no evaluation counts as 3).
WITH q AS (SELECT date_trunc('quarter', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai' AS start),
per AS (
    SELECT c.town_code,
           count(*) FILTER (WHERE c.reported_at >= q.start) AS reported,
           count(*) FILTER (WHERE c.reported_at >= q.start AND c.outcome IN ('mediated', 'judicial_confirmation')) AS resolved,
           count(*) FILTER (WHERE c.step IN ('reported', 'accepted', 'dispatched', 'handling')) AS open,
           count(*) FILTER (WHERE c.step IN ('reported', 'accepted', 'dispatched', 'handling') AND c.deadline < now()) AS overdue,
           avg(c.satisfaction) FILTER (WHERE c.reported_at >= q.start) AS satisfaction
    FROM cases c, q
    WHERE c.banner_code = %(banner)s AND c.town_code IS NOT NULL
      AND (c.reported_at >= q.start OR c.step IN ('reported', 'accepted', 'dispatched', 'handling'))
    GROUP BY c.town_code
)
SELECT a.code, a.name, coalesce(per.reported, 0) AS reported, coalesce(per.resolved, 0) AS resolved,
       coalesce(per.open, 0) AS open, coalesce(per.overdue, 0) AS overdue, per.satisfaction,
       round((60 * coalesce(per.resolved::numeric / nullif(per.reported, 0), 0)
            + 25 * (1 - coalesce(per.overdue::numeric / nullif(per.open, 0), 0))
            + 15 * (coalesce(per.satisfaction, 3) - 1) / 4)::numeric, 1) AS score
FROM areas a LEFT JOIN per ON per.town_code = a.code
WHERE a.level = 2 AND a.parent_code = %(banner)s
ORDER BY score DESC, a.code

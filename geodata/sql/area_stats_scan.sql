-- The stats of one area (GET /api/v1/areas/CODE/stats): an area's cases (any level; {column} is its grid-chain column)
-- counted by step, by type and by handling level in one pass (GROUPING SETS; the () row holds
-- the totals). "Resolved" = mediated or judicially confirmed; "open" = yitu_step_open(step);
-- "overdue" = open and past the deadline at %(now)s; "low" = settled at grid or village level.
-- Optional period: reported in [since, until).
SELECT GROUPING(c.step) AS g_step, GROUPING(c.type) AS g_type, GROUPING(c.level) AS g_level,
       c.step, c.type, c.level,
       count(*) AS n,
       count(*) FILTER (WHERE c.outcome IN ('mediated', 'judicial_confirmation')) AS resolved,
       count(*) FILTER (WHERE c.step IN ('closed', 'evaluated')) AS closed,
       count(*) FILTER (WHERE yitu_step_open(c.step)) AS open,
       count(*) FILTER (WHERE yitu_step_open(c.step)
                          AND c.deadline < %(now)s) AS overdue,
       count(*) FILTER (WHERE c.outcome IN ('mediated', 'judicial_confirmation')
                          AND c.level IN ('grid', 'village')) AS resolved_low,
       avg(c.satisfaction)::float8 AS satisfaction
FROM cases c
WHERE {column} = %(code)s
  AND (%(since)s::timestamptz IS NULL OR c.reported_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR c.reported_at < %(until)s)
GROUP BY GROUPING SETS ((), (c.step), (c.type), (c.level))

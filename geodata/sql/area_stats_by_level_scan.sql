-- Per-area numbers for the choropleth, for every area of one level: open and overdue cases now,
-- and this year's resolution rate (resolved ÷ reported since 1 January, China time).
-- {column} is the grid-chain column of the level (psycopg.sql, from a fixed table). %(scope)s: the
-- reader's area (NULL: everywhere); a scoped reader's numbers count only the cases inside it.
WITH y AS (SELECT date_trunc('year', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai' AS start)
SELECT {column} AS code,
       count(*) FILTER (WHERE yitu_step_open(step)) AS open,
       count(*) FILTER (WHERE yitu_step_open(step) AND deadline < now()) AS overdue,
       count(*) FILTER (WHERE reported_at >= y.start) AS reported_ytd,
       count(*) FILTER (WHERE reported_at >= y.start AND outcome IN ('mediated', 'judicial_confirmation')) AS resolved_ytd
FROM cases, y
WHERE {column} IS NOT NULL
  AND yitu_in_scope(%(scope)s::text, grid_code, village_code, town_code, banner_code)
  AND (yitu_step_open(step) OR reported_at >= y.start)
GROUP BY 1

-- Per-area numbers for the choropleth, for every area of one level, from the counters
-- (033_counters.sql; area_stats_by_level_scan.sql counts the same from the cases): open cases now
-- (the open cases' counters), this year's reported and resolved (since 1 January, China time:
-- whole months of the per-area monthly counters), and overdue, which depends on the clock and is
-- counted from the open cases. {column} is the grid-chain column of the level.
-- %(scope)s: the reader's area (NULL: everywhere); a scoped reader's numbers count only the cases
-- inside it: the counters of the level's areas inside the scope, or, for a level above the
-- scope's, the scope's own counters under its ancestor of that level. %(lvl)s: the level read
-- (the level's or the scope's, the deeper); %(width)s: the code length of the level.
WITH y AS (SELECT date_trunc('year', now() AT TIME ZONE 'Asia/Shanghai')::date AS start),
k AS (
    SELECT left(k.area_code, %(width)s) AS code, sum(k.n) AS reported_ytd, sum(k.resolved_n) AS resolved_ytd
    FROM case_counters_area_month k, y
    WHERE k.area_level = %(lvl)s AND k.month >= y.start AND starts_with(k.area_code, coalesce(%(scope)s::text, ''))
    GROUP BY 1
),
op AS (
    SELECT left(k.area_code, %(width)s) AS code, sum(k.n) AS open
    FROM case_counters_open k
    WHERE k.area_level = %(lvl)s AND starts_with(k.area_code, coalesce(%(scope)s::text, ''))
    GROUP BY 1
),
o AS (
    SELECT {column} AS code, count(*) AS overdue
    FROM cases
    WHERE {column} IS NOT NULL AND yitu_step_open(step) AND deadline < now()
      AND yitu_in_scope(%(scope)s::text, grid_code, village_code, town_code, banner_code)
    GROUP BY 1
)
SELECT code, coalesce(op.open, 0)::bigint AS open, coalesce(o.overdue, 0) AS overdue,
       coalesce(k.reported_ytd, 0)::bigint AS reported_ytd, coalesce(k.resolved_ytd, 0)::bigint AS resolved_ytd
FROM k FULL JOIN op USING (code) LEFT JOIN o USING (code)
WHERE coalesce(op.open, 0) > 0 OR coalesce(k.reported_ytd, 0) > 0

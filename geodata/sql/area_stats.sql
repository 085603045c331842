-- The stats of one area (GET /api/v1/areas/CODE/stats) from the counters (033_counters.sql): by
-- step, by type and by handling level in one pass (GROUPING SETS; the () row holds the totals),
-- the figures of area_stats_scan.sql, which counts them from the cases. Overdue depends on the
-- clock: area_overdue.sql counts it from the open cases. Optional period: reported on the days
-- [since, until) (China time); its whole months are read from the monthly counters.
SELECT GROUPING(k.step) AS g_step, GROUPING(k.type) AS g_type, GROUPING(k.level) AS g_level,
       k.step, k.type, k.level,
       coalesce(sum(k.n), 0)::bigint AS n,
       coalesce(sum(k.n) FILTER (WHERE k.resolved), 0)::bigint AS resolved,
       coalesce(sum(k.n) FILTER (WHERE k.step IN ('closed', 'evaluated')), 0)::bigint AS closed,
       coalesce(sum(k.n) FILTER (WHERE yitu_step_open(k.step)), 0)::bigint AS open,
       coalesce(sum(k.n) FILTER (WHERE k.resolved AND k.level IN ('grid', 'village')), 0)::bigint AS resolved_low,
       (sum(k.sat_sum)::numeric / nullif(sum(k.sat_n), 0))::float8 AS satisfaction
FROM yitu_counters_reported(%(code)s, %(since)s::date, %(until)s::date) k
GROUP BY GROUPING SETS ((), (k.step), (k.type), (k.level))
HAVING sum(k.n) > 0 OR GROUPING(k.step, k.type, k.level) = 7

-- Where the KPI counters (summed over their shards) and a full count of the cases disagree: one
-- row per key that differs, with both figures. Empty when the counters are right. (A UNION and a
-- GROUP BY rather than a FULL JOIN: the key holds a NULL, and GROUP BY takes NULLs as equal.)
SELECT area_code, day, resolved_day, type, step, level, major, grp, resolved,
       sum(kept_n)::bigint AS kept_n, sum(counted_n)::bigint AS counted_n,
       sum(kept_sat_sum)::bigint AS kept_sat_sum, sum(counted_sat_sum)::bigint AS counted_sat_sum,
       sum(kept_sat_n)::bigint AS kept_sat_n, sum(counted_sat_n)::bigint AS counted_sat_n
FROM (
    SELECT area_code, day, resolved_day, type, step, level, major, grp, resolved,
           n AS kept_n, 0 AS counted_n, sat_sum AS kept_sat_sum, 0 AS counted_sat_sum, sat_n AS kept_sat_n,
           0 AS counted_sat_n
    FROM case_counters
    UNION ALL
    SELECT area_code, day, resolved_day, type, step, level, major, grp, resolved,
           0, n, 0, sat_sum, 0, sat_n
    FROM case_counters_recount
) both_counts
GROUP BY area_code, day, resolved_day, type, step, level, major, grp, resolved
HAVING sum(kept_n) <> sum(counted_n) OR sum(kept_sat_sum) <> sum(counted_sat_sum)
    OR sum(kept_sat_n) <> sum(counted_sat_n)
ORDER BY area_code, day, resolved_day NULLS FIRST, type, step, level, major, grp, resolved

-- The KPI counters recomputed from the cases, one row per key (shard 0); run after emptying them.
INSERT INTO case_counters
    (area_code, area_level, day, resolved_day, type, step, level, major, grp, resolved, n, sat_sum, sat_n)
SELECT area_code, area_level, day, resolved_day, type, step, level, major, grp, resolved, n, sat_sum, sat_n
FROM case_counters_recount

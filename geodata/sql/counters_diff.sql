-- Where the KPI counters (summed over their shards) disagree with what they count: the daily rows
-- with a full count of the cases (case_counters_recount), each coarse grain with the grouping of
-- the daily rows it must equal (case_counters_by_*). One row per key that differs: the grain, the
-- area, the rest of the key as text, and both figures as JSON. Empty when the counters are right.
-- (UNION ALL and GROUP BY rather than a FULL JOIN: the keys hold NULLs, and GROUP BY takes NULLs
-- as equal.)
WITH daily AS (
    SELECT area_code, concat_ws(' ', day, coalesce(resolved_day::text, '-'), type, step, level,
                                CASE WHEN major THEN 'major' END, CASE WHEN grp THEN 'group' END,
                                CASE WHEN resolved THEN 'resolved' END) AS key,
           sum(kept_n) AS kept_n, sum(counted_n) AS counted_n, sum(kept_sat_sum) AS kept_sat_sum,
           sum(counted_sat_sum) AS counted_sat_sum, sum(kept_sat_n) AS kept_sat_n, sum(counted_sat_n) AS counted_sat_n
    FROM (
        SELECT area_code, day, resolved_day, type, step, level, major, grp, resolved,
               n AS kept_n, 0 AS counted_n, sat_sum AS kept_sat_sum, 0 AS counted_sat_sum, sat_n AS kept_sat_n,
               0 AS counted_sat_n
        FROM case_counters
        UNION ALL
        SELECT area_code, day, resolved_day, type, step, level, major, grp, resolved, 0, n, 0, sat_sum, 0, sat_n
        FROM case_counters_recount
    ) b
    GROUP BY area_code, day, resolved_day, type, step, level, major, grp, resolved
),
monthly AS (
    SELECT area_code, concat_ws(' ', month, coalesce(resolved_month::text, '-'), type, step, level,
                                CASE WHEN resolved THEN 'resolved' END) AS key,
           sum(kept_n) AS kept_n, sum(counted_n) AS counted_n, sum(kept_sat_sum) AS kept_sat_sum,
           sum(counted_sat_sum) AS counted_sat_sum, sum(kept_sat_n) AS kept_sat_n, sum(counted_sat_n) AS counted_sat_n
    FROM (
        SELECT area_code, month, resolved_month, type, step, level, resolved,
               n AS kept_n, 0 AS counted_n, sat_sum AS kept_sat_sum, 0 AS counted_sat_sum, sat_n AS kept_sat_n,
               0 AS counted_sat_n
        FROM case_counters_month
        UNION ALL
        SELECT area_code, month, resolved_month, type, step, level, resolved, 0, n, 0, sat_sum, 0, sat_n
        FROM case_counters_by_month
    ) b
    GROUP BY area_code, month, resolved_month, type, step, level, resolved
),
open AS (
    SELECT area_code, concat_ws(' ', type, step, level, CASE WHEN major THEN 'major' END,
                                CASE WHEN grp THEN 'group' END) AS key,
           sum(kept_n) AS kept_n, sum(counted_n) AS counted_n, 0 AS kept_sat_sum, 0 AS counted_sat_sum,
           0 AS kept_sat_n, 0 AS counted_sat_n
    FROM (
        SELECT area_code, type, step, level, major, grp, n AS kept_n, 0 AS counted_n FROM case_counters_open
        UNION ALL
        SELECT area_code, type, step, level, major, grp, 0, n FROM case_counters_by_open
    ) b
    GROUP BY area_code, type, step, level, major, grp
),
area AS (
    SELECT area_code, month::text AS key,
           sum(kept_n) AS kept_n, sum(counted_n) AS counted_n, sum(kept_resolved_n) AS kept_resolved_n,
           sum(counted_resolved_n) AS counted_resolved_n, sum(kept_sat_sum) AS kept_sat_sum,
           sum(counted_sat_sum) AS counted_sat_sum, sum(kept_sat_n) AS kept_sat_n, sum(counted_sat_n) AS counted_sat_n
    FROM (
        SELECT area_code, month, n AS kept_n, 0 AS counted_n, resolved_n AS kept_resolved_n,
               0 AS counted_resolved_n, sat_sum AS kept_sat_sum, 0 AS counted_sat_sum, sat_n AS kept_sat_n,
               0 AS counted_sat_n
        FROM case_counters_area_month
        UNION ALL
        SELECT area_code, month, 0, n, 0, resolved_n, 0, sat_sum, 0, sat_n FROM case_counters_by_area_month
    ) b
    GROUP BY area_code, month
),
area_day AS (
    SELECT area_code, day::text AS key,
           sum(kept_n) AS kept_n, sum(counted_n) AS counted_n, sum(kept_resolved_n) AS kept_resolved_n,
           sum(counted_resolved_n) AS counted_resolved_n, sum(kept_sat_sum) AS kept_sat_sum,
           sum(counted_sat_sum) AS counted_sat_sum, sum(kept_sat_n) AS kept_sat_n, sum(counted_sat_n) AS counted_sat_n,
           sum(kept_on) AS kept_resolved_on_n, sum(counted_on) AS counted_resolved_on_n
    FROM (
        SELECT area_code, day, n AS kept_n, 0 AS counted_n, resolved_n AS kept_resolved_n,
               0 AS counted_resolved_n, sat_sum AS kept_sat_sum, 0 AS counted_sat_sum, sat_n AS kept_sat_n,
               0 AS counted_sat_n, resolved_on_n AS kept_on, 0 AS counted_on
        FROM case_counters_area_day
        UNION ALL
        SELECT area_code, day, 0, n, 0, resolved_n, 0, sat_sum, 0, sat_n, 0, resolved_on_n
        FROM case_counters_by_area_day
    ) b
    GROUP BY area_code, day
)
SELECT counters, area_code, key,
       jsonb_build_object('n', kept_n, 'sat_sum', kept_sat_sum, 'sat_n', kept_sat_n)
           || jsonb_strip_nulls(jsonb_build_object('resolved_n', kept_resolved_n, 'resolved_on_n', kept_resolved_on_n))
           AS kept,
       jsonb_build_object('n', counted_n, 'sat_sum', counted_sat_sum, 'sat_n', counted_sat_n)
           || jsonb_strip_nulls(jsonb_build_object('resolved_n', counted_resolved_n,
                                                   'resolved_on_n', counted_resolved_on_n)) AS counted
FROM (
    SELECT 'case_counters' AS counters, *, NULL::numeric AS kept_resolved_n, NULL::numeric AS counted_resolved_n,
           NULL::numeric AS kept_resolved_on_n, NULL::numeric AS counted_resolved_on_n
    FROM daily
    UNION ALL
    SELECT 'case_counters_month', *, NULL, NULL, NULL, NULL FROM monthly
    UNION ALL
    SELECT 'case_counters_open', *, NULL, NULL, NULL, NULL FROM open
    UNION ALL
    SELECT 'case_counters_area_month', area_code, key, kept_n, counted_n, kept_sat_sum, counted_sat_sum, kept_sat_n,
           counted_sat_n, kept_resolved_n, counted_resolved_n, NULL, NULL
    FROM area
    UNION ALL
    SELECT 'case_counters_area_day', area_code, key, kept_n, counted_n, kept_sat_sum, counted_sat_sum, kept_sat_n,
           counted_sat_n, kept_resolved_n, counted_resolved_n, kept_resolved_on_n, counted_resolved_on_n
    FROM area_day
) d
WHERE kept_n <> counted_n OR kept_sat_sum <> counted_sat_sum OR kept_sat_n <> counted_sat_n
   OR kept_resolved_n <> counted_resolved_n OR kept_resolved_on_n <> counted_resolved_on_n
ORDER BY counters, area_code, key

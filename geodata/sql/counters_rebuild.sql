-- The KPI counters recomputed from the cases (033_counters.sql, yitu_counters_rebuild): every grain
-- emptied and refilled, one row per key; the number of daily rows.
SELECT yitu_counters_rebuild()

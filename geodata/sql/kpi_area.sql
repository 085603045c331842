-- The wall screen's KPI tiles for one area (any level; {column} is its grid-chain column).
-- Days, quarters and years are China time. "Resolved" = mediated or judicially confirmed;
-- the resolution rate is resolved ÷ reported since 1 January (the seeds' 化解率);
-- the village share (村级化解占比) is the share of this year's resolved cases settled at the
-- grid or village level.
WITH t AS (
    SELECT date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai' AS day,
           date_trunc('year', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai' AS year
)
SELECT count(*) FILTER (WHERE reported_at >= t.day)                                          AS new_today,
       count(*) FILTER (WHERE yitu_step_open(step))                                          AS in_progress,
       count(*) FILTER (WHERE closed_at >= t.year AND outcome IN ('mediated', 'judicial_confirmation')) AS resolved_ytd,
       count(*) FILTER (WHERE reported_at >= t.year)                                          AS reported_ytd,
       count(*) FILTER (WHERE reported_at >= t.year AND outcome IN ('mediated', 'judicial_confirmation')) AS resolved_of_reported_ytd,
       count(*) FILTER (WHERE closed_at >= t.year AND outcome IN ('mediated', 'judicial_confirmation')
                          AND level IN ('grid', 'village'))                                   AS resolved_low_ytd,
       count(*) FILTER (WHERE yitu_step_open(step) AND deadline < now() AND level = 'grid')    AS overdue_grid,
       count(*) FILTER (WHERE yitu_step_open(step) AND deadline < now() AND level = 'village') AS overdue_village,
       count(*) FILTER (WHERE yitu_step_open(step) AND deadline < now() AND level = 'town')    AS overdue_town,
       count(*) FILTER (WHERE yitu_step_open(step) AND deadline < now() AND level = 'banner')  AS overdue_banner
FROM cases, t
WHERE {column} = %(code)s
  AND (yitu_step_open(step) OR reported_at >= t.year OR closed_at >= t.year)

-- The wall screen's KPI tiles for one area (any level; {column} is its grid-chain column).
-- Days, quarters and years are China time. "Resolved" = mediated or judicially confirmed;
-- the resolution rate is resolved ÷ reported in the period (the seeds' 化解率; by default the year
-- to date, since 1 January: the ``_ytd`` columns are the period's); the village share (村级化解占比)
-- is the share of the period's resolved cases settled at the grid or village level.
-- %(start)s / %(end)s: the period [start, end) the wall chose (this month, quarter, year, or dates);
-- NULL: the year to date. New today, in progress, overdue and the open major / 群体性 (group)
-- cases of the triage are of now, whatever the period.
WITH t AS (
    SELECT date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai' AS day,
           coalesce(%(start)s::timestamptz,
                    date_trunc('year', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai') AS year,
           coalesce(%(end)s::timestamptz, 'infinity'::timestamptz) AS until
)
SELECT count(*) FILTER (WHERE reported_at >= t.day)                                          AS new_today,
       count(*) FILTER (WHERE yitu_step_open(step))                                          AS in_progress,
       count(*) FILTER (WHERE closed_at >= t.year AND closed_at < t.until
                          AND outcome IN ('mediated', 'judicial_confirmation'))               AS resolved_ytd,
       count(*) FILTER (WHERE reported_at >= t.year AND reported_at < t.until)                AS reported_ytd,
       count(*) FILTER (WHERE reported_at >= t.year AND reported_at < t.until
                          AND outcome IN ('mediated', 'judicial_confirmation'))               AS resolved_of_reported_ytd,
       count(*) FILTER (WHERE closed_at >= t.year AND closed_at < t.until
                          AND outcome IN ('mediated', 'judicial_confirmation')
                          AND level IN ('grid', 'village'))                                   AS resolved_low_ytd,
       count(*) FILTER (WHERE yitu_step_open(step) AND deadline < now() AND level = 'grid')    AS overdue_grid,
       count(*) FILTER (WHERE yitu_step_open(step) AND deadline < now() AND level = 'village') AS overdue_village,
       count(*) FILTER (WHERE yitu_step_open(step) AND deadline < now() AND level = 'town')    AS overdue_town,
       count(*) FILTER (WHERE yitu_step_open(step) AND deadline < now() AND level = 'banner')  AS overdue_banner,
       count(*) FILTER (WHERE yitu_step_open(step) AND severity = 'major')                    AS open_major,
       count(*) FILTER (WHERE yitu_step_open(step) AND 'group' = ANY(flags))                  AS open_group
FROM cases, t
WHERE {column} = %(code)s
  AND (yitu_step_open(step) OR (reported_at >= t.year AND reported_at < t.until)
       OR (closed_at >= t.year AND closed_at < t.until))

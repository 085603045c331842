-- One case as its page shows it (dashboard/pages/case.py): the row, its type's names, its cell's
-- name and outline (GeoJSON), the triage (NULL when not given), the cases reported as its duplicates,
-- and its version. NULL for a case outside the reader's area %(scope)s (in the WHERE).
SELECT c.id, c.code, c.type, t.name_zh AS type_zh, t.name_en AS type_en, c.description, c.parties,
       ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat, c.grid_code, c.village_code, c.town_code, c.banner_code,
       a.name AS grid_name, ST_AsGeoJSON(a.geom, 6)::json AS cell, c.channel, c.reporter, c.level, c.step,
       c.deadline, c.attempts, c.outcome, c.satisfaction, c.followup_note, c.flags, c.assignee, c.duplicate_of,
       c.reported_at, c.closed_at, c.updated_at, c.version, c.severity, c.people_involved, c.amount_yuan,
       coalesce((SELECT array_agg(d.code ORDER BY d.code) FROM cases d WHERE d.duplicate_of = c.code), '{}') AS duplicates
FROM cases c
JOIN case_types t ON t.code = c.type
LEFT JOIN areas a ON a.code = c.grid_code
WHERE c.code = %(code)s
  AND yitu_in_scope(%(scope)s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)

-- The dispatcher's queue: cases in the steps %(steps)s — waiting to be sent somewhere (reported, or
-- accepted into a level's queue), or already sent (dispatched, handling: to chase them) — inside an
-- area of any level (NULL: the whole territory), the most urgent first: by deadline, then by report
-- time. No personal data: the page shows parties masked from the case card; who a case is assigned
-- to (a mediator, a unit or a van) is the assignee's name. ``total``: how many there are in all (the
-- page lists the most urgent %(limit)s and says so when there are more).
SELECT count(*) OVER () AS total, c.code, c.type, t.name_zh AS type_zh, t.name_en AS type_en, c.step, c.level, c.deadline, c.reported_at,
       c.grid_code, a.name AS grid_name, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
       c.deadline IS NOT NULL AND c.deadline < %(now)s AS overdue,
       c.assignee->>'kind' AS assignee_kind, c.assignee->>'name' AS assignee_name, c.assignee->>'id' AS assignee_id
FROM cases c
JOIN case_types t ON t.code = c.type
LEFT JOIN areas a ON a.code = c.grid_code
WHERE c.step = ANY(%(steps)s::text[])
  AND yitu_in_scope(%(area)s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)
ORDER BY c.deadline NULLS LAST, c.reported_at, c.id
LIMIT %(limit)s

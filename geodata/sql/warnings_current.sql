-- The wall's warnings (geodata/warnings.py current): the open cases inside the reader's scope whose
-- deadline warning for their current level and deadline is raised and whose deadline has not passed
-- yet, the soonest first, with how many there are in all. No personal data: codes, types, levels.
SELECT c.code, c.type, t.name_zh AS type_zh, t.name_en AS type_en, c.level, c.deadline, w.raised_at,
       count(*) OVER () AS total
FROM deadline_warnings w
JOIN cases c ON c.id = w.case_id AND c.level = w.level AND c.deadline = w.deadline
JOIN case_types t ON t.code = c.type
WHERE w.deadline > %(now)s
  AND yitu_step_open(c.step)
  AND yitu_in_scope(%(scope)s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)
ORDER BY w.deadline, c.id
LIMIT %(limit)s

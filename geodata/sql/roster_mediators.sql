-- The mediators a reader may see (geodata/roster.py): inside the reader's scope, or in an area above
-- it (who serve it too); filtered by area (inside it), level, specialty, active, or one id. Each row
-- carries its unit's and centre's names and its open cases' count — of the cases the reader sees: a
-- mediator above its area also works cases of other areas —, which the partial index
-- cases_assignee_open_idx answers (same predicate on step).
SELECT m.id, m.name, m.phone, m.level, m.area_code, a.name AS area_name, m.specialties, m.active,
       m.unit_id, u.name AS unit_name, m.center_id, c.code AS centre_code, c.name AS centre_name,
       m.van_id, m.user_id, usr.name AS user_name, m.updated_at, count(*) OVER () AS total,
       (SELECT count(*) FROM cases k
         WHERE k.assignee ->> 'kind' = 'mediator' AND k.assignee ->> 'id' = m.id::text
           AND k.step NOT IN ('closed', 'evaluated', 'rejected')
           AND yitu_in_scope(%(scope)s::text, k.grid_code, k.village_code, k.town_code, k.banner_code))::int AS open_cases
FROM mediators m
LEFT JOIN areas a ON a.code = m.area_code
LEFT JOIN units u ON u.id = m.unit_id
LEFT JOIN mediation_centers c ON c.id = m.center_id
LEFT JOIN users usr ON usr.id = m.user_id
WHERE (yitu_area_in_scope(%(scope)s::text, m.area_code) OR starts_with(%(scope)s::text, m.area_code))
  AND (%(area)s::text IS NULL OR starts_with(m.area_code, %(area)s::text))
  AND (%(level)s::text IS NULL OR m.level = %(level)s::text)
  AND (%(specialty)s::text IS NULL OR %(specialty)s::text = ANY (m.specialties))
  AND (%(active)s::boolean IS NULL OR m.active = %(active)s::boolean)
  AND (%(id)s::bigint IS NULL OR m.id = %(id)s::bigint)
  AND (%(q)s::text IS NULL OR strpos(m.name, %(q)s::text) > 0 OR starts_with(m.area_code, %(q)s::text))
ORDER BY m.area_code, m.name, m.id
LIMIT %(limit)s OFFSET %(offset)s

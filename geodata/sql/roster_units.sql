-- The units a reader may see (geodata/roster.py): inside the reader's scope or above it; filtered by
-- area (inside it), kind, level, active, or one id; with their active mediators and open cases.
SELECT u.id, u.name, u.kind, u.level, u.area_code, a.name AS area_name, u.phone, u.specialties, u.active,
       u.updated_at, count(*) OVER () AS total,
       (SELECT count(*) FROM mediators m WHERE m.unit_id = u.id AND m.active)::int AS mediators,
       (SELECT count(*) FROM cases k
         WHERE k.assignee ->> 'kind' = 'unit' AND k.assignee ->> 'id' = u.id::text
           AND k.step NOT IN ('closed', 'evaluated', 'rejected')
           AND yitu_in_scope(%(scope)s::text, k.grid_code, k.village_code, k.town_code, k.banner_code))::int AS open_cases
FROM units u
LEFT JOIN areas a ON a.code = u.area_code
WHERE (yitu_area_in_scope(%(scope)s::text, u.area_code) OR starts_with(%(scope)s::text, u.area_code))
  AND (%(area)s::text IS NULL OR starts_with(u.area_code, %(area)s::text))
  AND (%(kind)s::text IS NULL OR u.kind = %(kind)s::text)
  AND (%(level)s::text IS NULL OR u.level = %(level)s::text)
  AND (%(active)s::boolean IS NULL OR u.active = %(active)s::boolean)
  AND (%(id)s::bigint IS NULL OR u.id = %(id)s::bigint)
  AND (%(q)s::text IS NULL OR strpos(u.name, %(q)s::text) > 0 OR starts_with(u.area_code, %(q)s::text))
ORDER BY u.area_code, u.kind, u.name, u.id
LIMIT %(limit)s OFFSET %(offset)s

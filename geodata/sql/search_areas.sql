-- Search: the areas whose code starts with the query or whose name contains it (literally), inside the
-- reader's scope (yitu_area_in_scope, 018_scope.sql): an exact name first, then from the banner
-- down, then by code. A few thousand rows at city scale: a scan costs less than an index would.
SELECT a.code, a.name, a.level, p.name AS parent_name
FROM areas a
LEFT JOIN areas p ON p.code = a.parent_code
WHERE yitu_area_in_scope(%(area)s::text, a.code)
  AND (starts_with(a.code, %(q)s::text) OR yitu_contains(a.name, %(q)s::text))
ORDER BY lower(a.name) = lower(%(q)s::text) DESC, a.level, a.code
LIMIT %(limit)s::int

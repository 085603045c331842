-- Search: the cases whose code starts with the query, newest codes first (a code is banner-day-number),
-- inside the reader's scope ({scope}: a grid-chain column = the reader's area, or TRUE). The prefix is a
-- range over cases_code_bytes (024_search.sql): a literal prefix, whatever characters it holds.
SELECT c.code, c.type, t.name_zh AS type_zh, t.name_en AS type_en, c.step, c.level, c.description, c.parties,
       c.grid_code, c.village_code, c.town_code, c.banner_code, v.name AS village_name, c.reported_at, c.deadline
FROM cases c
LEFT JOIN case_types t ON t.code = c.type
LEFT JOIN areas v ON v.code = c.village_code
WHERE (c.code COLLATE "C") >= %(q)s::text
  AND (c.code COLLATE "C") < %(q)s::text || chr(1114111)
  AND {scope}
ORDER BY (c.code COLLATE "C") DESC
LIMIT %(limit)s::int

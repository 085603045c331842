-- Search: the newest cases whose {column} (search_parties or search_description, 024_search.sql)
-- contains the query, literally and in any case, inside the reader's scope ({scope}: a grid-chain
-- column = the reader's area, or TRUE).
--
-- In two steps, so that neither a common word nor a rare one costs a scan of the cases, whatever the
-- planner guesses of a word's frequency (it multiplies its grams' and is far off for a phrase):
--   recent: the newest %(window)s cases in scope, walked by index (reported_at DESC), checked one by
--           one. When %(limit)s of them match, they are the newest matches of all: done.
--   all:    otherwise the word is rare: its candidates come from the gram index (a bitmap; with the
--           reader's area tag, only its area's), the literal matches are sorted (reported_at + 0 s
--           keeps the planner off the index walk).
WITH recent AS MATERIALIZED (
    SELECT r.id, r.reported_at
    FROM (
        SELECT c.id, c.reported_at, c.{column} AS t
        FROM cases c
        WHERE {scope}
        ORDER BY c.reported_at DESC, c.id DESC
        LIMIT %(window)s::int
    ) r
    WHERE yitu_contains(r.t, %(q)s::text)
    ORDER BY r.reported_at DESC, r.id DESC
    LIMIT %(limit)s::int
), found AS (
    SELECT id FROM recent WHERE (SELECT count(*) FROM recent) >= %(limit)s::int
    UNION ALL
    (SELECT c.id
     FROM cases c
     WHERE (SELECT count(*) FROM recent) < %(limit)s::int
       AND (yitu_grams(c.{column}) || yitu_area_tags(c.grid_code, c.village_code, c.town_code, c.banner_code))
           @> (yitu_query_grams(%(q)s::text) || yitu_area_tags(NULL, NULL, NULL, %(area)s::text))
       AND yitu_contains(c.{column}, %(q)s::text)
       AND {scope}
     ORDER BY c.reported_at + interval '0 s' DESC, c.id DESC
     LIMIT %(limit)s::int)
)
SELECT c.code, c.type, t.name_zh AS type_zh, t.name_en AS type_en, c.step, c.level, c.description, c.parties,
       c.grid_code, c.village_code, c.town_code, c.banner_code, v.name AS village_name, c.reported_at, c.deadline
FROM found f
JOIN cases c ON c.id = f.id
LEFT JOIN case_types t ON t.code = c.type
LEFT JOIN areas v ON v.code = c.village_code
ORDER BY c.reported_at DESC, c.id DESC

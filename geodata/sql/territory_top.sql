-- The top of the territory (queries.banner): the root when two banners or more lie under it, else
-- the first banner by code (a single-banner deployment, with or without a root, opens at its banner).
SELECT code FROM (
    (SELECT r.code, 0 AS k FROM areas r
     WHERE r.level = 0 AND (SELECT count(*) FROM areas b WHERE b.level = 1 AND b.parent_code = r.code) >= 2)
    UNION ALL
    (SELECT code, 1 AS k FROM areas WHERE level = 1 ORDER BY code LIMIT 1)
) top
ORDER BY k
LIMIT 1

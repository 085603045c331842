-- An area's ancestors, nearest first (the parent, then its parent … up to the banner).
WITH RECURSIVE up AS (
    SELECT p.code, p.name, p.level, p.parent_code
    FROM areas a JOIN areas p ON p.code = a.parent_code
    WHERE a.code = %(code)s
    UNION ALL
    SELECT p.code, p.name, p.level, p.parent_code FROM areas p JOIN up ON p.code = up.parent_code
)
SELECT code, name, level, parent_code FROM up ORDER BY level DESC

-- The case an upload or a list is for, if the reader's scope ({scope}) reaches it. ``FOR UPDATE``
-- is appended for an upload: uploads to one case take turns, so the per-case limit holds.
SELECT c.id, c.code, c.step, c.level
FROM cases c
WHERE c.code = %(code)s AND {scope}

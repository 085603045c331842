-- The case an upload or a list is for, if the reader's area scope ({scope}) reaches it; with what
-- Principal.sees_case reads besides (the grid chain, the assignee: a van crew's case). ``FOR UPDATE``
-- is appended for an upload: uploads to one case take turns, so the per-case limit holds.
SELECT c.id, c.code, c.step, c.level, c.grid_code, c.village_code, c.town_code, c.banner_code, c.assignee
FROM cases c
WHERE c.code = %(code)s AND {scope}

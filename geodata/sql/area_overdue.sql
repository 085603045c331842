-- An area's open cases past the deadline at %(now)s by handling level, reported in [since, until)
-- (NULL: any time): the one figure of the area panel that changes with the clock, not with a write,
-- so it is counted from the open cases (cases_open_idx) rather than kept as a counter.
SELECT c.level, count(*) AS overdue
FROM cases c
WHERE {column} = %(code)s AND yitu_step_open(c.step) AND c.deadline < %(now)s
  AND (%(since)s::timestamptz IS NULL OR c.reported_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR c.reported_at < %(until)s)
GROUP BY 1

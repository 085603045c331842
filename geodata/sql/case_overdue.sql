-- The scheduler's sweep: open cases (yitu_step_open) past their deadline, locked for this
-- transaction; rows a clerk holds right now are skipped and picked up on the next sweep.
SELECT c.id, c.code, c.step, c.level, c.attempts, c.deadline, c.flags, c.version
FROM cases c
WHERE yitu_step_open(c.step)
  AND c.deadline < %(now)s
  AND (NOT ('overdue' = ANY (c.flags))
       OR (%(escalate)s AND c.level <> 'banner' AND c.step <> 'reported'))  -- escalate: any open step but reported
ORDER BY c.deadline
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

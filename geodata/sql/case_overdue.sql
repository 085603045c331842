-- The scheduler's sweep: open cases past their deadline, locked for this transaction; rows a
-- clerk holds right now are skipped and picked up on the next sweep.
SELECT c.id, c.code, c.step, c.level, c.attempts, c.deadline, c.flags, c.version
FROM cases c
WHERE c.step IN ('reported', 'accepted', 'dispatched', 'handling')
  AND c.deadline < %(now)s
  AND (NOT ('overdue' = ANY (c.flags))
       OR (%(escalate)s AND c.level <> 'banner' AND c.step IN ('accepted', 'dispatched', 'handling')))
ORDER BY c.deadline
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

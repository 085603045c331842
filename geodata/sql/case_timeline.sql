-- The audit trail of one case, oldest first (who, role, when, from-step → to-step, level, note).
SELECT occurred_at, actor, role, action, from_step, to_step, level, note, data
FROM case_events
WHERE case_id = %(case_id)s
ORDER BY occurred_at, id

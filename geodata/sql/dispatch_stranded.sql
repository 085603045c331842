-- Visits still active although their case was closed, rejected or escalated since the van was sent:
-- the path that changed the case did not free the van (the scheduler's auto-escalation, a process
-- that died between the case's commit and the release). The newest such action is the reason.
SELECT d.id, d.case_code, d.van_id, d.status, why.action
FROM dispatches d
JOIN cases c ON c.id = d.case_id
CROSS JOIN LATERAL (
    SELECT e.action
    FROM case_events e
    WHERE e.case_id = d.case_id
      AND e.occurred_at >= d.created_at
      AND e.action IN ('close', 'reject', 'escalate')
    ORDER BY e.occurred_at DESC
    LIMIT 1
) why
WHERE d.status IN ('en_route', 'on_site')
ORDER BY d.id
LIMIT %(limit)s

-- The webhook's next deliveries (services/notify.py): warnings pending and due, or claimed by a
-- process whose lease ran out (it died while sending), claimed for this one until %(now)s + %(lease)s.
-- SKIP LOCKED: processes delivering at once each take other rows. Returns what the message says
-- (no personal data: the code, the type, the level, the deadline and the places' names).
UPDATE deadline_warnings w
SET notify = 'sending', attempts = w.attempts + 1, next_attempt_at = %(now)s + %(lease)s
FROM (
    SELECT id FROM deadline_warnings
    WHERE notify IN ('pending', 'sending') AND next_attempt_at <= %(now)s
    ORDER BY next_attempt_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) d
JOIN deadline_warnings o ON o.id = d.id
JOIN cases c ON c.id = o.case_id
JOIN case_types t ON t.code = c.type
LEFT JOIN areas town ON town.code = c.town_code
LEFT JOIN areas village ON village.code = c.village_code
LEFT JOIN areas grid ON grid.code = c.grid_code
WHERE w.id = d.id
RETURNING w.id, w.attempts, w.level, w.deadline, w.raised_at, c.code, c.type, t.name_zh AS type_zh,
          t.name_en AS type_en, c.step, c.banner_code, town.name AS town, village.name AS village, grid.name AS grid

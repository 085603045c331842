-- The phone page's "my reports": the cases a person reported (the trail's intake row names them by
-- identity), newest first, inside the reader's scope (yitu_in_scope, 018).
SELECT c.id, c.code, c.type, c.description, c.parties, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
       c.grid_code, c.village_code, c.town_code, c.banner_code, c.channel, c.reporter, c.level, c.step,
       c.deadline, c.attempts, c.outcome, c.satisfaction, c.followup_note, c.flags, c.assignee, c.duplicate_of,
       c.reported_at, c.closed_at, c.updated_at, c.version, c.severity, c.people_involved, c.amount_yuan
FROM (
    SELECT e.case_id, max(e.occurred_at) AS at
    FROM case_events e
    WHERE e.action = 'report' AND e.actor_kind = %(kind)s AND e.actor_id = %(id)s
    GROUP BY e.case_id
    ORDER BY max(e.occurred_at) DESC
    LIMIT %(limit)s
) mine
JOIN cases c ON c.id = mine.case_id
WHERE yitu_in_scope(%(area)s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)
ORDER BY mine.at DESC, c.id DESC

-- The phone page's "my tasks": the cases dispatched to the mediator a person is (mediators.user_id,
-- 025; the assignee {"kind": "mediator", "id": "<mediators.id>"}): the open ones by deadline, then
-- the closed ones waiting for the follow-up visit (回访), inside the reader's scope.
WITH me AS (
    SELECT m.id::text AS id FROM mediators m WHERE m.user_id = %(user)s
)
SELECT * FROM (
    SELECT c.id, c.code, c.type, c.description, c.parties, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
           c.grid_code, c.village_code, c.town_code, c.banner_code, c.channel, c.reporter, c.level, c.step,
           c.deadline, c.attempts, c.outcome, c.satisfaction, c.followup_note, c.flags, c.assignee,
           c.duplicate_of, c.reported_at, c.closed_at, c.updated_at, c.version,
           c.severity, c.people_involved, c.amount_yuan
    FROM me JOIN cases c ON c.assignee ->> 'kind' = 'mediator' AND c.assignee ->> 'id' = me.id
    WHERE c.step NOT IN ('closed', 'evaluated', 'rejected')
      AND yitu_in_scope(%(area)s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)
    ORDER BY c.deadline NULLS LAST, c.id
    LIMIT %(limit)s
) open_
UNION ALL
SELECT * FROM (
    SELECT c.id, c.code, c.type, c.description, c.parties, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
           c.grid_code, c.village_code, c.town_code, c.banner_code, c.channel, c.reporter, c.level, c.step,
           c.deadline, c.attempts, c.outcome, c.satisfaction, c.followup_note, c.flags, c.assignee,
           c.duplicate_of, c.reported_at, c.closed_at, c.updated_at, c.version,
           c.severity, c.people_involved, c.amount_yuan
    FROM me JOIN cases c ON c.assignee ->> 'kind' = 'mediator' AND c.assignee ->> 'id' = me.id
    WHERE c.step = 'closed'
      AND yitu_in_scope(%(area)s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)
    ORDER BY c.closed_at DESC, c.id
    LIMIT %(limit)s
) closed_

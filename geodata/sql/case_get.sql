-- One case by code, in the shape the API returns (lon/lat out of the point). ``FOR UPDATE`` is
-- appended by geodata/cases.py when a transition locks the row.
SELECT c.id, c.code, c.type, c.description, c.parties, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
       c.grid_code, c.village_code, c.town_code, c.banner_code, c.channel, c.reporter, c.level, c.step,
       c.deadline, c.attempts, c.outcome, c.satisfaction, c.followup_note, c.flags, c.assignee, c.duplicate_of,
       c.reported_at, c.closed_at, c.updated_at, c.version, c.severity, c.people_involved, c.amount_yuan
FROM cases c
WHERE c.code = %(code)s

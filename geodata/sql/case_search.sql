-- The case list of GET /api/v1/cases: every filter optional; {scope} is the grid-chain column of
-- the area filter (psycopg.sql from a fixed table) or the constant TRUE. ``overdue`` compares
-- with the caller's clock so that a frozen clock gives the same answer as the scheduler.
SELECT c.id, c.code, c.type, c.description, c.parties, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
       c.grid_code, c.village_code, c.town_code, c.banner_code, c.channel, c.reporter, c.level, c.step,
       c.deadline, c.attempts, c.outcome, c.satisfaction, c.followup_note, c.flags, c.assignee, c.duplicate_of,
       c.reported_at, c.closed_at, c.updated_at, c.version, c.severity, c.people_involved, c.amount_yuan
FROM cases c
WHERE {scope}
  AND (%(step)s::text IS NULL OR c.step = %(step)s)
  AND (%(type)s::text IS NULL OR c.type = %(type)s)
  AND (%(since)s::timestamptz IS NULL OR c.reported_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR c.reported_at < %(until)s)
  AND (%(overdue)s::boolean IS NULL
       OR %(overdue)s = (yitu_step_open(c.step)
                         AND c.deadline IS NOT NULL AND c.deadline < %(now)s))
ORDER BY c.reported_at DESC, c.id DESC
LIMIT %(limit)s OFFSET %(offset)s

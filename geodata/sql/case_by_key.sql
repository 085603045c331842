-- The case an Idempotency-Key (per token) created, with the hash of the request that created it.
SELECT k.request_hash, c.id, c.code, c.type, c.description, c.parties, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
       c.grid_code, c.village_code, c.town_code, c.banner_code, c.channel, c.reporter, c.level, c.step,
       c.deadline, c.attempts, c.outcome, c.satisfaction, c.followup_note, c.flags, c.assignee, c.duplicate_of,
       c.reported_at, c.closed_at, c.updated_at, c.version, c.severity, c.people_involved, c.amount_yuan
FROM case_idempotency_keys k JOIN cases c ON c.id = k.case_id
WHERE k.token_id = %(token_id)s AND k.key = %(key)s

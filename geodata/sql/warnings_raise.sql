-- The scheduler's `warnings` job (geodata/warnings.py raise_due): every open case whose deadline
-- passes within its level's warning window (%(grid)s before a grid-level deadline, %(other)s before
-- the others) and that has no warning yet for its (level, deadline) gets one, with the delivery
-- state of the webhook (pending when one is configured, off otherwise). Returns what the events
-- need. The first deadline bound (the wider window) lets cases_open_idx (step, deadline) serve it.
WITH due AS (
    SELECT c.id, c.level, c.deadline
    FROM cases c
    WHERE yitu_step_open(c.step)
      AND c.deadline > %(now)s
      AND c.deadline <= %(now)s + %(widest)s
      AND c.deadline <= %(now)s + CASE WHEN c.level = 'grid' THEN %(grid)s ELSE %(other)s END
      AND NOT EXISTS (
          SELECT 1 FROM deadline_warnings w WHERE w.case_id = c.id AND w.level = c.level AND w.deadline = c.deadline
      )
    ORDER BY c.deadline
    LIMIT %(limit)s
), raised AS (
    INSERT INTO deadline_warnings (case_id, level, deadline, raised_at, notify, next_attempt_at)
    SELECT d.id, d.level, d.deadline, %(now)s,
           CASE WHEN %(notify)s THEN 'pending' ELSE 'off' END,
           CASE WHEN %(notify)s THEN %(now)s::timestamptz END
    FROM due d
    ON CONFLICT (case_id, level, deadline) DO NOTHING
    RETURNING id, case_id
)
SELECT r.id AS warning_id, c.code, c.step, c.level, c.type, c.flags, c.deadline,
       c.grid_code, c.village_code, c.town_code, c.banner_code, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat
FROM raised r
JOIN cases c ON c.id = r.case_id
ORDER BY c.deadline, c.id

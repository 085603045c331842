-- Deadline warnings (issue 14 item 3): a case is warned once per (level, deadline) shortly before
-- that deadline passes (YITU_WARN_GRID_HOURS before a grid-level deadline, YITU_WARN_HOURS before
-- the others). An escalation or a reopening gives the case a new deadline, hence a new warning.
-- The scheduler's `warnings` job raises them (geodata/warnings.py: one statement, one process at a
-- time under an advisory lock, the unique key below besides) and writes their `case.warning` events
-- to the outbox in the same transaction; the inbox and the wall read them here.
--
-- The optional webhook (YITU_NOTIFY_WEBHOOK_URL, services/notify.py) keeps its delivery state on the
-- row, so each warning is sent once across processes and restarts:
--   off      no webhook was configured when it was raised: never sent
--   pending  to be sent at next_attempt_at (the first time: at once)
--   sending  claimed (FOR UPDATE SKIP LOCKED) by a process until next_attempt_at, its lease: a process
--            that died while sending leaves it to be claimed again once the lease ran out
--   sent     the receiver answered 2xx (sent_at)
--   failed   gave up after YITU_NOTIFY_MAX_ATTEMPTS (last_error says why)
CREATE TABLE deadline_warnings (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id         bigint NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    level           text NOT NULL CHECK (level IN ('grid', 'village', 'town', 'banner')),
    deadline        timestamptz NOT NULL,
    raised_at       timestamptz NOT NULL,
    notify          text NOT NULL DEFAULT 'off' CHECK (notify IN ('off', 'pending', 'sending', 'sent', 'failed')),
    attempts        smallint NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz,
    sent_at         timestamptz,
    last_error      text CHECK (char_length(last_error) <= 300),
    UNIQUE (case_id, level, deadline)
);
-- The deliveries due (a handful at most; the index holds only the rows still to send).
CREATE INDEX deadline_warnings_due ON deadline_warnings (next_attempt_at) WHERE notify IN ('pending', 'sending');
-- The wall's list of the warnings still running (deadline not yet passed).
CREATE INDEX deadline_warnings_deadline ON deadline_warnings (deadline);

GRANT SELECT, INSERT, UPDATE ON deadline_warnings TO yitu_runtime;

-- The inbox's "assigned to me / my unit / my van" reads use cases_assignee_open_idx (025): the planner
-- proves yitu_step_open(step) implies its NOT IN predicate, so no second index is needed.

-- The transactional outbox (issue 13, item 1): every committed change carries its live events
-- with it. A writer inserts its event rows in the same transaction as the change (geodata/outbox.py
-- append, or the intake statement's own CTE), so an event exists exactly when its change does.
-- The relay (services/relay.py; one leader across all processes, an advisory lock) publishes
-- them to the Redis Stream yitu:events and marks them sent.
--
-- Two numbers per row, on purpose:
-- * seq, the identity, is taken at INSERT. It is neither commit order (a transaction that
--   inserted earlier may commit later) nor gapless (a rolled-back transaction burns its values),
--   so it only orders the rows the relay can see.
-- * outbox_id, the number readers see in the stream: 1, 2, 3 … without gaps, assigned by the
--   relay to the rows it can see, in seq order, and committed (with outbox_counter) before it
--   publishes them. A relay that dies after XADD and before marking them sent leaves them
--   assigned; the next leader reads the stream's last outbox_id and marks those at or below it
--   as sent, so nothing goes out twice, and publishes the rest under the ids they already have.
CREATE TABLE outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type text NOT NULL,
    event json NOT NULL,                   -- kept as written: the relay publishes this very text
    created_at timestamptz NOT NULL DEFAULT now(),
    outbox_id bigint,                      -- NULL until the relay assigns it
    sent_at timestamptz                    -- NULL until it is in the stream
);
-- Only the first index below holds a row as it is written (the hot path pays for one index and
-- the key); the others take it when the relay numbers and marks it.
CREATE INDEX outbox_unassigned ON outbox (seq) WHERE outbox_id IS NULL;
CREATE UNIQUE INDEX outbox_numbered ON outbox (outbox_id) WHERE outbox_id IS NOT NULL;
CREATE INDEX outbox_unsent ON outbox (outbox_id) WHERE sent_at IS NULL AND outbox_id IS NOT NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- The last outbox_id assigned, in a row of its own: pruning sent rows never resets the count,
-- and a failed assignment rolls back with its ids (a sequence would burn them).
CREATE TABLE outbox_counter (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_id bigint NOT NULL DEFAULT 0
);
INSERT INTO outbox_counter DEFAULT VALUES;

-- No NOTIFY here, on purpose: a transaction that notifies takes one cluster-wide lock at COMMIT
-- and holds it through its WAL flush, so every writer's commit would queue behind every other's
-- (measured: intake at a third of its rate, bench/bench_intake.py). The relay polls instead
-- (services/relay.py), with a query that costs an index probe.

-- A timestamp as Python's datetime.isoformat() writes it (the session's zone, microseconds only
-- when not zero), so an event built here (the intake statement's) reads exactly like one built by
-- geodata/cases.py event_of from the same row.
CREATE FUNCTION yitu_isoformat(t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS')
           || CASE WHEN extract(microseconds FROM t)::bigint % 1000000 <> 0 THEN to_char(t, '.US') ELSE '' END
           || to_char(t, 'TZH:TZM')
$$;

-- The runtime role writes events and the relay's marks, and prunes; it cannot rewrite an event.
-- (The default privileges of 016_audit.sql gave it every column: taken back, then the columns.)
REVOKE INSERT, UPDATE, TRUNCATE ON outbox FROM yitu_runtime;
GRANT SELECT, DELETE ON outbox TO yitu_runtime;
GRANT INSERT (type, event) ON outbox TO yitu_runtime;
GRANT UPDATE (outbox_id, sent_at) ON outbox TO yitu_runtime;
REVOKE INSERT, DELETE, TRUNCATE ON outbox_counter FROM yitu_runtime;
GRANT SELECT, UPDATE ON outbox_counter TO yitu_runtime;

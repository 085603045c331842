-- Idempotency-Key for every state-changing route besides intake (intake keeps its own
-- case_idempotency_keys, written by its one statement): transitions, dispatches and their end or
-- cancel, GPS batches, the dispatch page's sends (geodata/idempotency.py).
--
-- One row per (caller, key): ``scope`` is Actor.key_scope (a token's id, a person's negated), so
-- two callers never share a key. The row is claimed by the write's own transaction as its first
-- statement and given the answer before COMMIT, so it exists exactly when the write committed;
-- a second request with the same key waits on the primary key until the first one ends, then
-- replays the stored answer (or, if the first rolled back, does the write itself).
-- ``operation`` (method, route and path parameters) and ``request_hash`` (sha256 of the canonical
-- request body) tell a retry from a different request reusing the key (422).
CREATE TABLE idempotency_keys (
    scope        bigint NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    operation    text NOT NULL,
    request_hash text NOT NULL,
    status       smallint CHECK (status BETWEEN 100 AND 599),
    answer       json,  -- json, not jsonb: the replay is the first answer to the byte (key order kept)
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
-- Pruning (services/scheduler.py, after YITU_IDEMPOTENCY_DAYS) reads by age.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO yitu_runtime;

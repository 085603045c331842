-- Attachments of a case (issue 15): photos from the field and the signed mediation agreement (调解协议书).
-- The bytes live in the blob store (geodata/blobs.py), content-addressed by SHA-256; a row names
-- three of them: the original as uploaded (kept for the roles that may see personal data: it may
-- carry the phone's GPS position), the copy served to everyone else who may see content (re-encoded,
-- location data gone) and its thumbnail (none for a PDF). Blobs are never changed; two rows may name
-- the same blob (the same photo on two cases).
--
-- Retries: an upload's Idempotency-Key, scoped to its caller (Actor.key_scope, as reports'
-- case_idempotency_keys.token_id), is kept on the rows it made, one per file (idem_position: the
-- file's place in the request); request_hash is the SHA-256 of the case code and the files' SHA-256
-- in order, so a retry (same key, same files) replays the answer and a different request under a
-- used key is refused.
CREATE TABLE attachments (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id        bigint NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    served_sha256  text NOT NULL CHECK (served_sha256 ~ '^[0-9a-f]{64}$'),
    thumb_sha256   text CHECK (thumb_sha256 ~ '^[0-9a-f]{64}$'),
    kind           text NOT NULL CHECK (kind IN ('image', 'pdf')),
    media_type     text NOT NULL CHECK (media_type IN
                   ('image/jpeg', 'image/png', 'image/webp', 'image/heic', 'application/pdf')),
    served_type    text NOT NULL CHECK (served_type IN ('image/jpeg', 'image/png', 'image/webp', 'application/pdf')),
    size           integer NOT NULL CHECK (size > 0),
    served_size    integer NOT NULL CHECK (served_size > 0),
    width          integer CHECK (width > 0),
    height         integer CHECK (height > 0),
    filename       text CHECK (length(filename) <= 200),  -- as the client named it: shown, never trusted
    actor_kind     text NOT NULL CHECK (actor_kind IN ('token', 'user', 'screen', 'cli', 'system')),
    actor_id       bigint,
    actor_name     text NOT NULL,
    actor_role     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    idem_scope     bigint,
    idem_key       text CHECK (length(idem_key) BETWEEN 1 AND 200),
    idem_position  smallint CHECK (idem_position >= 0),
    request_hash   text,
    CHECK ((idem_key IS NULL) = (idem_scope IS NULL)
           AND (idem_key IS NULL) = (idem_position IS NULL)
           AND (idem_key IS NULL) = (request_hash IS NULL))
);
CREATE INDEX attachments_case_idx ON attachments (case_id, id);
-- One row per (caller, key, file): a retry finds the rows its key made; two requests with one key
-- wait for each other here (and on the case's row lock before it).
CREATE UNIQUE INDEX attachments_idem_idx ON attachments (idem_scope, idem_key, idem_position)
    WHERE idem_key IS NOT NULL;
CREATE INDEX attachments_sha_idx ON attachments (sha256);

-- The runtime role reads and adds attachments; it neither changes nor removes one (an upload is
-- evidence: the audit row on the case names it). ALTER DEFAULT PRIVILEGES (016) granted it all
-- four: take back what it should not have.
GRANT SELECT, INSERT ON attachments TO yitu_runtime;
REVOKE UPDATE, DELETE, TRUNCATE ON attachments FROM yitu_runtime;

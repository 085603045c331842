-- API tokens (bearer): only the SHA-256 of a token is stored, so a leaked table grants nothing.
-- A token carries a role and an optional area scope (a grid code of any level); revoking keeps
-- the row (revoked_at) so the audit trail's actors stay explainable.
CREATE TABLE api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role        text NOT NULL CHECK (role IN ('admin', 'dispatcher', 'grid_worker', 'viewer', 'van')),
    area_code   text CHECK (area_code ~ '^[0-9]{6}([0-9]{3}){0,3}$'),
    token_hash  text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

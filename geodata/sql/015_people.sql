-- People sign in; wall screens pair once; both then hold a server-side session behind a cookie.
-- Only hashes are stored: a password as Argon2id (argon2-cffi's encoded string), a session's cookie
-- value and a pairing code as their SHA-256, so a copy of these tables opens nothing.
-- Rows are never deleted: disabling a user or revoking a screen keeps it (the audit names them).

CREATE TABLE users (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 100 AND name = btrim(name)),
    role                text NOT NULL CHECK (role IN ('admin', 'dispatcher', 'grid_worker', 'viewer')),
    area_code           text CHECK (area_code ~ '^[0-9]{6}([0-9]{3}){0,3}$'),
    password_hash       text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    disabled_at         timestamptz
);

-- A wall screen in a command room: read-only, masked, optionally area-scoped.
CREATE TABLE screens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 100 AND name = btrim(name)),
    area_code   text CHECK (area_code ~ '^[0-9]{6}([0-9]{3}){0,3}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- A one-time pairing link /pair/<code> (10 minutes): opening it gives that browser a screen session.
CREATE TABLE screen_pairings (
    code_hash   text PRIMARY KEY CHECK (code_hash ~ '^[0-9a-f]{64}$'),
    screen_id   bigint NOT NULL REFERENCES screens (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX screen_pairings_screen ON screen_pairings (screen_id);

-- A session: a signed-in person (idle timeout + absolute expiry) or a paired screen (no idle timeout).
CREATE TABLE sessions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash    text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    kind          text NOT NULL CHECK (kind IN ('user', 'screen')),
    user_id       bigint REFERENCES users (id),
    screen_id     bigint REFERENCES screens (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    address       text,
    user_agent    text CHECK (char_length(user_agent) <= 300),
    CHECK ((kind = 'user') = (user_id IS NOT NULL) AND (kind = 'screen') = (screen_id IS NOT NULL))
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE ended_at IS NULL;
CREATE INDEX sessions_screen ON sessions (screen_id) WHERE ended_at IS NULL;

-- Every failed (and successful) credential check, for the throttle: kept in PostgreSQL so all the
-- app's processes agree. kind: password (sign-in), token (bearer), device (OsmAnd identifier), pairing.
CREATE TABLE signin_attempts (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    kind     text NOT NULL CHECK (kind IN ('password', 'token', 'device', 'pairing')),
    account  text CHECK (char_length(account) <= 200),
    address  text CHECK (char_length(address) <= 100),
    ok       boolean NOT NULL
);
CREATE INDEX signin_attempts_account ON signin_attempts (account, at) WHERE account IS NOT NULL;
CREATE INDEX signin_attempts_address ON signin_attempts (address, at);

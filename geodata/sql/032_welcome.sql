-- Imported people (`yitu import users`) get an account with no password anyone knows and a one-time
-- welcome link /welcome/<code> (72 hours) where they set their own. As with screen pairing codes,
-- only the code's SHA-256 is stored, so a copy of this table opens nothing.
CREATE TABLE user_welcomes (
    code_hash   text PRIMARY KEY CHECK (code_hash ~ '^[0-9a-f]{64}$'),
    user_id     bigint NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX user_welcomes_user ON user_welcomes (user_id);

-- Guessed welcome codes are throttled per address like pairing codes.
ALTER TABLE signin_attempts DROP CONSTRAINT signin_attempts_kind_check;
ALTER TABLE signin_attempts ADD CONSTRAINT signin_attempts_kind_check
    CHECK (kind IN ('password', 'token', 'device', 'pairing', 'welcome'));

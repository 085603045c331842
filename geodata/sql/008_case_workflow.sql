-- What the case workflow needs beyond 004: the current assignee (dispatch to a unit or a
-- mediator; a van dispatch arrives later), the reject reason and duplicate, safe retries of
-- intake (Idempotency-Key) and the per-day case number of 一案一码 (150623-YYYYMMDD-NNNNNN).
ALTER TABLE cases
    ADD COLUMN assignee     jsonb,
    ADD COLUMN duplicate_of text;

-- One row per (token, key): the first intake with a key creates the case, retries find it here.
-- request_hash tells a retry from a different request that reuses the key.
CREATE TABLE case_idempotency_keys (
    token_id     bigint NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    case_id      bigint NOT NULL,
    request_hash text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, key)
);
CREATE INDEX case_idempotency_keys_created_idx ON case_idempotency_keys (created_at);

-- The per-day case number of 一案一码 without a hot row: numbers come from one sequence
-- (nextval takes no lock that lasts until commit, so intakes never queue behind each other) minus
-- a base fixed when a banner's day gets its first case, chosen so that the day continues after
-- the cases already there (bulk-loaded history uses the same format). Numbers never repeat; they
-- may have gaps (a rolled-back intake, or a back-dated report drawn between today's).
CREATE SEQUENCE case_code_seq;
CREATE TABLE case_code_days (
    banner_code text NOT NULL,
    day         date NOT NULL,
    base        bigint NOT NULL,
    anchor      bigint NOT NULL,  -- the sequence value of the day's first number
    PRIMARY KEY (banner_code, day)
);

CREATE FUNCTION yitu_next_case_code(banner text, for_day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    s      bigint := nextval('case_code_seq');
    b      bigint;
    a      bigint;
    n      bigint;
    prefix text := banner || '-' || to_char(for_day, 'YYYYMMDD') || '-';
BEGIN
    SELECT base, anchor INTO b, a FROM case_code_days WHERE banner_code = banner AND day = for_day;
    IF NOT FOUND THEN
        SELECT coalesce(max(split_part(c.code, '-', 3)::bigint), 0) + 1 INTO n
          FROM cases c
         WHERE c.banner_code = banner
           AND c.reported_at >= (for_day - 1)::timestamp AT TIME ZONE 'Asia/Shanghai'
           AND c.reported_at < (for_day + 2)::timestamp AT TIME ZONE 'Asia/Shanghai'
           AND c.code LIKE prefix || '%';
        INSERT INTO case_code_days (banner_code, day, base, anchor) VALUES (banner, for_day, s - n, s)
        ON CONFLICT (banner_code, day) DO NOTHING;
        SELECT base, anchor INTO b, a FROM case_code_days WHERE banner_code = banner AND day = for_day;
    END IF;
    -- A value drawn before another session fixed the day's base may lie below its anchor (and so
    -- collide with the numbers of the history); one drawn now lies above it.
    IF s < a THEN
        s := nextval('case_code_seq');
    END IF;
    n := s - b;
    RETURN prefix || CASE WHEN n > 999999 THEN n::text ELSE lpad(n::text, 6, '0') END;
END $$;

-- The timeline of one case is read by case id; overdue sweeps look at open cases by deadline
-- (cases_open_idx from 004 covers that).

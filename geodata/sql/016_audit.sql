-- A tamper-proof audit (issue 12, item 9). Two roles: the OWNER runs the migrations and owns every
-- table (it is the role running this file); the RUNTIME role is what the app connects as. Its
-- privileges come from the group role yitu_runtime (cluster-wide; the embedded stack makes it and
-- its login role yitu_app; an external database's administrator makes them: see the README).
-- The runtime role reads and writes the data but may only append to the audit (case_events,
-- admin_events): no UPDATE, DELETE or TRUNCATE (the grants), and a trigger refusing them to
-- everyone, the owner included, as a second wall. The owner's documented way round the trigger
-- (`yitu seed demo --replace` wipes the history) is, inside one transaction,
--     SET LOCAL yitu.audit_maintenance = 'on';
-- which the trigger honours only for a role that is a member of the table's owner.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yitu_runtime') THEN
        CREATE ROLE yitu_runtime NOLOGIN;
    END IF;
END $$;

-- The log of administrative actions: who (actor_kind: token, user, screen, cli, system; actor_id:
-- the row in its own table), what (action, target, detail), when (at: the database server's
-- clock, which the runtime role cannot set; client_at: a time the client claimed, kept beside
-- it, never instead) and from where (address).
CREATE TABLE admin_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    client_at   timestamptz,
    actor_kind  text NOT NULL CHECK (actor_kind IN ('token', 'user', 'screen', 'cli', 'system')),
    actor_id    bigint,
    actor_name  text NOT NULL CHECK (length(actor_name) BETWEEN 1 AND 200),
    action      text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]{0,99}$'),
    target      text NOT NULL DEFAULT '' CHECK (length(target) <= 500),
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    address     inet
);
CREATE INDEX admin_events_at_idx ON admin_events (at DESC, id DESC);
CREATE INDEX admin_events_actor_idx ON admin_events (actor_kind, actor_id, at DESC);

-- case_events: who acted by identity (actor_kind + actor_id, beside the name and role it already
-- had), the time a client claimed (client_at: a back-dated report's reported_at; occurred_at is
-- the server's time) and when the row was written by the database's clock (recorded_at: the
-- runtime role cannot set it; NULL for the rows written before this migration).
ALTER TABLE case_events
    ADD COLUMN actor_kind  text CHECK (actor_kind IN ('token', 'user', 'screen', 'cli', 'system')),
    ADD COLUMN actor_id    bigint,
    ADD COLUMN client_at   timestamptz,
    ADD COLUMN recorded_at timestamptz;
ALTER TABLE case_events ALTER COLUMN recorded_at SET DEFAULT now();

-- The second wall: UPDATE, DELETE and TRUNCATE of the audit raise, whoever asks, unless the
-- owner opened the maintenance path for its transaction.
CREATE FUNCTION yitu_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('yitu.audit_maintenance', true), '') = 'on'
       AND pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID), 'USAGE') THEN
        IF TG_LEVEL = 'STATEMENT' THEN
            RETURN NULL;
        ELSIF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'the audit is never changed; its owner may wipe it in a transaction that runs '
                     'SET LOCAL yitu.audit_maintenance = ''on'' first';
END $$;

-- Row triggers on a partitioned table reach every partition, present and future; a TRUNCATE
-- trigger is per table, so each partition gets its own (yitu_ensure_month_partitions below adds
-- it to the new ones).
CREATE TRIGGER yitu_append_only BEFORE UPDATE OR DELETE ON case_events
    FOR EACH ROW EXECUTE FUNCTION yitu_append_only();
CREATE TRIGGER yitu_append_only_truncate BEFORE TRUNCATE ON case_events
    FOR EACH STATEMENT EXECUTE FUNCTION yitu_append_only();
CREATE TRIGGER yitu_append_only BEFORE UPDATE OR DELETE ON admin_events
    FOR EACH ROW EXECUTE FUNCTION yitu_append_only();
CREATE TRIGGER yitu_append_only_truncate BEFORE TRUNCATE ON admin_events
    FOR EACH STATEMENT EXECUTE FUNCTION yitu_append_only();
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'case_events'::regclass LOOP
        EXECUTE format('CREATE TRIGGER yitu_append_only_truncate BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION yitu_append_only()', part);
    END LOOP;
END $$;

-- Monthly partitions are made by the app too (van positions, ahead of time): as the owner
-- (SECURITY DEFINER), so that every partition belongs to the owner and the runtime role reaches
-- the history only through its parent, whose grants say what it may do.
CREATE OR REPLACE FUNCTION yitu_ensure_month_partitions(parent regclass, first_day date, last_day date)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    month   date := date_trunc('month', first_day)::date;
    created integer := 0;
    part    text;
BEGIN
    IF parent NOT IN ('van_positions'::regclass, 'case_events'::regclass) THEN
        RAISE EXCEPTION 'yitu_ensure_month_partitions: % is not a partitioned history table', parent;
    END IF;
    WHILE month <= last_day LOOP
        part := format('%s_y%sm%s', parent::text, to_char(month, 'YYYY'), to_char(month, 'MM'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                           part, parent, month, (month + interval '1 month')::date);
            EXECUTE format('REVOKE ALL ON %I FROM yitu_runtime', part);
            IF parent = 'case_events'::regclass THEN
                EXECUTE format('CREATE TRIGGER yitu_append_only_truncate BEFORE TRUNCATE ON %I '
                               'FOR EACH STATEMENT EXECUTE FUNCTION yitu_append_only()', part);
            END IF;
            created := created + 1;
        END IF;
        month := (month + interval '1 month')::date;
    END LOOP;
    RETURN created;
END $$;
REVOKE EXECUTE ON FUNCTION yitu_ensure_month_partitions(regclass, date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION yitu_ensure_month_partitions(regclass, date, date) TO yitu_runtime;

-- What the runtime role may do: read and write the data (every table and sequence of the schema,
-- and, by default privileges, those later migrations make), never TRUNCATE, never own anything.
GRANT USAGE ON SCHEMA public TO yitu_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO yitu_runtime;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO yitu_runtime;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO yitu_runtime;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO yitu_runtime;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO yitu_runtime;
-- The migrations' own book: read only.
REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM yitu_runtime;
-- The partitions: only through their parents.
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits
                WHERE inhparent IN ('case_events'::regclass, 'van_positions'::regclass) LOOP
        EXECUTE format('REVOKE ALL ON %s FROM yitu_runtime', part);
    END LOOP;
END $$;
-- The audit: read, and append without choosing the server's time (recorded_at, at, id).
REVOKE ALL ON case_events, admin_events FROM yitu_runtime;
GRANT SELECT ON case_events, admin_events TO yitu_runtime;
GRANT INSERT (case_id, occurred_at, actor, role, action, from_step, to_step, level, note, data,
              actor_kind, actor_id, client_at) ON case_events TO yitu_runtime;
GRANT INSERT (client_at, actor_kind, actor_id, actor_name, action, target, detail, address)
    ON admin_events TO yitu_runtime;

-- Deadlines per banner or for the whole league (issue 16 item 2): the settings (YITU_DEADLINE_*_HOURS,
-- YITU_MAX_ATTEMPTS_PER_LEVEL) stay the deployment's default; a row for the root (the league or city,
-- its 4-digit code) overrides them for every banner; a row for a banner (6 digits) overrides the
-- league's. A column left NULL inherits from the level above, so a row may change one level alone.
-- Resolved per case from its banner by geodata/deadlines.py (RulesBook): the deadlines are computed
-- when a case reaches a level (intake, escalation, reopening) and stored on the case, so the overdue
-- sweep, the warnings and every count read the stored deadline as before.
-- No foreign key to areas: a grid import that replaces a banner deletes and re-inserts its areas, and
-- its deadlines must survive that; `yitu deadlines set` and PUT /api/v1/deadlines check the code.
-- The bounds are the settings' (services/settings.py; geodata/deadlines.py MAX_HOURS).
CREATE TABLE deadline_overrides (
    area_code      text PRIMARY KEY CHECK (area_code ~ '^[0-9]{4}$' OR area_code ~ '^[0-9]{6}$'),
    grid_hours     float8 CHECK (grid_hours BETWEEN 0 AND 24 * 30),
    village_hours  float8 CHECK (village_hours BETWEEN 0 AND 24 * 90),
    town_hours     float8 CHECK (town_hours BETWEEN 0 AND 24 * 90),
    banner_hours   float8 CHECK (banner_hours BETWEEN 0 AND 24 * 90),
    max_attempts   integer CHECK (max_attempts BETWEEN 1 AND 20),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    updated_by     text CHECK (length(updated_by) <= 200),
    CONSTRAINT deadline_overrides_something CHECK (
        num_nonnulls(grid_hours, village_hours, town_hours, banner_hours, max_attempts) > 0
    )
);

-- The generation every app process polls (services/deadlines.py, about once a second): any change of
-- the overrides bumps it in the same transaction (a statement trigger), so a process that sees the new
-- generation reloads a table that already holds the change, and the processes agree within seconds.
CREATE TABLE deadline_state (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    generation  bigint NOT NULL DEFAULT 1,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO deadline_state DEFAULT VALUES;

-- SECURITY DEFINER: whoever changes an override (the app's role, the CLI) bumps the generation, which
-- only the owner may write.
CREATE FUNCTION yitu_deadlines_changed() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE deadline_state SET generation = generation + 1, changed_at = now();
    RETURN NULL;
END $$;

CREATE TRIGGER deadline_overrides_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON deadline_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION yitu_deadlines_changed();

REVOKE INSERT, UPDATE, DELETE ON deadline_state FROM yitu_runtime;
GRANT SELECT ON deadline_state TO yitu_runtime;

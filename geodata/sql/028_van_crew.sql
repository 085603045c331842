-- A van crew member signs in like everyone (issue 15 item 2, /m/van): a user of role 'van' names
-- the van they ride in (users.van_id) and acts, like a van's API token, for that van alone: its
-- GPS, the case it is sent to (services/identity.py, Principal.van). The van is the user's, not a
-- session's, so moving a crew member to another van is one UPDATE (their sessions end with it).
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('admin', 'dispatcher', 'grid_worker', 'viewer', 'van'));
ALTER TABLE users ADD COLUMN van_id text REFERENCES vans (id);
-- A crew member has a van, nobody else has one.
ALTER TABLE users ADD CONSTRAINT users_van_crew CHECK ((role = 'van') = (van_id IS NOT NULL));
CREATE INDEX users_van_idx ON users (van_id) WHERE van_id IS NOT NULL;

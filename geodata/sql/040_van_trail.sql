-- The vans' trails on the map, kept simplified (issue 17: the vans layer read every fix of the
-- trail's window, ST_MakeLine'd and simplified them at each reload: at a league's 1,000 fixes a
-- second an hour's trail is 3.6 million rows, and the read grew with it).
--
-- The scheduler's ``trails`` job (services/scheduler.py, every few seconds, on the leader) rolls
-- each van's fixes since the end of its trail (van_trail_until) into ``van_trail``, simplified
-- as the layer simplifies them (~5 m, ST_Simplify keeping each kept fix's time as its M), so a
-- trail holds the points of its shape, not one per fix. The layer reads the trail's points in
-- its window plus the few fixes not rolled yet (after its until), and simplifies once more
-- across the chunks (layer_vans.sql). A fix that arrives after its time was rolled (a phone's
-- late resend) is in the history (van_positions) but not on the trail.
CREATE TABLE van_trail (
    van_id text NOT NULL REFERENCES vans (id) ON DELETE CASCADE,
    at     timestamptz NOT NULL,
    geom   geometry(Point, 4326) NOT NULL,
    PRIMARY KEY (van_id, at)
);
CREATE INDEX van_trail_at ON van_trail (at);  -- the job forgets points older than any window

-- Where each van's trail ends: its fixes up to ``until`` are on it. A table of its own, written by
-- the job alone: the GPS intake locks the vans' rows, and the job must never wait for it or make
-- it wait.
CREATE TABLE van_trail_until (
    van_id text PRIMARY KEY REFERENCES vans (id) ON DELETE CASCADE,
    until  timestamptz NOT NULL
);

-- Van dispatch (派车): pgRouting for the road distance and ETA of each van to a case, and the
-- visits themselves. pgRouting, like PostGIS, may need a superuser once on an external server.
CREATE EXTENSION IF NOT EXISTS pgrouting;

-- One row per time a van is sent to a case: en_route → on_site (arrived within the arrival
-- radius) → ended, or en_route → cancelled. The route it was sent with (distance, ETA, method)
-- is kept as it was then. The partial unique indexes let the database itself refuse a second
-- active visit for a van (double booking) or for a case.
CREATE TABLE dispatches (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id     bigint NOT NULL REFERENCES cases (id),
    case_code   text NOT NULL,
    van_id      text NOT NULL REFERENCES vans (id),
    status      text NOT NULL DEFAULT 'en_route' CHECK (status IN ('en_route', 'on_site', 'ended', 'cancelled')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    note        text,
    distance_m  double precision CHECK (distance_m >= 0),
    eta_s       double precision CHECK (eta_s >= 0),
    method      text CHECK (method IN ('road', 'great_circle')),
    arrived_at  timestamptz,
    ended_at    timestamptz,
    ended_by    text,
    end_note    text,
    result      text CHECK (result IN ('success', 'failed')),
    outcome     text,
    CHECK ((status IN ('en_route', 'on_site')) = (ended_at IS NULL)),
    CHECK (status <> 'on_site' OR arrived_at IS NOT NULL)
);
CREATE UNIQUE INDEX dispatches_one_active_per_van ON dispatches (van_id) WHERE status IN ('en_route', 'on_site');
CREATE UNIQUE INDEX dispatches_one_active_per_case ON dispatches (case_id) WHERE status IN ('en_route', 'on_site');
CREATE INDEX dispatches_created_idx ON dispatches (created_at DESC, id DESC);
CREATE INDEX dispatches_case_idx ON dispatches (case_id);

-- Dispute cases (矛盾纠纷) and their audit trail. The workflow logic arrives with the cases issue;
-- these are the tables it needs. Personal data of the parties lives only in cases.parties.
CREATE TABLE cases (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code          text NOT NULL UNIQUE,
    type          text NOT NULL,
    description   text NOT NULL DEFAULT '',
    parties       jsonb NOT NULL DEFAULT '[]'::jsonb,
    geom          geometry(Point, 4326),
    grid_code     text,
    village_code  text,
    town_code     text,
    banner_code   text NOT NULL,
    channel       text NOT NULL,
    reporter      text,
    level         text NOT NULL CHECK (level IN ('grid', 'village', 'town', 'banner')),
    step          text NOT NULL CHECK (step IN
                  ('reported', 'accepted', 'dispatched', 'handling', 'closed', 'evaluated', 'rejected')),
    deadline      timestamptz,
    attempts      smallint NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    outcome       text CHECK (outcome IN ('mediated', 'litigation', 'arbitration', 'judicial_confirmation', 'withdrawn')),
    satisfaction  smallint CHECK (satisfaction BETWEEN 1 AND 5),
    followup_note text,
    flags         text[] NOT NULL DEFAULT '{}',
    reported_at   timestamptz NOT NULL,
    closed_at     timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    version       integer NOT NULL DEFAULT 1
);
CREATE INDEX cases_geom_gist ON cases USING gist (geom);
CREATE INDEX cases_grid_idx ON cases (grid_code);
CREATE INDEX cases_village_idx ON cases (village_code);
CREATE INDEX cases_town_idx ON cases (town_code);
CREATE INDEX cases_open_idx ON cases (step, deadline) WHERE step NOT IN ('closed', 'evaluated', 'rejected');
CREATE INDEX cases_reported_brin ON cases USING brin (reported_at);

CREATE TABLE case_events (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    case_id     bigint NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    role        text NOT NULL,
    action      text NOT NULL,
    from_step   text,
    to_step     text,
    level       text,
    note        text,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE case_events_default PARTITION OF case_events DEFAULT;
CREATE INDEX case_events_case_idx ON case_events (case_id, occurred_at);
CREATE INDEX case_events_time_brin ON case_events USING brin (occurred_at);

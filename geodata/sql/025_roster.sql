-- The roster (issue 14): the units and the mediators a case is dispatched to. A case's assignee
-- (cases.assignee, 008) names one of them as {"kind": "unit"|"mediator", "id": "<id>", "name": ...};
-- ids are written as text there so that older free-text assignees stay readable.
-- Rows are deactivated, never deleted: the timeline of an old case names them.
--
-- Unit kinds: 人民调解委员会 (committee: a village's or a town's people's mediation committee),
-- 行业性专业性调解委员会 (professional: land, labour, medical, traffic, family...), 司法所 (justice_office),
-- 派出所 (police_station), 人民法庭 (court), 信访 (petition), 12345 (hotline) and the banner's
-- departments (department). level is the grid level the unit works at; area_code the area it serves.
CREATE TABLE units (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100 AND name = btrim(name)),
    kind        text NOT NULL CHECK (kind IN ('committee', 'professional', 'justice_office', 'police_station',
                                              'court', 'petition', 'hotline', 'department')),
    level       text NOT NULL CHECK (level IN ('grid', 'village', 'town', 'banner')),
    area_code   text NOT NULL CHECK (area_code ~ '^[0-9]{6}([0-9]{3}){0,3}$'),
    phone       text CHECK (phone ~ '^\+?[0-9][0-9 \-]{3,18}[0-9]$'),
    specialties text[] NOT NULL DEFAULT '{}',   -- case_types codes this unit takes
    active      boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (area_code, name)
);
CREATE INDEX units_area_idx ON units (area_code) WHERE active;

-- A mediator (调解员): a grid worker, a village or town committee member, a full-time mediator of a
-- centre or a van's crew. user_id links the person who signs in (their inbox); van_id a van crew.
CREATE TABLE mediators (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 50 AND name = btrim(name)),
    phone       text CHECK (phone ~ '^\+?[0-9][0-9 \-]{3,18}[0-9]$'),
    unit_id     bigint REFERENCES units (id),
    center_id   bigint REFERENCES mediation_centers (id),
    van_id      text REFERENCES vans (id),
    level       text NOT NULL CHECK (level IN ('grid', 'village', 'town', 'banner')),
    area_code   text NOT NULL CHECK (area_code ~ '^[0-9]{6}([0-9]{3}){0,3}$'),
    specialties text[] NOT NULL DEFAULT '{}',   -- case_types codes
    active      boolean NOT NULL DEFAULT true,
    user_id     bigint UNIQUE REFERENCES users (id),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- One mediator per name and phone in an area (two 张伟 are told apart by their phones).
CREATE UNIQUE INDEX mediators_identity ON mediators (area_code, name, coalesce(phone, ''));
CREATE INDEX mediators_area_idx ON mediators (area_code) WHERE active;
CREATE INDEX mediators_unit_idx ON mediators (unit_id);

-- "Waiting on me": the open cases by assignee (a mediator's load, a unit's queue, the inbox).
CREATE INDEX cases_assignee_open_idx ON cases ((assignee ->> 'kind'), (assignee ->> 'id'), deadline)
    WHERE step NOT IN ('closed', 'evaluated', 'rejected');

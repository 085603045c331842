-- Cameras (雪亮工程), mediation centres (banner centre, town stations, village rooms) and the
-- roving mediation vans (行走的调解室). area_code is the smallest area holding the point; it is
-- not a foreign key so that a territory can be re-imported without touching these rows.
CREATE TABLE cameras (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_code text NOT NULL UNIQUE,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('dome', 'bullet', 'mini_dome', 'checkpoint')),
    status      text NOT NULL DEFAULT 'online' CHECK (status IN ('online', 'offline')),
    stream_url  text,
    area_code   text,
    geom        geometry(Point, 4326) NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cameras_geom_gist ON cameras USING gist (geom);
CREATE INDEX cameras_area_idx ON cameras (area_code);

CREATE TABLE mediation_centers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    level       smallint NOT NULL CHECK (level BETWEEN 1 AND 3),
    area_code   text NOT NULL,
    mediators   integer NOT NULL DEFAULT 0 CHECK (mediators >= 0),
    specialties text[] NOT NULL DEFAULT '{}',
    phone       text,
    geom        geometry(Point, 4326) NOT NULL
);
CREATE INDEX mediation_centers_geom_gist ON mediation_centers USING gist (geom);
CREATE INDEX mediation_centers_area_idx ON mediation_centers (area_code);

CREATE TABLE vans (
    id             text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,32}$'),
    name           text NOT NULL,
    plate          text,
    base_center_id bigint REFERENCES mediation_centers (id),
    status         text NOT NULL DEFAULT 'available'
                   CHECK (status IN ('available', 'en_route', 'on_site', 'offline')),
    odometer_km    double precision NOT NULL DEFAULT 0 CHECK (odometer_km >= 0),
    cases_mediated integer NOT NULL DEFAULT 0 CHECK (cases_mediated >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- GPS history: append-only and large, so range-partitioned by time with BRIN on time.
-- yitu_ensure_month_partitions() adds monthly partitions; rows outside them land in the default.
CREATE TABLE van_positions (
    van_id      text NOT NULL REFERENCES vans (id),
    recorded_at timestamptz NOT NULL,
    geom        geometry(Point, 4326) NOT NULL,
    speed_kmh   real CHECK (speed_kmh >= 0),
    heading     real CHECK (heading >= 0 AND heading < 360),
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (van_id, recorded_at)
) PARTITION BY RANGE (recorded_at);
CREATE TABLE van_positions_default PARTITION OF van_positions DEFAULT;
CREATE INDEX van_positions_time_brin ON van_positions USING brin (recorded_at);

-- The road network (for van routing with pgRouting and for placing cameras) and the
-- configurable list of case types (people's-mediation categories plus the local ones).
CREATE TABLE roads (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('trunk', 'county', 'village')),
    name         text,
    source       bigint NOT NULL,
    target       bigint NOT NULL,
    length_m     double precision NOT NULL CHECK (length_m > 0),
    geom         geometry(LineString, 4326) NOT NULL
);
CREATE INDEX roads_geom_gist ON roads USING gist (geom);
CREATE INDEX roads_source_idx ON roads (source);
CREATE INDEX roads_target_idx ON roads (target);

CREATE TABLE case_types (
    code       text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,40}$'),
    name_zh    text NOT NULL,
    name_en    text NOT NULL,
    sort_order smallint NOT NULL DEFAULT 0,
    active     boolean NOT NULL DEFAULT true
);
INSERT INTO case_types (code, name_zh, name_en, sort_order) VALUES
    ('marriage_family',  '婚姻家庭',     'Marriage and family',        1),
    ('neighbour',        '邻里纠纷',     'Neighbours',                 2),
    ('housing_land',     '房屋宅基地',   'Housing and homestead land', 3),
    ('contract',         '合同纠纷',     'Contracts',                  4),
    ('business',         '生产经营',     'Production and business',    5),
    ('damages',          '损害赔偿',     'Damages',                    6),
    ('forest_land',      '山林土地',     'Forest and land',            7),
    ('expropriation',    '征地拆迁',     'Land expropriation',         8),
    ('pollution',        '环境污染',     'Environmental pollution',    9),
    ('labour',           '劳动争议',     'Labour disputes',           10),
    ('consumer',         '消费纠纷',     'Consumer disputes',         11),
    ('medical',          '医疗纠纷',     'Medical disputes',          12),
    ('traffic',          '道路交通事故', 'Road traffic accidents',    13),
    ('property_mgmt',    '物业纠纷',     'Property management',       14),
    ('grassland',        '草牧场纠纷',   'Grassland and pasture',     15),
    ('herder_enterprise','牧企纠纷',     'Herders and enterprises',   16),
    ('land_transfer',    '土地流转',     'Land transfer',             17),
    ('seed_corn',        '玉米制种',     'Seed corn',                 18),
    ('private_lending',  '民间借贷',     'Private lending',           19),
    ('other',            '其他',         'Other',                     99);
ALTER TABLE cases ADD CONSTRAINT cases_type_fkey FOREIGN KEY (type) REFERENCES case_types (code);

-- The latest known position of each van (history stays in van_positions; the live copy is in Redis).
ALTER TABLE vans
    ADD COLUMN geom         geometry(Point, 4326),
    ADD COLUMN heading      real CHECK (heading >= 0 AND heading < 360),
    ADD COLUMN speed_kmh    real CHECK (speed_kmh >= 0),
    ADD COLUMN last_seen_at timestamptz;
CREATE INDEX vans_geom_gist ON vans USING gist (geom);

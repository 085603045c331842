-- The four-level grid (四级网格): banner (1) → towns (2) → villages/communities (3) → grid cells (4).
-- Codes are NBS statistical codes: 6 digits for the banner, +3 per level (9, 12), and a grid cell
-- is its village code + a 3-digit sequence (15 digits). Geometries are WGS-84 (EPSG:4326).
CREATE TABLE areas (
    code        text PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    level       smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    parent_code text REFERENCES areas (code) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED,
    geom        geometry(MultiPolygon, 4326) NOT NULL,
    props       jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT areas_code_fits_level CHECK (code ~ '^[0-9]+$' AND length(code) = 3 + 3 * level),
    CONSTRAINT areas_parent_fits_level CHECK (
        (level = 1 AND parent_code IS NULL)
        OR (level > 1 AND parent_code IS NOT NULL AND code LIKE parent_code || '%')
    ),
    CONSTRAINT areas_geom_valid CHECK (ST_IsValid(geom))
);
CREATE INDEX areas_geom_gist ON areas USING gist (geom);
CREATE INDEX areas_parent_idx ON areas (parent_code);
CREATE INDEX areas_level_idx ON areas (level);

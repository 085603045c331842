-- The deployment's own base map (basemap=own, geodata/basemap.py): PNG tiles drawn from the roads,
-- the areas and the water, cached in Redis under the generation below. Every change to what the
-- tiles show bumps the generation (statement triggers, so one import is one bump), and the cached
-- tiles of the old one are never read again: an import shows on the next tile a screen asks for.
CREATE TABLE basemap_state (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    generation  bigint NOT NULL DEFAULT 1,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO basemap_state DEFAULT VALUES;

-- Water for the base map, when an import brings it (`yitu import water`): rivers and canals as
-- lines, lakes and reservoirs as polygons. Nothing else reads it.
CREATE TABLE water (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind  text NOT NULL CHECK (kind IN ('river', 'stream', 'canal', 'lake', 'reservoir', 'pond', 'wetland')),
    name  text CHECK (length(name) <= 200),
    geom  geometry(Geometry, 4326) NOT NULL
        CHECK (GeometryType(geom) IN ('LINESTRING', 'MULTILINESTRING', 'POLYGON', 'MULTIPOLYGON')),
    CONSTRAINT water_geom_valid CHECK (ST_IsValid(geom))
);
CREATE INDEX water_geom_gist ON water USING gist (geom);

-- SECURITY DEFINER: whoever changes a road (the owner's import, the app's role) bumps the generation,
-- which only the owner may write.
CREATE FUNCTION yitu_basemap_changed() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE basemap_state SET generation = generation + 1, changed_at = now();
    RETURN NULL;
END $$;

CREATE TRIGGER roads_basemap AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON roads
    FOR EACH STATEMENT EXECUTE FUNCTION yitu_basemap_changed();
CREATE TRIGGER water_basemap AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON water
    FOR EACH STATEMENT EXECUTE FUNCTION yitu_basemap_changed();
-- Only what the tiles draw: the counters and props kept on an area do not redraw the map.
CREATE TRIGGER areas_basemap AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF code, name, level, geom ON areas
    FOR EACH STATEMENT EXECUTE FUNCTION yitu_basemap_changed();

-- The app reads the generation; the owner's imports bump it (ALTER DEFAULT PRIVILEGES of 016 gave the
-- runtime group the rest, which a base map it only reads does not need).
REVOKE INSERT, UPDATE, DELETE ON basemap_state FROM yitu_runtime;
GRANT SELECT ON basemap_state TO yitu_runtime;

-- Several banners in one deployment (issue 16 item 2): a level-0 root, the league or city (盟/市),
-- above any number of banners. Its code is the 4-digit NBS prefix its banners' codes start with
-- (鄂尔多斯市 150600 → 1506), so codes still nest by prefix at every level and an area scope stays a
-- prefix test. There is at most one root; every banner of a deployment with a root lies under it
-- (the importer and `yitu area root` keep that), so a reader scoped to the root sees everything.
-- Its outline is the union of its banners' (yitu_root_refresh, after each grid import).
ALTER TABLE areas DROP CONSTRAINT areas_level_check;
ALTER TABLE areas ADD CONSTRAINT areas_level_check CHECK (level BETWEEN 0 AND 4);
ALTER TABLE areas DROP CONSTRAINT areas_code_fits_level;
ALTER TABLE areas ADD CONSTRAINT areas_code_fits_level CHECK (
    code ~ '^[0-9]+$' AND length(code) = CASE WHEN level = 0 THEN 4 ELSE 3 + 3 * level END
);
ALTER TABLE areas DROP CONSTRAINT areas_parent_fits_level;
ALTER TABLE areas ADD CONSTRAINT areas_parent_fits_level CHECK (
    (level <= 1 AND parent_code IS NULL)
    OR (level >= 1 AND parent_code IS NOT NULL AND code LIKE parent_code || '%')
);
CREATE UNIQUE INDEX areas_one_root ON areas ((true)) WHERE level = 0;

-- The root's banners and outline as they are now: each banner under the root's prefix gets the
-- root as its parent, and the root's outline becomes their union (empty before the first banner).
-- Called in the transaction of every grid import and of `yitu area root`; a no-op without a root.
CREATE FUNCTION yitu_root_refresh() RETURNS void
LANGUAGE sql
AS $$
    UPDATE areas b SET parent_code = r.code
    FROM areas r
    WHERE r.level = 0 AND b.level = 1 AND starts_with(b.code, r.code) AND b.parent_code IS DISTINCT FROM r.code;
    UPDATE areas r
    SET geom = coalesce((SELECT ST_Multi(ST_Union(b.geom)) FROM areas b WHERE b.level = 1 AND b.parent_code = r.code),
                        'SRID=4326;MULTIPOLYGON EMPTY'::geometry),
        updated_at = now()
    WHERE r.level = 0;
$$;

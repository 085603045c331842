-- The glyph a case pin shows for its type lives with the type, so a type added here shows on the map
-- without a copy of the list in the page's JavaScript (the cases layer puts them in its hideout).
-- A type without a glyph shows the first character of its Chinese name.
ALTER TABLE case_types ADD COLUMN glyph text CHECK (char_length(glyph) BETWEEN 1 AND 2);
UPDATE case_types t SET glyph = v.glyph
FROM (VALUES
    ('marriage_family', '婚'), ('neighbour', '邻'), ('housing_land', '宅'), ('contract', '合'),
    ('business', '营'), ('damages', '损'), ('forest_land', '林'), ('expropriation', '拆'),
    ('pollution', '污'), ('labour', '劳'), ('consumer', '消'), ('medical', '医'),
    ('traffic', '交'), ('property_mgmt', '物'), ('grassland', '草'), ('herder_enterprise', '企'),
    ('land_transfer', '流'), ('seed_corn', '种'), ('private_lending', '贷'), ('other', '他')
) AS v (code, glyph)
WHERE t.code = v.code;

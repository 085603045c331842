-- Search (issue 14, item 4): one box finds a case by its code's prefix, a party's name or phone, a
-- word of its description, and an area by name or code; p95 under 100 ms on a million cases.
--
-- Why not pg_trgm alone: Chinese words are mostly two characters (土地, 草场, a name like 王伟), and
-- pg_trgm takes no trigram from the pattern %土地%, so its index would read every entry. Instead the
-- text's *grams* go into a GIN index: every two-character substring (lower-cased), and every run of
-- four digits (a phone's digit pairs are each in a fifth of the rows; its four-digit runs in a few
-- thousandths). Every gram of a query is then a gram of every text that contains it, so
-- ``yitu_grams(text) @> yitu_grams(q)`` finds a superset of the matches through the index and
-- ``strpos`` keeps the literal ones: no LIKE pattern, so %, _ and \ in a query are just characters.
-- pg_trgm stays available (the extension is cheap) for what it is good at: similarity of longer text.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE FUNCTION yitu_grams(t text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(DISTINCT g), '{}')
    FROM (
        SELECT substr(s, i, 2) AS g FROM (SELECT lower(t) AS s) x, generate_series(1, char_length(s) - 1) i
        UNION ALL
        SELECT substr(s, i, 4) FROM (SELECT lower(t) AS s) x, generate_series(1, char_length(s) - 3) i
        WHERE substr(s, i, 4) ~ '^[0-9]{4}$'
    ) grams
$$;

-- The grams a query's matches must hold, fewest that still say it: a digit pair is in a fifth of the
-- rows, so where the query has a run of four digits its digit pairs add nothing but work (every
-- digit pair of a run of four or more lies inside one of its four-digit grams).
CREATE FUNCTION yitu_query_grams(q text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE WHEN q !~ '[0-9]{4}' THEN yitu_grams(q)
                ELSE ARRAY(SELECT g FROM unnest(yitu_grams(q)) g
                           WHERE g !~ '^[0-9]{2}$' OR NOT EXISTS (
                               SELECT 1 FROM regexp_matches(lower(q), '[0-9]{4,}', 'g') m(r) WHERE strpos(m.r[1], g) > 0))
           END
$$;

-- The parties as one searchable text: each party's name, phone as written, and the phone's digits
-- alone (0477-8123456 is found by 04778123456 too). Only names and phones: what item 4 searches.
CREATE FUNCTION yitu_party_text(parties jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT coalesce(string_agg(concat_ws(' ', p->>'name', p->>'phone',
                                         regexp_replace(coalesce(p->>'phone', ''), '[^0-9]', '', 'g')), ' / '), '')
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(parties) = 'array' THEN parties ELSE '[]'::jsonb END) p
$$;

-- The description with the parties' names and phones taken out (each becomes chr(1), which no query
-- holds: check_query refuses control characters). Searching it, no reader finds a case through a
-- party written into its description: who sees the parties finds them by the party search; who
-- does not must not find a case by a name or number it is shown masked. Longest first, so that
-- 张三丰 goes before 张三 (as geodata/masking.py does).
CREATE FUNCTION yitu_unnamed(t text, parties jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    s text := coalesce(t, '');
    v text;
BEGIN
    FOR v IN
        SELECT DISTINCT btrim(x), char_length(btrim(x))
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(parties) = 'array' THEN parties ELSE '[]'::jsonb END) p,
             LATERAL (VALUES (p->>'name'), (p->>'phone')) f(x)
        WHERE char_length(btrim(x)) > 1
        ORDER BY char_length(btrim(x)) DESC
    LOOP
        s := replace(s, v, chr(1));
    END LOOP;
    RETURN s;
END $$;

-- A literal, case-insensitive substring test (the recheck of the gram index; no pattern syntax).
CREATE FUNCTION yitu_contains(t text, q text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT strpos(lower(t), lower(q)) > 0 $$;

-- What the search reads, kept with each row (computed on every write, so a scan that checks a few
-- thousand rows pays no function per row): the parties' text, and the description without them.
ALTER TABLE cases
    ADD COLUMN search_parties text GENERATED ALWAYS AS (yitu_party_text(parties)) STORED,
    ADD COLUMN search_description text GENERATED ALWAYS AS (yitu_unnamed(description, parties)) STORED;

-- A case's areas as tags beside its grams ('@' and a code: no gram is that long), so that a reader
-- scoped to an area asks the index for the grams *and* its area's tag, and reads only its own
-- area's candidates instead of the whole territory's.
CREATE FUNCTION yitu_area_tags(grid text, village text, town text, banner text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT array_remove(ARRAY['@' || grid, '@' || village, '@' || town, '@' || banner], NULL) $$;

CREATE INDEX cases_description_grams ON cases USING gin (
    (yitu_grams(search_description) || yitu_area_tags(grid_code, village_code, town_code, banner_code)));
CREATE INDEX cases_party_grams ON cases USING gin (
    (yitu_grams(search_parties) || yitu_area_tags(grid_code, village_code, town_code, banner_code)));
-- Code prefixes as a range in byte order (a parameter, so prepared plans use it too: LIKE 'x%'
-- needs a constant), newest codes first by walking it backwards.
CREATE INDEX cases_code_bytes ON cases ((code COLLATE "C"));
-- Newest first over the whole territory (an unscoped reader's search walks it first: a common word
-- is found among the newest cases at once); the scoped ones have cases_{grid,village,town,banner}_idx.
CREATE INDEX cases_reported_idx ON cases (reported_at DESC, id DESC);

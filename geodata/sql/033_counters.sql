-- KPI counters (issue 16 item 4): the figures around the map read these, never a scan of cases.
-- One row counts the cases of one area (every level of a case's grid chain has its own rows), of
-- one reported day and one resolved day (China time), of one type, step, handling level and
-- triage flags. Everything the KPI tiles, the ranking, the choropleth and the area panel count is
-- a sum over these rows, except "overdue": open and past the deadline *now* changes with the clock,
-- not with a write, so it stays a count over the open cases' partial index (cases_open_idx).
--
-- Maintained in the same transaction as the change, by statement triggers with transition tables:
-- a bulk COPY of the demo adds one aggregated delta per statement, not a row per case.
-- ``shard`` spreads the hot rows (a busy day's intakes of one type all land on the same key at
-- banner level): each transaction writes to shard txid % 8 (yitu.counter_shards), so concurrent
-- intakes rarely wait on each other's row lock; readers sum over the shards. Rows may reach n = 0 (or a shard below 0,
-- when a case is added in one shard and changed in another): only the sums mean anything, and
-- ``yitu kpi rebuild`` compacts them.
CREATE TABLE case_counters (
    area_code    text     NOT NULL,
    area_level   smallint NOT NULL,
    day          date     NOT NULL,          -- reported_at, China time
    resolved_day date,                        -- closed_at (China time) of a resolved case, else NULL
    type         text     NOT NULL,
    step         text     NOT NULL,
    level        text     NOT NULL,
    major        boolean  NOT NULL,           -- severity = 'major'
    grp          boolean  NOT NULL,           -- 'group' = ANY(flags) (群体性)
    resolved     boolean  NOT NULL,           -- outcome mediated or judicially confirmed
    shard        smallint NOT NULL DEFAULT 0,
    n            bigint   NOT NULL DEFAULT 0,
    sat_sum      bigint   NOT NULL DEFAULT 0, -- sum and number of the satisfaction scores given
    sat_n        bigint   NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX case_counters_key ON case_counters
    (area_code, day, resolved_day, type, step, level, major, grp, resolved, shard) NULLS NOT DISTINCT;
-- The choropleth and the ranking read one level's areas; the trend, the resolved-by-day figures.
CREATE INDEX case_counters_level_idx ON case_counters (area_level, area_code text_pattern_ops, day);
CREATE INDEX case_counters_resolved_idx ON case_counters (area_code, resolved_day) WHERE resolved_day IS NOT NULL;
-- The open cases' counters of an area (in progress, by step, major, 群体性): few rows, any day.
CREATE INDEX case_counters_open_idx ON case_counters (area_code) WHERE yitu_step_open(step);

-- The counter keys of one case: one row per level of its grid chain. The one definition the
-- triggers, ``yitu kpi rebuild`` and ``yitu kpi check`` share.
CREATE FUNCTION yitu_counter_keys(
    reported_at timestamptz, closed_at timestamptz, outcome text, severity text, flags text[],
    grid text, village text, town text, banner text
) RETURNS TABLE (area_code text, area_level smallint, day date, resolved_day date,
                 major boolean, grp boolean, resolved boolean)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT v.code, v.lvl::smallint, (reported_at AT TIME ZONE 'Asia/Shanghai')::date,
           CASE WHEN outcome IN ('mediated', 'judicial_confirmation')
                THEN (closed_at AT TIME ZONE 'Asia/Shanghai')::date END,
           coalesce(severity = 'major', false), 'group' = ANY (flags),
           coalesce(outcome IN ('mediated', 'judicial_confirmation'), false)
    FROM (VALUES (banner, 1), (town, 2), (village, 3), (grid, 4)) v(code, lvl)
    WHERE v.code IS NOT NULL
$$;

-- The counters of every case, as a full count computes them (rebuild and check).
CREATE VIEW case_counters_recount AS
SELECT k.area_code, k.area_level, k.day, k.resolved_day, c.type, c.step, c.level, k.major, k.grp, k.resolved,
       count(*) AS n, coalesce(sum(c.satisfaction), 0) AS sat_sum, count(c.satisfaction) AS sat_n
FROM cases c,
     yitu_counter_keys(c.reported_at, c.closed_at, c.outcome, c.severity, c.flags,
                       c.grid_code, c.village_code, c.town_code, c.banner_code) k
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10;

-- Adds the counters of ``news`` and takes away those of ``olds``: one delta per key (an UPDATE that
-- changes none of the counted columns cancels out and writes nothing). Keys in order, so two
-- transactions lock the rows they share in the same order and cannot deadlock on them.
CREATE FUNCTION yitu_counters_add(olds cases[], news cases[], shard_no smallint) RETURNS void
LANGUAGE sql
AS $$
    WITH d AS (
        SELECT -1 AS sign, o.* FROM unnest(olds) o
        UNION ALL
        SELECT 1 AS sign, n.* FROM unnest(news) n
    ),
    delta AS (
        SELECT k.area_code, k.area_level, k.day, k.resolved_day, d.type, d.step, d.level, k.major, k.grp,
               k.resolved, sum(d.sign) AS n, coalesce(sum(d.sign * d.satisfaction), 0) AS sat_sum,
               coalesce(sum(d.sign) FILTER (WHERE d.satisfaction IS NOT NULL), 0) AS sat_n
        FROM d,
             yitu_counter_keys(d.reported_at, d.closed_at, d.outcome, d.severity, d.flags,
                               d.grid_code, d.village_code, d.town_code, d.banner_code) k
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    )
    INSERT INTO case_counters AS cc
        (area_code, area_level, day, resolved_day, type, step, level, major, grp, resolved, shard, n, sat_sum, sat_n)
    SELECT area_code, area_level, day, resolved_day, type, step, level, major, grp, resolved, shard_no,
           n, sat_sum, sat_n
    FROM delta
    WHERE n <> 0 OR sat_sum <> 0 OR sat_n <> 0
    ORDER BY area_code, day, resolved_day, type, step, level, major, grp, resolved
    ON CONFLICT (area_code, day, resolved_day, type, step, level, major, grp, resolved, shard)
    DO UPDATE SET n = cc.n + excluded.n, sat_sum = cc.sat_sum + excluded.sat_sum, sat_n = cc.sat_n + excluded.sat_n
$$;

CREATE FUNCTION yitu_counters_apply() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    -- yitu.counter_shards: the number of shards (8; bench/bench_kpi.py --hot sets 1 to measure
    -- what the sharding saves).
    shard_no smallint := (txid_current()
                          % coalesce(nullif(current_setting('yitu.counter_shards', true), '')::int, 8))::smallint;
BEGIN
    -- Each branch names only the transition tables its event has.
    IF TG_OP = 'INSERT' THEN
        PERFORM yitu_counters_add('{}', ARRAY(SELECT r::cases FROM new_rows r), shard_no);
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM yitu_counters_add(ARRAY(SELECT r::cases FROM old_rows r),
                                  ARRAY(SELECT r::cases FROM new_rows r), shard_no);
    ELSE
        PERFORM yitu_counters_add(ARRAY(SELECT r::cases FROM old_rows r), '{}', shard_no);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER yitu_counters_insert AFTER INSERT ON cases
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION yitu_counters_apply();
CREATE TRIGGER yitu_counters_update AFTER UPDATE ON cases
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION yitu_counters_apply();
CREATE TRIGGER yitu_counters_delete AFTER DELETE ON cases
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION yitu_counters_apply();

-- TRUNCATE fires no row or statement DML trigger: empty the counters with the cases.
CREATE FUNCTION yitu_counters_truncate() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM case_counters;
    RETURN NULL;
END $$;
CREATE TRIGGER yitu_counters_truncate AFTER TRUNCATE ON cases
    FOR EACH STATEMENT EXECUTE FUNCTION yitu_counters_truncate();

-- Today's cases, counted once.
INSERT INTO case_counters
    (area_code, area_level, day, resolved_day, type, step, level, major, grp, resolved, n, sat_sum, sat_n)
SELECT * FROM case_counters_recount;

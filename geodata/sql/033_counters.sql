-- KPI counters (issue 16 item 4): the figures around the map read these, never a scan of cases.
-- Every level of a case's grid chain (banner, town, village, cell; any area code) has its own
-- rows, in five grains, each the coarsest that answers some figure:
--   case_counters             per area, reported day, resolved day (China time), type, step,
--                             handling level, major / 群体性 flags and resolved or not: the ragged
--                             ends of a period that is not whole months (tiles, area panel);
--   case_counters_month       the same per reported month and resolved month, without the flags:
--                             the whole months of a period (tiles, steps, top types, area panel);
--   case_counters_open        the open cases now, per area, type, step, level and flags, any day:
--                             in progress, open major, open 群体性, the open of the ranking and map;
--   case_counters_area_month  per area and reported month only (reported, resolved, satisfaction):
--                             a whole level at once (the choropleth, the ranking);
--   case_counters_area_day    per area and day only: reported that day (and of them resolved,
--                             satisfaction) and resolved that day: the trend, today's new cases,
--                             the ranking's ragged days.
-- Everything the KPI tiles, the ranking, the choropleth and the area panel count is a sum over
-- these rows, except "overdue": open and past the deadline *now* changes with the clock, not with
-- a write, so it stays a count over the open cases' partial index (cases_open_idx).
--
-- Maintained in the same transaction as the change, by statement triggers with transition tables:
-- one aggregated delta per statement (a bulk UPDATE adds one delta, not a row per case), written
-- to the five tables by one statement; a key whose delta is zero is not written at all (a step
-- change leaves the per-area grains alone). ``shard`` spreads the hot rows (a busy month's intakes
-- all land on the banner's row): each transaction writes to shard txid % 8
-- (yitu.counter_shards), so concurrent intakes rarely wait on each other's row lock; readers sum
-- over the shards. Rows may reach n = 0 (or a shard below 0, when a case is added in one shard and
-- changed in another): only the sums mean anything, and ``yitu kpi rebuild`` compacts them.
-- The coarse grains are a grouping of the daily rows (the case_counters_by_* views below): the
-- rebuild fills them from the daily rows, the check compares them with the daily rows.
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
-- The ranking's ragged days read one level's areas; the trend, the resolved-by-day figures.
CREATE INDEX case_counters_level_idx ON case_counters (area_level, area_code text_pattern_ops, day);
CREATE INDEX case_counters_resolved_idx ON case_counters (area_code, resolved_day) WHERE resolved_day IS NOT NULL;

CREATE TABLE case_counters_month (
    area_code      text     NOT NULL,
    area_level     smallint NOT NULL,
    month          date     NOT NULL,        -- first day of the reported month, China time
    resolved_month date,                      -- first day of the resolved month, else NULL
    type           text     NOT NULL,
    step           text     NOT NULL,
    level          text     NOT NULL,
    resolved       boolean  NOT NULL,
    shard          smallint NOT NULL DEFAULT 0,
    n              bigint   NOT NULL DEFAULT 0,
    sat_sum        bigint   NOT NULL DEFAULT 0,
    sat_n          bigint   NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX case_counters_month_key ON case_counters_month
    (area_code, month, resolved_month, type, step, level, resolved, shard) NULLS NOT DISTINCT;

CREATE TABLE case_counters_open (
    area_code  text     NOT NULL,
    area_level smallint NOT NULL,
    type       text     NOT NULL,
    step       text     NOT NULL,            -- an open step (yitu_step_open)
    level      text     NOT NULL,
    major      boolean  NOT NULL,
    grp        boolean  NOT NULL,
    shard      smallint NOT NULL DEFAULT 0,
    n          bigint   NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX case_counters_open_key ON case_counters_open (area_code, type, step, level, major, grp, shard);
CREATE INDEX case_counters_open_level_idx ON case_counters_open (area_level, area_code text_pattern_ops);

CREATE TABLE case_counters_area_month (
    area_code  text     NOT NULL,
    area_level smallint NOT NULL,
    month      date     NOT NULL,            -- first day of the reported month, China time
    shard      smallint NOT NULL DEFAULT 0,
    n          bigint   NOT NULL DEFAULT 0,  -- reported
    resolved_n bigint   NOT NULL DEFAULT 0,  -- of which resolved
    sat_sum    bigint   NOT NULL DEFAULT 0,
    sat_n      bigint   NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX case_counters_area_month_key ON case_counters_area_month (area_code, month, shard);
CREATE INDEX case_counters_area_month_level_idx
    ON case_counters_area_month (area_level, month, area_code text_pattern_ops);

CREATE TABLE case_counters_area_day (
    area_code     text     NOT NULL,
    area_level    smallint NOT NULL,
    day           date     NOT NULL,         -- China time
    shard         smallint NOT NULL DEFAULT 0,
    n             bigint   NOT NULL DEFAULT 0, -- reported on the day
    resolved_n    bigint   NOT NULL DEFAULT 0, -- of which resolved (by now)
    sat_sum       bigint   NOT NULL DEFAULT 0,
    sat_n         bigint   NOT NULL DEFAULT 0,
    resolved_on_n bigint   NOT NULL DEFAULT 0  -- resolved (closed_at) on the day, whenever reported
);
CREATE UNIQUE INDEX case_counters_area_day_key ON case_counters_area_day (area_code, day, shard);
CREATE INDEX case_counters_area_day_level_idx ON case_counters_area_day (area_level, area_code text_pattern_ops, day);

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
    -- the league's / city's root (level 0): the 4-digit prefix its banners' codes share (034_league_root.sql)
    FROM (VALUES (left(banner, 4), 0), (banner, 1), (town, 2), (village, 3), (grid, 4)) v(code, lvl)
    WHERE v.code IS NOT NULL
$$;

-- The month a day falls in (its first day): the key of the monthly grains.
CREATE FUNCTION yitu_month(day date) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT date_trunc('month', day)::date $$;

-- The daily counters of every case, as a full count computes them (rebuild and check).
CREATE VIEW case_counters_recount AS
SELECT k.area_code, k.area_level, k.day, k.resolved_day, c.type, c.step, c.level, k.major, k.grp, k.resolved,
       count(*) AS n, coalesce(sum(c.satisfaction), 0) AS sat_sum, count(c.satisfaction) AS sat_n
FROM cases c,
     yitu_counter_keys(c.reported_at, c.closed_at, c.outcome, c.severity, c.flags,
                       c.grid_code, c.village_code, c.town_code, c.banner_code) k
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10;

-- The coarse grains as groupings of the daily counters (summed over their shards): what the
-- rebuild writes and the check compares with. The triggers group their delta the same way.
CREATE VIEW case_counters_by_month AS
SELECT area_code, area_level, yitu_month(day) AS month, yitu_month(resolved_day) AS resolved_month, type, step,
       level, resolved, sum(n)::bigint AS n, sum(sat_sum)::bigint AS sat_sum, sum(sat_n)::bigint AS sat_n
FROM case_counters
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;

CREATE VIEW case_counters_by_open AS
SELECT area_code, area_level, type, step, level, major, grp, sum(n)::bigint AS n
FROM case_counters
WHERE yitu_step_open(step)
GROUP BY 1, 2, 3, 4, 5, 6, 7;

CREATE VIEW case_counters_by_area_month AS
SELECT area_code, area_level, yitu_month(day) AS month, sum(n)::bigint AS n,
       coalesce(sum(n) FILTER (WHERE resolved), 0)::bigint AS resolved_n,
       sum(sat_sum)::bigint AS sat_sum, sum(sat_n)::bigint AS sat_n
FROM case_counters
GROUP BY 1, 2, 3;

CREATE VIEW case_counters_by_area_day AS
SELECT area_code, area_level, day, sum(n)::bigint AS n, sum(resolved_n)::bigint AS resolved_n,
       sum(sat_sum)::bigint AS sat_sum, sum(sat_n)::bigint AS sat_n, sum(resolved_on_n)::bigint AS resolved_on_n
FROM (
    SELECT area_code, area_level, day, n, CASE WHEN resolved THEN n ELSE 0 END AS resolved_n, sat_sum, sat_n,
           0 AS resolved_on_n
    FROM case_counters
    UNION ALL
    SELECT area_code, area_level, resolved_day, 0, 0, 0, 0, n FROM case_counters WHERE resolved_day IS NOT NULL
) d
GROUP BY 1, 2, 3;

-- Adds the counters of ``news`` and takes away those of ``olds`` in every grain, in one
-- statement: one delta per key, and a key whose delta is zero is not written (an UPDATE that
-- changes none of a grain's columns writes nothing to it). Keys in order, so two transactions
-- lock the rows they share in the same order and cannot deadlock on them. PL/pgSQL, not SQL: it
-- keeps the statement's plan from call to call (a SQL function plans it again on every intake:
-- 1.5 → 1.1 ms of trigger time per single intake, docs/performance.md).
CREATE FUNCTION yitu_counters_add(olds cases[], news cases[], shard_no smallint) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN

    WITH d AS (
        SELECT -1 AS sign, o.* FROM unnest(olds) o
        UNION ALL
        SELECT 1 AS sign, n.* FROM unnest(news) n
    ),
    delta AS MATERIALIZED (
        SELECT k.area_code, k.area_level, k.day, k.resolved_day, d.type, d.step, d.level, k.major, k.grp,
               k.resolved, sum(d.sign) AS n, coalesce(sum(d.sign * d.satisfaction), 0) AS sat_sum,
               coalesce(sum(d.sign) FILTER (WHERE d.satisfaction IS NOT NULL), 0) AS sat_n
        FROM d,
             yitu_counter_keys(d.reported_at, d.closed_at, d.outcome, d.severity, d.flags,
                               d.grid_code, d.village_code, d.town_code, d.banner_code) k
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    ),
    by_month AS (  -- as case_counters_by_month
        INSERT INTO case_counters_month AS cc
            (area_code, area_level, month, resolved_month, type, step, level, resolved, shard, n, sat_sum, sat_n)
        SELECT area_code, area_level, yitu_month(day), yitu_month(resolved_day), type, step, level, resolved,
               shard_no, sum(n), sum(sat_sum), sum(sat_n)
        FROM delta
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
        HAVING sum(n) <> 0 OR sum(sat_sum) <> 0 OR sum(sat_n) <> 0
        ORDER BY 1, 3, 4, 5, 6, 7, 8
        ON CONFLICT (area_code, month, resolved_month, type, step, level, resolved, shard)
        DO UPDATE SET n = cc.n + excluded.n, sat_sum = cc.sat_sum + excluded.sat_sum, sat_n = cc.sat_n + excluded.sat_n
    ),
    by_open AS (  -- as case_counters_by_open
        INSERT INTO case_counters_open AS cc (area_code, area_level, type, step, level, major, grp, shard, n)
        SELECT area_code, area_level, type, step, level, major, grp, shard_no, sum(n)
        FROM delta
        WHERE yitu_step_open(step)
        GROUP BY 1, 2, 3, 4, 5, 6, 7
        HAVING sum(n) <> 0
        ORDER BY 1, 3, 4, 5, 6, 7
        ON CONFLICT (area_code, type, step, level, major, grp, shard) DO UPDATE SET n = cc.n + excluded.n
    ),
    by_area_month AS (  -- as case_counters_by_area_month
        INSERT INTO case_counters_area_month AS cc (area_code, area_level, month, shard, n, resolved_n, sat_sum, sat_n)
        SELECT area_code, area_level, yitu_month(day), shard_no, sum(n), coalesce(sum(n) FILTER (WHERE resolved), 0),
               sum(sat_sum), sum(sat_n)
        FROM delta
        GROUP BY 1, 2, 3
        HAVING sum(n) <> 0 OR coalesce(sum(n) FILTER (WHERE resolved), 0) <> 0 OR sum(sat_sum) <> 0
            OR sum(sat_n) <> 0
        ORDER BY 1, 3
        ON CONFLICT (area_code, month, shard)
        DO UPDATE SET n = cc.n + excluded.n, resolved_n = cc.resolved_n + excluded.resolved_n,
                      sat_sum = cc.sat_sum + excluded.sat_sum, sat_n = cc.sat_n + excluded.sat_n
    ),
    by_area_day AS (  -- as case_counters_by_area_day
        INSERT INTO case_counters_area_day AS cc
            (area_code, area_level, day, shard, n, resolved_n, sat_sum, sat_n, resolved_on_n)
        SELECT area_code, area_level, day, shard_no, sum(n), sum(resolved_n), sum(sat_sum), sum(sat_n),
               sum(resolved_on_n)
        FROM (
            SELECT area_code, area_level, day, n, CASE WHEN resolved THEN n ELSE 0 END AS resolved_n, sat_sum,
                   sat_n, 0 AS resolved_on_n
            FROM delta
            UNION ALL
            SELECT area_code, area_level, resolved_day, 0, 0, 0, 0, n FROM delta WHERE resolved_day IS NOT NULL
        ) dd
        GROUP BY 1, 2, 3
        HAVING sum(n) <> 0 OR sum(resolved_n) <> 0 OR sum(sat_sum) <> 0 OR sum(sat_n) <> 0
            OR sum(resolved_on_n) <> 0
        ORDER BY 1, 3
        ON CONFLICT (area_code, day, shard)
        DO UPDATE SET n = cc.n + excluded.n, resolved_n = cc.resolved_n + excluded.resolved_n,
                      sat_sum = cc.sat_sum + excluded.sat_sum, sat_n = cc.sat_n + excluded.sat_n,
                      resolved_on_n = cc.resolved_on_n + excluded.resolved_on_n
    )
    INSERT INTO case_counters AS cc
        (area_code, area_level, day, resolved_day, type, step, level, major, grp, resolved, shard, n, sat_sum, sat_n)
    SELECT area_code, area_level, day, resolved_day, type, step, level, major, grp, resolved, shard_no,
           n, sat_sum, sat_n
    FROM delta
    WHERE n <> 0 OR sat_sum <> 0 OR sat_n <> 0
    ORDER BY area_code, day, resolved_day, type, step, level, major, grp, resolved
    ON CONFLICT (area_code, day, resolved_day, type, step, level, major, grp, resolved, shard)
    DO UPDATE SET n = cc.n + excluded.n, sat_sum = cc.sat_sum + excluded.sat_sum, sat_n = cc.sat_n + excluded.sat_n;
END $$;

CREATE FUNCTION yitu_counters_apply() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    -- yitu.counter_shards: the number of shards (8; bench/bench_kpi.py --hot sets 1 to measure
    -- what the sharding saves).
    shard_no smallint := (txid_current()
                          % coalesce(nullif(current_setting('yitu.counter_shards', true), '')::int, 8))::smallint;
BEGIN
    -- yitu.counters_bulk = on (set for its transaction only): a bulk load (the demo seeding) skips
    -- the counters, then rebuilds them once in the same transaction (yitu_counters_rebuild).
    IF current_setting('yitu.counters_bulk', true) = 'on' THEN
        RETURN NULL;
    END IF;
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
    DELETE FROM case_counters_month;
    DELETE FROM case_counters_open;
    DELETE FROM case_counters_area_month;
    DELETE FROM case_counters_area_day;
    RETURN NULL;
END $$;
CREATE TRIGGER yitu_counters_truncate AFTER TRUNCATE ON cases
    FOR EACH STATEMENT EXECUTE FUNCTION yitu_counters_truncate();

-- Every counter recomputed from the cases, one row per key (shard 0, no row at zero): the daily
-- rows from a full count, the coarse grains from the daily rows. ``yitu kpi rebuild`` and the bulk
-- seeding (with the triggers off) call it; the caller holds the cases still. The daily row count.
CREATE FUNCTION yitu_counters_rebuild() RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    rows bigint;
BEGIN
    DELETE FROM case_counters;
    DELETE FROM case_counters_month;
    DELETE FROM case_counters_open;
    DELETE FROM case_counters_area_month;
    DELETE FROM case_counters_area_day;
    -- In key order: an area's rows lie together on disk, so a cold read of one area touches few pages.
    INSERT INTO case_counters
        (area_code, area_level, day, resolved_day, type, step, level, major, grp, resolved, n, sat_sum, sat_n)
    SELECT area_code, area_level, day, resolved_day, type, step, level, major, grp, resolved, n, sat_sum, sat_n
    FROM case_counters_recount
    ORDER BY area_code, day;
    GET DIAGNOSTICS rows = ROW_COUNT;
    INSERT INTO case_counters_month
        (area_code, area_level, month, resolved_month, type, step, level, resolved, n, sat_sum, sat_n)
    SELECT * FROM case_counters_by_month ORDER BY area_code, month;
    INSERT INTO case_counters_open (area_code, area_level, type, step, level, major, grp, n)
    SELECT * FROM case_counters_by_open WHERE n <> 0;
    INSERT INTO case_counters_area_month (area_code, area_level, month, n, resolved_n, sat_sum, sat_n)
    SELECT * FROM case_counters_by_area_month ORDER BY area_level, month, area_code;  -- as the choropleth reads
    INSERT INTO case_counters_area_day (area_code, area_level, day, n, resolved_n, sat_sum, sat_n, resolved_on_n)
    SELECT * FROM case_counters_by_area_day ORDER BY area_code, day;
    RETURN rows;
END $$;

-- The whole months inside the days [first, after), as [m_first, m_after): a period's counts are
-- the monthly rows of those months plus the daily rows of [first, m_first) and [m_after, after).
-- No whole month inside: m_first = m_after = after (all from the daily rows).
CREATE FUNCTION yitu_month_span(first date, after date, OUT m_first date, OUT m_after date)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN s < e THEN s ELSE after END, CASE WHEN s < e THEN e ELSE after END
    FROM (SELECT CASE WHEN first = yitu_month(first) THEN first
                      ELSE (yitu_month(first) + interval '1 month')::date END AS s,
                 yitu_month(after) AS e) b
$$;

-- The cases of one area reported on the days [first, after) (NULL: open-ended), as counter rows:
-- the whole months inside the period from the monthly counters, the days before and after them
-- from the daily ones. Three plain index ranges (no join on the bounds), so the planner reads
-- only the rows of the period; inlined into the caller's query.
CREATE FUNCTION yitu_counters_reported(code text, first date, after date)
RETURNS TABLE (type text, step text, level text, resolved boolean, n bigint, sat_sum bigint, sat_n bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT k.type, k.step, k.level, k.resolved, k.n, k.sat_sum, k.sat_n
    FROM case_counters_month k
    WHERE k.area_code = code
      AND k.month >= (yitu_month_span(coalesce(first, '-infinity'), coalesce(after, 'infinity'))).m_first
      AND k.month < (yitu_month_span(coalesce(first, '-infinity'), coalesce(after, 'infinity'))).m_after
    UNION ALL
    SELECT k.type, k.step, k.level, k.resolved, k.n, k.sat_sum, k.sat_n
    FROM case_counters k
    WHERE k.area_code = code AND k.day >= coalesce(first, '-infinity')
      AND k.day < (yitu_month_span(coalesce(first, '-infinity'), coalesce(after, 'infinity'))).m_first
    UNION ALL
    SELECT k.type, k.step, k.level, k.resolved, k.n, k.sat_sum, k.sat_n
    FROM case_counters k
    WHERE k.area_code = code AND k.day < coalesce(after, 'infinity')
      AND k.day >= (yitu_month_span(coalesce(first, '-infinity'), coalesce(after, 'infinity'))).m_after
$$;

-- The cases of one area resolved on the days [first, after) (NULL: open-ended), by handling
-- level: whole months from the monthly counters, the ragged ends from the daily ones.
CREATE FUNCTION yitu_counters_resolved(code text, first date, after date)
RETURNS TABLE (level text, n bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT k.level, k.n
    FROM case_counters_month k
    WHERE k.area_code = code
      AND k.resolved_month >= (yitu_month_span(coalesce(first, '-infinity'), coalesce(after, 'infinity'))).m_first
      AND k.resolved_month < (yitu_month_span(coalesce(first, '-infinity'), coalesce(after, 'infinity'))).m_after
    UNION ALL
    SELECT k.level, k.n
    FROM case_counters k
    WHERE k.area_code = code AND k.resolved_day >= coalesce(first, '-infinity')
      AND k.resolved_day < (yitu_month_span(coalesce(first, '-infinity'), coalesce(after, 'infinity'))).m_first
    UNION ALL
    SELECT k.level, k.n
    FROM case_counters k
    WHERE k.area_code = code AND k.resolved_day < coalesce(after, 'infinity')
      AND k.resolved_day >= (yitu_month_span(coalesce(first, '-infinity'), coalesce(after, 'infinity'))).m_after
$$;

-- Today's cases, counted once.
SELECT yitu_counters_rebuild();

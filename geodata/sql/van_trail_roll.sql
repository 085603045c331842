-- Roll each van's fixes stored since the end of its trail (van_trail_until) into van_trail,
-- simplified to ~5 m (0.00005°, as layer_vans.sql) with each kept fix's time carried as its M
-- (040_van_trail.sql): the line goes on from the trail's newest point and the point taken off it
-- (%(taken)s: van_trail_take.sql, the same transaction), so those two and the new fixes are
-- simplified together, and what the simplification keeps goes (back) on the trail.
-- A van's pings come in order (the intake locks its row: two batches of one van never
-- interleave), so the trail's end moves to the newest fix rolled; a fix that comes later for an
-- earlier time is in the history only, as it never moves the van either. A fix stamped in the
-- future waits for its time. At most %(per_van)s fixes of a van per roll, oldest first: a van
-- %(window)s behind (the first roll of a van, a scheduler that was stopped) catches up roll by roll.
-- Per van, the points kept and the fixes they stand for.
WITH taken AS (
    SELECT b.van, b.at, ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326) AS geom
    FROM json_to_recordset(%(taken)s::json) AS b(van text, at timestamptz, lon float8, lat float8)
),
fixes AS (
    SELECT v.id AS van_id, p.recorded_at AS at, p.geom
    FROM vans v
    LEFT JOIN van_trail_until t ON t.van_id = v.id
    CROSS JOIN LATERAL (  -- per van, by the history's key (van_id, recorded_at): never a scan of it
        SELECT p.recorded_at, p.geom
        FROM van_positions p
        WHERE p.van_id = v.id AND p.recorded_at > greatest(t.until, now() - %(window)s) AND p.recorded_at <= now()
        ORDER BY p.recorded_at
        LIMIT %(per_van)s
    ) p
    WHERE v.last_seen_at > coalesce(t.until, '-infinity'::timestamptz)
),
vans_rolled AS (
    SELECT van_id FROM fixes UNION SELECT van FROM taken
),
anchor AS (  -- the trail's newest point left: where the line goes on from
    SELECT r.van_id, a.at, a.geom
    FROM vans_rolled r
    CROSS JOIN LATERAL (SELECT x.at, x.geom FROM van_trail x WHERE x.van_id = r.van_id ORDER BY x.at DESC LIMIT 1) a
),
lines AS (
    SELECT c.van_id,
           ST_Simplify(ST_MakeLine(ST_MakePointM(ST_X(c.geom), ST_Y(c.geom), extract(epoch FROM c.at))
                                   ORDER BY c.at), 0.00005, true) AS line
    FROM (
        SELECT van_id, at, geom FROM anchor
        UNION ALL SELECT van, at, geom FROM taken
        UNION ALL SELECT van_id, at, geom FROM fixes
    ) c
    GROUP BY c.van_id
),
kept AS (
    INSERT INTO van_trail (van_id, at, geom)
    SELECT l.van_id, to_timestamp(ST_M(d.geom)), ST_SetSRID(ST_Force2D(d.geom), 4326)
    FROM lines l, ST_DumpPoints(l.line) d
    ON CONFLICT (van_id, at) DO NOTHING  -- the anchor, already there
    RETURNING van_id
),
ends AS (
    INSERT INTO van_trail_until (van_id, until)
    SELECT van_id, max(at) FROM fixes GROUP BY van_id
    ON CONFLICT (van_id) DO UPDATE SET until = greatest(van_trail_until.until, excluded.until)
    RETURNING van_id
)
SELECT r.van_id,
       (SELECT count(*) FROM kept k WHERE k.van_id = r.van_id) AS points,
       (SELECT count(*) FROM fixes f WHERE f.van_id = r.van_id) AS fixes,
       (SELECT count(*) FROM ends) AS vans
FROM vans_rolled r
ORDER BY r.van_id

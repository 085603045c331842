-- Roll each van's fixes stored since the end of its trail (van_trail_until) into van_trail,
-- simplified to ~5 m (0.00005°, as layer_vans.sql) with each kept fix's time carried as its M
-- (040_van_trail.sql). A van's pings come in order (the intake locks its row: two batches of one
-- van never interleave), so the trail's end moves to the newest fix rolled; a fix that comes
-- later for an earlier time is in the history only, as it never moves the van either. A fix
-- stamped in the future waits for its time. The first roll of a van reaches %(window)s back
-- (the longest trail the layer draws). One statement for every van; per van, the points kept
-- and the fixes they stand for.
WITH chunk AS (
    SELECT v.id AS van_id, p.recorded_at, p.geom
    FROM vans v
    LEFT JOIN van_trail_until t ON t.van_id = v.id
    CROSS JOIN LATERAL (  -- per van, by the history's key (van_id, recorded_at): never a scan of it
        SELECT p.recorded_at, p.geom
        FROM van_positions p
        WHERE p.van_id = v.id AND p.recorded_at > greatest(t.until, now() - %(window)s) AND p.recorded_at <= now()
        OFFSET 0  -- kept a subquery, run per van: the planner would join the whole history
    ) p
    WHERE v.last_seen_at > coalesce(t.until, '-infinity'::timestamptz)
),
lines AS (
    SELECT van_id, max(recorded_at) AS until, count(*) AS fixes,
           ST_Simplify(ST_MakeLine(ST_MakePointM(ST_X(geom), ST_Y(geom), extract(epoch FROM recorded_at))
                                   ORDER BY recorded_at), 0.00005, true) AS line
    FROM chunk
    GROUP BY van_id
),
kept AS (
    INSERT INTO van_trail (van_id, at, geom)
    SELECT l.van_id, to_timestamp(ST_M(d.geom)), ST_SetSRID(ST_Force2D(d.geom), 4326)
    FROM lines l, ST_DumpPoints(l.line) d
    ON CONFLICT (van_id, at) DO NOTHING
    RETURNING van_id
),
ends AS (
    INSERT INTO van_trail_until (van_id, until)
    SELECT van_id, until FROM lines
    ON CONFLICT (van_id) DO UPDATE SET until = excluded.until
    RETURNING van_id
)
SELECT l.van_id, (SELECT count(*) FROM kept k WHERE k.van_id = l.van_id) AS points, l.fixes,
       (SELECT count(*) FROM ends) AS vans
FROM lines l
ORDER BY l.van_id

-- The first step of a roll (geodata/tracking.py roll_trails): of each van with fixes stored past
-- its trail's end, the trail's newest point is taken off, to be simplified again with those fixes
-- (van_trail_roll.sql): on a straight road it then goes, and the trail stays two points. A van's
-- only point stays (it is where the line goes on from).
DELETE FROM van_trail t
USING (
    SELECT v.id AS van_id, (SELECT max(x.at) FROM van_trail x WHERE x.van_id = v.id) AS at
    FROM vans v
    LEFT JOIN van_trail_until u ON u.van_id = v.id
    WHERE v.last_seen_at > coalesce(u.until, '-infinity'::timestamptz)
) n
WHERE t.van_id = n.van_id AND t.at = n.at
  AND EXISTS (SELECT 1 FROM van_trail y WHERE y.van_id = n.van_id AND y.at < n.at)
RETURNING t.van_id, t.at, ST_X(t.geom) AS lon, ST_Y(t.geom) AS lat

-- A van's pings in [since, until), oldest first, for replay (the primary key (van_id,
-- recorded_at) is the index; partitions outside the range are pruned).
SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat, recorded_at, speed_kmh, heading
FROM van_positions
WHERE van_id = %(van)s AND recorded_at >= %(since)s AND recorded_at < %(until)s
ORDER BY recorded_at
LIMIT %(limit)s

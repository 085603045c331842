-- A batch of GPS pings into the history, one statement: %(batch)s is the batch as one JSON array
-- of {van, time, lon, lat, speed, heading} (geodata/tracking.py: one text to send, where six arrays
-- cost psycopg four times the Python time to dump). A ping already stored (same van, same time) is
-- skipped; RETURNING tells which were new.
INSERT INTO van_positions (van_id, recorded_at, geom, speed_kmh, heading)
SELECT b.van, b.time, ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326), b.speed, b.heading
FROM json_to_recordset(%(batch)s::json)
     AS b(van text, time timestamptz, lon float8, lat float8, speed real, heading real)
ON CONFLICT (van_id, recorded_at) DO NOTHING
RETURNING van_id, recorded_at

-- A batch of GPS pings into the history, one statement: the arrays are the batch's columns.
-- A ping already stored (same van, same time) is skipped; RETURNING tells which were new.
INSERT INTO van_positions (van_id, recorded_at, geom, speed_kmh, heading)
SELECT b.van_id, b.recorded_at, ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326), b.speed_kmh, b.heading
FROM unnest(%(van)s::text[], %(time)s::timestamptz[], %(lon)s::float8[], %(lat)s::float8[],
            %(speed)s::real[], %(heading)s::real[]) AS b(van_id, recorded_at, lon, lat, speed_kmh, heading)
ON CONFLICT (van_id, recorded_at) DO NOTHING
RETURNING van_id, recorded_at

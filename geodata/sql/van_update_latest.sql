-- Move each van to its newest ping and add the distance its in-order pings covered. %(batch)s:
-- one JSON array of {van_id, recorded_at, lon, lat, speed_kmh, heading, km} (geodata/tracking.py).
UPDATE vans v
SET geom = ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326),
    heading = u.heading,
    speed_kmh = u.speed_kmh,
    last_seen_at = u.recorded_at,
    odometer_km = v.odometer_km + u.km,
    updated_at = now()
FROM json_to_recordset(%(batch)s::json)
     AS u(van_id text, recorded_at timestamptz, lon float8, lat float8, speed_kmh real, heading real, km float8)
WHERE v.id = u.van_id
RETURNING v.id, v.odometer_km, v.status

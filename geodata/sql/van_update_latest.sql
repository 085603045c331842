-- Move each van to its newest ping and add the distance its in-order pings covered. %(batch)s:
-- one JSON array of {van, time, lon, lat, speed, heading, km} (geodata/tracking.py _batch).
UPDATE vans v
SET geom = ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326),
    heading = u.heading,
    speed_kmh = u.speed,
    last_seen_at = u.time,
    odometer_km = v.odometer_km + u.km,
    updated_at = now()
FROM json_to_recordset(%(batch)s::json)
     AS u(van text, time timestamptz, lon float8, lat float8, speed real, heading real, km float8)
WHERE v.id = u.van
RETURNING v.id, v.odometer_km, v.status

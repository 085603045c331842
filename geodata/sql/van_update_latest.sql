-- Move each van to its newest ping and add the distance its in-order pings covered.
UPDATE vans v
SET geom = ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326),
    heading = u.heading,
    speed_kmh = u.speed_kmh,
    last_seen_at = u.recorded_at,
    odometer_km = v.odometer_km + u.km,
    updated_at = now()
FROM unnest(%(van)s::text[], %(time)s::timestamptz[], %(lon)s::float8[], %(lat)s::float8[],
            %(speed)s::real[], %(heading)s::real[], %(km)s::float8[])
     AS u(van_id, recorded_at, lon, lat, speed_kmh, heading, km)
WHERE v.id = u.van_id
RETURNING v.id, v.odometer_km, v.status

-- Every van (or one) as the API shows it: status 'offline' when silent for longer than
-- %(offline_seconds)s seconds at %(at)s (yitu_van_status), else its dispatch status.
SELECT id, name, plate,
       yitu_van_status(status, last_seen_at, make_interval(secs => %(offline_seconds)s), %(at)s) AS status,
       status AS dispatch_status,
       ST_X(geom) AS lon, ST_Y(geom) AS lat, heading, speed_kmh, last_seen_at, odometer_km, cases_mediated
FROM vans
WHERE %(id)s::text IS NULL OR id = %(id)s
ORDER BY id

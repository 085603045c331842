-- The vans of a batch, locked in id order (so concurrent batches cannot deadlock), with the
-- latest position that their new pings continue from.
SELECT id, ST_X(geom) AS lon, ST_Y(geom) AS lat, last_seen_at, odometer_km, status
FROM vans
WHERE id = ANY(%(ids)s)
ORDER BY id
FOR UPDATE

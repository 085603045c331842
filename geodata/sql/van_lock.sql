-- The vans of a batch, locked in id order (so concurrent batches cannot deadlock), with the
-- latest position that their new pings continue from, and their banner (NULL: the league's;
-- 039_van_banner.sql), which their ``van.moved`` events carry so a banner's screens get only theirs.
SELECT id, ST_X(geom) AS lon, ST_Y(geom) AS lat, last_seen_at, odometer_km, status,
       yitu_van_banner(base_center_id) AS banner
FROM vans
WHERE id = ANY(%(ids)s)
ORDER BY id
FOR UPDATE

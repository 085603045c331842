-- Every van (or one) as the API shows it: status 'offline' when silent for longer than
-- %(offline_seconds)s seconds at %(at)s (yitu_van_status), else its dispatch status.
-- Only the vans a reader scoped to %(scope)s sees: its banner's and the league's
-- (yitu_van_in_scope, 039_van_banner.sql); ``banner`` is the van's (NULL: the league's).
SELECT id, name, plate,
       yitu_van_status(status, last_seen_at, make_interval(secs => %(offline_seconds)s), %(at)s) AS status,
       status AS dispatch_status,
       ST_X(geom) AS lon, ST_Y(geom) AS lat, heading, speed_kmh, last_seen_at, odometer_km, cases_mediated,
       yitu_van_banner(base_center_id) AS banner
FROM vans
WHERE (%(id)s::text IS NULL OR id = %(id)s)
  AND yitu_van_in_scope(%(scope)s::text, yitu_van_banner(base_center_id))
ORDER BY id

-- The k vans nearest to a point by ellipsoidal distance from their latest known position.
-- A banner runs a handful of vans, so every located van is measured exactly: no index needed.
-- Only the vans a reader scoped to %(scope)s sees (yitu_van_in_scope, 039_van_banner.sql).
WITH p AS (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) AS g)
SELECT v.id, v.name, v.status, ST_X(v.geom) AS lon, ST_Y(v.geom) AS lat, v.last_seen_at,
       ST_DistanceSpheroid(v.geom, p.g, 'SPHEROID["WGS 84",6378137,298.257223563]') AS distance_m
FROM vans v, p
WHERE v.geom IS NOT NULL
  AND (%(status)s::text IS NULL OR v.status = %(status)s)
  AND yitu_van_in_scope(%(scope)s::text, yitu_van_banner(v.base_center_id))
ORDER BY distance_m, v.id
LIMIT %(k)s

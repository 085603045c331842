-- Cameras within %(radius)s metres of a point, of those a reader scoped to %(scope)s sees (its
-- area's: a case near a town's edge does not show the next town's cameras). The GiST index does the work: a box in degrees,
-- computed once and slightly larger than the circle, selects the candidates; only those get the
-- exact ellipsoidal distance (no geography cast of every row).
WITH p AS (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) AS g),
box AS (
    SELECT ST_MakeEnvelope(
        %(lon)s - %(radius)s / (110000.0 * cos(radians(least(abs(%(lat)s::float8), 89.0)))),
        %(lat)s - %(radius)s / 110000.0,
        %(lon)s + %(radius)s / (110000.0 * cos(radians(least(abs(%(lat)s::float8), 89.0)))),
        %(lat)s + %(radius)s / 110000.0,
        4326) AS b
),
cand AS (
    SELECT c.id, c.device_code, c.name, c.kind, c.status, c.stream_url, c.area_code, c.geom,
           ST_DistanceSpheroid(c.geom, p.g, 'SPHEROID["WGS 84",6378137,298.257223563]') AS distance_m
    FROM cameras c, p, box
    WHERE c.geom && box.b AND yitu_area_in_scope(%(scope)s::text, c.area_code)
)
SELECT id, device_code, name, kind, status, stream_url, area_code,
       ST_X(geom) AS lon, ST_Y(geom) AS lat, distance_m
FROM cand
WHERE distance_m <= %(radius)s
ORDER BY distance_m, id

-- The vans the simulator can drive (yitu simulate), in id order: where each is now and its base
-- (its mediation centre; a van without one is based where it stands).
SELECT v.id, v.name,
       ST_X(v.geom) AS lon, ST_Y(v.geom) AS lat,
       ST_X(coalesce(m.geom, v.geom)) AS base_lon, ST_Y(coalesce(m.geom, v.geom)) AS base_lat,
       m.name AS base_name
FROM vans v
LEFT JOIN mediation_centers m ON m.id = v.base_center_id
ORDER BY v.id

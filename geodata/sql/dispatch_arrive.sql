-- Arrival (到达现场), one statement per GPS batch: each van's newest in-order fix of the batch
-- (%(fixes)s: a JSON array of {van, time, lon, lat}, the GPS batch's shape) that lies within %(radius)s metres
-- (ellipsoidal) of the case of the van's en_route dispatch puts that dispatch on site — arrived at the fix's time — and the van too. A fix taken
-- before the dispatch was made does not count (a buffered old ping is not an arrival). The
-- caller holds the batch's van rows locked, and every dispatch write locks its van first.
WITH fix AS (
    SELECT f.van AS van_id, f.time AS recorded_at, f.lon, f.lat
    FROM json_to_recordset(%(fixes)s::json) AS f(van text, time timestamptz, lon float8, lat float8)
),
hit AS (
    SELECT d.id, f.recorded_at, f.lon, f.lat
    FROM fix f
    JOIN dispatches d ON d.van_id = f.van_id AND d.status = 'en_route'
    JOIN cases c ON c.id = d.case_id
    WHERE f.recorded_at >= d.created_at
      AND ST_DWithin(c.geom::geography, ST_SetSRID(ST_MakePoint(f.lon, f.lat), 4326)::geography, %(radius)s)
),
arrived AS (
    UPDATE dispatches d SET status = 'on_site', arrived_at = h.recorded_at
    FROM hit h
    WHERE d.id = h.id
    RETURNING d.id, d.van_id, d.case_code, d.arrived_at, h.lon, h.lat
),
van AS (
    UPDATE vans v SET status = 'on_site', updated_at = now()
    FROM arrived a
    WHERE v.id = a.van_id
)
SELECT id, van_id, case_code, arrived_at, lon, lat FROM arrived ORDER BY van_id

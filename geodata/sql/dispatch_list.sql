-- Dispatches as the API shows them, newest first: one (%(id)s), or all, only the active ones
-- (%(active)s), one van's or one case's, within an area scope (%(area)s: a code of any level
-- of the case's grid chain; NULL: everywhere). The case's parties come along for masking the notes
-- (geodata/masking.py finds their names in the text); the API never shows them here.
SELECT d.id, d.case_id, d.case_code, d.van_id, v.name AS van_name, v.plate, d.status, d.created_at, d.created_by,
       d.note, d.distance_m, d.eta_s, d.method, d.arrived_at, d.ended_at, d.ended_by, d.end_note, d.result,
       d.outcome, c.step AS case_step, ST_X(c.geom) AS case_lon, ST_Y(c.geom) AS case_lat,
       c.grid_code, c.village_code, c.town_code, c.banner_code, c.parties
FROM dispatches d
JOIN vans v ON v.id = d.van_id
JOIN cases c ON c.id = d.case_id
WHERE (%(id)s::bigint IS NULL OR d.id = %(id)s)
  AND (NOT %(active)s::boolean OR d.status IN ('en_route', 'on_site'))
  AND (%(van)s::text IS NULL OR d.van_id = %(van)s)
  AND (%(case)s::text IS NULL OR d.case_code = %(case)s)
  AND yitu_in_scope(%(area)s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)
ORDER BY d.created_at DESC, d.id DESC
LIMIT %(limit)s OFFSET %(offset)s

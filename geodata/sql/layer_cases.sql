-- Case pins inside a box: the open cases (and, with %(closed_hours)s, those closed recently), with
-- what the pin shows: step colour, type (its glyph comes with the page), overdue ring, the triage's
-- severity and the 群体性 flag (a major or group case wears a mark). No personal data here.
-- One row per pin (a point layer of rows, layers/base.py Points): lon, lat, then a column per
-- property; no JSON is built here (the app writes geobuf or GeoJSON straight from the rows).
-- At most %(max_features)s pins (the cap + 1) are read, so the caller refuses a box with too many
-- without counting twice.
-- %(scope)s: the reader's area (NULL: everywhere), whatever the box.
SELECT round(ST_X(c.geom)::numeric, 6)::float8 AS lon, round(ST_Y(c.geom)::numeric, 6)::float8 AS lat,
       c.code, c.type, c.step, c.level,
       yitu_step_open(c.step) AND c.deadline < now() AS overdue,
       c.severity, 'group' = ANY(c.flags) AS "group"
FROM cases c
WHERE c.geom && ST_MakeEnvelope(%(minx)s, %(miny)s, %(maxx)s, %(maxy)s, 4326)
  AND yitu_in_scope(%(scope)s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)
  AND (yitu_step_open(c.step)
       OR (%(closed_hours)s > 0 AND c.step IN ('closed', 'evaluated') AND c.closed_at > now() - make_interval(hours => %(closed_hours)s)))
  AND (%(step)s::text IS NULL OR c.step = %(step)s)
  AND (%(type)s::text IS NULL OR c.type = %(type)s)
  AND (%(level)s::text IS NULL OR c.level = %(level)s)
  AND (%(severity)s::text IS NULL OR c.severity = %(severity)s)
  AND (NOT %(overdue_only)s OR (c.deadline < now() AND yitu_step_open(c.step)))
ORDER BY c.id
LIMIT %(max_features)s

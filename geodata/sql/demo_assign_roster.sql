-- The demo's open cases past dispatch (dispatched, handling) assigned to a mediator of the roster, as
-- the dispatch transition would have: one of the case's level in the case's own area at that level
-- (its cell, village, town or the banner), not a van's crew, who takes its type if any does; among
-- those, a fixed spread by case id so the load is shared. Deterministic: the same demo, the same
-- assignees. Each assignee is {"kind": "mediator", "id": "<id>", "name": ...} (025_roster.sql).
UPDATE cases c
SET assignee = (
    SELECT jsonb_build_object('kind', 'mediator', 'id', m.id::text, 'name', m.name)
    FROM mediators m
    WHERE m.active AND m.van_id IS NULL AND m.level = c.level
      AND m.area_code = CASE c.level WHEN 'grid' THEN c.grid_code WHEN 'village' THEN c.village_code
                                     WHEN 'town' THEN c.town_code ELSE c.banner_code END
    ORDER BY (c.type = ANY (m.specialties)) DESC, (m.id * 7919 + c.id) % 1009, m.id
    LIMIT 1)
WHERE c.step IN ('dispatched', 'handling') AND c.assignee IS NULL

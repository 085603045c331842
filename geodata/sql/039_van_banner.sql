-- A van belongs to a banner (issue 16 item 2): a banner's readers see and dispatch only their
-- banner's vans. The schema gives a van no area of its own; its banner is its base centre's
-- (vans.base_center_id → mediation_centers.area_code, whose first six digits are its banner's:
-- codes nest by prefix). A van with no base centre, or based at a centre of the league or city
-- itself (a 4-digit root code), is the league's own (市级): every reader of the league sees it
-- and any dispatcher may send it, as a city van serves every banner.
--
-- Read when asked, never stored: a centre re-imported with another area, or a van moved to
-- another base, is in its new banner at once, with no copy to keep in step. A banner runs a
-- handful of vans, so the per-van lookup costs nothing; with a NULL scope the planner folds
-- yitu_van_in_scope to TRUE and never calls yitu_van_banner.
CREATE FUNCTION yitu_van_banner(base_center_id bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN length(c.area_code) >= 6 THEN left(c.area_code, 6) END
    FROM mediation_centers c WHERE c.id = base_center_id
$$;

-- Is a van of ``banner`` (NULL: the league's) inside the reader's scope %(scope)s (NULL: the
-- whole territory)? Yes when the scope lies in the van's banner (the banner itself, or a town,
-- village or cell of it: a van roams its whole banner), when the scope holds the banner (the
-- root), or when the van is the league's. services/live.py (LiveEntry.visible_in) applies the
-- same rule to the vans' live events (their ``banner``), geodata/dispatch.py to a dispatch.
--
-- LANGUAGE sql, IMMUTABLE, one expression and not STRICT (as yitu_in_scope): inlined.
CREATE FUNCTION yitu_van_in_scope(scope text, banner text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT scope IS NULL OR banner IS NULL OR starts_with(scope, banner) OR starts_with(banner, scope) $$;

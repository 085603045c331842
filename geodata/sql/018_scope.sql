-- The area scope of a reader (services/identity.py Principal.area) in one place for every query:
-- a case is inside scope %(scope)s when the scope is NULL (the whole territory) or one of the
-- codes of the case's grid chain (any level). Queries pass the reader's area as a parameter and
-- filter in the WHERE clause, never rows in Python afterwards.
--
-- LANGUAGE sql, IMMUTABLE, one expression and not STRICT (as yitu_step_open): the planner inlines
-- it, so with a NULL scope it folds to TRUE and costs nothing.
CREATE FUNCTION yitu_in_scope(scope text, grid text, village text, town text, banner text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT scope IS NULL OR scope IN (grid, village, town, banner) $$;

-- An area (by its code) is inside the scope when its code starts with the scope's (codes nest
-- by prefix: a village's code begins with its town's).
CREATE FUNCTION yitu_area_in_scope(scope text, code text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT scope IS NULL OR starts_with(code, scope) $$;

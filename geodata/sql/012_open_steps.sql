-- The open steps (a case still being worked on: reported, accepted, dispatched, handling) in one
-- place for every query, as geodata/workflow.py OPEN_STEPS is for the Python side; a test checks
-- that the two agree on every step. A new step or a changed loop changes both, nothing else.
--
-- LANGUAGE sql, IMMUTABLE, one expression and not STRICT: the planner inlines the call, so
-- `yitu_step_open(c.step)` is planned exactly as the IN list it replaces (an index condition, a
-- FILTER clause), and an index whose predicate is the same call serves the queries that use it.
CREATE FUNCTION yitu_step_open(step text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT step IN ('reported', 'accepted', 'dispatched', 'handling') $$;

-- The open cases by deadline (the overdue sweep, the overdue figures): its predicate was the
-- complement of the list above; now it is the function, so the two cannot drift apart.
DROP INDEX cases_open_idx;
CREATE INDEX cases_open_idx ON cases (step, deadline) WHERE yitu_step_open(step);

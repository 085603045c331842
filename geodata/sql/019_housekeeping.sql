-- Housekeeping run by the app (services/scheduler.py) rather than by an operator:
-- * monthly partitions of the history tables are created ahead, so no row lands in the DEFAULT
--   partition (a month cannot be carved out of the default once it holds rows of that month);
-- * old GPS partitions may be dropped (YITU_VAN_POSITIONS_KEEP_MONTHS).
-- Like yitu_ensure_month_partitions (016_audit.sql), these run as SECURITY DEFINER: the app's role
-- (yitu_runtime) may call them, but may not create, drop or read partitions itself.

-- Drop the van_positions partitions that end on or before ``before`` (a month's first day).
-- Only van_positions: the case audit (case_events) is never dropped. Returns the dropped names.
CREATE FUNCTION yitu_drop_van_position_months(before date)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'van_positions'::regclass
          AND c.relname ~ '^van_positions_y[0-9]{4}m[0-9]{2}$'
          AND make_date(substr(c.relname, 16, 4)::int, substr(c.relname, 21, 2)::int, 1) + interval '1 month' <= before
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        RETURN NEXT part.relname;
    END LOOP;
END $$;
REVOKE EXECUTE ON FUNCTION yitu_drop_van_position_months(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION yitu_drop_van_position_months(date) TO yitu_runtime;

-- Rows that fell into the DEFAULT partitions (up to 1000 each): /healthz shows them; they should
-- stay 0. A function, since the app's role reads the history tables through their parents only.
CREATE FUNCTION yitu_rows_in_default()
RETURNS TABLE (parent text, n bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT 'case_events', (SELECT count(*) FROM (SELECT 1 FROM case_events_default LIMIT 1000) d)
    UNION ALL
    SELECT 'van_positions', (SELECT count(*) FROM (SELECT 1 FROM van_positions_default LIMIT 1000) d)
$$;
REVOKE EXECUTE ON FUNCTION yitu_rows_in_default() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION yitu_rows_in_default() TO yitu_runtime;

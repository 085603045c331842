-- Housekeeping run by the app (services/scheduler.py) rather than by an operator:
-- * monthly partitions of the history tables are created ahead, so no row lands in the DEFAULT
--   partition (a month cannot be carved out of the default once it holds rows of that month);
-- * old GPS partitions may be dropped (YITU_VAN_POSITIONS_KEEP_MONTHS).
-- Both run as SECURITY DEFINER: the app's own database role need not be allowed to create or
-- drop tables, only to call these two functions, which touch nothing but the two history tables.
ALTER FUNCTION yitu_ensure_month_partitions(regclass, date, date) SECURITY DEFINER SET search_path = public, pg_temp;

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

-- Monthly partitions for the append-only history tables (van_positions, case_events).
-- Call before loading a period's rows: a partition cannot be carved out of the default
-- partition once that holds rows of its range. Returns how many partitions were created.
CREATE FUNCTION yitu_ensure_month_partitions(parent regclass, first_day date, last_day date)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    month   date := date_trunc('month', first_day)::date;
    created integer := 0;
    part    text;
BEGIN
    IF parent NOT IN ('van_positions'::regclass, 'case_events'::regclass) THEN
        RAISE EXCEPTION 'yitu_ensure_month_partitions: % is not a partitioned history table', parent;
    END IF;
    WHILE month <= last_day LOOP
        part := format('%s_y%sm%s', parent::text, to_char(month, 'YYYY'), to_char(month, 'MM'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                           part, parent, month, (month + interval '1 month')::date);
            created := created + 1;
        END IF;
        month := (month + interval '1 month')::date;
    END LOOP;
    RETURN created;
END $$;

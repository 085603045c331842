-- Number the outbox rows this statement can see and nobody numbered yet (020_outbox.sql): the
-- next ``room`` of them in insert order (seq) get outbox ids base + 1, base + 2, … Only the relay's
-- leader runs this (geodata/outbox.py claim), in the transaction that also moves outbox_counter,
-- so the ids are gapless and committed before anything is published. A row whose transaction
-- commits later than a row inserted after it is simply numbered in a later round.
WITH todo AS (
    SELECT seq, row_number() OVER (ORDER BY seq) AS n
    FROM outbox
    WHERE outbox_id IS NULL
    ORDER BY seq
    LIMIT %(room)s
)
UPDATE outbox o SET outbox_id = %(base)s + todo.n
FROM todo
WHERE o.seq = todo.seq
RETURNING o.outbox_id, o.type, o.event::text

-- End (status 'ended') or cancel ('cancelled') an active visit and free its van, in one
-- statement; a visit that reached the case (%(was_on_site)s) counts as a case the van mediated.
WITH d AS (
    UPDATE dispatches
    SET status = %(status)s, ended_at = %(now)s, ended_by = %(actor)s, end_note = %(note)s,
        result = %(result)s, outcome = %(outcome)s
    WHERE id = %(id)s AND status IN ('en_route', 'on_site')
    RETURNING id, van_id
),
van AS (
    UPDATE vans v
    SET status = 'available', updated_at = %(now)s,
        cases_mediated = v.cases_mediated + CASE WHEN %(was_on_site)s THEN 1 ELSE 0 END
    FROM d
    WHERE v.id = d.van_id
)
SELECT id FROM d

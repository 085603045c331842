-- A new visit and its van on the way, in one statement (the van row is locked by the caller).
WITH van AS (
    UPDATE vans SET status = 'en_route', updated_at = %(now)s WHERE id = %(van)s
)
INSERT INTO dispatches (case_id, case_code, van_id, status, created_at, created_by, note, distance_m, eta_s, method)
VALUES (%(case_id)s, %(case)s, %(van)s, 'en_route', %(now)s, %(actor)s, %(note)s, %(distance_m)s, %(eta_s)s,
        %(method)s)
RETURNING id

-- The van a dispatch is about, locked for the rest of the transaction: every dispatch write
-- (create, arrive, end, cancel) takes this lock first, so they are serialised per van and the
-- lock order is always van → dispatch → case. ``shown`` is the status a screen shows (offline
-- when silent for longer than %(offline_seconds)s at %(at)s); ``active`` its active dispatch.
SELECT v.id, v.name, v.plate, v.status, v.last_seen_at,
       yitu_van_status(v.status, v.last_seen_at, make_interval(secs => %(offline_seconds)s), %(at)s) AS shown,
       (SELECT d.id FROM dispatches d
        WHERE d.van_id = v.id AND d.status IN ('en_route', 'on_site')) AS active
FROM vans v
WHERE v.id = %(van)s
FOR UPDATE OF v

-- The van a dispatch is about, locked for the rest of the transaction: every dispatch write
-- (create, arrive, end, cancel) takes this lock first, so they are serialised per van and the
-- lock order is always van → dispatch → case. ``shown`` is the status a screen shows (offline
-- when silent for longer than %(offline_seconds)s at %(at)s); ``active`` its active dispatch.
-- A van a dispatcher scoped to %(scope)s may not send (another banner's: yitu_van_in_scope,
-- 039_van_banner.sql) is not found, as an unknown one: nothing is locked, nothing written.
SELECT v.id, v.name, v.plate, v.status, v.last_seen_at,
       yitu_van_status(v.status, v.last_seen_at, make_interval(secs => %(offline_seconds)s), %(at)s) AS shown,
       (SELECT d.id FROM dispatches d
        WHERE d.van_id = v.id AND d.status IN ('en_route', 'on_site')) AS active
FROM vans v
WHERE v.id = %(van)s AND yitu_van_in_scope(%(scope)s::text, yitu_van_banner(v.base_center_id))
FOR UPDATE OF v

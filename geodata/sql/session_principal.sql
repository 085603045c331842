-- The principal behind a session cookie (by its SHA-256), if the session is alive: not ended, not past
-- its absolute expiry, not idle too long (yitu_session_fresh, 029: %(idle_seconds)s, a grid worker
-- %(field_idle_seconds)s, a screen never), and its user not disabled / its screen not revoked. Touches last_seen_at at most once a
-- %(touch_seconds)s, so a busy page does not write on every request.
WITH s AS (
    SELECT s.id, s.kind, s.user_id, s.screen_id, s.last_seen_at
    FROM sessions s
    LEFT JOIN users lu ON lu.id = s.user_id
    WHERE s.token_hash = %(hash)s
      AND s.ended_at IS NULL
      AND s.expires_at > now()
      AND yitu_session_fresh(s.kind, lu.role, s.last_seen_at, %(idle_seconds)s, %(field_idle_seconds)s)
), touched AS (
    UPDATE sessions t SET last_seen_at = now()
    FROM s
    WHERE t.id = s.id AND s.last_seen_at < now() - make_interval(secs => %(touch_seconds)s)
    RETURNING t.id
)
SELECT s.id AS session_id, s.kind,
       coalesce(u.id, sc.id) AS owner_id,
       coalesce(u.name, sc.name) AS name,
       CASE WHEN s.kind = 'screen' THEN 'screen' ELSE u.role END AS role,
       coalesce(u.area_code, sc.area_code) AS area,
       u.van_id,  -- a van crew member's van (028_van_crew.sql)
       (SELECT count(*) FROM touched) AS touched
FROM s
LEFT JOIN users u ON u.id = s.user_id AND u.disabled_at IS NULL
LEFT JOIN screens sc ON sc.id = s.screen_id AND sc.revoked_at IS NULL
WHERE u.id IS NOT NULL OR sc.id IS NOT NULL

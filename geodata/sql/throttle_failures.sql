-- The times of the most recent failed attempts of one kind for one account or one address ({column})
-- within the window, newest first, at most %(limit)s. For an account, failures before its last
-- success do not count (the owner signed in); for an address they all do (a guesser holding one
-- valid account must not reset its own count). The throttle holds while there are %(limit)s of them,
-- until the oldest of them leaves the window.
SELECT a.at
FROM signin_attempts a
WHERE a.{column} = %(key)s
  AND a.kind = %(kind)s
  AND NOT a.ok
  AND a.at > now() - make_interval(secs => %(window_seconds)s)
  AND (NOT %(reset_on_success)s OR a.at > coalesce((
        SELECT max(b.at) FROM signin_attempts b
        WHERE b.{column} = %(key)s AND b.kind = %(kind)s AND b.ok
      ), '-infinity'))
ORDER BY a.at DESC
LIMIT %(limit)s

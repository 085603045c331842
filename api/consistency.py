"""Read your writes: after a caller's write, its reads of the read-heavy paths go to the primary.

With a streaming replica (``YITU_DATABASE_READ_URL``) those paths read there
(services/runtime.py ``Services.reading``), and a replica replays the primary's commits a moment
later — up to ``YITU_REPLICA_MAX_LAG_S`` while it is used. The page that just acted (a dispatch,
a report, a transition) must not then reload its pins from before its own change. So:

- within a request, a write (geodata/db.py ``commit``, ``writing``) marks the request, and its
  reads after it go to the primary;
- a request that wrote — a committed write of the database layer, or any state-changing API call
  (POST/PUT/PATCH/DELETE under ``/api/``) answered below 400 (the intake lanes commit in a task of
  their own) — gets the cookie ``yitu_rw`` (HttpOnly, SameSite=Strict, Path=/, Secure over HTTPS)
  for :func:`services.replica.window_seconds` (max lag + the check's interval + 1 s: by then the
  replica, if used at all, has replayed the write); while the browser sends it back, that
  caller's reads go to the primary.

Chosen over a per-identity mark in Redis: a cookie costs no round trip on the read path, lives
with the browser (the page that acted, not every screen of the same account), works the same
across app processes behind nginx, and expires by itself. A bearer client (an integration) that
wants the same keeps the cookie like any cookie jar does. Without a replica nothing of this runs:
no cookie, no mark.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from starlette.types import Scope, Send

from geodata import db
from services.replica import window_seconds
from services.runtime import Services

COOKIE = "yitu_rw"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _changed_by_api(scope: Scope, status: int) -> bool:
    return scope["method"] not in SAFE_METHODS and scope["path"].startswith("/api/") and status < 400


def _cookie(seconds: float, secure: bool) -> bytes:
    text = f"{COOKIE}=1; Max-Age={max(1, round(seconds))}; Path=/; HttpOnly; SameSite=Strict"
    return (text + ("; Secure" if secure else "")).encode("latin-1")


@contextmanager
def reads_after_writes(scope: Scope, send: Send, svc: Services, cookie: str | None, secure: bool) -> Iterator[Send]:
    """Around one HTTP request (the guard's): the request's write mark, started from the caller's
    cookie (``cookie``: its value, None without one), and the ``send`` to use, which adds the cookie
    to the answer of a request that wrote. Without a replica: ``send`` as it is."""
    if svc.read_pool is None or scope["type"] != "http":
        yield send
        return
    seconds = window_seconds(svc.settings.replica_max_lag_s)
    with db.write_mark(earlier=cookie is not None) as mark:

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and (
                mark.wrote or _changed_by_api(scope, int(message.get("status", 500)))
            ):
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"set-cookie", _cookie(seconds, secure))],
                }
            await send(message)

        yield sending

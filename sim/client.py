"""The server as a phone or a terminal sees it: one call with retries and a back-off while the
server is away, the simulator's own tokens (made at start, revoked at the end), and the wait for
``/healthz``. Server answers (codes, 409 races, outages) are external: the loop reads them and
carries on.

Every write carries an ``Idempotency-Key`` (the caller's, or a new one), and a write whose answer
was lost (a connection error) or that the server asks to send again (503 ``outcome_unknown`` or
``service_unavailable``) is sent again at once with the same key, after ``Retry-After`` (at most
:data:`RETRY_AFTER_MAX_S`), up to :data:`WRITE_RETRIES` times: the server then answers what it did
the first time and does nothing twice."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg

log = logging.getLogger("yitu.sim")
DISPATCHER_NAME = "sim-dispatcher"
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0)
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WRITE_RETRIES = 3  # a write sent again with its key after a lost answer or a 503, before backing off
RETRY_AFTER_MAX_S = 5.0  # the longest Retry-After honoured (the loop waits for it)
LOST_ANSWER_WAIT_S = 0.5  # before sending a write again whose connection failed


def retry_after(value: str | None, default: float = 1.0, cap: float = RETRY_AFTER_MAX_S) -> float:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds; a date or junk: ``default``),
    at least 0 and at most ``cap``."""
    try:
        seconds = float(value) if value is not None else default
    except ValueError:
        seconds = default
    if math.isnan(seconds):
        seconds = default
    return min(max(seconds, 0.0), cap)


# --- the server, as a phone or a terminal sees it -------------------------------------------------


@dataclass
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def why(self) -> str:
        return f"{self.status} {self.body.get('error', '')}: {self.body.get('message', '')}".strip()


class Api:
    """JSON over HTTP with bearer tokens. A connection error, a timeout or a 5xx means "the server
    is away": the call returns None, and calls are skipped (backed off from) for a few seconds,
    longer while it stays away, so an outage costs the loop nothing."""

    def __init__(self, base_url: str, counts: Counter[str], stop: threading.Event | None = None) -> None:
        self._client = httpx.Client(
            base_url=base_url, timeout=httpx.Timeout(10.0, connect=3.0), headers={"User-Agent": "yitu-simulate"}
        )
        self.counts = counts
        self._stop = stop or threading.Event()  # set: no more waiting to retry
        self._failures = 0
        self._retry_at = 0.0
        self._down_since: float | None = None
        self._last_warned = 0.0

    def retry_in(self) -> float:
        return max(0.0, self._retry_at - time.monotonic())

    def call(
        self,
        method: str,
        path: str,
        token: str,
        body: Mapping[str, Any] | None = None,
        key: str | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Answer | None:
        """The answer, or None while the server is away. A write goes with ``key`` (default: a new
        one) and is sent again with it while its outcome is unknown (see the module)."""
        if time.monotonic() < self._retry_at:
            return None
        headers = {"Authorization": f"Bearer {token}"}
        write = method.upper() in WRITES
        if write:
            headers["Idempotency-Key"] = key or f"sim-{uuid.uuid4().hex}"
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        r = self._send(method, path, headers, body, params, extra, 1 + (WRITE_RETRIES if write else 0))
        if r is None:
            return None
        if r.status_code >= 500 or r.status_code == 429:
            self._trip(f"HTTP {r.status_code} on {method} {path}")
            return None
        self._recovered()
        try:
            data = r.json()
        except ValueError:
            data = {"message": r.text[:200]}
        if r.status_code >= 400:
            self.counts["http_4xx"] += 1
        return Answer(r.status_code, data if isinstance(data, dict) else {"items": data})

    def _send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
        extra: dict[str, Any],
        tries: int,
    ) -> httpx.Response | None:
        """The response, sent up to ``tries`` times while the outcome is unknown (a lost connection,
        a 503); None when the connection failed every time (the server is away: backed off from)."""
        r: httpx.Response | None = None
        for attempt in range(tries):
            again = attempt < tries - 1 and not self._stop.is_set()
            try:
                r = self._client.request(method, path, headers=headers, json=body, params=params, **extra)
            except httpx.TransportError as exc:
                if not again:
                    self._trip(f"{type(exc).__name__}: {exc}")
                    return None
                self.counts["write_retries"] += 1  # the answer is lost, maybe not the write: the same key again
                self._stop.wait(LOST_ANSWER_WAIT_S)
                continue
            self.counts["requests"] += 1
            if r.status_code != 503 or not again:
                break
            self.counts["write_retries"] += 1
            self._stop.wait(retry_after(r.headers.get("Retry-After")))
        return r

    def _trip(self, why: str) -> None:
        now = time.monotonic()
        self._failures += 1
        self.counts["http_failures"] += 1
        wait = BACKOFF_S[min(self._failures, len(BACKOFF_S)) - 1]
        self._retry_at = now + wait
        if self._down_since is None:
            self._down_since = self._last_warned = now
            self.counts["outages"] += 1
            log.warning("server unreachable (%s): backing off, the simulation goes on", why)
        elif now - self._last_warned >= 60:
            self._last_warned = now
            log.warning("server still unreachable after %.0f s (%s)", now - self._down_since, why)

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.info("server back after %.0f s", time.monotonic() - self._down_since)
        self._failures = 0
        self._retry_at = 0.0
        self._down_since = None

    def close(self) -> None:
        self._client.close()


# --- tokens ----------------------------------------------------------------------------------------


@dataclass
class Tokens:
    dispatcher: str
    vans: dict[str, str]
    ids: list[int]


def issue_tokens(dsn: str, van_ids: list[str]) -> Tokens:
    """A dispatcher token and one van token per van (named after it), straight into the database;
    they live in memory only and are revoked when the run ends."""
    from services.identity import create_token  # the API's own token format and hashing

    ids: list[int] = []
    with psycopg.connect(dsn) as conn:
        did, dispatcher = create_token(conn, name=DISPATCHER_NAME, role="dispatcher", area=None)
        ids.append(did)
        vans = {}
        for van in van_ids:
            vid, vans[van] = create_token(conn, name=van, role="van", area=None)
            ids.append(vid)
    return Tokens(dispatcher, vans, ids)


def revoke_tokens(dsn: str, ids: list[int]) -> None:
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = ANY(%s) AND revoked_at IS NULL", (ids,))
    except psycopg.Error as exc:
        log.warning("could not revoke the simulator's tokens %s: %s", ids, " ".join(str(exc).split()))


def wait_healthy(url: str, stop: threading.Event, timeout: float | None = None) -> bool:
    """Wait until ``GET /healthz`` answers 200 (or ``stop`` is set); True when it did."""
    began = time.monotonic()
    while not stop.is_set():
        try:
            status = httpx.get(url.rstrip("/") + "/healthz", timeout=3).status_code
        except httpx.HTTPError:
            status = None  # not up yet: that is what we wait for
        if status == 200:
            return True
        if timeout is not None and time.monotonic() - began > timeout:
            return False
        stop.wait(0.5)
    return False

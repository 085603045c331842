"""Is the streaming replica fit to serve reads? One background check a second, per process.

``YITU_DATABASE_READ_URL`` names a hot standby of the primary. The read-heavy paths read there
(services/runtime.py ``Services.reading``) while :attr:`ReplicaMonitor.usable`: the replica answers,
is in recovery (a standby, not a promoted copy that went its own way) and lags the primary by no
more than ``YITU_REPLICA_MAX_LAG_S``. Otherwise reads go to the primary until it is back — one log
line at each change, and ``/healthz`` shows the state (api/health.py).

**How the lag is measured.** Every check reads the primary's WAL position
(``pg_current_wal_lsn()``) and keeps it with the time it was read; then the replica's replayed
position (``pg_last_wal_replay_lsn()``, beside ``pg_last_wal_receive_lsn()`` and
``pg_last_xact_replay_timestamp()`` for the record). The replica is as old as the newest primary
position it has replayed: lag = now − the time of the latest kept sample at or below its replay
position (0 when it has replayed the position just read). Unlike "now − the last replayed
transaction's time", an idle primary does not look like a lagging replica, and a replica that
stopped replaying (``pg_wal_replay_pause()``, a stuck standby) is seen to fall behind from the
first write it misses. With no sample old enough it counts from the oldest sample, or from the
last replayed transaction's time when that says more.

Why this bound serves "read your writes" too: a read goes to the replica only when the last check
(at most ``INTERVAL`` old) found it at most ``max_lag`` behind, so anything committed more than
``max_lag + INTERVAL`` seconds ago is there; the window after one's own write is that long
(:func:`window_seconds`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

log = logging.getLogger("yitu.replica")

INTERVAL = 1.0  # seconds between checks
HISTORY_S = 600.0  # seconds of primary positions kept
CONNECT_TIMEOUT = 2  # seconds; the checks must not hang on a dead server

_REPLICA_STATE = (
    "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
    " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,"
    " CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END"
)


def lsn(text: str | None) -> int | None:
    """A ``pg_lsn`` as text (``16/B374D848``) as a number."""
    if not text:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def window_seconds(max_lag: float) -> float:
    """How long after a write its author reads from the primary (see the module)."""
    return max_lag + INTERVAL + 1.0  # a second for the check itself and the clocks' rounding


@dataclass
class ReplicaState:
    """What the last check found (``/healthz`` shows it to an admin)."""

    usable: bool = False
    reason: str = "not checked yet"
    lag_s: float | None = None
    checked_at: datetime | None = None
    receive_lsn: str | None = None
    replay_lsn: str | None = None
    primary_lsn: str | None = None
    replay_paused: bool | None = None
    changes: int = 0
    kind: str = ""
    behind_floor: int = 0  # reads for an event's answer sent to the primary: not replayed that far yet

    def as_dict(self) -> dict[str, Any]:
        return {
            "in_use": self.usable,
            "reads": "replica" if self.usable else "primary",
            "reason": self.reason,
            "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "receive_lsn": self.receive_lsn,
            "replay_lsn": self.replay_lsn,
            "primary_lsn": self.primary_lsn,
            "replay_paused": self.replay_paused,
            "changes": self.changes,
            "behind_floor": self.behind_floor,
        }


class ReplicaMonitor:
    """The background check of one process (a daemon thread, own connections to both servers)."""

    def __init__(self, primary_dsn: str, replica_dsn: str, max_lag: float, interval: float = INTERVAL) -> None:
        self.primary_dsn = primary_dsn
        self.replica_dsn = replica_dsn
        self.max_lag = max_lag
        self.interval = interval
        self.state = ReplicaState()
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._primary: psycopg.Connection | None = None
        self._replica: psycopg.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def usable(self) -> bool:
        return self.state.usable

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="yitu-replica-check", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for conn in (self._primary, self._replica):
            if conn is not None and not conn.closed:
                conn.close()

    def status(self) -> dict[str, Any]:
        return self.state.as_dict()

    def failed(self, exc: BaseException) -> None:
        """A request could not get a replica connection: reads go to the primary at once (the next
        check, within a second, decides whether it is back)."""
        self._set(False, f"unreachable: {type(exc).__name__}", None)

    # --- the check ---------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.check()
            except Exception as exc:  # the loop must go on; the state says what failed
                log.exception("replica check failed")
                self._set(False, f"check-failed: {type(exc).__name__}", None)
            self._stop.wait(max(0.05, self.interval - (time.monotonic() - started)))

    def _connect(self, which: str) -> psycopg.Connection:
        conn: psycopg.Connection | None = getattr(self, which)
        if conn is None or conn.closed or conn.broken:
            dsn = self.primary_dsn if which == "_primary" else self.replica_dsn
            conn = psycopg.connect(
                dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT, application_name="yitu-replica-check"
            )
            setattr(self, which, conn)
        return conn

    def _drop(self, which: str) -> None:
        conn = getattr(self, which)
        setattr(self, which, None)
        if conn is not None and not conn.closed:
            conn.close()

    def check(self) -> ReplicaState:
        """One check (the thread's; a test may call it to decide now)."""
        now = time.monotonic()
        try:
            row = self._connect("_primary").execute("SELECT pg_current_wal_lsn()::text").fetchone()
        except psycopg.Error as exc:
            self._drop("_primary")
            self._set(False, f"primary-unreachable: lag unknown: {type(exc).__name__}", None)
            return self.state
        primary = lsn(row[0] if row else None) or 0
        self._samples.append((now, primary))
        while self._samples and now - self._samples[0][0] > HISTORY_S:
            self._samples.popleft()
        try:
            got = self._connect("_replica").execute(_REPLICA_STATE).fetchone()
        except psycopg.Error as exc:
            self._drop("_replica")
            self._set(False, f"unreachable: {type(exc).__name__}", None)
            return self.state
        assert got is not None
        recovering, received, replayed, since_xact, paused = got
        self.state.receive_lsn, self.state.replay_lsn, self.state.replay_paused = received, replayed, paused
        self.state.primary_lsn = row[0] if row else None
        if not recovering:
            self._set(False, "not a standby (pg_is_in_recovery() is false): it does not follow the primary", None)
            return self.state
        lag = self._lag(now, primary, lsn(replayed), since_xact)
        if lag > self.max_lag:
            self._set(False, f"lagging {lag:.1f} s > {self.max_lag:g} s", lag)
        else:
            self._set(True, "streaming", lag)
        return self.state

    def _lag(self, now: float, primary: int, replayed: int | None, since_xact: float | None) -> float:
        if replayed is not None and replayed >= primary:
            return 0.0
        for at, position in reversed(self._samples):
            if replayed is not None and position <= replayed:
                return now - at
        oldest = now - self._samples[0][0]
        return max(oldest, since_xact or 0.0) if since_xact is not None else max(oldest, self.max_lag + 1e-3)

    def _set(self, usable: bool, reason: str, lag: float | None) -> None:
        """Record a check's verdict; log a line when the verdict changes (in use, or why not)."""
        kind = reason.split(":", 1)[0].split(" ", 1)[0]  # "lagging 7.1 s > 5 s" and "lagging 8.0 s …" are one state
        with self._lock:
            state = self.state
            first = state.checked_at is None
            state.lag_s, state.checked_at = lag, datetime.now(UTC)
            if usable != state.usable or kind != state.kind or first:
                state.changes += 1
                if usable:
                    log.info("replica in use: the read-heavy paths read there lag_s=%.3f", lag or 0.0)
                else:
                    log.warning("replica not in use: reads go to the primary reason=%s", reason)
            state.usable, state.reason, state.kind = usable, reason, kind

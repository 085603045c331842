"""The outbox relay: the one publisher of ``yitu:events``, one at a time across every app process.

Each app process runs a :class:`Relay` thread with a PostgreSQL connection of its own. Every
second it tries ``pg_try_advisory_lock`` on that connection; the holder is the leader. The lock
lives as long as the connection, so when the leader's process dies (or its connection does) it
is free at once and another process's relay takes it at its next try, within about a second.

The leader looks for new rows every ``IDLE`` seconds (a probe of a partial index, far cheaper
than the LISTEN/NOTIFY it replaces: a transaction that notifies holds a cluster-wide lock through
its commit's WAL flush, which made every writer's commit wait for the others', see 020_outbox.sql),
and goes straight on while there are more. Each round it claims the next rows (geodata/outbox.py
``claim``: numbered 1, 2, 3 … and the numbers committed first), publishes them in one atomic
step (services/events.py ``publish``, which skips what the stream already holds), and marks
them sent. On taking the lead, and after any Redis error, it first reads the stream's last
``outbox_id`` and marks the rows up to it sent: a leader that died between the XADD and the mark
left them there, and they must not go out twice.

Redis down: the rows wait (pending) and go out in order when it answers. A Redis failover (Sentinel,
services/redisconn.py) may promote a replica that lacks the last entries published to the old
master: the relay sees the stream end before what it published and publishes those rows again. PostgreSQL down: the
connection is dropped (and with it the lead) and made again. Any other error is logged with its
traceback and the loop goes on (as the scheduler's jobs, services/scheduler.py). ``status()`` is
what ``/healthz`` shows an admin.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from logging import DEBUG, WARNING
from typing import Any

import psycopg
import redis

from geodata import outbox
from services import events

log = logging.getLogger("yitu.relay")

POLL = 1.0  # seconds between tries for the lead
IDLE = 0.05  # seconds between the leader's looks for new rows while there were none
BATCH = 500  # rows per claim and per publish


@dataclass
class RelayState:
    """What /healthz shows of the relay."""

    leader: bool = False
    last_run: datetime | None = None
    last_publish: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    published: int = 0
    lock_tries: int = 0
    last_outbox_id: int | None = None
    restarts: int = 0

    def as_dict(self) -> dict[str, Any]:
        def iso(v: datetime | None) -> str | None:
            return v.isoformat() if v else None

        return {
            "leader": self.leader,
            "last_run": iso(self.last_run),
            "last_publish": iso(self.last_publish),
            "last_error": self.last_error,
            "last_error_at": iso(self.last_error_at),
            "published": self.published,
            "lock_tries": self.lock_tries,
            "last_outbox_id": self.last_outbox_id,
            "restarts": self.restarts,
        }


@dataclass
class Relay:
    """The relay thread of one process (see the module). ``conninfo`` and ``conn_kwargs`` open its
    own connection (autocommit); ``stream`` is a Redis client for publishing."""

    conninfo: str
    stream: redis.Redis
    conn_kwargs: dict[str, Any] = field(default_factory=dict)
    poll: float = POLL
    idle: float = IDLE
    batch: int = BATCH
    state: RelayState = field(default_factory=RelayState)
    _conn: psycopg.Connection | None = None
    _synced: bool = False  # the stream's last outbox id was read since the lead / the last Redis error
    _floor: int = 0  # that id
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="yitu-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the loop (within one poll) and close the connection, which frees the lead."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._drop()

    def status(self) -> dict[str, Any]:
        running = self._thread is not None and self._thread.is_alive()
        return {"running": running, **self.state.as_dict()}

    # --- the loop ----------------------------------------------------------------------------
    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                self._loop()
            except Exception as exc:  # the loop's own failure: logged, and it starts again
                self.state.restarts += 1
                self._failed(exc)
                log.exception("outbox relay loop failed; restarting restarts=%d", self.state.restarts)
                self._drop()
                self._stop.wait(self.poll)
        self._last_round()

    def _last_round(self) -> None:
        """A clean shutdown: the leader publishes what its own process committed last (the next
        leader would, a second later; a stopped app should not leave its last writes pending)."""
        if not self.state.leader or self._conn is None or self._conn.closed:
            return
        try:
            self.run_once(final=True)
        except (psycopg.Error, redis.RedisError) as exc:  # the next leader publishes them
            self._failed(exc)
            log.warning("outbox relay: last round at shutdown failed; events wait error=%s", self.state.last_error)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._lead():
                    self.state.last_run = datetime.now(UTC)
                    if not self._synced or outbox.waiting(self._conn_or_fail()):
                        self.run_once()
                    self._stop.wait(self.idle)
                else:
                    self._stop.wait(self.poll)
            except psycopg.Error as exc:  # the database is gone (or the statement failed): reconnect
                first = self.state.last_error is None  # once per outage in the log, not every second
                self._failed(exc)
                log.log(
                    WARNING if first else DEBUG,
                    "outbox relay: database error; reconnecting error=%s",
                    self.state.last_error,
                )
                self._drop()
                self._stop.wait(self.poll)
            except redis.RedisError as exc:  # rows stay pending; the stream is read again first
                first = self.state.last_error is None
                self._failed(exc)
                self._synced = False
                log.log(
                    WARNING if first else DEBUG,
                    "outbox relay: Redis unavailable; events wait error=%s",
                    self.state.last_error,
                )
                self._stop.wait(self.poll)

    def _lead(self) -> bool:
        """Are we the leader (taking the lock if it is free)? Connects first if need be."""
        if self._conn is None or self._conn.closed:
            self._drop()
            self._conn = psycopg.connect(self.conninfo, **{**self.conn_kwargs, "autocommit": True})
        if self.state.leader:
            return True
        self.state.lock_tries += 1
        led = outbox.try_lead(self._conn)
        self.state.last_error = None  # the database answers (a leader clears it after its first round)
        if not led:
            return False
        self.state.leader = True
        self._synced = False
        log.info("outbox relay: this process publishes the events now")
        return True

    def run_once(self, *, final: bool = False) -> int:
        """Publish everything pending now, in rounds of ``batch``; returns how many went out.
        A stop ends it after the current round, unless this is the ``final`` one."""
        assert self._conn is not None
        self.state.last_run = datetime.now(UTC)
        if not self._synced:
            last = events.last_outbox_id(self.stream)
            if 0 < last < self._floor:
                self._resend(last)
            self._floor = last
            marked = outbox.mark_sent_through(self._conn, self._floor)
            if marked:
                log.info("outbox relay: %d event(s) were in the stream already; marked sent", marked)
            self._synced = True
        total = 0
        while final or not self._stop.is_set():
            rows = outbox.claim(self._conn, self._floor, self.batch)
            if not rows:
                break
            try:
                added, last = events.publish(
                    self.stream, [(r.outbox_id, r.type, r.event) for r in rows], expect=self._floor
                )
            except events.StreamBehind as behind:  # redis-py retried onto a new master: see _resend
                self._resend(behind.last)
                continue
            self._floor = max(self._floor, last)
            outbox.mark_sent_through(self._conn, rows[-1].outbox_id)
            total += added
            self.state.published += added
            self.state.last_outbox_id = rows[-1].outbox_id
            self.state.last_publish = datetime.now(UTC)
            if len(rows) < self.batch:
                break
        self.state.last_error = None
        return total

    def _resend(self, last: int) -> None:
        """The stream ends at ``last``, before what this relay published: a failover's new master
        had not received the last entries. They go out again, under the same ids, before anything
        newer, so the stream stays consecutive. (An empty stream is a Redis without its data
        instead: the screens resync from PostGIS, services/live.py, and the numbering goes on.)"""
        assert self._conn is not None
        again = outbox.resend(self._conn, last, self._floor)
        log.warning(
            "outbox relay: the stream lost entries %d-%d (a Redis failover?); publishing %d again",
            last + 1,
            self._floor,
            again,
        )
        self._floor = last

    def _conn_or_fail(self) -> psycopg.Connection:
        if self._conn is None:
            raise psycopg.OperationalError("the relay has no connection")
        return self._conn

    def _failed(self, exc: BaseException) -> None:
        self.state.last_error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        self.state.last_error_at = datetime.now(UTC)

    def _drop(self) -> None:
        """Close the connection (the lock goes with it): no longer the leader."""
        conn, self._conn = self._conn, None
        if self.state.leader:
            log.info("outbox relay: no longer the leader")
        self.state.leader = False
        self._synced = False
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except psycopg.Error:
                log.debug("outbox relay: closing the connection failed", exc_info=True)

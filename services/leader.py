"""One leader across the app processes, by a PostgreSQL session advisory lock on a connection of its own.

Several ``yitu serve`` processes (or ``yitu serve --workers N``) serve one deployment; the scheduler's
jobs (the overdue sweep, the warnings, the housekeeping …) must run once across them, not once per
process. As the outbox relay does (services/relay.py), each process's :class:`Leadership` holds a
dedicated autocommit connection and tries ``pg_try_advisory_lock(key)`` on it; the holder leads. The
lock lives as long as that connection: when the leader's process dies (kill -9 included) PostgreSQL
ends its session and frees the lock, and the next process to try takes it, within one ``poll``.

``check()`` is cheap and safe to call every second: a leader makes sure its connection still answers
(a restarted PostgreSQL took the lock with it), a follower tries the lock. ``holder()`` names the
process that leads now (from ``pg_locks``: the ``application_name`` every process sets to
``<role> <host>:<pid>``), which /healthz shows an admin.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import psycopg

log = logging.getLogger("yitu.leader")

SCHEDULER_LOCK = 0x7969_7475_7363  # "yitusc": the scheduler's jobs (the relay has its own, geodata/outbox.py)

_HOLDER = """
SELECT a.application_name
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
"""


def process_name() -> str:
    """``host:pid``: how /healthz and the database's ``application_name`` tell the processes apart."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Leadership:
    """The lock ``key`` for this process, on its own connection (see the module)."""

    conninfo: str
    key: int
    role: str  # the application_name's first word: yitu-scheduler
    conn_kwargs: dict[str, Any] = field(default_factory=dict)
    leader: bool = False
    _conn: psycopg.Connection | None = None

    @property
    def me(self) -> str:
        return f"{self.role} {process_name()}"

    def check(self) -> bool:
        """Do we lead now (taking the lock if it is free)? A database error drops the connection, and
        the lead with it: False until a later check takes it again."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self.conninfo, **{**self.conn_kwargs, "autocommit": True, "application_name": self.me}
                )
            if self.leader:
                self._conn.execute("SELECT 1")  # still our session, so still our lock
                return True
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error as exc:
            if self.leader:
                log.warning("%s: lost the database, and the lead with it error=%s", self.role, type(exc).__name__)
            self.drop()
            return False
        if row and row[0]:
            self.leader = True
            log.info("%s: this process leads now process=%s", self.role, process_name())
        return self.leader

    def holder(self) -> str | None:
        """The ``application_name`` of the session holding the lock now (None: nobody, or no answer)."""
        try:
            with psycopg.connect(self.conninfo, **{**self.conn_kwargs, "autocommit": True}) as conn:
                row = conn.execute(_HOLDER, (self.key,)).fetchone()
        except psycopg.Error:
            return None
        return str(row[0]) if row else None

    def drop(self) -> None:
        """Close the connection: the lock goes with it."""
        conn, self._conn = self._conn, None
        if self.leader:
            log.info("%s: no longer the leader", self.role)
        self.leader = False
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except psycopg.Error:
                log.debug("%s: closing the connection failed", self.role, exc_info=True)

    def status(self) -> dict[str, Any]:
        return {"leader": self.leader, "process": process_name()}

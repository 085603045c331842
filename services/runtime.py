"""The shared parts of one app process: settings, the PostGIS pools, the Redis client.

Built once in the app factory's lifespan; routes reach it through ``api.deps.services``, callbacks
through the getter the app factory hands them.

With ``YITU_DATABASE_READ_URL`` a second pool reads from the streaming replica: the read-heavy
routes take their connection with :meth:`Services.reading` instead of ``pool.connection()``, and
get the replica's while the background check (services/replica.py) finds it streaming within
``YITU_REPLICA_MAX_LAG_S`` and the request does not read after its caller's own write
(geodata/db.py ``follows_write``: a write in this request, or one a moment ago, api/consistency.py);
otherwise, the primary's. Everything else — every write, every other read — uses ``pool``.

A screen that reloads after an event must see that event's change: inside a read floor (geodata/db.py
``read_floor``, set by services/layer_answers.py for the answers the screens share) a replica is
used only if it has replayed the event's outbox number (``outbox_counter``: the relay numbers an
event's row after its write committed, so the number replayed means the write replayed), else the
read goes to the primary (counted as ``behind_floor`` in ``/healthz``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis
from psycopg_pool import ConnectionPool, PoolTimeout

from geodata import db
from services import redisconn
from services.layer_answers import LayerAnswers
from services.replica import ReplicaMonitor
from services.settings import Settings

log = logging.getLogger("yitu.runtime")

REPLICA_CHECKOUT_S = 0.5  # a replica that gives no connection this fast: the request reads the primary


@dataclass
class Services:
    """The process's pools and clients. ``read_pool`` and ``replica`` are opened here when the
    settings name a replica (``YITU_DATABASE_READ_URL``) and not given."""

    settings: Settings
    pool: ConnectionPool
    redis: redis.Redis
    read_pool: ConnectionPool | None = None
    replica: ReplicaMonitor | None = field(default=None)
    # the live layers' answers, shared by the screens that ask after the same events
    layer_answers: LayerAnswers = field(default_factory=LayerAnswers)

    def __post_init__(self) -> None:
        read_dsn = self.settings.database_read_dsn()
        if read_dsn is None or self.read_pool is not None:
            return
        s = self.settings
        self.read_pool = db.open_pool(
            read_dsn,
            min_size=s.db_pool_min,
            max_size=s.db_pool_max,
            connect_timeout=s.db_connect_timeout,
            name="yitu-read",
            statement_timeout_ms=s.statement_timeout_ms,
            idle_in_transaction_ms=s.idle_in_transaction_timeout_ms,
            application_name="yitu-read",
        )
        self.replica = ReplicaMonitor(s.database_dsn(), read_dsn, s.replica_max_lag_s)
        self.replica.start()

    def reads_replica(self) -> bool:
        """Would a read now go to the replica (see the module)?"""
        return (
            self.read_pool is not None and self.replica is not None and self.replica.usable and not db.follows_write()
        )

    @contextmanager
    def reading(self, *, alone: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A connection for a read-heavy route: the replica's when it may serve (see the module),
        else the primary's. A replica that gives no connection at once is reported to the check
        (reads move to the primary now, not at the next check) and this read goes to the primary.
        ``alone``: the block's statements run each by itself (geodata/db.py ``alone``: no ``BEGIN``
        and ``COMMIT`` round trips; each sees its own snapshot, as in a READ COMMITTED transaction),
        for a route that only reads and sets nothing for a transaction (no ``budget``, no
        server-side cursor)."""
        with ExitStack() as stack:
            conn: psycopg.Connection[Any] | None = None
            if self.reads_replica():
                assert self.read_pool is not None
                assert self.replica is not None
                try:
                    conn = self._replica_at_floor(stack, self.read_pool, self.replica)
                except (PoolTimeout, psycopg.OperationalError) as exc:
                    self.replica.failed(exc)
            if conn is None:
                conn = stack.enter_context(self.pool.connection())
            if alone:
                stack.enter_context(db.alone(conn))
            yield conn

    @staticmethod
    def _replica_at_floor(
        stack: ExitStack, pool: ConnectionPool, replica: ReplicaMonitor
    ) -> psycopg.Connection[Any] | None:
        """A replica's connection, entered on ``stack``. Inside a read floor (geodata/db.py
        ``read_floor``: an answer for the screens told of an event) the replica must have replayed
        that event's change, else None and the read goes to the primary; how far it had replayed is
        noted on the floor's mark."""
        mark = db.floor()
        held = ExitStack()
        conn: psycopg.Connection[Any] = held.enter_context(pool.connection(REPLICA_CHECKOUT_S))
        if mark is None:
            stack.enter_context(held)
            return conn
        try:
            seen = db.replayed_through(conn)
        except BaseException as exc:  # the connection goes back as the pool's own block would return it
            held.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if mark.at_least is not None and seen < mark.at_least:
            held.close()
            replica.state.behind_floor += 1  # not locked: a count for /healthz, not a decision
            log.debug("replica read passed over: it has replayed outbox id %d, the read needs %d", seen, mark.at_least)
            return None
        mark.replica_read(seen)
        stack.enter_context(held)
        return conn

    @contextmanager
    def writable(self, conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
        """``conn`` itself when it is the primary's, else one of the primary's: a read from the replica
        that must leave a row (the audit of a read of personal data) cannot write on a hot standby
        (PostgreSQL reports ``in_hot_standby`` to every client, so no query is needed to tell)."""
        if conn.info.parameter_status("in_hot_standby") != "on":
            yield conn
            return
        with self.pool.connection() as primary:
            yield primary

    def close(self) -> None:
        if self.replica is not None:
            self.replica.stop()
        if self.read_pool is not None:
            self.read_pool.close()
        self.pool.close()
        self.redis.close()


def open_redis(url: str, timeout: float) -> redis.Redis:
    """The process's Redis client (a Sentinel set's master too: services/redisconn.py)."""
    return redisconn.client(url, timeout=timeout, health_check_interval=15)

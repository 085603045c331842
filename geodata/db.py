"""The PostGIS connection pool, and the honest answer of a write whose connection failed.

Opened without waiting, so the app starts (and answers /healthz with 503) while the database is
down; every checkout tests the connection (:func:`check_quietly`), so a restarted server is picked
up by itself. Every connection starts with a ``statement_timeout`` and an
``idle_in_transaction_session_timeout`` (set in the startup packet, so they cost no round trip): no
request can keep a backend busy, or hold locks while its client dawdles, for longer than its budget.
A route class that needs more (the CSV export) raises its own budget with ``SET LOCAL`` in its
transaction (:func:`budget`).

**Bounded waits.** A pool's timeout counts from a request's *arrival* (the guard notes it,
:func:`arrived`), not from the checkout: a request that first queued for a thread or behind an
intake batch does not then wait a whole pool timeout on top, so with the database down every
request is answered 503 within its pool's bound however many queue: a report within the connect
timeout + 2 s (the intake pool, :data:`INTAKE_MARGIN`), any other route within + 7 s
(:data:`MAIN_MARGIN`). Not one bound for both: opening connections takes seconds on a busy
server, and the main pool's routes (a burst of GPS batches, of wall screens) must queue through
that rather than fail; the intake lanes hold at most two connections, which only an outage
makes wait. Callers outside a request (the scheduler, the command line) wait the pool's timeout.

**What a failed write says** (:func:`writing`, the intake lanes): no connection obtained, or an
error from a server that was there (it rolled the transaction back), or the connection lost
before COMMIT was sent (PostgreSQL aborts the transaction): nothing was written, a plain 503.
The connection lost (or the server shutting down) *while* COMMIT — or an autocommit write
statement — was in flight: nobody can tell whether it committed, and the answer says so
(:class:`~geodata.errors.OutcomeUnknown`, 503 ``outcome_unknown``: send it again with the same
Idempotency-Key). Reads keep their plain 503.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from geodata.errors import OutcomeUnknown, TimedOut, Unavailable

log = logging.getLogger("yitu.db")
T = TypeVar("T")

INTAKE_MARGIN = 2.0  # seconds beyond one connection attempt before a report is answered 503
MAIN_MARGIN = 7.0  # the same for the main pool's routes (see the module's docstring)
MIN_WAIT = 0.01  # a request past its deadline still takes a connection that is ready at once
SHUTDOWN_STATES = ("57P01", "57P02", "57P03")  # admin_shutdown, crash_shutdown, cannot_connect_now

IN_DOUBT = (
    "the connection to the database was lost while the change was being committed: it may or may "
    "not have been written; send it again with the same Idempotency-Key"
)


def checkout_timeout(connect_timeout: float, margin: float = MAIN_MARGIN) -> float:
    """A pool's timeout: one connection attempt and a margin (counted from a request's arrival)."""
    return connect_timeout + margin


_ARRIVAL: ContextVar[float | None] = ContextVar("yitu_request_arrival", default=None)


@contextmanager
def _bound(var: ContextVar[T | None], value: T) -> Iterator[T]:
    """``value`` in ``var`` for a block (the current request's task, and the threads it hands work
    to with a copy of its context), the previous value after."""
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)


def arrived() -> AbstractContextManager[float]:
    """Note the current request's arrival (its task, and the threads it hands work to): every
    checkout of :class:`Pool` and the intake lanes waits at most until the pool's timeout after it."""
    return _bound(_ARRIVAL, time.monotonic())


class WriteMark:
    """Whether the current request reads after a write of its caller's: one it committed itself
    (``wrote``, set by :func:`commit` and :func:`writing`), or one its caller made a moment ago
    (``earlier``: the "read your writes" cookie, api/consistency.py). Either way its reads go to
    the primary (services/runtime.py ``Services.reading``): a replica may not have replayed it yet."""

    __slots__ = ("earlier", "wrote")

    def __init__(self, earlier: bool = False) -> None:
        self.earlier = earlier
        self.wrote = False


_WRITES: ContextVar[WriteMark | None] = ContextVar("yitu_request_writes", default=None)


def write_mark(earlier: bool = False) -> AbstractContextManager[WriteMark]:
    """Track the current request's writes (see :class:`WriteMark`); the mark is returned to look at
    once the request is answered."""
    return _bound(_WRITES, WriteMark(earlier))


def _wrote() -> None:
    mark = _WRITES.get()
    if mark is not None:
        mark.wrote = True


class ReadFloor:
    """What the reads of a block must hold, and what they held: ``at_least``, the outbox id of the
    event they are made for (None: no event; any replica within its lag serves), and ``seen``, the
    newest outbox id that the replica they read from had replayed (None: none of them read a
    replica). Set by :func:`read_floor`; honoured and filled in by services/runtime.py ``reading``.
    ``primary``: the primary's ``outbox_counter`` as first read in the block (geodata/kpi.py), a
    lower bound of what every later read of the block on the primary holds."""

    __slots__ = ("at_least", "primary", "seen")

    def __init__(self, at_least: int | None) -> None:
        self.at_least = at_least
        self.seen: int | None = None
        self.primary: int | None = None

    def replica_read(self, seen: int) -> None:
        self.seen = seen if self.seen is None else min(self.seen, seen)


_FLOOR: ContextVar[ReadFloor | None] = ContextVar("yitu_read_floor", default=None)


def read_floor(at_least: int | None) -> AbstractContextManager[ReadFloor]:
    """Reads in this block must hold every change whose event is at or below ``at_least`` (an answer
    made for the screens told of that event, services/layer_answers.py): a replica that has not
    replayed that far is passed over for the primary. The mark returned says how far the replicas
    read had replayed, for the answer to say which events it holds."""
    return _bound(_FLOOR, ReadFloor(at_least))


def floor() -> ReadFloor | None:
    """The current block's :class:`ReadFloor`, if one is set."""
    return _FLOOR.get()


def replayed_through(conn: psycopg.Connection[Any]) -> int:
    """The newest outbox id a (replica's) connection can see numbered. The relay numbers an event's
    row after the write that made it committed (geodata/outbox.py ``claim``), so a server that sees
    the number ``n`` holds every change of an event at or below ``n``."""
    with alone(conn):
        row = conn.execute(REPLAYED_THROUGH, prepare=True).fetchone()
    return int(row[0]) if row else 0


REPLAYED_THROUGH = "SELECT last_id FROM outbox_counter"  # :func:`replayed_through`'s statement


@contextmanager
def alone(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """Reads on an idle connection, each statement run by itself (autocommit): no ``BEGIN`` and
    ``COMMIT`` round trips around them. Under load each round trip also waits for the GIL to come
    back to the thread (up to a switch interval per other busy thread; docs/scaling.md); a statement
    sees one snapshot, in a transaction or not, and several see one each, as in a READ COMMITTED
    transaction. Not for a block that writes, sets anything for its transaction or holds a
    server-side cursor. A connection already in a transaction reads in it."""
    if conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
        yield conn
        return
    conn.autocommit = True
    try:
        yield conn
    finally:
        try:
            conn.autocommit = False
        except psycopg.Error:  # lost meanwhile, or mid-statement: never back in the pool in autocommit
            conn.close()


def follows_write() -> bool:
    """Does the current request read after its caller's own write (then: from the primary)?"""
    mark = _WRITES.get()
    return mark is not None and (mark.wrote or mark.earlier)


def arrival() -> float | None:
    """When the current request arrived (``time.monotonic()`` clock), None outside a request."""
    return _ARRIVAL.get()


def wait_left(timeout: float) -> float:
    """How long a checkout may wait now: until ``timeout`` after the request's arrival (at least
    :data:`MIN_WAIT`: a connection ready at once is still taken), or ``timeout`` outside a request."""
    at = _ARRIVAL.get()
    if at is None:
        return timeout
    return min(timeout, max(at + timeout - time.monotonic(), MIN_WAIT))


def connection_lost(exc: BaseException) -> bool:
    """The server or the connection is gone: an OperationalError without a SQLSTATE (the socket),
    of class 08 (connection exception) or a server shutdown (57P01–57P03). Any other SQLSTATE
    came from a server that was there and rolled the statement's transaction back."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in SHUTDOWN_STATES


def database_unavailable(exc: Exception) -> Unavailable:
    """The database down or gone mid-request (a pool timeout, a lost connection; also a deadlock
    or a cancelled statement): nothing of the request was committed, and trying again is the answer.
    Only a read, or a write before its COMMIT, gets here: a write losing its connection *during*
    the COMMIT is :func:`in_doubt` instead. A statement cancelled by its ``statement_timeout``
    (psycopg's QueryCanceled, SQLSTATE 57014) is the kind :class:`TimedOut` (503 as well, but says
    the request was too heavy, not the server down)."""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        log.warning("statement timed out for a request error=%s", exc.sqlstate)
        return TimedOut("the query took longer than its time budget and was cancelled; narrow it or try again")
    log.warning("database unavailable for a request error=%s", type(exc).__name__)
    return Unavailable("the database is unavailable; nothing was written, try again")


def in_doubt(exc: BaseException) -> OutcomeUnknown:
    """The answer of a write whose commit's fate is unknown (logged once, with the cause)."""
    log.warning("the outcome of a write is unknown: connection lost while committing error=%s", type(exc).__name__)
    return OutcomeUnknown(IN_DOUBT, field="Idempotency-Key")


@contextmanager
def _lost_means_unknown(committing: Callable[[], bool]) -> Iterator[None]:
    """Around a COMMIT: losing the connection raises :class:`OutcomeUnknown` when ``committing()``
    (asked only then: a transaction with a write was open and its COMMIT on its way); anything
    else passes as it is."""
    try:
        yield
    except psycopg.OperationalError as exc:
        if committing() and connection_lost(exc):
            raise in_doubt(exc) from exc
        raise


class Connection(psycopg.Connection[Any]):
    """The pool's connections. While one carries a request's write (:func:`writing` sets
    ``writes``), a lost connection during a COMMIT — its own, or that of an outermost
    ``conn.transaction()`` block inside the write (GPS batches commit so) — raises
    :class:`OutcomeUnknown` instead of the bare OperationalError that means "nothing written"."""

    writes: bool = False
    idle_since: float = float("-inf")  # time.monotonic() when last given back to the pool (never: -inf)

    def commit(self) -> None:
        pending = self.writes and self.info.transaction_status == TransactionStatus.INTRANS
        with _lost_means_unknown(lambda: pending):
            super().commit()

    @contextmanager
    def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> Iterator[psycopg.Transaction]:
        outer = self.info.transaction_status == TransactionStatus.IDLE  # BEGIN here, COMMIT at the end
        committing = False
        with (
            _lost_means_unknown(lambda: committing and self.writes),
            super().transaction(savepoint_name, force_rollback) as tx,
        ):
            yield tx
            committing = outer and not force_rollback


def commit(conn: psycopg.Connection[Any]) -> None:
    """Commit a write, telling a lost connection during the COMMIT apart (:class:`OutcomeUnknown`)."""
    pending = conn.info.transaction_status == TransactionStatus.INTRANS
    with _lost_means_unknown(lambda: pending):
        conn.commit()
    _wrote()


@contextmanager
def writing(pool: ConnectionPool[Any], timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection for one request's write, committed here when the block ends.

    As ``pool.connection()``, but a failure is answered honestly: no connection (PoolTimeout) or
    an error before the COMMIT left the database as it was (the handler's plain 503); the
    connection lost during the COMMIT raises :class:`OutcomeUnknown` (503 ``outcome_unknown``).
    """
    with pool.connection(timeout) as conn:
        mark = isinstance(conn, Connection)
        if mark:
            conn.writes = True
        try:
            yield conn
            commit(conn)
        finally:
            if mark:
                conn.writes = False


def stirred(conn: psycopg.BaseConnection[Any]) -> bool:
    """Has an idle connection something to read (the server closed it: a restart, a terminated
    backend; or a notice pending)? Then the pool's full check (an empty query) is worth its round
    trip; a quiet one is as good as checked (one ``poll``, no round trip). Raises for a closed one."""
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    ready = select.poll()
    ready.register(conn.pgconn.socket, select.POLLIN)
    return bool(ready.poll(0))


# A connection idle in the pool longer than this gets the full check: a firewall or NAT between
# the app and the server may forget an idle flow without a word (no FIN: the socket stays quiet).
QUIET_CHECK_S = 30.0


def check_quietly(conn: Connection) -> None:
    """The pool's check at each checkout, without a round trip while the connection is quiet
    (:func:`stirred`) and was given back less than :data:`QUIET_CHECK_S` ago: a round trip per
    request is, under load, also a wait for the GIL. Otherwise psycopg's full check (an empty
    query); a failing connection is replaced by the pool."""
    if stirred(conn) or time.monotonic() - conn.idle_since > QUIET_CHECK_S:
        ConnectionPool.check_connection(conn)


class Pool(ConnectionPool[Connection]):
    """psycopg's pool, whose timeout counts from the request's arrival (:func:`arrived`), and which
    notes when each connection came back (:func:`check_quietly`)."""

    def getconn(self, timeout: float | None = None) -> Connection:
        return super().getconn(wait_left(self.timeout) if timeout is None else timeout)

    def putconn(self, conn: Connection) -> None:
        conn.idle_since = time.monotonic()
        super().putconn(conn)


def session_options(statement_timeout_ms: int = 0, idle_in_transaction_ms: int = 0) -> str:
    """libpq ``options`` giving every statement of a connection its time budget (0: none), and no
    JIT: the app's statements run in milliseconds, but PostgreSQL compiles any whose estimate passes
    ``jit_above_cost`` — a per-van LATERAL over the GPS history, a word common to many cases — and
    the compiling alone took 150–900 ms of a 10 ms read (the vans layer's trails, the search)."""
    return (
        f"-c statement_timeout={int(statement_timeout_ms)} "
        f"-c idle_in_transaction_session_timeout={int(idle_in_transaction_ms)} "
        "-c jit=off"
    )


def budget(conn: psycopg.Connection, *, statement_timeout_ms: int, idle_in_transaction_ms: int) -> None:
    """Give the current transaction its own time budget (a route class with longer statements, say
    an export); it ends with the transaction, and the pooled connection gets its default back."""
    for name, value in (
        ("statement_timeout", statement_timeout_ms),
        ("idle_in_transaction_session_timeout", idle_in_transaction_ms),
    ):
        conn.execute("SELECT set_config(%s, %s, true)", (name, str(int(value))))


def open_pool(
    dsn: str,
    *,
    min_size: int,
    max_size: int,
    connect_timeout: float,
    name: str = "yitu",
    statement_timeout_ms: int = 0,
    idle_in_transaction_ms: int = 0,
    application_name: str = "yitu",
) -> ConnectionPool[Any]:
    pool = Pool(
        dsn,
        connection_class=Connection,
        min_size=min_size,
        max_size=max_size,
        timeout=checkout_timeout(connect_timeout),
        name=name,
        kwargs={
            "connect_timeout": max(1, round(connect_timeout)),
            "application_name": application_name,
            "options": session_options(statement_timeout_ms, idle_in_transaction_ms),
        },
        check=check_quietly,
        open=False,
    )
    pool.open(wait=False)
    return pool

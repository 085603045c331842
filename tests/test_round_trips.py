"""Round trips to PostgreSQL and Redis on the hot read paths (geodata/db.py ``check_quietly`` and
``alone``, geodata/kpi.py ``figures``, services/layer_answers.py).

Under a command centre's load every round trip is also a wait for the GIL to come back to the
thread (docs/scaling.md): a quiet pooled connection is handed out without an empty query, a read of
one statement goes without ``BEGIN`` and ``COMMIT``, a round of the wall's figures reads the outbox
id it holds in its own statement, and an answer computed without waiting reads the stream's
generation once. What the protocol carried is read from libpq's own trace of the connection.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
import pytest
import redis
from psycopg import pq

from geodata import db, kpi
from geodata.outbox import LAST_KEY
from layers import vans
from services import events
from services.layer_answers import LayerAnswers
from services.runtime import Services
from services.settings import Settings

from .helpers import wait_for

BANNER = "150623"


@contextmanager
def traced(conn: psycopg.Connection[Any]) -> Iterator[list[str]]:
    """The messages ``conn`` sent and received meanwhile, as libpq traces them (``F`` from us)."""
    lines: list[str] = []
    with tempfile.TemporaryFile() as out:
        conn.pgconn.trace(out.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield lines
        finally:
            conn.pgconn.untrace()
            out.seek(0)
            lines += out.read().decode().splitlines()


def sent(lines: list[str]) -> list[str]:
    """The statements run: a simple query each, or an Execute of the extended protocol."""
    return [
        line.split("\t")[2] for line in lines if line.startswith("F\t") and line.split("\t")[2] in ("Query", "Execute")
    ]


def round_trips(lines: list[str]) -> int:
    """Each round trip ends with the server's ReadyForQuery."""
    return sum(1 for line in lines if line.startswith("B\t") and "\tReadyForQuery\t" in line)


def _end(dsn: str, pid: int) -> None:
    """Have the server end backend ``pid`` (as a restart does), and wait until it has gone."""
    with psycopg.connect(dsn, autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        wait_for(
            lambda: other.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (0,),
            timeout=10,
            what=f"backend {pid} gone",
        )


def test_a_quiet_connection_is_checked_without_a_round_trip_and_one_the_server_ended_fails(db_url: str) -> None:
    with db.Connection.connect(db_url) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        conn.idle_since = time.monotonic()  # as the pool notes it when the connection comes back
        with traced(conn) as lines:
            db.check_quietly(conn)
        assert lines == []  # nothing sent, nothing read
        conn.idle_since = time.monotonic() - db.QUIET_CHECK_S - 1  # idle long: a firewall may have dropped it
        with traced(conn) as lines:
            db.check_quietly(conn)
        assert sent(lines) == ["Query"] and round_trips(lines) == 1  # psycopg's full check, an empty query
        conn.idle_since = time.monotonic()
        _end(db_url, conn.info.backend_pid)
        wait_for(lambda: db.stirred(conn), timeout=10, what="the closed socket readable")
        with pytest.raises(psycopg.OperationalError):
            db.check_quietly(conn)  # the full check ran, and failed: the pool replaces the connection


def test_the_pool_replaces_a_connection_the_server_ended_while_it_was_idle(db_url: str) -> None:
    pool = db.open_pool(db_url, min_size=1, max_size=1, connect_timeout=5)
    try:
        pool.wait(10)
        with pool.connection() as conn:
            pid = conn.info.backend_pid
        _end(db_url, pid)
        with pool.connection() as conn:  # not the dead one: the check found it and the pool made another
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.info.backend_pid != pid
        with pool.connection() as conn:  # and a quiet one is handed out again
            assert conn.execute("SELECT 2").fetchone() == (2,)
    finally:
        pool.close()


def test_a_read_alone_is_one_round_trip_without_a_transaction(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        with traced(conn) as lines, db.alone(conn):
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert sent(lines) == ["Query"] and round_trips(lines) == 1
        assert not any('"BEGIN"' in line or '"COMMIT"' in line for line in lines)
        assert conn.autocommit is False  # the pool's connection is given back as it was
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE
        with conn.transaction():  # already in a transaction: the read is made in it
            conn.execute("SELECT 2")
            with db.alone(conn):
                conn.execute("SELECT 3")
            assert conn.info.transaction_status == pq.TransactionStatus.INTRANS
        assert conn.autocommit is False


def test_a_connection_that_cannot_go_back_out_of_autocommit_is_closed(db_url: str) -> None:
    """Never handed back to the pool in autocommit (its next user's writes would commit one by one)."""
    with db.Connection.connect(db_url) as conn:
        with db.alone(conn):
            conn.execute("BEGIN")  # a transaction left open in the block: autocommit cannot be turned off
        assert conn.closed
    with db.Connection.connect(db_url) as conn:
        with db.alone(conn):
            _end(db_url, conn.info.backend_pid)
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        assert conn.closed


def test_a_round_of_figures_is_one_statement_and_keeps_what_it_read_with_the_id_it_held(
    demo_dsn: str, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.delete(kpi.CACHE_KEY, LAST_KEY)
        wanted = {
            "tiles": kpi.tiles_figure(BANNER),
            "steps": kpi.steps_figure(BANNER),
            "board": vans.board_figure(300, None),  # never kept: read every round
        }
        with psycopg.connect(demo_dsn) as conn:
            held = db.replayed_through(conn)
            with traced(conn) as lines:
                first = kpi.figures(client, conn, wanted)
            assert round_trips(lines) == 1 and len(sent(lines)) == 1
            assert not any('"BEGIN"' in line or '"COMMIT"' in line for line in lines)
            assert first["tiles"]["reported_ytd"] > 0 and first["steps"] and first["board"]
            assert set(client.hkeys(kpi.CACHE_KEY)) == {"tiles", "steps"}  # kept: no newer event published
            with traced(conn) as lines:
                again = kpi.figures(client, conn, wanted)
            assert again == first and round_trips(lines) == 1  # the board alone read; the rest from the cache
            # an event newer than what the read held was published meanwhile: read, not kept
            client.delete(kpi.CACHE_KEY)
            events.publish(client, [(held + 1, "case.created", "{}")])
            assert kpi.figures(client, conn, wanted) == first
            assert client.hkeys(kpi.CACHE_KEY) == []
    finally:
        client.close()


class _Counting(redis.Redis):
    """The real client, noting the commands it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return super().execute_command(*args, **options)


def test_an_answer_computed_without_waiting_reads_the_generation_once(redis_url: str) -> None:
    client = _Counting.from_url(redis_url, decode_responses=True)
    try:
        client.delete(LAST_KEY)
        answers = LayerAnswers()
        client.commands.clear()
        assert answers.answer(client, "cases", ("case.",), {"scope": None}, lambda: "pins") == ("pins", False)
        assert client.commands == ["HMGET"]
        assert answers.answer(client, "cases", ("case.",), {"scope": None}, lambda: "again") == ("pins", True)
        assert client.commands == ["HMGET", "HMGET"]
    finally:
        client.close()


def test_a_route_that_only_reads_takes_no_transaction_and_gives_the_connection_back_as_it_was(db_url: str) -> None:
    pool = db.open_pool(db_url, min_size=1, max_size=1, connect_timeout=5)
    svc = Services(settings=Settings(database_url=db_url, _env_file=None), pool=pool, redis=None)  # type: ignore[arg-type]
    try:
        with ExitStack() as trace:  # the trace ends after the connection went back: its COMMIT, if any
            with svc.reading(alone=True) as conn:
                lines = trace.enter_context(traced(conn))
                conn.execute("SELECT 1")
                conn.execute("SELECT 2")
        assert sent(lines) == ["Query", "Query"] and round_trips(lines) == 2  # no BEGIN, no COMMIT
        with ExitStack() as trace:
            with svc.reading() as conn:  # the same connection, in a transaction as before
                lines = trace.enter_context(traced(conn))
                assert conn.autocommit is False
                conn.execute("SELECT 3")
        queried = [line.split("\t")[3].strip() for line in lines if line.startswith("F\t") and "\tQuery\t" in line]
        assert queried == ['"BEGIN"', '"SELECT 3"', '"COMMIT"']
    finally:
        pool.close()


def test_a_read_alone_that_fails_gives_a_sane_connection_back(db_url: str) -> None:
    """A statement that fails in the block (a route's 4xx raised there alike): the pool gets the
    connection back out of autocommit, and the next route's reads run on it as before."""
    pool = db.open_pool(db_url, min_size=1, max_size=1, connect_timeout=5)
    svc = Services(settings=Settings(database_url=db_url, _env_file=None), pool=pool, redis=None)  # type: ignore[arg-type]
    pids: list[int] = []

    def failing_read() -> None:
        with svc.reading(alone=True) as conn:
            pids.append(conn.info.backend_pid)
            conn.execute("SELECT 1 / 0")

    try:
        with pytest.raises(psycopg.errors.DivisionByZero):
            failing_read()
        with svc.reading() as conn:
            assert pids == [conn.info.backend_pid]  # the same connection, kept
            assert conn.autocommit is False
            assert conn.execute("SELECT 2").fetchone() == (2,)
            assert conn.info.transaction_status == pq.TransactionStatus.INTRANS
    finally:
        pool.close()

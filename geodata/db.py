"""The PostGIS connection pool.

Opened without waiting, so the app starts (and answers /healthz with 503) while the database
is down; every checkout tests the connection, so a restarted server is picked up by itself. Every
connection starts with a ``statement_timeout`` and an ``idle_in_transaction_session_timeout`` (set in
the startup packet, so they cost no round trip): no request can keep a backend busy, or hold locks
while its client dawdles, for longer than its budget. A route class that needs more (the CSV export)
raises its own budget with ``SET LOCAL`` in its transaction (:func:`budget`). A checkout waits
at most :func:`checkout_timeout` for a connection (not psycopg_pool's 30 s): with
the database down a request is answered 503 in seconds (api/errors.py), not left hanging.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg_pool import ConnectionPool

log = logging.getLogger("yitu.db")


def checkout_timeout(connect_timeout: float, margin: float = 7.0) -> float:
    """How long a request waits for a pooled connection: one connection attempt and a margin
    (the main pool's 7 s lets a burst of slow wall-screen queries queue rather than fail; the
    intake pool's 2 s: its lanes hold at most two connections, only an outage makes them wait)."""
    return connect_timeout + margin


def session_options(statement_timeout_ms: int = 0, idle_in_transaction_ms: int = 0) -> str:
    """libpq ``options`` giving every statement of a connection its time budget (0: none)."""
    return (
        f"-c statement_timeout={int(statement_timeout_ms)} "
        f"-c idle_in_transaction_session_timeout={int(idle_in_transaction_ms)}"
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
) -> ConnectionPool:
    pool = ConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=checkout_timeout(connect_timeout),
        name=name,
        kwargs={
            "connect_timeout": max(1, round(connect_timeout)),
            "application_name": "yitu",
            "options": session_options(statement_timeout_ms, idle_in_transaction_ms),
        },
        check=ConnectionPool.check_connection,
        open=False,
    )
    pool.open(wait=False)
    return pool

"""The PostGIS connection pool.

Opened without waiting, so the app starts (and answers /healthz with 503) while the database
is down; every checkout tests the connection, so a restarted server is picked up by itself. A
checkout waits at most :func:`checkout_timeout` for a connection (not psycopg_pool's 30 s): with
the database down a request is answered 503 in seconds (api/errors.py), not left hanging.
"""

from __future__ import annotations

import logging

from psycopg_pool import ConnectionPool

log = logging.getLogger("yitu.db")


def checkout_timeout(connect_timeout: float, margin: float = 7.0) -> float:
    """How long a request waits for a pooled connection: one connection attempt and a margin
    (the main pool's 7 s lets a burst of slow wall-screen queries queue rather than fail; the
    intake pool's 2 s: its lanes hold at most two connections, only an outage makes them wait)."""
    return connect_timeout + margin


def open_pool(dsn: str, *, min_size: int, max_size: int, connect_timeout: float, name: str = "yitu") -> ConnectionPool:
    pool = ConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=checkout_timeout(connect_timeout),
        name=name,
        kwargs={"connect_timeout": max(1, round(connect_timeout)), "application_name": "yitu"},
        check=ConnectionPool.check_connection,
        open=False,
    )
    pool.open(wait=False)
    return pool

"""Small helpers shared by the tests (fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:
            last_exc = exc
        time.sleep(0.1)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else "")
    )


def with_dbname(dsn: str, dbname: str) -> str:
    return make_conninfo(dsn, dbname=dbname)


@functools.cache
def _runtime_login() -> dict[str, str]:
    """The runtime role of the tests' server: the embedded stack's, or YITU_DATABASE_URL's."""
    from services.settings import Settings

    info = conninfo_to_dict(Settings().database_dsn())
    return {k: str(info.get(k) or "") for k in ("host", "port", "user", "password")}


def as_runtime(dsn: str) -> str:
    """A test database's DSN (its owner's) for the runtime role the app connects as.

    Only a database on the tests' server has that role's password here; any other DSN (a scratch
    stack, an unreachable address) comes back as it is: pass that server's runtime DSN instead.
    """
    login, info = _runtime_login(), conninfo_to_dict(dsn)
    if (str(info.get("host") or ""), str(info.get("port") or "")) != (login["host"], login["port"]):
        return dsn
    return make_conninfo(dsn, user=login["user"], password=login["password"])


def app_database(dsn: str) -> dict[str, str]:
    """The settings of an app on the test database ``dsn``: the runtime role, and the owner."""
    return {"database_url": as_runtime(dsn), "database_owner_url": dsn}


def with_redis_db(url: str, index: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{index}"))


def stream_entries(redis_url: str) -> list[tuple[int, str, dict[str, Any]]]:
    """The live stream as (outbox id, type, event), oldest first."""
    import redis

    from services.events import STREAM

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [(int(f["outbox_id"]), f["type"], json.loads(f["event"])) for _id, f in client.xrange(STREAM)]
    finally:
        client.close()


@contextlib.contextmanager
def relay_running(dsn: str, redis_url: str, poll: float = 0.2) -> Iterator[Any]:
    """An outbox relay (services/relay.py) on ``dsn`` publishing to ``redis_url`` while the block
    runs: for the tests that write without an app (an app runs its own)."""
    import redis

    from services.relay import Relay

    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    relay = Relay(dsn, client, poll=poll)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()
        client.close()


def keyed(headers: Mapping[str, str] | None = None, key: str | None = None) -> dict[str, str]:
    """``headers`` with an Idempotency-Key (``key``, else a new one): every report needs one (428 without)."""
    return {**(headers or {}), "Idempotency-Key": key or f"test-{uuid.uuid4().hex}"}


def all_published(dsn: str, timeout: float = 15.0) -> None:
    """Wait until the outbox relay has published every event committed in ``dsn`` (nothing pending):
    a test that counts events in the stream, including that a replay added none, counts after this."""
    import psycopg

    from geodata import outbox

    def drained() -> bool:
        with psycopg.connect(dsn) as conn:
            return outbox.pending(conn) == 0

    wait_for(drained, timeout=timeout, what="the outbox relay publishing every committed event")

"""The one way to a Redis client: a plain server, or the master of a Sentinel set.

``YITU_REDIS_URL`` is either redis-py's own ``redis://[[user]:password@]host:port/db`` (also
``rediss://``, ``unix://``) or a Sentinel set::

    redis+sentinel://[[user]:password@]host:port[,host:port…]/mastername[/db][?sentinel_password=…]

— the Sentinels' addresses, the name they monitor the master under, the database (0 when
omitted). The password in front is the master's (and its replicas'); Sentinels that require a
password of their own take it as ``sentinel_password``. Every client here (sync for the routes and
the relay, asyncio for the live hub) asks the Sentinels where the master is when it connects, and
redis-py's Sentinel connections drop a connection whose server is no longer the master (a
``READONLY`` answer after a failover) — so after a failover the next command after the error
reaches the new master, and the relay's and the live hub's own retry loops carry on there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.sentinel import Sentinel, SentinelConnectionPool

from geodata.queries import digits

SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelSet:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def parse(url: str) -> SentinelSet | None:
    """The Sentinel set a ``redis+sentinel://`` URL names (None for any other URL: redis-py reads
    it, and says what is wrong with it when it connects, as before). Raises ValueError naming what
    is wrong with a Sentinel URL."""
    parts = urlsplit(url)
    if parts.scheme != SCHEME:
        return None
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not digits(port) or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} in {SCHEME}:// is not host:port (e.g. 10.0.0.5:26379)")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not digits(path[1])):
        raise ValueError(f"{SCHEME}:// needs /mastername or /mastername/db after the Sentinels, not {parts.path!r}")
    query = parse_qs(parts.query)
    return SentinelSet(
        sentinels=tuple(sentinels),
        master=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(user) or None,
        password=unquote(password) or None,
        sentinel_password=next(iter(query.get("sentinel_password", [])), None),
    )


def _sentinel_kwargs(spec: SentinelSet, timeout: float) -> dict[str, Any]:
    kw: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if spec.sentinel_password:
        kw["password"] = spec.sentinel_password
    return kw


def _node_kwargs(spec: SentinelSet, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"db": spec.db, "username": spec.username, "password": spec.password, **kwargs}


def _connect(url: str, timeout: float, kwargs: dict[str, Any], kind: tuple[Any, Any, Any]) -> Any:
    """A client of ``kind`` (its Redis, Sentinel and Sentinel pool classes: sync or asyncio) for
    ``url``: replies decoded, ``timeout`` seconds to connect and per command; ``kwargs`` go to the
    client (they win). A Sentinel set's client owns its pool (closed with it)."""
    client_class, sentinel_class, pool_class = kind
    opts: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "decode_responses": True,
        **kwargs,
    }
    spec = parse(url)
    if spec is None:
        return client_class.from_url(url, **opts)
    single = bool(opts.pop("single_connection_client", False))  # the client's, not its connections'
    sentinel = sentinel_class(list(spec.sentinels), sentinel_kwargs=_sentinel_kwargs(spec, timeout))
    pool = pool_class(spec.master, sentinel, is_master=True, **_node_kwargs(spec, opts))
    out = client_class(connection_pool=pool, single_connection_client=single)
    out.auto_close_connection_pool = True  # the pool is this client's alone
    return out


def client(url: str, *, timeout: float, **kwargs: Any) -> redis.Redis:
    """A sync client of the Redis (or the Sentinel set's master) ``url`` names (:func:`_connect`)."""
    return cast(redis.Redis, _connect(url, timeout, kwargs, (redis.Redis, Sentinel, SentinelConnectionPool)))


def async_client(url: str, *, timeout: float, **kwargs: Any) -> aioredis.Redis:
    """:func:`client` for asyncio (the live hub's)."""
    return cast(aioredis.Redis, _connect(url, timeout, kwargs, (aioredis.Redis, AsyncSentinel, AsyncSentinelPool)))

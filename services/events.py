"""The live event stream: every committed case change goes to the Redis Stream ``yitu:events``.

Called only after COMMIT, so a screen never shows what the database does not hold. Redis is
live state, not the record: when it is down the write stands, the failure is logged, and for a
few seconds publishing is not even tried (so a dead Redis costs requests nothing); screens catch
up from PostGIS. The stream is capped (``MAXLEN ~ 100000``) so it cannot fill Redis.

Entry fields: ``type`` (case.created / case.changed) and ``event`` (the JSON object).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from geodata.breaker import Breaker

log = logging.getLogger("yitu.events")
STREAM = "yitu:events"
MAXLEN = 100_000


_breaker = Breaker()


def _fields(event: Mapping[str, Any]) -> dict[FieldT, EncodableT]:
    return {"type": str(event.get("type", "")), "event": orjson.dumps(event, default=str).decode()}


def publish_many(client: redis.Redis, events: Iterable[Mapping[str, Any]]) -> bool:
    """XADD each event (one pipeline); False, logged, when Redis is unavailable."""
    batch = list(events)
    if not batch:
        return True
    if _breaker.open(client):
        log.warning("event stream paused after a Redis failure; dropped events=%d", len(batch))
        return False
    try:
        if len(batch) == 1:  # the common case (one write, one event): no pipeline object to build
            client.xadd(STREAM, _fields(batch[0]), maxlen=MAXLEN, approximate=True)
        else:
            pipe = client.pipeline(transaction=False)
            for event in batch:
                pipe.xadd(STREAM, _fields(event), maxlen=MAXLEN, approximate=True)
            pipe.execute()
    except redis.RedisError as exc:
        _breaker.trip(client)
        log.warning("event stream unavailable; the write stands error=%s dropped=%d", type(exc).__name__, len(batch))
        return False
    _breaker.reset(client)
    return True


def publish(client: redis.Redis, event: Mapping[str, Any]) -> bool:
    """XADD one event to ``yitu:events``; never raises for a Redis problem."""
    return publish_many(client, [event])


def stream_client(source: redis.Redis, timeout: float) -> redis.Redis:
    """A client on the same server as ``source`` with a short timeout, for publishing only."""
    kwargs = dict(source.connection_pool.connection_kwargs)
    kwargs.update(socket_timeout=timeout, socket_connect_timeout=timeout)
    pool = redis.ConnectionPool(connection_class=source.connection_pool.connection_class, **kwargs)
    return redis.Redis(connection_pool=pool)


async def publish_many_async(client: aioredis.Redis, events: Sequence[Mapping[str, Any]]) -> bool:
    """:func:`publish_many` on the event loop (the intake lanes' client): never raises for Redis."""
    if not events:
        return True
    if _breaker.open(client):
        log.warning("event stream paused after a Redis failure; dropped events=%d", len(events))
        return False
    try:
        if len(events) == 1:  # a quiet moment's batch of one: no pipeline object to build
            await client.xadd(STREAM, _fields(events[0]), maxlen=MAXLEN, approximate=True)
        else:
            async with client.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.xadd(STREAM, _fields(event), maxlen=MAXLEN, approximate=True)
                await pipe.execute()
    except (redis.RedisError, OSError) as exc:
        _breaker.trip(client)
        log.warning("event stream unavailable; the write stands error=%s dropped=%d", type(exc).__name__, len(events))
        return False
    _breaker.reset(client)
    return True


def async_stream_client(url: str, timeout: float) -> aioredis.Redis:
    """An asyncio client for publishing only, with a short timeout."""
    return aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True)

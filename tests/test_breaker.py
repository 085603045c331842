"""The one Redis breaker (geodata/breaker.py) on the cache of figures: Redis down costs one wait, not one per call."""

from __future__ import annotations

import socket
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from geodata import kpi


def test_the_cache_of_figures_waits_on_a_dead_redis_once_then_computes_at_once(redis_url: str) -> None:
    # A server that takes the connection and never answers (a hung Redis): each try waits out the timeout.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    dead = redis.Redis(  # one try a call (redis-py retries three times by default): the test waits 0.5 s, not 2+
        host="127.0.0.1",
        port=hung.getsockname()[1],
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    calls: list[int] = []

    def compute() -> dict[str, int]:
        calls.append(1)
        return {"open": len(calls)}

    t0 = time.monotonic()
    assert kpi.cached(dead, "figure", compute) == {"open": 1}  # the figures come, Redis or not
    first = time.monotonic() - t0
    t1 = time.monotonic()
    assert kpi.cached(dead, "figure", compute) == {"open": 2}  # computed again: nothing was cached
    second = time.monotonic() - t1
    assert first >= 0.45  # the first call waited out the 0.5 s timeout: Redis was really tried
    assert second < first  # the breaker skipped Redis instead of trying it again
    assert second < 0.1, f"the second call waited {second:.2f}s on a Redis known to be down"

    # A working Redis is used (and cached) as before: the breaker is per client.
    live = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert kpi.cached(live, "figure", compute) == {"open": 3}
        assert kpi.cached(live, "figure", compute) == {"open": 3}  # from the cache
        assert live.hexists(kpi.CACHE_KEY, "figure")
    finally:
        live.close()
        dead.close()
        hung.close()

"""One answer of a live map layer for every screen that asks after the same events.

A batch of case events makes every open wall screen reload its case pins (dashboard/assets/
yitu_map.js): ten screens ask for the same answer within a few hundred milliseconds, and each
used to cost the layer's query and its encoding — the largest cost of a busy command centre
(docs/scaling.md). Now each process computes an answer once per (layer, reader's area, role,
parameters, **generation**) and hands it to every request for the same key, the ones that came
while it was being computed included.

The generation is the outbox id of the newest event of the layer's families (``case``,
``dispatch``, ``van`` …, the prefixes of ``Layer.live``), which the stream's one publisher keeps
in the same atomic step as its XADD (services/events.py ``LAST_KEY``). An answer computed after
reading generation G holds every change up to G, so a screen that reloads because of G's event
never gets one older than that event. What changes without an event (time passing: a deadline
falling due, a closed pin leaving the ``closed_hours`` window) is at most :data:`TTL_S` late.

Not cached: a layer without live events (the grid, cameras: a page loads them once), a read that
follows the caller's own write (it goes to the primary, and must see that write before its event
is published), and everything while Redis does not answer (the breaker: the generation is unknown).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis as redis_lib

from geodata import db
from geodata.breaker import Breaker
from services.events import LAST_KEY

log = logging.getLogger("yitu.layers")

TTL_S = 5.0  # the longest an answer is handed out: bounds what changes without an event
MAX_ENTRIES = 64  # answers kept per process (filters × areas × formats in use at once)

_breaker = Breaker()


def families(prefixes: Iterable[str]) -> tuple[str, ...]:
    """The event families of a layer's live prefixes (``case.`` → ``case``), sorted."""
    return tuple(sorted({p.split(".", 1)[0] for p in prefixes}))


def generation(client: redis_lib.Redis, fams: tuple[str, ...]) -> str | None:
    """The layer's generation: the newest outbox id of each family (``-`` for none yet); None
    when Redis does not answer (then nothing is shared)."""
    if _breaker.open(client):
        return None
    try:
        values = client.hmget(LAST_KEY, list(fams))
    except redis_lib.RedisError as exc:
        _breaker.trip(client)
        log.warning("layer answers not shared: no generation error=%s", type(exc).__name__)
        return None
    _breaker.reset(client)
    return ".".join(str(v) if v else "-" for v in values)


def key(layer: str, gen: str, parts: Mapping[str, Any]) -> str:
    """The answer's key: the layer, its generation and everything that shapes the answer."""
    text = json.dumps([layer, gen, sorted(parts.items())], default=str, ensure_ascii=False)
    return hashlib.sha1(text.encode()).hexdigest()


class LayerAnswers:
    """A process's shared answers: at most one computation per key at a time, the rest wait for it."""

    def __init__(self, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._computing: dict[str, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def answer(
        self,
        client: redis_lib.Redis,
        layer: str,
        live: Iterable[str],
        parts: Mapping[str, Any],
        compute: Callable[[], Any],
    ) -> tuple[Any, bool]:
        """(answer, whether it was shared) for ``parts`` (the reader's area, filters, box, format)."""
        fams = families(live)
        if not fams or db.follows_write():
            return compute(), False
        gen = generation(client, fams)
        if gen is None:
            return compute(), False
        k = key(layer, gen, parts)
        got = self._fresh(k)
        if got is not None:
            return got, True
        with self._lock:
            guard = self._computing.setdefault(k, threading.Lock())
        with guard:  # one computes; the others asking meanwhile take its answer
            try:
                got = self._fresh(k)
                if got is not None:
                    return got, True
                value = compute()
                with self._lock:
                    self.misses += 1
                    self._entries[k] = (time.monotonic(), value)
                    self._entries.move_to_end(k)
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
            finally:
                with self._lock:
                    self._computing.pop(k, None)
        return value, False

    def _fresh(self, k: str) -> Any | None:
        with self._lock:
            hit = self._entries.get(k)
            if hit is None:
                return None
            if time.monotonic() - hit[0] > self.ttl_s:
                del self._entries[k]
                return None
            self.hits += 1
            return hit[1]

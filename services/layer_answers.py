"""One answer of a live map layer for every screen that asks after the same events.

A batch of case events makes every open wall screen reload its case pins (dashboard/assets/
yitu_map.js): ten screens ask for the same answer within a few hundred milliseconds, and each
used to cost the layer's query and its encoding — the largest cost of a busy command centre
(docs/scaling.md). Now each process keeps one answer per (layer, reader's area, filters, box,
format) with the point of the event stream it was computed at, and hands it to every request it
is recent enough for; requests that come while it is being computed wait for it.

The stream's one publisher keeps, in the same atomic step as its XADD (geodata/outbox.py
``LAST_KEY``), the outbox id of the newest event of each family (``case``, ``dispatch``, ``van``
…, the prefixes of ``Layer.live``) and of all (``*``). An answer computed after reading those
holds every change whose event is at or below them (the relay publishes after the commit). So an
answer serves a request when

- the request names the event it reloads for (``rev``: the outbox id of the newest event of the
  screen's batch, yitu_map.js) and that event is at or below the answer's ``*``; or
- no event of the layer's families came since the answer (a page opening, a resync).

With a read replica (services/runtime.py) an answer holds what the replica had replayed, which may
be less than the stream said: the computation runs inside a read floor at the event asked after
(a replica that has not replayed it is passed over for the primary), and the answer is kept as
holding the events up to what the replica had replayed (:func:`_held`), not up to the stream's.

No screen therefore gets pins from before the event it reloads for, and under 1,000 GPS fixes a
second the screens of one batch still share one vans answer. What changes without an event (time
passing: a deadline falling due, a closed pin leaving the ``closed_hours`` window) is at most
:data:`TTL_S` late. Not shared: a layer without live events (the grid, cameras: a page loads them
once), a read that follows the caller's own write (it goes to the primary and must see that write
before its event is published), and everything while Redis does not answer (the breaker).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis as redis_lib

from geodata import db
from geodata.breaker import Breaker
from geodata.outbox import LAST_KEY

log = logging.getLogger("yitu.layers")

TTL_S = 5.0  # the longest an answer is handed out: bounds what changes without an event
MAX_ENTRIES = 64  # answers kept per process (filters × areas × formats in use at once)

_breaker = Breaker()


def families(prefixes: Iterable[str]) -> tuple[str, ...]:
    """The event families of a layer's live prefixes (``case.`` → ``case``), sorted."""
    return tuple(sorted({p.split(".", 1)[0] for p in prefixes}))


ALL = "*"  # the field of LAST_KEY with the newest outbox id of any family


@dataclass(frozen=True)
class Generation:
    """Where the stream stood for a layer: its families' newest outbox ids, and the newest of all."""

    families: tuple[int, ...]
    everything: int


def generation(client: redis_lib.Redis, fams: tuple[str, ...]) -> Generation | None:
    """The layer's generation now (0 for a family with no event yet); None when Redis does not
    answer (then nothing is shared)."""
    if _breaker.open(client):
        return None
    try:
        values = client.hmget(LAST_KEY, [*fams, ALL])
    except redis_lib.RedisError as exc:
        _breaker.trip(client)
        log.warning("layer answers not shared: no generation error=%s", type(exc).__name__)
        return None
    _breaker.reset(client)
    ids = tuple(int(v) if v else 0 for v in values)
    return Generation(ids[:-1], ids[-1])


def key(layer: str, parts: Mapping[str, Any]) -> str:
    """The answer's key: the layer and everything that shapes the answer."""
    text = json.dumps([layer, sorted(parts.items())], default=str, ensure_ascii=False)
    return hashlib.sha1(text.encode()).hexdigest()


@dataclass(frozen=True)
class _Kept:
    at: float  # time.monotonic() when computed
    gen: Generation  # read before computing: the answer holds at least this
    value: Any

    def serves(self, now: Generation, rev: int | None, ttl_s: float) -> bool:
        if time.monotonic() - self.at > ttl_s:
            return False
        return (rev is not None and rev <= self.gen.everything) or now.families == self.gen.families


def _held(gen: Generation, seen: int | None) -> Generation:
    """What an answer computed after reading ``gen`` holds, when a replica that had replayed the
    events up to ``seen`` served it (None: only the primary did): the events up to the lesser of the
    two, and the layer's families only if the replica had them all (else it never matches "no event
    since", and is handed out only to the screens told of an event it holds)."""
    if seen is None or seen >= gen.everything:
        return gen
    families = gen.families if all(f <= seen for f in gen.families) else tuple(-1 for _ in gen.families)
    return Generation(families, seen)


class LayerAnswers:
    """A process's shared answers: at most one computation per key at a time, the rest wait for it."""

    def __init__(self, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Kept] = OrderedDict()
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
        rev: int | None = None,
    ) -> tuple[Any, bool]:
        """(answer, whether it was shared) for ``parts`` (the reader's area, filters, box, format),
        asked for after the event ``rev`` (its outbox id; None: not after a particular event)."""
        fams = families(live)
        if not fams or db.follows_write():
            return compute(), False
        gen = generation(client, fams)
        if gen is None:
            with db.read_floor(rev):  # no generation known: at least the event asked after
                return compute(), False
        k = key(layer, parts)
        got = self._kept(k, gen, rev)
        if got is not None:
            return got.value, True
        with self._lock:
            guard = self._computing.setdefault(k, threading.Lock())
        waited = not guard.acquire(blocking=False)
        if waited:
            guard.acquire()  # one computes; the others asking meanwhile take its answer
        try:
            got = self._kept(k, gen, rev)
            if got is not None:
                return got.value, True
            if waited:  # read again: the wait may have been long (else it was read a moment ago)
                gen = generation(client, fams) or gen
            with db.read_floor(rev) as mark:  # a replica behind the event asked after: the primary
                value = compute()
            gen = _held(gen, mark.seen)
            with self._lock:
                self.misses += 1
                self._entries[k] = _Kept(time.monotonic(), gen, value)
                self._entries.move_to_end(k)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        finally:
            with self._lock:
                self._computing.pop(k, None)
            guard.release()
        return value, False

    def _kept(self, k: str, gen: Generation, rev: int | None) -> _Kept | None:
        with self._lock:
            kept = self._entries.get(k)
            if kept is None or not kept.serves(gen, rev, self.ttl_s):
                return None
            self.hits += 1
            return kept

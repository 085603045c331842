"""Live push: each app process tails the Redis Stream ``yitu:events`` once and fans it out.

One :class:`LiveHub` per process, started in the app's lifespan, runs a single ``XREAD BLOCK``
loop on the event loop (``redis.asyncio``) and hands every entry to the screens this process
serves (the WebSocket callbacks in ``callbacks/live.py``), each through its own bounded queue.
So a hundred wall screens cost one Redis reader, and several processes each serve their own
screens from the same stream.

Nothing is lost silently:

- a screen that reconnects (a lost WebSocket, a restarted app process) sends the id of the last
  entry it saw, and :meth:`LiveHub.subscribe` replays what came after it (``XRANGE``) before it
  goes live;
- when that is not possible — the stream was trimmed past the screen's id, Redis was restarted
  and the stream is new, the screen's queue overflowed, or this process lost Redis for a while —
  the screen gets a ``resync`` message and reloads its layers and numbers from PostGIS, the record;
- every entry carries its ``outbox_id`` (1, 2, 3 … consecutive, services/events.py): the hub
  tracks the last one it read, and an entry that is not the next one (entries lost with a Redis
  restart, trimmed away, an outbox numbered afresh) makes every screen resync, then the hub goes
  on from that entry. Nothing committed is ever missing from the stream once Redis answers (the
  outbox relay, services/relay.py), so a gap means Redis lost entries, not that a writer did.

Area scope: a screen whose reader is scoped to an area (``Principal.area``) subscribes with that
area, and its subscription takes only the events it may see: those of cases and dispatches whose
grid chain (the event's ``grid``, as written at commit) contains the area, and those of the vans
of its banner (the event's ``banner``: a van belongs to its base centre's banner) and of the
league's own vans (``banner`` null; geodata/queries.py ``van_in_scope``, the rule the van queries
apply in SQL). An event of a case without a chain reaches only the unscoped screens. The filter
is per connection, in the hub, before anything is queued for it.

Seeing case events also drops every cached figure — the KPI tiles, charts and ranking and the
choropleth's numbers, all in the one hash ``yitu:cache:kpi`` (geodata/kpi.py) — so what a screen
reloads is new rather than up to 15 s old, and the map's shading agrees with the tiles. A
process with no screen open skips both (the processes that serve screens do it before telling
theirs): with no screen open anywhere, a screen that opens then reads figures at most the cache's
15 s old, as any cache read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from redis.typing import StreamRangeResponse, XReadResponse

from geodata.kpi import CACHE_KEY as KPI_CACHE
from geodata.kpi import FIGURE_FAMILIES
from geodata.queries import van_in_scope
from services import redisconn
from services.events import STREAM

log = logging.getLogger("yitu.live")

BLOCK_MS = 2000  # one XREAD waits at most this long (so shutdown is prompt)
READ_COUNT = 500  # entries per XREAD
QUEUE_SIZE = 2000  # entries a slow screen may lag before it is told to resync
REPLAY_LIMIT = 5000  # entries replayed to a reconnecting screen before a resync is cheaper
RETRY_MAX = 5.0  # seconds between attempts while Redis is down


@dataclass
class Entry:
    """One stream entry: its id, its type (case.created, van.moved, dispatch.created …) and its event.

    The event's JSON is parsed only when a screen needs it: a process with no screen open (an
    API-only worker taking GPS batches of 500) reads the stream for the cache flush only.
    """

    id: str
    type: str
    raw: str
    outbox_id: int | None = None

    @functools.cached_property
    def event(self) -> dict[str, Any]:
        try:
            event = orjson.loads(self.raw or "{}")
        except orjson.JSONDecodeError:
            return {}
        return event if isinstance(event, dict) else {}

    def visible_in(self, area: str | None) -> bool:
        """May a screen scoped to ``area`` (None: everywhere) see this entry? Case and dispatch
        events only when their grid chain contains the area; a van's only inside its banner (or
        the league's vans', banner null, everywhere: as the van queries, van_in_scope); every other
        (``areas.changed`` of a grid import) always: it carries no case and no personal data."""
        if area is None:
            return True
        if self.type.startswith(VAN_TYPES):
            banner = self.event.get("banner")
            return van_in_scope(area, banner if isinstance(banner, str) else None)
        if not self.type.startswith(SCOPED_TYPES):
            return True
        grid = self.event.get("grid")
        return isinstance(grid, list) and area in grid

    def as_json(self) -> dict[str, Any]:
        """What a screen is sent of the entry (made once: every screen of the process gets the same
        entry; read only)."""
        return self._wire

    @functools.cached_property
    def _wire(self) -> dict[str, Any]:
        event = self.event
        return {"id": self.id, "type": self.type, **{k: event[k] for k in _WIRE_FIELDS if k in event}}


# The events that belong to a case (and so to the areas of its grid chain): a scoped screen sees
# them only inside its area.
SCOPED_TYPES = ("case.", "dispatch.")
# The events of a van (``van.moved``): a scoped screen sees them only for its banner's vans (the
# event's ``banner``) and the league's (``banner`` null, or an event written before vans had one).
VAN_TYPES = ("van.",)

# What a screen needs of an event to decide what to refresh; events carry no personal data.
_WIRE_FIELDS = (
    "code",
    "step",
    "level",
    "grid",
    "lon",
    "lat",
    "at",
    "action",
    "van",
    "status",
    "dispatch",
    "heading",
    "speed",
    "case",
)


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str | None) -> str:
    """A reply's value as text (the hub's clients decode replies; the stubs cannot know that)."""
    if isinstance(value, bytes):
        return value.decode()
    return value or ""


def _parse(rows: StreamRangeResponse | None) -> list[Entry]:
    """XRANGE / XREAD rows as entries."""
    out = []
    for entry_id, fields in rows or []:
        got = fields or {}
        number = _text(got.get("outbox_id"))
        out.append(
            Entry(
                _text(entry_id),
                _text(got.get("type")),
                _text(got.get("event")),
                int(number) if number.isdigit() else None,
            )
        )
    return out


def _outbox_id(rows: StreamRangeResponse | None) -> int | None:
    """The outbox id of the first row of a reply (``XREVRANGE … COUNT 1``: the newest), if any."""
    entries = _parse(rows[:1] if rows else [])
    return entries[0].outbox_id if entries else None


def _first_id(rows: StreamRangeResponse | None) -> str:
    """The id of the first row of a reply (``XREVRANGE … COUNT 1``: the newest); "0-0" for none."""
    return _text(rows[0][0]) if rows else "0-0"


def _read_rows(reply: XReadResponse) -> StreamRangeResponse:
    """The rows of an ``XREAD`` of the one stream: ``[[stream, rows]]``, or empty when the block ran out."""
    if not reply:
        return []
    assert isinstance(reply, list), "the hub's clients speak RESP2: XREAD answers a list"
    rows: StreamRangeResponse = reply[0][1]
    return rows


@dataclass(eq=False)  # identity: each screen's subscription is its own
class Subscription:
    """A screen's view of the hub: entries in order, or a resync when continuity is lost."""

    queue: asyncio.Queue[Entry] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    resync: asyncio.Event = field(default_factory=asyncio.Event)
    last_id: str | None = None
    area: str | None = None  # the screen's reader's area scope (None: everywhere)

    def offer(self, entry: Entry) -> None:
        if self.last_id is not None and _id_tuple(entry.id) <= _id_tuple(self.last_id):
            return  # already replayed to this screen
        if not entry.visible_in(self.area):
            return  # outside the screen's area: it never reaches it
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.resync.set()

    # The wait is bounded here rather than by the caller's ``asyncio.timeout``: a cancellation
    # arriving just as the queue hands over an entry would drop that entry, and a screen must
    # never miss one silently. ``asyncio.wait(timeout=)`` ends the wait without cancelling us.
    async def next(self, timeout: float) -> list[Entry] | None:  # noqa: ASYNC109 (see above)
        """The entries waiting (at least one, within ``timeout``), ``[]`` on timeout, None for resync."""
        if self.resync.is_set():
            return None
        out: list[Entry] = []
        if self.queue.empty() and timeout > 0:
            getter = asyncio.ensure_future(self.queue.get())
            flag = asyncio.ensure_future(self.resync.wait())
            try:
                await asyncio.wait({getter, flag}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when the screen's callback is cancelled (its WebSocket closed)
                flag.cancel()
                got = getter.done() and not getter.cancelled()
                if not getter.done():
                    getter.cancel()
            if got:
                out.append(getter.result())
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        if self.resync.is_set():
            return None
        if out:
            self.last_id = out[-1].id
        return out

    def resynced(self) -> None:
        """The screen reloaded from PostGIS: what it had queued is stale, continue from here."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.resync.clear()


class LiveHub:
    """The process's one reader of ``yitu:events`` and the fan-out to its screens."""

    def __init__(self, redis_url: str, timeout: float) -> None:
        self._url = redis_url
        self._timeout = timeout
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None
        self._reader: aioredis.Redis | None = None
        self._reader_id: int | None = None
        self._last_id: str | None = None
        self._delivered_id: str | None = None  # of the last entry handed to the screens (a resync included)
        self._last_outbox_id: int | None = None  # of the last entry read; None: take the next as it comes
        self._healthy = False
        self._failed = False  # Redis failed since the last good read: screens must resync
        self._stopping = asyncio.Event()  # set by stop(): the reader's loops end, its pauses too
        self.read_entries = 0

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._client = redisconn.async_client(self._url, timeout=self._timeout)
        # The blocking XREAD gets a connection of its own, so stop() can wake it (CLIENT UNBLOCK).
        self._reader = redisconn.async_client(
            self._url,
            timeout=self._timeout,
            single_connection_client=True,
            socket_timeout=2 * self._timeout + BLOCK_MS / 1000,
        )
        self._task = asyncio.create_task(self._run(), name="yitu-live-hub")

    async def stop(self) -> None:
        """Wake the reader's XREAD and let the loop end, then close the clients.

        Cancelling a blocked ``XREAD`` leaves redis-py waiting on the half-read reply, so the
        loop is asked to stop and its XREAD unblocked from the other connection (without that,
        every app shutdown — and every test app — would wait for the block to run out).
        """
        self._stopping.set()
        if self._reader_id is not None and self._client is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await self._client.client_unblock(self._reader_id)
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), BLOCK_MS / 1000 + self._timeout + 1)
            except TimeoutError:
                self._task.cancel()
                log.warning("live reader did not stop in time; cancelled")
        for client in (self._reader, self._client):
            if client is not None:
                await client.aclose()

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def position(self) -> str | None:
        """The id of the last entry read: where a screen that reloads now stands."""
        return self._last_id

    @property
    def delivered(self) -> str | None:
        """The id of the last entry handed to the screens, with the resync its batch called for:
        an entry added to the stream after it reaches a screen as itself, not within a resync."""
        return self._delivered_id

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    # --- subscribing -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def subscribe(
        self, cursor: str | None, area: str | None = None
    ) -> AsyncIterator[tuple[Subscription, list[Entry]]]:
        """A subscription and the entries after ``cursor`` the screen missed (``[]`` when new),
        for a screen scoped to ``area`` (None: everywhere; see :meth:`Entry.visible_in`).

        The subscription is registered before the replay is read, so nothing falls between the
        two (duplicates are dropped by id). When the gap cannot be replayed the subscription
        starts with ``resync`` set.
        """
        sub = Subscription(area=area)
        self._subs.add(sub)
        try:
            missed: list[Entry] = []
            if cursor:
                replay = await self._replay(cursor)
                if replay is None:
                    sub.resync.set()
                else:
                    missed = [e for e in replay if e.visible_in(area)]
                    sub.last_id = replay[-1].id if replay else cursor
            else:
                sub.last_id = self._last_id
            yield sub, missed
        finally:
            self._subs.discard(sub)

    async def _replay(self, cursor: str) -> list[Entry] | None:
        """Entries strictly after ``cursor``; None when the stream no longer reaches back to it."""
        try:
            _id_tuple(cursor)
        except ValueError:
            return None
        assert self._client is not None
        try:
            first = await self._client.xrange(STREAM, count=1)
            last = await self._client.xrevrange(STREAM, count=1)
            if not last or not first or _id_tuple(_first_id(last)) < _id_tuple(cursor):
                return None  # a new stream (Redis restarted, flushed): the screen's id is from before
            if _id_tuple(_first_id(first)) > _id_tuple(cursor):
                # The oldest entry left is newer than the screen's: some may be trimmed away.
                return None
            rows = await self._client.xrange(STREAM, min=f"({cursor}", count=REPLAY_LIMIT + 1)
        except (redis.RedisError, OSError) as exc:
            log.warning("live replay unavailable error=%s", type(exc).__name__)
            return None
        if rows is None or len(rows) > REPLAY_LIMIT:
            return None
        return _parse(rows)

    # --- the reader --------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = 0.2
        while not self._stopping.is_set():
            try:
                await self._read_forever()
            except (redis.TimeoutError, TimeoutError) as exc:
                if await self._answers():
                    # A reply late (a busy process, a slow Redis) loses nothing: the stream still
                    # holds what came, and the next XREAD goes on from the last id read.
                    log.info("live stream read timed out; reading on from %s", self._last_id)
                    continue
                self._lost(exc)
                await self._pause(delay)
                delay = min(RETRY_MAX, delay * 2)
            except (redis.RedisError, OSError) as exc:
                self._lost(exc)
                await self._reconnect()
                await self._pause(delay)
                delay = min(RETRY_MAX, delay * 2)
            else:
                delay = 0.2

    def _lost(self, exc: BaseException) -> None:
        if self._healthy or not self._failed:
            log.warning("live stream unavailable; screens will resync when Redis is back error=%s", type(exc).__name__)
        self._healthy = False
        self._failed = True

    async def _reconnect(self) -> None:
        """Drop both clients' connections after an error: the next command connects afresh, and
        through Sentinel asks where the master is now (after a failover the old one may still
        answer, as a replica: a blocked XREAD there ends with an error and must not go on there)."""
        for client in (self._reader, self._client):
            if client is None:
                continue
            with contextlib.suppress(redis.RedisError, OSError):
                if client.connection is not None:  # the reader's single connection
                    await client.connection.disconnect()
                await client.connection_pool.disconnect()

    async def _answers(self) -> bool:
        """Does Redis answer a PING now (the connection is fine, the read was only late)?"""
        assert self._client is not None
        try:
            return bool(await self._client.ping())
        except (redis.RedisError, OSError, TimeoutError):
            return False

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` before the next attempt, or less when the hub is stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _read_forever(self) -> None:
        assert self._client is not None
        if self._last_id is None or self._failed:
            # Start at the end. After an outage this process may have missed entries (and Redis
            # may have lost some): every screen reloads from PostGIS.
            newest = await self._client.xrevrange(STREAM, count=1)
            self._last_id, self._last_outbox_id = _first_id(newest), _outbox_id(newest)
            if self._failed:
                log.info("live stream back; telling %d screen(s) to resync", len(self._subs))
                for sub in self._subs:
                    sub.resync.set()
                self._failed = False
        assert self._reader is not None
        self._reader_id = int(await self._reader.client_id())
        self._healthy = True
        while not self._stopping.is_set():
            entries = _parse(
                _read_rows(await self._reader.xread({STREAM: self._last_id}, count=READ_COUNT, block=BLOCK_MS))
            )
            if not entries:
                await self._stream_reset()
                continue
            self._last_id = entries[-1].id
            self.read_entries += len(entries)
            gap = self._gap(entries)
            await self._deliver(entries)
            if gap:  # once the entries are queued: the resync drops them with the rest (the reload has them)
                log.warning("live stream gap in outbox ids (%s); telling %d screen(s) to resync", gap, len(self._subs))
                for sub in self._subs:
                    sub.resync.set()
            self._delivered_id = entries[-1].id

    def _gap(self, entries: list[Entry]) -> str | None:
        """Do ``entries`` not follow on from the last outbox id read (and each other)? The last
        id read moves on to theirs either way; returns what was expected and what came, or None."""
        gap = None
        for entry in entries:
            if entry.outbox_id is None:  # not from the relay: nothing to check it by
                continue
            expected = None if self._last_outbox_id is None else self._last_outbox_id + 1
            if expected is not None and entry.outbox_id != expected and gap is None:
                gap = f"expected {expected}, got {entry.outbox_id}"
            self._last_outbox_id = entry.outbox_id
        return gap

    async def _stream_reset(self) -> None:
        """Notice a stream that now ends before our position: Redis lost it (restarted without data)."""
        assert self._client is not None
        assert self._last_id is not None
        newest = await self._client.xrevrange(STREAM, count=1)
        newest_id = _first_id(newest)
        if _id_tuple(newest_id) < _id_tuple(self._last_id):
            log.info("live stream was reset (Redis restarted?); telling %d screen(s) to resync", len(self._subs))
            self._last_id, self._last_outbox_id = newest_id, _outbox_id(newest)
            for sub in self._subs:
                sub.resync.set()

    async def _deliver(self, entries: list[Entry]) -> None:
        if not self._subs:
            # No screen here to tell (an API-only process, or before the first screen opens):
            # nothing to flush for; the processes that serve screens flush before telling them.
            return
        # Caches first: a screen told of a change must not then read the figures from before it.
        if any(e.type.split(".", 1)[0] in FIGURE_FAMILIES for e in entries):  # areas: a grid import
            await self._flush_kpi_cache()
        for sub in list(self._subs):
            for entry in entries:
                sub.offer(entry)

    async def _flush_kpi_cache(self) -> None:
        assert self._client is not None
        await self._client.delete(KPI_CACHE)  # every figure (tiles, choropleth) is a field of the one hash

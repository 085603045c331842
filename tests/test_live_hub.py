"""The live hub on the real Redis: fan-out, replay after a reconnect, resync when continuity is lost."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis

from cli.stack import EmbeddedStack
from geodata import kpi
from geodata.kpi import CACHE_KEY as KPI_CACHE
from services import events
from services.live import Entry, LiveHub, Subscription

from .helpers import wait_for, with_redis_db


def _publish(url: str, *evs: dict[str, Any], skip: int = 0) -> None:
    """XADD ``evs`` as the outbox relay does (services/events.py publish), numbered on from the
    stream's last outbox id (after leaving out ``skip`` numbers: a gap)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        first = events.last_outbox_id(client) + 1 + skip
        rows = [(first + i, str(ev["type"]), json.dumps(ev)) for i, ev in enumerate(evs)]
        assert events.publish(client, rows)[0] == len(evs)
    finally:
        client.close()


def _ids(url: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [i for i, _ in client.xrange(events.STREAM)]
    finally:
        client.close()


def _run(url: str, body: Callable[[LiveHub], Awaitable[Any]], timeout: float = 2.0) -> Any:
    async def main() -> Any:
        hub = LiveHub(url, timeout)
        await hub.start()
        try:
            await _until(lambda: hub.healthy, "the hub reading the stream")
            return await body(hub)
        finally:
            await hub.stop()

    return asyncio.run(main())


async def _until(cond: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + 20.0
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class _Page:
    """The page at the other end of a numbers push's WebSocket (callbacks/live.py ``_NumbersPush``),
    reading Dash's queue as the browser's worker does: it answers the requests for its view but the
    first ``unanswered`` (a page busy drawing), counts them, and keeps what it is sent."""

    def __init__(self, view: dict[str, Any], unanswered: int = 0) -> None:
        import janus
        from dash.backends.ws import DashWebsocketCallback

        self.view, self.unanswered = view, unanswered
        self.queue: janus.Queue[str] = janus.Queue()
        self.pending: dict[str, Any] = {}
        self.ws = DashWebsocketCallback(self.pending, "r1", self.queue, threading.Event(), asyncio.get_running_loop())
        self.sent: list[dict[str, Any]] = []
        self.asks = 0
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            msg = json.loads(await self.queue.async_q.get())
            if msg["type"] == "get_props_request":
                self.asks += 1
                if self.asks > self.unanswered:
                    self.pending[msg["requestId"]].set_result({"data": self.view})
            else:
                self.sent.append(msg["payload"])

    def close(self) -> None:
        self.task.cancel()
        self.queue.close()


async def _collect(sub: Subscription, n: int) -> list[Any]:
    got: list[Any] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + 10.0
    while len(got) < n:
        batch = await sub.next(max(0.05, end - loop.time()))
        assert batch is not None, "unexpected resync"
        got.extend(batch)
        if loop.time() > end:
            raise AssertionError(f"got {len(got)} of {n} entries")
    return got


def test_an_entry_is_sent_as_its_wire_fields_made_once_and_junk_as_nothing() -> None:
    """What a screen is sent of an entry: its id, type and the wire fields only (never a party's
    name or phone), made once for every screen of the process; a raw that is not a JSON object
    (or not JSON) carries no fields."""
    raw = json.dumps({"type": "case.created", "code": "C1", "lon": 107.5, "lat": 38.2, "party_phone": "13800138000"})
    e = Entry("1-0", "case.created", raw, 1)
    assert e.as_json() == {"id": "1-0", "type": "case.created", "code": "C1", "lon": 107.5, "lat": 38.2}
    assert e.as_json() is e.as_json()  # the second screen gets the first one's
    for junk in ("not json", "[1, 2]", '{"code": NaN}', ""):
        assert Entry("2-0", "case.changed", junk).as_json() == {"id": "2-0", "type": "case.changed"}


def test_every_screen_gets_every_event_in_order(redis_url: str) -> None:
    async def body(hub: LiveHub) -> None:
        async with hub.subscribe(None) as (a, missed_a), hub.subscribe(None) as (b, missed_b):
            assert missed_a == missed_b == []
            assert hub.subscribers == 2
            await asyncio.to_thread(
                _publish,
                redis_url,
                *[{"type": "case.created", "code": f"C{i}", "lon": 107.5, "lat": 38.2} for i in range(50)],
            )
            got_a, got_b = await _collect(a, 50), await _collect(b, 50)
        assert [e.event["code"] for e in got_a] == [f"C{i}" for i in range(50)]
        assert [e.id for e in got_a] == [e.id for e in got_b]
        assert got_a[0].type == "case.created" and got_a[0].as_json()["lon"] == 107.5
        assert hub.subscribers == 0

    _run(redis_url, body)


def test_a_reconnecting_screen_gets_what_it_missed_and_nothing_twice(redis_url: str) -> None:
    _publish(redis_url, {"type": "case.created", "code": "BEFORE"})
    seen = _ids(redis_url)[-1]  # the last entry the screen saw before its connection dropped
    _publish(redis_url, *[{"type": "case.changed", "code": f"M{i}"} for i in range(3)])

    async def body(hub: LiveHub) -> None:
        async with hub.subscribe(seen) as (sub, missed):
            assert [e.event["code"] for e in missed] == ["M0", "M1", "M2"]
            await asyncio.to_thread(_publish, redis_url, {"type": "case.changed", "code": "AFTER"})
            live = await _collect(sub, 1)
            assert [e.event["code"] for e in live] == ["AFTER"]
            assert await sub.next(0.3) == []  # the replayed ones do not come again

    _run(redis_url, body)


def test_a_gap_that_cannot_be_replayed_means_resync(redis_url: str) -> None:
    _publish(redis_url, *[{"type": "case.created", "code": f"X{i}"} for i in range(5)])
    ids = _ids(redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.xtrim(events.STREAM, minid=ids[3], approximate=False)  # the entries after ids[0] up to ids[3] are gone
    client.close()

    async def body(hub: LiveHub) -> list[Any]:
        out = []
        for cursor in (ids[0], "99999999999999-0", "not-an-id"):  # trimmed past; from another stream; junk
            async with hub.subscribe(cursor) as (sub, missed):
                out.append((missed, await sub.next(0.1)))
        async with hub.subscribe(ids[3]) as (sub, missed):  # still reachable: replay, no resync
            out.append((missed, await sub.next(0.1)))
        return out

    trimmed, future, junk, fine = _run(redis_url, body)
    assert trimmed == ([], None) and future == ([], None) and junk == ([], None)
    assert [e.event["code"] for e in fine[0]] == ["X4"] and fine[1] == []


def test_a_screen_that_falls_too_far_behind_is_told_to_resync(redis_url: str) -> None:
    async def body(hub: LiveHub) -> Any:
        async with hub.subscribe(None) as (sub, _):
            sub.queue = asyncio.Queue(3)  # a very slow screen
            await asyncio.to_thread(_publish, redis_url, *[{"type": "van.moved", "van": "V01"} for _ in range(10)])
            await _until(sub.resync.is_set, "the overflow to be noticed")
            first = await sub.next(0.1)
            sub.resynced()
            await asyncio.to_thread(_publish, redis_url, {"type": "van.moved", "van": "V02"})
            after = await _collect(sub, 1)
            return first, after

    first, after = _run(redis_url, body)
    assert first is None
    assert [e.event["van"] for e in after] == ["V02"]


def test_a_gap_in_outbox_ids_tells_every_screen_to_resync_then_the_stream_goes_on(redis_url: str) -> None:
    """Entries the stream lost (a Redis restart without its data, a trim) show as a jump in
    ``outbox_id``: the screens reload from PostGIS, then follow the entries after the gap."""
    _publish(redis_url, {"type": "case.created", "code": "G0"})

    async def body(hub: LiveHub) -> Any:
        async with hub.subscribe(None) as (sub, _):
            await asyncio.to_thread(_publish, redis_url, {"type": "case.changed", "code": "G1"})
            before = await _collect(sub, 1)  # 2 after 1: no gap
            await asyncio.to_thread(_publish, redis_url, {"type": "case.changed", "code": "G5"}, skip=3)
            await _until(sub.resync.is_set, "the gap to be noticed")
            told = await sub.next(0.1)
            sub.resynced()
            await asyncio.to_thread(_publish, redis_url, {"type": "case.changed", "code": "G6"})
            after = await _collect(sub, 1)  # 7 after 6: on from the gap, no resync
            return before, told, after

    before, told, after = _run(redis_url, body)
    assert [e.event["code"] for e in before] == ["G1"] and [e.outbox_id for e in before] == [2]
    assert told is None
    assert [(e.event["code"], e.outbox_id) for e in after] == [("G6", 7)]


def test_publishing_the_same_outbox_ids_again_adds_nothing(redis_url: str) -> None:
    """The relay's publish is fenced in Redis: rows at or below the stream's last outbox id are
    skipped (a leader that lost its lock while its XADDs were on the way cannot add them twice)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        rows = [(i, "van.moved", json.dumps({"type": "van.moved", "van": f"V{i}"})) for i in (1, 2, 3)]
        assert events.publish(client, rows) == (3, 3)
        assert events.publish(client, [*rows, (4, "van.moved", "{}")]) == (1, 4)  # 1-3 again: only 4 added
        assert [f["outbox_id"] for _, f in client.xrange(events.STREAM)] == ["1", "2", "3", "4"]
        assert events.last_outbox_id(client) == 4
    finally:
        client.close()


def cache_tiles(client: redis.Redis) -> None:
    """A cached figure, put there as the wall screen's callbacks do (geodata/kpi.py)."""
    assert kpi.cached(client, "tiles:150623", lambda: {"new_today": 1}) == {"new_today": 1}
    assert kpi.cached(client, "tiles:150623", lambda: {"new_today": 2}) == {"new_today": 1}  # from the cache


def test_case_events_drop_the_cached_numbers_before_screens_hear_of_them(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    cache_tiles(client)
    client.set("yitu:other", "kept")

    async def body(hub: LiveHub) -> list[bool]:
        async with hub.subscribe(None) as (sub, _):
            await asyncio.to_thread(_publish, redis_url, {"type": "van.moved", "van": "V01"})
            await _collect(sub, 1)
            after_van = client.hget(KPI_CACHE, "tiles:150623") is not None
            await asyncio.to_thread(_publish, redis_url, {"type": "case.created", "code": "K1"})
            await _collect(sub, 1)  # by the time the screen has it, the cache is gone
            return [after_van, client.hget(KPI_CACHE, "tiles:150623") is not None]

    try:
        assert _run(redis_url, body) == [True, False]
        assert client.get("yitu:other") == "kept"
    finally:
        client.close()


def test_redis_restart_tells_every_screen_to_resync_and_the_stream_goes_on(scratch_stack: EmbeddedStack) -> None:
    url = with_redis_db(scratch_stack.redis_url(), 0)

    async def body(hub: LiveHub) -> Any:
        async with hub.subscribe(None) as (sub, _):
            await asyncio.to_thread(scratch_stack.stop_redis)
            await _until(lambda: not hub.healthy, "the hub to notice Redis is gone")
            await asyncio.to_thread(scratch_stack.start_redis)
            await _until(lambda: hub.healthy, "the hub to read again")
            told = await sub.next(1.0)
            sub.resynced()
            await asyncio.to_thread(_publish, url, {"type": "case.created", "code": "AFTER-RESTART"})
            return told, await _collect(sub, 1)

    told, after = _run(url, body)
    assert told is None  # resync: this process may have missed entries while Redis was down
    assert [e.event["code"] for e in after] == ["AFTER-RESTART"]


class _Records(logging.Handler):
    """The messages one logger writes during a test."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self._logger = logging.getLogger(name)
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> _Records:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


def test_a_late_reply_is_not_an_outage(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from services import live

    # XREAD blocks 0.5 s at most, so the reader's socket timeout is 2 × 0.5 + 0.5 s.
    monkeypatch.setattr(live, "BLOCK_MS", 500)

    async def body(hub: LiveHub) -> Any:
        async with hub.subscribe(None) as (sub, _):
            with _Records("yitu.live") as log:
                # From now on each XREAD blocks longer than the reader's socket timeout: its reply
                # is "late", while Redis answers a PING at once.
                monkeypatch.setattr(live, "BLOCK_MS", 3000)
                await _until(lambda: any("timed out" in m for m in log.messages), "a read to time out")
            monkeypatch.setattr(live, "BLOCK_MS", 500)
            await asyncio.to_thread(_publish, redis_url, {"type": "case.created", "code": "AFTER-LATE"})
            return hub.healthy, await _collect(sub, 1)

    healthy, got = _run(redis_url, body, timeout=0.5)
    assert healthy is True
    assert [e.event["code"] for e in got] == ["AFTER-LATE"]  # no resync: nothing was lost


def test_cached_figures_last_their_ttl_and_a_bad_entry_is_recomputed(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert kpi.cached(client, "trend:150623", lambda: [1], ttl=1) == [1]
        assert kpi.cached(client, "trend:150623", lambda: [2], ttl=1) == [1]
        wait_for(  # as soon as the TTL has run out (and no later than 1.2 s), the figure is computed again
            lambda: kpi.cached(client, "trend:150623", lambda: [3], ttl=1) == [3],
            timeout=1.2,
            what="the figure to be recomputed after its 1 s TTL",
        )
        assert 0 < client.ttl(KPI_CACHE) <= 4  # the hash goes away when nobody asks
        client.hset(KPI_CACHE, "trend:150623", "not json")
        assert kpi.cached(client, "trend:150623", lambda: [4]) == [4]
    finally:
        client.close()


def test_a_batch_of_van_moves_waits_longer_and_a_case_event_does_not_wait_behind_it() -> None:
    from callbacks.live import BATCH_SECONDS, VAN_BATCH_SECONDS, newest_moves, window

    moves = [Entry(f"1-{i}", "van.moved", json.dumps({"van": f"V0{i % 2}"}), outbox_id=i) for i in range(6)]
    case = Entry("2-0", "case.created", "{}", outbox_id=6)
    assert window(moves) == VAN_BATCH_SECONDS > BATCH_SECONDS
    assert window([*moves, case]) == window([case]) == window([]) == BATCH_SECONDS
    kept = newest_moves([*moves[:3], case, *moves[3:]])
    assert [e.outbox_id for e in kept] == [6, 4, 5]  # the case event, then each van's newest move


def test_busy_screens_send_their_batches_at_the_same_moments_and_say_what_they_were_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """callbacks/live.py: a batch gathered behind the last one goes at the next multiple of its
    window on the wall clock (every screen of every process at the same moments: they are told of
    the same newest event and share the answers asked after it); after a quiet spell at once. Each
    push says the newest event the screen was told of (``upto``), kept through batches without one."""
    import time

    from callbacks import live as push

    case = [Entry("1-1", "case.created", "{}", outbox_id=7)]
    vans = [Entry("1-2", "van.moved", "{}", outbox_id=8)]
    now = time.monotonic()
    assert push.gather_for(case, now - push.BATCH_SECONDS) == 0.0  # quiet: at once
    for entries, w in ((case, push.BATCH_SECONDS), (vans, push.VAN_BATCH_SECONDS)):
        gap = push.gather_for(entries, time.monotonic())  # just sent: to the window's boundary
        assert 0 <= gap <= w
        at_wall = time.time() + gap
        assert min(at_wall % w, w - at_wall % w) < 0.005, (at_wall, w)
    due = push.aligned(now + 0.3, push.NUMBERS_DELAY)
    wall = time.time() + (due - time.monotonic())
    assert due >= now + 0.3 and min(wall % push.NUMBERS_DELAY, push.NUMBERS_DELAY - wall % push.NUMBERS_DELAY) < 0.005

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(push, "set_props", lambda _id, props: sent.append(props))
    pusher = push._Pusher()
    pusher.send(case, False)
    pusher.send([], False)
    pusher.send(vans, False)
    batches = [p["data"] for p in sent if isinstance(p.get("data"), dict)]
    assert [(b["outbox"], b["upto"]) for b in batches] == [(7, 7), (None, 7), (8, 8)]
    # the numbers come between the layers' reloads (on the whole seconds): a quarter second off them
    numbers = push._Pusher()
    for _ in range(5):
        numbers.numbers_ready_at, numbers.numbers_at = None, -push.NUMBERS_SECONDS
        numbers.send(case, False)
        assert numbers.numbers_ready_at is not None
        off = (time.time() + (numbers.numbers_ready_at - time.monotonic())) % 1.0
        assert min(abs(off - 0.25), abs(off - 0.75)) < 0.005, off
        # ... and go then: van moves gathered behind a batch go at the next whole second or at the
        # numbers' moment, whichever comes first (else the numbers would ride on the whole second)
        gap = push.gather_for(vans, time.monotonic(), numbers.numbers_ready_at)
        at_wall = (time.time() + gap) % 1.0
        assert gap <= numbers.numbers_ready_at - time.monotonic() + 0.005
        assert min(at_wall, 1 - at_wall, abs(at_wall - 0.25), abs(at_wall - 0.75)) < 0.01, at_wall
        time.sleep(0.13)


def test_a_round_backing_off_is_made_at_once_when_another_round_is_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """A round that failed waits its backoff (1 s doubling to 30 s) — unless another round becomes
    due meanwhile: an event came, so the relay reads the database again, and the screen gets its
    numbers now, not at the end of a backoff grown during the outage. Timed from when it was first due."""

    import psycopg

    from callbacks import live as push

    monkeypatch.setattr(push, "NUMBERS_RETRY_SECONDS", (30.0, 30.0))  # the test's 20 s would run out first
    monkeypatch.setattr(push, "NUMBERS_SECONDS", 60.0)  # no follow-up round within the test
    view = {"key": ["150623", "year", None, None, "zh-CN"], "shown": None}
    calls: list[int | None] = []

    def hook(data: object, rev: int | None) -> dict[str, Any] | None:
        calls.append(rev)
        if len(calls) == 1:
            raise psycopg.OperationalError("the database is away")
        return {"rev": rev}

    async def main() -> tuple[list[dict[str, Any]], float, float]:
        page = _Page(view)
        sent = page.sent
        numbers = push._NumbersPush(page.ws, hook)
        due_at = time.time()
        numbers.due(7)
        await _until(lambda: calls == [7], "the first round to fail")
        await asyncio.sleep(0.2)
        assert sent == []  # backing off
        woken = time.monotonic()
        numbers.due(8)  # the next event's round
        await _until(lambda: len(sent) >= 1, "the round made at once")
        took = time.monotonic() - woken
        numbers.stop()
        page.close()
        return sent, due_at, took

    sent, due_at, took = asyncio.run(main())
    assert calls == [7, 8] and took < 5.0  # not the 30 s backoff
    data = sent[0]["props"]["data"]
    assert data["rev"] == 8 and data["at"] == pytest.approx(due_at, abs=0.05)


def test_a_round_due_while_one_fails_wakes_its_backoff_once_per_failing_spell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A round that comes due while the round being made fails is made at once after the failure (it
    is not lost to the backoff); but only the first wake of a failing spell cuts a backoff: a woken
    round that fails too backs off even while rounds keep coming due (failures while events flow are
    the load's — the pool or the statements timing out — and coming again every round sheds nothing)."""

    import psycopg

    from callbacks import live as push

    monkeypatch.setattr(push, "NUMBERS_RETRY_SECONDS", (30.0, 30.0))
    view = {"key": ["150623", "year", None, None, "zh-CN"], "shown": None}
    calls: list[int | None] = []
    release = threading.Event()

    def hook(data: object, rev: int | None) -> dict[str, Any] | None:
        calls.append(rev)
        if len(calls) == 1:
            release.wait(10)  # the first round takes a while, then fails
        raise psycopg.OperationalError("the database is away")

    async def main() -> tuple[list[int | None], list[int | None]]:
        page = _Page(view)
        numbers = push._NumbersPush(page.ws, hook)
        numbers.due(7)
        await _until(lambda: calls == [7], "the first round to start")
        numbers.due(8)  # due while the first round is being made
        release.set()
        await _until(lambda: len(calls) >= 2, "the round due meanwhile, made at once after the failure")
        woken = list(calls)
        numbers.due(9)  # due again while the woken round's backoff runs
        await asyncio.sleep(1.0)
        later = list(calls)
        numbers.stop()
        page.close()
        return woken, later

    woken, later = asyncio.run(main())
    assert woken == [7, 8]
    assert later == [7, 8]  # the second failure backs off (30 s): the round due at 9 waits for it


def test_a_pushed_round_that_failed_or_was_not_answered_is_made_again_then_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """callbacks/live.py ``_NumbersPush``: the page no longer asks for its numbers, so a round the push
    could not make — the page slow to say what it shows, the database away — is made again, backing
    off, and sent once it can be, timed from when it was first due; the next round follows; a view
    the push had not served yet gets one more round a while later (the page's own answer for it may
    have landed after the push's, with older figures); stopping the stream stops it. Dash's own
    WebSocket callback object, its queue read as the browser's worker reads it."""

    import psycopg

    from callbacks import live as push

    monkeypatch.setattr(push, "NUMBERS_RETRY_SECONDS", (0.02, 0.05))
    monkeypatch.setattr(push, "NUMBERS_VIEW_SECONDS", 0.2)
    monkeypatch.setattr(push, "NUMBERS_SECONDS", 0.3)
    view = {"key": ["150623", "year", None, None, "zh-CN"], "shown": None}
    calls: list[tuple[object, int | None]] = []

    def hook(data: object, rev: int | None) -> dict[str, Any] | None:
        calls.append((data, rev))
        if len(calls) == 1:
            raise psycopg.OperationalError("the database is away")
        return {"round": len(calls), "rev": rev}

    async def main() -> tuple[list[dict[str, Any]], int, bool]:
        page = _Page(view, unanswered=1)  # the first ask is left unanswered (a page busy drawing)
        sent = page.sent
        numbers = push._NumbersPush(page.ws, hook)
        due_at = time.time()
        numbers.due(7)
        await _until(lambda: len(sent) >= 1, "the round made again and sent")
        numbers.due(8)  # the next round
        await _until(lambda: len(sent) >= 2, "the next round sent")
        await _until(lambda: len(sent) >= 3, "the follow-up round of a view not served before")
        await _until(lambda: numbers.task is not None and numbers.task.done(), "the rounds to end")
        numbers.due(9)
        numbers.stop()
        await asyncio.sleep(0.05)
        stopped = numbers.task.done() and numbers.task.cancelled()
        page.close()
        return sent, page.asks, stopped, due_at

    sent, asks, stopped, due_at = asyncio.run(main())
    # ask 1 timed out, ask 2 → the hook failed, ask 3 → sent; the next round; the follow-up (after the newest)
    assert asks >= 5 and [rev for _, rev in calls] == [7, 7, 8, 8]
    assert [m["componentId"] for m in sent] == ["live-numbers"] * 3
    first, second, follow = (m["props"]["data"] for m in sent)
    assert first["round"] == 2 and first["rev"] == 7 and first["at"] == pytest.approx(due_at, abs=0.05)
    assert second["rev"] == 8 and follow["rev"] == 8 and stopped

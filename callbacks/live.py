"""Live push to each open screen: one persistent WebSocket callback per browser, no polling.

The callback has no inputs and no outputs, so Dash starts it when the page opens and starts it
again whenever the WebSocket comes back (a network blip, a restarted app process). It asks the
browser for the id of the last stream entry it saw (the ``live-cursor`` store), subscribes to
this process's :class:`services.live.LiveHub` from there — replaying what the screen missed — and then
streams batches to the ``live-events`` store with ``set_props``. What the page does with a
batch (reload the case pins, move the vans, refresh the numbers) is a clientside callback in
``dashboard/assets/yitu_map.js``: layers still travel by URL, the push only says what changed.
The wall's numbers are the exception: when they are due, the push asks the page which numbers it
shows (the ``live-numbers-view`` store), computes them where it runs and sends what changed
(``live-numbers``; callbacks/wall.py ``numbers_push``) — a page asking for them was two requests a
round and screen through nginx, slower under a centre's load than the figures (docs/scaling.md).

The session behind the socket (or the bearer token it was opened with) is checked again every
``SESSION_CHECK_SECONDS``: when it ended (signed out, idle, a disabled user, a revoked wall screen or
token) the page is sent to the sign-in page (the ``live-leave`` store; dashboard/assets/yitu_auth.js)
and the stream stops.

Batches: the first event after a quiet spell goes out at once (a new pin shows within a frame
or two); events closer together than the window are gathered, so a burst costs each screen a
handful of layer reloads, not one per event. The window is ``BATCH_SECONDS`` when a case,
dispatch or area event waits, ``VAN_BATCH_SECONDS`` when only the vans moved: a thousand GPS
fixes a second then cost each screen one vans reload a second and never hold a case event back.
Within a batch only each van's newest move is sent (the page draws where a van is, not its
path). The numbers (KPI tiles, charts, ranking) follow ``NUMBERS_DELAY`` behind the pins and
are recomputed at most every ``NUMBERS_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from dash import ALL, Dash, Input, Output, State, ctx, set_props
from dash.backends.ws import DashWebsocketCallback
from dash.exceptions import PreventUpdate, WebsocketDisconnected
from psycopg_pool import PoolTimeout

from callbacks import wall
from dashboard.layout import AREAS_REV_TYPE
from dashboard.layout import LIVE_TICK as TICK
from dashboard.layout import LiveIds as Ids
from dashboard.pages import case as case_page
from dashboard.pages import dispatch as dispatch_page
from dashboard.pages import wall as wall_page
from geodata.kpi import FIGURE_FAMILIES
from services import identity
from services.identity import Principal
from services.live import Entry, LiveHub
from services.runtime import Services

log = logging.getLogger("yitu.live")

# 50 ms: a report's event waits at most this long on a busy screen (bench/bench_mix.py: push p50 127–130
# → 65–67 ms, p95 310–334 → 205–236 against 0.1 s, no other path slower; layers still reload at most
# once a second, so only the small batch messages double).
BATCH_SECONDS = 0.05
VAN_BATCH_SECONDS = 1.0  # a batch of nothing but van moves
POLL_SECONDS = 0.025  # how often a gathering batch looks at what came
NUMBERS_SECONDS = 2.0
NUMBERS_DELAY = 0.5  # the numbers refresh this long after the change, behind the pins
# ... on the NUMBERS_DELAY grid shifted by a quarter second: the layers reload on the whole seconds
# of the wall clock (dashboard/assets/yitu_map.js RELOAD_MS, the vans' batches), and a numbers round
# on the same moment made every screen's pins and numbers wait on each other (docs/scaling.md)
NUMBERS_PHASE = 0.25
IDLE_SECONDS = 15.0  # a heartbeat batch when nothing happens (the page shows the push is alive)
SESSION_CHECK_SECONDS = 4.0  # an ended session's open page leaves within this (plus a round trip)


def batch_message(seq: int, entries: list[Entry], *, resync: bool, numbers: bool) -> dict[str, Any]:
    """What one push carries: the events (ids, types, codes, places; no personal data)."""
    return {
        "seq": seq,
        "resync": resync,
        "numbers": numbers,
        "at": time.time(),
        # the newest event's outbox id: the layers reload "after" it (services/layer_answers.py)
        "outbox": max((e.outbox_id for e in entries if e.outbox_id is not None), default=None),
        "events": [e.as_json() for e in entries],
    }


def window(entries: list[Entry]) -> float:
    """How long after the last batch ``entries`` may wait to be gathered with what follows."""
    return VAN_BATCH_SECONDS if entries and all(e.type.startswith("van.") for e in entries) else BATCH_SECONDS


def aligned(at: float, grid: float, phase: float = 0.0) -> float:
    """``at`` (time.monotonic()) moved on to the next multiple of ``grid`` seconds of the wall clock,
    plus ``phase``. Every screen of every process on a host (and of hosts whose clocks agree) sends its batch at the
    same moments, so the screens of a busy centre are told of the same newest event and share the
    answers they ask for after it (services/layer_answers.py): the pins, the vans, the numbers."""
    wall = time.time() + (at - time.monotonic())
    return at + (math.ceil((wall - phase) / grid) * grid + phase - wall)


def gather_for(entries: list[Entry], sent_at: float, numbers_at: float | None = None) -> float:
    """Seconds ``entries`` wait before they go: none after a quiet spell (a window since the last
    batch: a centre's lone report goes at once), else until the window's next boundary — or until
    ``numbers_at`` (time.monotonic()), when the numbers are due before it: a stream of van moves,
    gathered to the whole seconds, would otherwise carry them there, onto the layers' reloads."""
    w = window(entries)
    now = time.monotonic()
    if now - sent_at >= w:
        return 0.0
    gap = aligned(now, w) - now
    return gap if numbers_at is None else max(0.0, min(gap, numbers_at - now))


def newest_moves(entries: list[Entry]) -> list[Entry]:
    """``entries`` with each van's ``van.moved`` but its newest left out (order kept)."""
    last: dict[object, int] = {}
    for i, e in enumerate(entries):
        if e.type == "van.moved":
            last[e.event.get("van")] = i
    return [e for i, e in enumerate(entries) if e.type != "van.moved" or last.get(e.event.get("van")) == i]


def _touches_numbers(entries: list[Entry]) -> bool:
    return any(e.type.split(".", 1)[0] in FIGURE_FAMILIES for e in entries)


class _Pusher:
    """Sends batches to one browser: the numbers trail the pins, a heartbeat when idle.

    The numbers (seven queries once the cache is dropped) are flagged NUMBERS_DELAY after the
    change that made them stale, never in the same batch: on a busy two-core server the pins'
    layer reload goes first. After that at most one refresh every NUMBERS_SECONDS.
    """

    def __init__(self, numbers: _NumbersPush | None = None) -> None:
        self.numbers = numbers  # the wall's numbers, pushed (None: only the pages' ticks are bumped)
        self.seq = 0
        self.sent_at = 0.0
        self.numbers_at = -NUMBERS_SECONDS
        self.numbers_ready_at: float | None = None  # None: the numbers on screen are current
        self.upto: int | None = None  # the newest outbox id this screen was told of

    def send(self, entries: list[Entry], resync: bool, position: str | None = None) -> None:
        now = time.monotonic()
        numbers = self.numbers_ready_at is not None and now >= self.numbers_ready_at
        if (resync or _touches_numbers(entries)) and self.numbers_ready_at is None:
            ready = max(now + NUMBERS_DELAY, self.numbers_at + NUMBERS_SECONDS)
            # the screens' numbers at the same moments, between the layers' reloads
            self.numbers_ready_at = aligned(ready, NUMBERS_DELAY, NUMBERS_PHASE)
        self.seq += 1
        message = batch_message(self.seq, newest_moves(entries), resync=resync, numbers=numbers)
        if message["outbox"] is not None:
            self.upto = max(self.upto or 0, int(message["outbox"]))
        message["upto"] = self.upto  # what the pages' numbers are asked after (yitu_map.js ticks)
        set_props(Ids.EVENTS, {"data": message})
        cursor = entries[-1].id if entries else position if resync else None
        if cursor:
            set_props(Ids.CURSOR, {"data": cursor})
        if (numbers or resync) and self.numbers is not None:
            self.numbers.due(None if resync else self.upto)
        if numbers:
            self.numbers_at, self.numbers_ready_at = now, None
        self.sent_at = now

    def wait(self) -> float:
        """How long to wait for events before the numbers (or a heartbeat) are due."""
        if self.numbers_ready_at is None:
            return IDLE_SECONDS
        return max(0.02, self.numbers_ready_at - time.monotonic())

    def idle(self) -> None:
        """Nothing came: send the numbers now due, or a heartbeat."""
        if self.numbers_ready_at is None or time.monotonic() >= self.numbers_ready_at:
            self.send([], False)


Alive = Callable[[], Awaitable[bool]]
# A round of a page's numbers: (the view its store holds, the newest outbox id it was told of) → the
# message to send it, or None (not a wall page, or a view the wall could not have written)
NumbersHook = Callable[[object, int | None], dict[str, Any] | None]
NUMBERS_VIEW_SECONDS = 5.0  # how long the page may take to say which numbers it shows
NUMBERS_RETRY_SECONDS = (1.0, 30.0)  # a round that failed is made again after 1 s, doubling up to 30 s


class _NumbersPush:
    """Sends one page its numbers when they are due: asks which numbers it shows, computes them off
    the event loop, sends what changed. One round in flight; a round due meanwhile follows it. A round
    that could not be made (the page did not answer, the database was away) is made again, backing
    off: the page no longer asks for its numbers itself."""

    def __init__(self, ws: DashWebsocketCallback, hook: NumbersHook) -> None:
        self.ws, self.hook = ws, hook
        self.task: asyncio.Task[None] | None = None
        self.next: tuple[int | None, float] | None = None  # the round due: after which event, since when
        self.retry = NUMBERS_RETRY_SECONDS[0]
        self.failing = False
        self.view_key: object = None  # the view the last round was made for
        self.rev: int | None = None  # the event the last round was made after
        self.follow: asyncio.TimerHandle | None = None
        self.wake = asyncio.Event()  # set by a round due since the last round began
        self.woken = False  # a wake cut this failing spell's backoff already (only the first may)

    def due(self, rev: int | None, at: float | None = None) -> None:
        """A round is due, after the event ``rev``; one due already keeps its time (what it waited
        is measured from when it was first due) and takes the newer event. A round backing off after a
        failure is made now: an event came, so the outbox relay reads the database again (before
        2026-12-07 a screen waited out the rest of its backoff, up to 30 s after an outage ended). Once
        per failing spell: failures while events flow (the pool or the statements timing out under
        load) back off as before, rather than come again at every round."""
        self.next = (rev, min(self.next[1], at or time.time()) if self.next else at or time.time())
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._rounds())

    def stop(self) -> None:
        if self.follow is not None:
            self.follow.cancel()
        if self.task is not None:
            self.task.cancel()

    async def _again(self, rev: int | None, at: float) -> None:
        """Wait before the failed round is made again: the backoff, or — the first time in a failing
        spell — until another round is due (one due while the round failed counts: it is made now)."""
        self.next = (self.next[0], min(self.next[1], at)) if self.next else (rev, at)
        if self.woken:
            await asyncio.sleep(self.retry)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.retry)
            self.woken = self.wake.is_set()
        self.retry = min(self.retry * 2, NUMBERS_RETRY_SECONDS[1])

    def _failed(self, text: str, trace: bool) -> None:
        """The first failure of a spell is logged (with its trace when unexpected), the rest quietly."""
        if self.failing:
            log.debug("the numbers of a screen were not pushed again: %s", text)
        elif trace:
            log.exception("the numbers of a screen were not pushed; again in %.0f s, backing off", self.retry)
        else:
            log.warning("the numbers of a screen were not pushed (%s); again in %.0f s, backing off", text, self.retry)
        self.failing = True

    async def _rounds(self) -> None:
        while self.next is not None and not self.ws.is_shutdown:
            (rev, at), self.next = self.next, None
            self.rev = rev
            self.wake.clear()  # a round due from now on finds this one made (or wakes its backoff)
            try:
                view = await self.ws.get_prop(Ids.VIEW, "data", timeout=NUMBERS_VIEW_SECONDS)
                message = await asyncio.to_thread(self.hook, view, rev)
                if message is not None:
                    message["at"] = at
                    self.ws.set_prop_sync(Ids.NUMBERS, "data", message)
            except WebsocketDisconnected:
                return
            except (TimeoutError, psycopg.OperationalError, PoolTimeout) as exc:  # the page or the database away
                self._failed(str(exc) or type(exc).__name__, trace=False)
                await self._again(rev, at)
                continue
            except Exception as exc:  # anything else: logged with its trace, and the round made again
                self._failed(repr(exc), trace=True)
                await self._again(rev, at)
                continue
            if self.failing:
                log.info("the numbers of a screen are pushed again")
            self.retry, self.failing, self.woken = NUMBERS_RETRY_SECONDS[0], False, False
            key = view.get("key") if isinstance(view, dict) else None
            if key != self.view_key:
                # The page chose another view: its own answer for it may land after this round and
                # show figures read before it; a round a while later sends what moved since.
                self.view_key = key
                if key is not None:
                    if self.follow is not None:
                        self.follow.cancel()
                    self.follow = asyncio.get_running_loop().call_later(NUMBERS_SECONDS, lambda: self.due(self.rev))


async def stream_to_screen(
    hub: LiveHub,
    ws: DashWebsocketCallback,
    cursor: str | None,
    area: str | None = None,
    alive: Alive | None = None,
    numbers: NumbersHook | None = None,
) -> None:
    """Push the hub's entries to one browser until its WebSocket closes, or until ``alive`` (checked
    every SESSION_CHECK_SECONDS) says the session behind it ended: then the page is sent to /login.
    A screen scoped to ``area`` gets only the events inside it (services/live.py ``Entry.visible_in``).
    When the numbers are due, ``numbers`` makes the page's round of them (:class:`_NumbersPush`)."""
    pusher = _Pusher(_NumbersPush(ws, numbers) if numbers is not None else None)
    try:
        await _stream(hub, ws, cursor, area, alive, pusher)
    finally:
        if pusher.numbers is not None:
            pusher.numbers.stop()


async def _stream(
    hub: LiveHub, ws: DashWebsocketCallback, cursor: str | None, area: str | None, alive: Alive | None, pusher: _Pusher
) -> None:
    checked_at = time.monotonic()
    async with hub.subscribe(cursor, area) as (sub, missed):
        pending, resync = list(missed), sub.resync.is_set()
        if cursor is None and sub.last_id is not None:
            # A screen that has seen no entry yet gets the point it starts from as its cursor: should
            # its socket drop (its app process dies), the next one, to any process, replays from there.
            set_props(Ids.CURSOR, {"data": sub.last_id})
        while not ws.is_shutdown:
            if alive is not None and time.monotonic() - checked_at >= SESSION_CHECK_SECONDS:
                checked_at = time.monotonic()
                if not await alive():
                    log.info("live push stops: the session ended")
                    set_props(Ids.LEAVE, {"data": "/login"})
                    return
            if pending or resync:
                while not resync:  # close behind the last batch: gather until the window's boundary
                    gap = gather_for(pending, pusher.sent_at, pusher.numbers_ready_at)
                    if gap <= 0.001:
                        break
                    # look again every POLL_SECONDS: a case event coming meanwhile shortens the window
                    await asyncio.sleep(min(gap, POLL_SECONDS))
                    more = await sub.next(0)
                    resync = more is None
                    pending.extend(more or [])
                pusher.send([] if resync else pending, resync, hub.position)
                if resync:
                    sub.resynced()
                pending, resync = [], False
            wait = pusher.wait()
            if alive is not None:
                wait = max(0.02, min(wait, checked_at + SESSION_CHECK_SECONDS - time.monotonic()))
            got = await sub.next(wait)
            if got is None:
                resync = True
            elif got:
                pending.extend(got)
            elif (
                alive is None
                or pusher.numbers_ready_at is not None
                or time.monotonic() - pusher.sent_at >= IDLE_SECONDS
            ):
                pusher.idle()  # numbers due, or a heartbeat (not when the wait only ended for the session check)


def session_check(get_services: Callable[[], Services], who: Principal | None) -> Alive | None:
    """How the stream asks whether the session behind it is still good: a cookie's session, or the
    bearer token the socket was opened with (revoked: the stream stops, as a signed-out page's does;
    before 2026-12-07 a token's socket was never checked again and kept its events and numbers)."""
    if who is None or (who.session_id is None and who.kind != "token"):
        return None
    session_id, token_id = who.session_id, who.token_id

    async def alive() -> bool:
        svc = get_services()

        def check() -> bool:
            with svc.pool.connection() as conn:
                if session_id is None:
                    return identity.token_alive(conn, token_id)
                return identity.session_alive(
                    conn, session_id, svc.settings.session_idle_minutes, svc.settings.session_field_idle_minutes
                )

        try:
            return await asyncio.to_thread(check)
        except (psycopg.OperationalError, PoolTimeout):
            return True  # the database is away: the requests the page makes are refused meanwhile

    return alive


def register(app: Dash, get_hub: Callable[[], LiveHub], get_services: Callable[[], Services] | None = None) -> None:
    @app.callback(websocket=True, persistent=True, hidden=True)
    async def _live() -> None:
        ws = ctx.websocket
        if ws is None:  # pragma: no cover - only reached without a WebSocket backend
            raise PreventUpdate
        try:
            cursor = await ws.get_prop(Ids.CURSOR, "data", timeout=5.0)
        except WebsocketDisconnected:
            raise PreventUpdate from None
        except TimeoutError:  # a browser that does not answer starts from now
            log.info("live cursor not read in time; the screen starts from now")
            cursor = None
        # The screen's reader (the session the WebSocket was opened with): its area scopes the push.
        who = identity.who_is_asking()
        alive = session_check(get_services, who) if get_services is not None else None
        hook = None
        if get_services is not None:
            svc = get_services()
            hook = functools.partial(wall.pushed_round, svc)
        await stream_to_screen(
            get_hub(), ws, cursor if isinstance(cursor, str) else None, identity.scope_of(who), alive, hook
        )
        raise PreventUpdate

    # A page's numbers view is its own: a page left empties it (the wall writes its own when it opens).
    app.clientside_callback(
        "function(path) { return null; }",
        Output(Ids.VIEW, "data", allow_duplicate=True),
        Input("url", "pathname"),
        prevent_initial_call=True,
    )

    # The session ended while the page was open: to the sign-in page, and back here after it.
    app.clientside_callback(
        "function(url) { if (url) { window.yitu.auth.leave(); } return window.dash_clientside.no_update; }",
        Output(Ids.LEAVE + "-done", "title"),
        Input(Ids.LEAVE, "data"),
        prevent_initial_call=True,
    )

    # What the page does with a batch is pure UI: which layers reload, whether numbers refresh.
    # Each layer's hideout says which event types reload it (Layer.live in layers/registry.py).
    for point in (wall_page.POINT, dispatch_page.POINT, case_page.POINT):  # the live point layers of each page
        app.clientside_callback(
            "function(batch, urls, ids, hideouts) { return window.yitu.live.layerUrls(batch, urls, ids, hideouts); }",
            Output({"type": point, "layer": ALL}, "url"),
            Input(Ids.EVENTS, "data"),
            State({"type": point, "layer": ALL}, "url"),
            State({"type": point, "layer": ALL}, "id"),
            State({"type": point, "layer": ALL}, "hideout"),
            prevent_initial_call=True,
        )
    # A grid import (areas.changed): the pages' grid layers fetch their URL again.
    app.clientside_callback(
        "function(batch, ids) { return window.yitu.live.areasRev(batch, ids); }",
        Output({"type": AREAS_REV_TYPE, "page": ALL}, "data"),
        Input(Ids.EVENTS, "data"),
        State({"type": AREAS_REV_TYPE, "page": ALL}, "id"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        "function(batch, ids) { return window.yitu.live.ticks(batch, ids); }",
        Output({"type": TICK, "page": ALL}, "data"),
        Input(Ids.EVENTS, "data"),
        State({"type": TICK, "page": ALL}, "id"),
        prevent_initial_call=True,
    )

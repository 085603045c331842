"""Live push in a real headless Chromium: what the API commits shows on open screens, no reload.

Each test opens the wall screen on `yitu serve` processes over a clone of the seeded demo,
zooms into the banner seat (so a new pin is drawn on its own, not inside a cluster bubble),
then writes through the API and waits for the page to show it.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page

from cli.stack import EmbeddedStack
from services.identity import create_token

from .browser import SETTLED, Watched, browser  # noqa: F401 - browser is a fixture
from .helpers import keyed, wait_for, with_redis_db

SEAT = (107.4812, 38.1834)  # 敖勒召其镇, the banner seat: inside the territory, near the vans' base


def _tokens(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return {
            "admin": create_token(conn, name="live-admin", role="admin", area=None)[1],
            "van": create_token(conn, name="V01", role="van", area=None)[1],
        }


def _report(base: str, token: str, lon: float, lat: float) -> str:
    r = httpx.post(
        base + "/api/v1/cases",
        headers=keyed({"Authorization": f"Bearer {token}"}),
        timeout=30,
        json={
            "type": "grassland",
            "description": "牧户草场边界争议（实时推送测试）",
            "lon": lon,
            "lat": lat,
            "channel": "grid_app",
            "parties": [{"name": "巴图", "phone": "13812345678"}],
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["code"]


def _ping(base: str, token: str, lon: float, lat: float) -> None:
    now = datetime.now(UTC).isoformat()
    r = httpx.post(
        base + "/api/v1/vans/positions",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        json={"positions": [{"van": "V01", "lon": lon, "lat": lat, "time": now, "speed": 30, "heading": 90}]},
    )
    assert r.status_code == 200, r.text


def _open_wall(w: Watched, base: str, still_pins: bool = False) -> Page:
    page = w.page
    page.goto(base + "/")
    page.wait_for_function(SETTLED, timeout=30_000)
    if still_pins:  # the screen prefers reduced motion (tests/browser.py): overdue pins keep their ring, unpulsed
        assert page.locator(".yitu-pin-overdue").count() > 0
        assert page.evaluate("() => document.getAnimations().length") == 0
    page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloads
    page.evaluate("([lon, lat]) => void window.yitu.maps[0].setView([lat, lon], 15, {animate: false})", list(SEAT))
    return page


# Records each batch the page is pushed (its events' types, by batch number) as the page handles it.
TAP_BATCHES = """() => { const live = window.yitu.live, handle = live.layerUrls; window.__batches = {};
    live.layerUrls = function (batch) {
        if (batch) { window.__batches[batch.seq] = (batch.events || []).map(e => e.type); }
        return handle.apply(this, arguments); }; }"""


def _wait_pin(page: Page, code: str, timeout: float = 15_000) -> None:
    page.wait_for_function("code => window.yitu.drawn[code] !== undefined", arg=code, timeout=timeout)


def _layers_quiet(page: Page) -> None:
    """Until the layers of the view just set are in: none asked for in the last second."""
    page.wait_for_function(
        "() => performance.now() - Math.max(0, ...performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/api/v1/layers/')).map(e => e.responseEnd)) > 1000"
    )


def _van_at(page: Page) -> Any:
    return page.evaluate("() => (window.yitu.vanAt || {})['V01']")


def _no_reload(page: Page) -> None:
    assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded"


@pytest.mark.browser
def test_a_reported_case_and_a_van_ping_show_on_an_open_wall_screen(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    tok = _tokens(demo_db)
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    page = _open_wall(w, srv.url, still_pins=True)
    page.wait_for_selector("#kpi-new_today")
    new_today = int(page.inner_text("#kpi-new_today .yitu-kpi-value"))
    asked: list[str] = []  # the page's own requests for its numbers or warnings (callbacks/wall.py)
    page.on(
        "request",
        lambda r: (
            asked.append(r.url)
            if "_dash-update-component" in r.url
            and any(k in (r.post_data or "") for k in ("wall-kpis", "wall-warnings"))
            else None
        ),
    )

    code = _report(srv.url, tok["admin"], SEAT[0] + 0.002, SEAT[1] + 0.001)
    _wait_pin(page, code)
    assert page.evaluate("code => window.yitu.pins[code]", code) == "reported"
    # The numbers follow: the KPI tile counts the new case — pushed over the live WebSocket, the page
    # asks for nothing (callbacks/live.py _NumbersPush).
    wait_for(
        lambda: int(page.inner_text("#kpi-new_today .yitu-kpi-value")) == new_today + 1,
        what="the new-today tile to count the new case",
    )
    assert page.evaluate("() => window.yitu.live.numbersPushed") >= 1
    assert asked == [], f"the page asked for its numbers: {asked}"
    # A round made for another view than the page shows (another area clicked meanwhile) is dropped.
    dropped = page.evaluate(
        """() => {
          const nu = window.dash_clientside.no_update;
          const view = {key: ["150623", "year", null, null, "zh-CN"], shown: null};
          const push = {key: ["150623001", "year", null, null, "zh-CN"], parts: Array(8).fill("x"),
                        shown: Array(8).fill("d"), warnings: [], at: 0};
          const out = window.yitu.live.numbers(push, view, null);
          const kept = window.yitu.live.numbers({...push, key: view.key}, view, null);
          return [out.length, out.every(o => o === nu), kept[0] === "x", kept[9].length];
        }"""
    )
    assert dropped == [10, True, True, 8]

    # A step change recolours the pin.
    r = httpx.post(
        f"{srv.url}/api/v1/cases/{code}/transitions",
        headers={"Authorization": f"Bearer {tok['admin']}"},
        json={"action": "accept"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    page.wait_for_function("code => window.yitu.pins[code] === 'accepted'", arg=code, timeout=15_000)

    # A van ping moves its marker.
    target = (SEAT[0] + 0.01, SEAT[1] - 0.004)
    _ping(srv.url, tok["van"], *target)
    wait_for(
        lambda: (
            (_van_at(page) or [0, 0])[:2] == [pytest.approx(target[1], abs=1e-6), pytest.approx(target[0], abs=1e-6)]
        ),
        what="the van marker at the new position",
    )
    _no_reload(page)
    w.close()


@pytest.mark.browser
def test_a_burst_of_gps_fixes_reaches_the_screen_as_each_vans_newest_move(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    """Thirty fixes of one van in one upload: the screen is told of its newest only (callbacks/live.py
    newest_moves), as the page's batches show, and the marker ends where the van is."""
    srv = live_server(demo_db, redis_url)
    tok = _tokens(demo_db)
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    page = _open_wall(w, srv.url)
    page.evaluate(TAP_BATCHES)
    start = datetime.now(UTC) - timedelta(seconds=60)
    track = [(SEAT[0] + 0.0002 * i, SEAT[1] - 0.0001 * i) for i in range(30)]
    r = httpx.post(
        srv.url + "/api/v1/vans/positions",
        headers={"Authorization": f"Bearer {tok['van']}"},
        timeout=30,
        json={
            "positions": [
                {"van": "V01", "lon": lon, "lat": lat, "time": (start + timedelta(seconds=2 * i)).isoformat()}
                for i, (lon, lat) in enumerate(track)
            ]
        },
    )
    assert r.status_code == 200, r.text
    last = track[-1]
    wait_for(
        lambda: (_van_at(page) or [0, 0])[:2] == [pytest.approx(last[1], abs=1e-6), pytest.approx(last[0], abs=1e-6)],
        what="the van marker at its newest fix",
    )
    batches = page.evaluate("() => Object.values(window.__batches)")
    moves = [b.count("van.moved") for b in batches if "van.moved" in b]
    assert moves and max(moves) == 1, f"van moves per pushed batch: {moves}"
    assert sum(moves) < len(track)
    _no_reload(page)
    w.close()


@pytest.mark.browser
def test_a_busy_spell_reloads_the_pins_at_most_once_a_second_and_ends_with_the_newest(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    """Twelve reports 0.25 s apart: each reaches the screen as it comes (its event in a batch of
    its own), the cases layer is fetched at most once a second (yitu_map.js RELOAD_MS) — the first
    at once, the rest as trailing reloads with the newest event — and every pin is drawn."""
    srv = live_server(demo_db, redis_url)
    tok = _tokens(demo_db)
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    page = _open_wall(w, srv.url)
    page.evaluate(TAP_BATCHES)
    _layers_quiet(page)
    start = page.evaluate("() => performance.now()")
    codes = []
    for i in range(12):
        codes.append(_report(srv.url, tok["admin"], SEAT[0] + 0.0003 * i, SEAT[1]))
        time.sleep(0.25)
    for code in codes:
        _wait_pin(page, code)
    seen = page.evaluate("cs => cs.map(c => window.yitu.live.seen[c] !== undefined)", codes)
    # (failed once in a clean clone under two workers in a slow spell, 2026-12-08: what the page got says why)
    told = page.evaluate("() => ({resyncs: window.yitu.live.resyncs, batches: window.__batches})")
    assert all(seen), (f"not seen as events: {[c for c, s in zip(codes, seen, strict=True) if not s]}", told)
    batches = [b for b in page.evaluate("() => Object.values(window.__batches)") if "case.created" in b]
    fetched = page.evaluate(  # when the page asked for its pins (the browser's clock, ms)
        "t => performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/layers/cases')"
        " && e.startTime > t).map(e => e.startTime / 1000)",
        start,
    )
    gaps = [b - a for a, b in itertools.pairwise(fetched)]
    assert len(batches) > len(fetched), (len(batches), len(fetched))  # fewer reloads than pushed batches
    assert fetched and all(g > 0.9 for g in gaps), gaps  # never two reloads within a second
    _no_reload(page)
    w.close()


@pytest.mark.browser
def test_van_moves_move_the_marker_from_their_events_and_the_trails_follow_later(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    """Three pings of V01: the marker goes to each newest fix from the pushed event itself (the
    same marker, turned to its heading), and the vans layer is not fetched for them — its trails
    reload within yitu_map.js's TRAIL_MS (set short here), once."""
    srv = live_server(demo_db, redis_url)
    tok = _tokens(demo_db)
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    page = _open_wall(w, srv.url)
    page.wait_for_function("() => window.yitu.vanMarkers && window.yitu.vanMarkers['V01']")
    _layers_quiet(page)
    page.evaluate("() => { window.yitu.live.TRAIL_MS = 4000; window.__v01 = window.yitu.vanMarkers['V01'].marker; }")
    start = page.evaluate("() => performance.now()")
    vans_fetched = (
        "t => performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/api/v1/layers/vans') && e.startTime > t).length"
    )
    for k in range(3):
        target = (SEAT[0] + 0.004 * (k + 1), SEAT[1] - 0.002 * (k + 1))
        _ping(srv.url, tok["van"], *target)
        wait_for(
            lambda t=target: (
                (_van_at(page) or [0, 0])[:2] == [pytest.approx(t[1], abs=1e-6), pytest.approx(t[0], abs=1e-6)]
            ),
            what=f"the van marker at fix {k}",
        )
        # the very marker the layer drew, moved (not a new one from a reload), none fetched
        assert page.evaluate("() => window.yitu.vanMarkers['V01'].marker === window.__v01")
        assert page.evaluate(vans_fetched, start) == 0
    assert page.evaluate("() => window.yitu.live.vanMoves") >= 3
    assert "rotate(90deg)" in page.evaluate("() => window.__v01.getElement().innerHTML")  # the ping's heading
    wait_for(lambda: page.evaluate(vans_fetched, start) == 1, timeout=15, what="the trails' one reload")
    _no_reload(page)
    w.close()


@pytest.mark.browser
def test_two_app_processes_each_push_to_their_own_screens(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    a, b = live_server(demo_db, redis_url, ready=False), live_server(demo_db, redis_url, ready=False)
    tok = _tokens(demo_db)  # while both processes start
    a.ready()
    b.ready()
    wa, wb = Watched(browser, a.url, cookies=a.browser_cookie()), Watched(browser, b.url, cookies=b.browser_cookie())
    pa, pb = _open_wall(wa, a.url), _open_wall(wb, b.url)
    code = _report(a.url, tok["admin"], SEAT[0] - 0.002, SEAT[1] + 0.002)  # written through process A
    _wait_pin(pa, code)
    _wait_pin(pb, code)  # B's screen hears of it from the stream, not from A
    target = (SEAT[0] - 0.006, SEAT[1] + 0.003)
    _ping(b.url, tok["van"], *target)  # and the other way round
    for page in (pa, pb):
        wait_for(
            lambda page=page: (_van_at(page) or [0, 0])[1] == pytest.approx(target[0], abs=1e-6),
            what="the van marker moved on both screens",
        )
        _no_reload(page)
    wa.close()
    wb.close()


@pytest.mark.browser
def test_a_screen_catches_up_after_its_app_process_restarts(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    a, other = live_server(demo_db, redis_url, ready=False), live_server(demo_db, redis_url, ready=False)
    tok = _tokens(demo_db)  # while both processes start
    a.ready()
    other.ready()
    w = Watched(browser, a.url, cookies=a.browser_cookie())
    page = _open_wall(w, a.url)
    first = _report(other.url, tok["admin"], SEAT[0] + 0.001, SEAT[1] - 0.001)
    _wait_pin(page, first)
    page.wait_for_function("() => !!window.dash_clientside", timeout=5_000)

    a.stop()  # the screen's WebSocket drops; cases keep coming in through the other process
    missed = _report(other.url, tok["admin"], SEAT[0] + 0.003, SEAT[1] - 0.002)
    resyncs = page.evaluate("() => window.yitu.live.resyncs")
    live_server(demo_db, redis_url, port=a.port)  # the process comes back on the same address

    _wait_pin(page, missed, timeout=60_000)
    _no_reload(page)
    # Caught up by replaying the stream from the screen's cursor, not by reloading everything.
    assert page.evaluate("() => window.yitu.live.resyncs") == resyncs
    assert page.evaluate("code => code in window.yitu.live.seen", missed)
    # While the process was down the browser logged the lost connection; nothing else went wrong. A
    # callback the page sent to it while it was down (the numbers, due half a second after a batch)
    # is logged by Dash's renderer as "the server did not respond": allowed only when every request
    # that failed was refused by the stopped process's address.
    down = a.url + "/"
    refused = bool(w.failed) and all(f.endswith("ERR_CONNECTION_REFUSED") and down in f for f in w.failed)
    w.problems = [
        p
        for p in w.problems
        if "WebSocket" not in p
        and "Failed to load resource" not in p
        and not (refused and "Callback failed: the server did not respond" in p)
    ]
    w.close()


@pytest.mark.browser
def test_a_screen_catches_up_after_a_redis_restart(
    live_server, demo_db: str, scratch_stack: EmbeddedStack, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    redis_url = with_redis_db(scratch_stack.redis_url(), 0)
    srv = live_server(demo_db, redis_url)
    tok = _tokens(demo_db)
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    page = _open_wall(w, srv.url)
    before = _report(srv.url, tok["admin"], SEAT[0] - 0.001, SEAT[1] - 0.002)
    _wait_pin(page, before)

    scratch_stack.stop_redis()
    during = _report(srv.url, tok["admin"], SEAT[0] - 0.003, SEAT[1] - 0.001)  # saved; its event is lost
    scratch_stack.start_redis()

    _wait_pin(page, during, timeout=60_000)  # the screen was told to reload from PostGIS
    assert page.evaluate("() => window.yitu.live.resyncs") >= 1
    _no_reload(page)
    w.close()

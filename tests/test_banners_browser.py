"""Several banners in a real headless Chromium (issue 16 item 2).

A wall screen of the seeded demo (one banner) stays open while a second banner's grid is imported
into the running deployment: the screen is not reloaded nor signed out, and its grid layer fetches
again when the import's ``areas.changed`` event arrives. Opened afresh, the wall starts at the
league root, ranks the two banners and drills down into one (a ranking row, a polygon on the map)
and back up (the crumb), without a console error.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Page

from geodata import io, league

from .browser import SETTLED, Watched, browser  # noqa: F401 - browser is a fixture
from .test_banners import FIRST, SECOND, SECOND_POINT, second_banner_file

GRID_FETCHED_AGAIN = """() => performance.getEntriesByType('resource')
    .some(e => e.name.includes('/api/v1/layers/grids') && e.name.includes('rev='))"""


def _crumbs(page: Page) -> list[str]:
    return [t.strip() for t in page.locator("#wall-crumbs .yitu-crumb").all_inner_texts()]


def _ranking_title(page: Page) -> str:
    return page.inner_text("#wall-ranking-title")


@pytest.mark.browser
def test_a_second_banner_arrives_while_a_screen_is_open_and_the_league_drills_down(
    live_server, demo_db: str, redis_url: str, browser: Browser, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    srv.pair()
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    page = w.page
    page.goto(srv.url + "/")
    page.wait_for_function(SETTLED, timeout=30_000)
    page.wait_for_selector("#wall-ranking tr[data-href]")
    assert page.evaluate("() => window.yitu.gridsDrawn && Object.keys(window.yitu.gridsDrawn).length > 0")
    page.evaluate("() => { window.__sameDocument = true; performance.clearResourceTimings(); }")

    io.import_grids(demo_db, second_banner_file(tmp_path))  # into the running deployment
    page.wait_for_function(GRID_FETCHED_AGAIN, timeout=20_000)
    assert page.evaluate("() => window.__sameDocument === true"), "the screen reloaded"
    assert page.url == srv.url + "/"  # still on its wall, not sent to sign in
    assert page.locator(".yitu-title").count() == 1

    with psycopg.connect(demo_db) as conn:
        league.set_root(conn, "150600", "鄂尔多斯市")

    # Opened again: the wall starts at the league and ranks its banners.
    page.goto(srv.url + "/")
    page.wait_for_function(SETTLED, timeout=30_000)
    page.wait_for_selector(f'#wall-ranking tr[data-href="/?area={SECOND}"]')
    assert page.locator("#wall-ranking tbody tr").count() == 2
    assert "旗区排名" in _ranking_title(page)
    assert "鄂尔多斯市" in page.inner_text(".yitu-subtitle")
    page.wait_for_function(
        "([a, b]) => window.yitu.gridLevel === 1 && window.yitu.gridsDrawn[a] === 1 && window.yitu.gridsDrawn[b] === 1",
        arg=[FIRST, SECOND],
        timeout=20_000,
    )
    page.screenshot(path=str(tmp_path / "league.png"))

    # A ranking row drills the wall down into its banner, on the page (not loaded again: the mark
    # stays), the address following; its towns are ranked there.
    page.evaluate("() => { window.__notReloaded = true; }")
    page.click(f'#wall-ranking tr[data-href="/?area={SECOND}"]')
    page.wait_for_url(f"{srv.url}/?area={SECOND}")
    page.wait_for_function("() => document.querySelectorAll('#wall-crumbs .yitu-crumb').length === 2")
    assert page.evaluate("() => window.__notReloaded === true")
    assert _crumbs(page) == ["鄂尔多斯市", "示例二旗"]
    page.wait_for_selector(f'#wall-ranking tr[data-href="/area/{SECOND}100"]')
    assert "镇级排名" in _ranking_title(page)

    # The root's crumb goes back up.
    page.locator("#wall-crumbs .yitu-crumb", has_text="鄂尔多斯市").click()
    page.wait_for_function("() => document.querySelectorAll('#wall-crumbs .yitu-crumb').length === 1")
    page.wait_for_function("() => document.querySelector('#wall-ranking-title').innerText.includes('旗区排名')")

    # A banner's polygon on the league's map drills down too.
    page.evaluate("() => window.yitu.maps[window.yitu.maps.length - 1].setZoom(7, {animate: false})")
    page.wait_for_function("b => window.yitu.gridLevel === 1 && window.yitu.gridsDrawn[b] === 1", arg=SECOND)
    x, y = page.evaluate(
        """([lon, lat]) => { const m = window.yitu.maps[window.yitu.maps.length - 1];
            const p = m.latLngToContainerPoint([lat, lon]); const r = m.getContainer().getBoundingClientRect();
            return [r.left + p.x, r.top + p.y]; }""",
        [SECOND_POINT[0] - 0.03, SECOND_POINT[1] + 0.07],
    )
    page.mouse.click(x, y)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#wall-crumbs .yitu-crumb')].map(e => e.innerText.trim()).join('|')"
        " === '鄂尔多斯市|示例二旗'",
        timeout=15_000,
    )
    w.close()

"""The dashboard in a real headless Chromium, served by `yitu serve` on the seeded demo."""

from __future__ import annotations

import re

import psycopg
import pytest
from playwright.sync_api import Browser, Page, Route

from dashboard.i18n import translator
from geodata.clock import CST
from layers import registry

from .browser import NON_POLYGON_FEATURES, SETTLED, Watched, browser  # noqa: F401 - browser is a fixture
from .conftest import ARTIFACTS
from .helpers import wait_for


def test_index_is_served_in_chinese_with_no_external_urls(live_server, db_url: str, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(db_url, redis_url)
    assert srv.get("/", follow_redirects=False).status_code == 302  # nothing without signing in
    srv.sign_in("viewer")
    r = srv.get("/")
    assert r.status_code == 200
    assert "<title>一图指挥" in r.text
    external = [u for u in re.findall(r'(?:src|href)="([^"]+)"', r.text) if re.match(r"(https?:)?//", u)]
    assert external == [], f"page loads from outside: {external}"
    assert srv.get("/openapi.json").json()["paths"].get("/api/v1/layers/grids")
    docs = srv.get("/docs").text  # the API docs work offline too
    assert "/static/swagger/swagger-ui-bundle.js" in docs and "cdn" not in docs
    assert srv.get("/static/swagger/swagger-ui-bundle.js").status_code == 200


@pytest.mark.browser
def test_the_api_docs_draw_every_operation_offline(live_server, db_url: str, redis_url: str, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """/docs is Swagger UI from local files, and it reads the OpenAPI 3.1 FastAPI writes (the Swagger UI
    of swagger-ui-bundle, 4.15, drew only "Unable to render this definition")."""
    srv = live_server(db_url, redis_url)
    srv.sign_in("admin")
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    w.page.goto(srv.url + "/docs")
    w.page.wait_for_selector(".opblock", timeout=30_000)
    paths = srv.get("/openapi.json").json()["paths"]
    operations = sum(len([m for m in ops if m in ("get", "post", "put", "patch", "delete")]) for ops in paths.values())
    assert w.page.locator(".opblock").count() == operations
    assert "Unable to render" not in w.page.content()
    w.page.screenshot(path=str(ARTIFACTS / "api-docs.png"))
    w.close()  # no console error, no CSP violation, nothing fetched from outside


def test_english_ui_with_yitu_lang_en(live_server, db_url: str, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(db_url, redis_url, YITU_LANG="en")
    assert "Sign in" in srv.get("/login").text
    srv.sign_in("viewer")
    assert "<title>One-Map Command" in srv.get("/").text


@pytest.mark.browser
def test_empty_database_says_so(live_server, db_url: str, redis_url: str, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(db_url, redis_url)
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    w.page.goto(srv.url + "/")
    w.page.wait_for_selector(".yitu-empty")
    assert "尚未导入辖区网格" in w.page.inner_text(".yitu-empty")
    w.close()


def _open_count(dsn: str, column: str | None = None, code: str | None = None) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM cases WHERE step IN ('reported','accepted','dispatched','handling')"
            + (
                " AND " + {"town": "town_code", "village": "village_code", "grid": "grid_code"}[column] + " = %s"
                if column
                else ""
            ),
            (code,) if column else (),
        ).fetchone()[0]


@pytest.mark.browser
def test_wall_screen_shows_every_layer_and_true_numbers(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    w.page.goto(srv.url + "/")
    w.page.wait_for_function(SETTLED, timeout=30_000)
    loaded = w.page.evaluate("() => window.yitu.loaded")
    # The grid layer may draw twice while the page settles (its URL follows the map's bounds and
    # zoom; the clean-clone run saw 8 draws of the 4 towns): count the areas drawn, as for the vans.
    drawn = w.page.evaluate("() => window.yitu.gridsDrawn || {}")
    assert len(drawn) == 4 and set(drawn.values()) == {2} and loaded["centers"] == 90
    # The live push may reload the van layer (a resync): count the vans drawn, not the draws.
    assert w.page.evaluate("() => Object.keys(window.yitu.vanAt || {}).sort()") == ["V01", "V02", "V03", "V04"]
    assert loaded["cameras"] > 0 and loaded["cases"] > 0  # clusters and single points
    w.page.wait_for_selector("#kpi-in_progress")
    assert w.page.inner_text("#kpi-in_progress .yitu-kpi-value") == str(_open_count(demo_db))
    assert w.page.inner_text("#panel-name") == "鄂托克前旗"
    assert "敖勒召其镇" in w.page.inner_text("#wall-ranking")
    box = w.page.locator("#yitu-map").bounding_box()
    assert box is not None and box["width"] > 900 and box["height"] > 900
    ARTIFACTS.mkdir(exist_ok=True)
    w.page.wait_for_timeout(500)  # let the last tiles of the canvas paint before the picture
    w.page.screenshot(path=str(ARTIFACTS / "wall-screen-1920x1080.png"))
    w.close()


@pytest.mark.browser
def test_wall_screen_scales_to_4k(live_server, demo_db: str, redis_url: str, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    w = Watched(browser, srv.url, 3840, 2160, cookies=srv.browser_cookie())
    w.page.goto(srv.url + "/")
    w.page.wait_for_function(SETTLED, timeout=30_000)
    w.page.wait_for_selector("#kpi-in_progress")
    sizes = w.page.evaluate("""() => ['.yitu-kpi-value', '.yitu-kpi-label', '.yitu-bar-label', '.yitu-table td']
        .map(s => parseFloat(getComputedStyle(document.querySelector(s)).fontSize))""")
    assert min(sizes) >= 28, sizes  # nothing tiny on a 4K wall (1.3% of the height or more)
    w.page.screenshot(path=str(ARTIFACTS / "wall-screen-3840x2160.png"))
    w.close()


def _click_area(page: Page, dsn: str, code: str) -> None:
    """Click the map inside an area (at a point PostGIS guarantees is on its surface)."""
    with psycopg.connect(dsn) as conn:
        lon, lat = conn.execute(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM areas WHERE code = %s) s", (code,)
        ).fetchone()
    xy = page.evaluate(
        "([lat, lon]) => { const m = window.yitu.maps[window.yitu.maps.length - 1];"
        " const p = m.latLngToContainerPoint([lat, lon]); const r = m.getContainer().getBoundingClientRect();"
        " return [r.left + p.x, r.top + p.y]; }",
        [lat, lon],
    )
    page.mouse.click(xy[0], xy[1])


def _wait_still(page: Page, level: int) -> None:
    """Until the map has stopped moving and shows grid level ``level``."""
    state = (
        "() => { const m = window.yitu.maps[window.yitu.maps.length - 1];"
        " return [m.getZoom(), m.getCenter().lat, window.yitu.gridLevel]; }"
    )
    last: list = []

    def still() -> bool:
        nonlocal last
        now = page.evaluate(state)
        ok = now == last and now[2] == level
        last = now
        return ok

    wait_for(still, timeout=20, what=f"the map to settle on level {level}")


@pytest.mark.browser
def test_drill_down_from_banner_to_cell_and_back(live_server, demo_db: str, redis_url: str, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    page = w.page
    page.goto(srv.url + "/")
    page.wait_for_function(SETTLED, timeout=30_000)
    t = translator("zh-CN")
    for layer in registry.wall_layers():  # every layer but the grid off: only polygons under the pointer
        if layer.name != "grids":
            page.locator("#wall-layers label", has_text=t(f"layer.{layer.name}")).click()
    wait_for(lambda: page.evaluate(NON_POLYGON_FEATURES) == 0, timeout=20, what="the other layers switched off")
    with psycopg.connect(demo_db) as conn:
        town = "150623100"
        village = conn.execute(
            "SELECT code FROM areas WHERE parent_code = %s ORDER BY code LIMIT 1", (town,)
        ).fetchone()[0]
        cell = conn.execute(
            "SELECT code FROM areas WHERE parent_code = %s ORDER BY code LIMIT 1", (village,)
        ).fetchone()[0]
        names = dict(
            conn.execute("SELECT code, name FROM areas WHERE code = ANY(%s)", ([town, village, cell],)).fetchall()
        )
    shown_level = 2
    for code, next_level in ((town, 3), (village, 4), (cell, 4)):
        _wait_still(page, shown_level)
        _click_area(page, demo_db, code)
        wait_for(lambda c=code: page.inner_text("#panel-name") == names[c], timeout=20, what=f"panel for {code}")
        shown_level = next_level  # the map flies to the area and the grid shows the next level down
        assert page.locator(".yitu-crumb").count() == len(code) // 3 - 1
    assert f"/area/{cell}" in page.get_attribute("#panel-link", "href")
    assert _open_count(demo_db, "grid", cell) == int(page.inner_text("#kpi-in_progress .yitu-kpi-value"))
    page.get_by_role("button", name="鄂托克前旗").click()  # the breadcrumb back to the banner
    wait_for(lambda: page.inner_text("#panel-name") == "鄂托克前旗", timeout=20, what="back to the banner")
    assert page.locator(".yitu-crumb").count() == 1
    w.close()


LABELS = (
    "() => Array.from(document.querySelectorAll('.leaflet-pane .yitu-label')).map(e => {"
    " const r = e.firstChild.getBoundingClientRect(); const m = window.yitu.maps[window.yitu.maps.length - 1];"
    " const c = m.getContainer().getBoundingClientRect();"
    " const at = m.containerPointToLatLng([(r.left + r.right) / 2 - c.left, (r.top + r.bottom) / 2 - c.top]);"
    " return {text: e.textContent, shown: e.style.visibility !== 'hidden', level: +e.dataset.level,"
    " l: r.left, r: r.right, t: r.top, b: r.bottom, lat: at.lat, lon: at.lng}; })"
)


def _overlapping(labels: list[dict]) -> list[tuple[str, str]]:
    shown = [x for x in labels if x["shown"]]
    return [
        (a["text"], b["text"])
        for i, a in enumerate(shown)
        for b in shown[i + 1 :]
        if a["l"] < b["r"] and a["r"] > b["l"] and a["t"] < b["b"] and a["b"] > b["t"]
    ]


@pytest.mark.browser
def test_area_names_are_drawn_on_their_areas_and_never_over_each_other(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    """The grid's names are markers placed by a transform, not permanent tooltips (a tooltip measures
    itself as it opens: 1.1 s of a league village's drill-down); where two would overlap on screen the
    larger area's is shown, the other hidden, decided again after each zoom or pan."""
    srv = live_server(demo_db, redis_url)
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    page = w.page
    page.goto(srv.url + "/")
    page.wait_for_function(SETTLED, timeout=30_000)
    with psycopg.connect(demo_db) as conn:
        towns = dict(conn.execute("SELECT name, code FROM areas WHERE level = 2 AND parent_code = '150623'").fetchall())
        town = "150623100"
        villages = {r[0] for r in conn.execute("SELECT name FROM areas WHERE parent_code = %s", (town,))}
    wait_for(lambda: sorted(x["text"] for x in page.evaluate(LABELS)) == sorted(towns), timeout=20, what="town names")
    assert page.locator(".leaflet-tooltip").count() == 0
    with psycopg.connect(demo_db) as conn:  # each name is drawn inside its own area's box
        for x in page.evaluate(LABELS):
            inside = conn.execute(
                "SELECT ST_Envelope(geom) && ST_SetSRID(ST_Point(%s, %s), 4326) FROM areas WHERE code = %s",
                (x["lon"], x["lat"], towns[x["text"]]),
            ).fetchone()[0]
            assert inside, x
    t = translator("zh-CN")
    for layer in registry.wall_layers():  # the town's villages, by a click on it (only polygons there)
        if layer.name != "grids":
            page.locator("#wall-layers label", has_text=t(f"layer.{layer.name}")).click()
    wait_for(lambda: page.evaluate(NON_POLYGON_FEATURES) == 0, timeout=20, what="the other layers switched off")
    _wait_still(page, 2)
    _click_area(page, demo_db, town)
    wait_for(lambda: {x["text"] for x in page.evaluate(LABELS)} >= villages, timeout=20, what="village names")
    assert not {x["text"] for x in page.evaluate(LABELS)} & set(towns)  # the towns' names went with their level

    def apart() -> bool:  # some names hidden (the town's are crowded at this zoom), none of the shown overlap
        labels = page.evaluate(LABELS)
        return any(not x["shown"] for x in labels) and any(x["shown"] for x in labels) and not _overlapping(labels)

    wait_for(apart, timeout=10, what="crowded names hidden")
    page.evaluate("() => window.yitu.maps[window.yitu.maps.length - 1].panBy([-300, 120], {animate: false})")
    wait_for(apart, timeout=10, what="crowded names hidden after a pan")
    w.close()


@pytest.mark.browser
def test_leaving_the_wall_while_its_layers_load_throws_nothing_into_the_next_page(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    """The wall's layer answers held until a link has taken the page to the inbox: dash-leaflet would
    ask the removed map for its bounds ('_leaflet_pos', a page error); the late answers are dropped."""
    srv = live_server(demo_db, redis_url)
    w = Watched(browser, srv.url, cookies=srv.browser_cookie(srv.sign_in("dispatcher")))
    page = w.page
    held: list[Route] = []
    page.add_init_script(
        "window.__errors = []; ['error', 'unhandledrejection'].forEach(k => "
        "window.addEventListener(k, e => window.__errors.push(String(e.reason || e.message))));"
    )

    def hold(route: Route) -> None:  # a function: Playwright does not take a bound builtin
        held.append(route)

    page.route("**/api/v1/layers/**", hold)
    page.goto(srv.url + "/")
    page.wait_for_selector("#inbox-link", timeout=30_000)
    wait_for(lambda: page.wait_for_timeout(50) or len(held) >= 2, timeout=30, what="the wall's layers asked for")
    page.click("#inbox-link")
    page.wait_for_selector(".yitu-inbox", timeout=30_000)
    for route in held:  # the answers come now, after the page was left
        route.continue_()
    # until the page has dropped every late answer, or thrown (without the fix: '_leaflet_pos')
    page.wait_for_function(
        f"() => (window.yitu.layerDropped || 0) >= {len(held)} || window.__errors.length > 0", timeout=30_000
    )
    assert page.evaluate("() => window.__errors") == []
    w.close()  # no page error, no console error


@pytest.mark.browser
def test_area_page_lists_exactly_the_areas_cases(live_server, demo_db: str, redis_url: str, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    page = w.page
    town = "150623102"
    with psycopg.connect(demo_db) as conn:
        total = conn.execute("SELECT count(*) FROM cases WHERE town_code = %s", (town,)).fetchone()[0]
        handling = conn.execute(
            "SELECT count(*) FROM cases WHERE town_code = %s AND step = 'handling'", (town,)
        ).fetchone()[0]
    page.goto(f"{srv.url}/area/{town}")
    wait_for(lambda: page.inner_text("#area-total") == f"共 {total} 件", timeout=20, what="the total")
    wait_for(
        lambda: page.locator("#area-table td[data-dash-column=code]").count() == 20, timeout=20, what="a page of rows"
    )
    # the times read as China time (the database hands them back in UTC)
    codes = [c.strip() for c in page.locator("#area-table td[data-dash-column=code]").all_inner_texts()]
    shown = page.locator("#area-table td[data-dash-column=reported_at]").all_inner_texts()
    with psycopg.connect(demo_db) as conn:
        stored = dict(conn.execute("SELECT code, reported_at FROM cases WHERE code = ANY(%s)", (codes,)).fetchall())
    assert [s.strip() for s in shown] == [f"{stored[c].astimezone(CST):%Y-%m-%d %H:%M}" for c in codes]
    w.close()
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())  # a shared link with a filter opens filtered
    page = w.page
    page.goto(f"{srv.url}/area/{town}?step=handling")
    wait_for(lambda: page.inner_text("#area-total") == f"共 {handling} 件", timeout=20, what="the filtered total")
    assert "step=handling" in page.get_attribute("#area-csv", "href")
    csv_rows = srv.get(page.get_attribute("#area-csv", "href")).text.strip().splitlines()
    assert len(csv_rows) == handling + 1
    w.close()

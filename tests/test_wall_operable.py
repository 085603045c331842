"""The wall and the dispatch page made operable (issue 14 item 6): pin filters, the period of the
KPIs and the ranking, clickable ranking rows, van rows and overdue chips, the case card's link, and
the dispatch page reaching dispatched cases to call a van back or end its visit. The callbacks as
plain functions first, then the pages in headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from callbacks import dispatch as dpage
from callbacks import wall
from dashboard.app import create_app
from dashboard.i18n import TEXTS
from dashboard.pages.dispatch import VISIT_ACTION
from dashboard.pages.wall import LEVEL_CHIP, VAN_ROW
from geodata.clock import CST
from services.identity import Principal, acting_as, create_token

from .browser import SETTLED, Watched, browser  # noqa: F401 - browser is a fixture
from .cases_fixtures import case_body, inner_point, settings_for
from .conftest import ARTIFACTS, PASSWORD, create_user
from .helpers import keyed, wait_for

BANNER = "150623"
ZH = TEXTS["zh-CN"]


@pytest.fixture
def app_client(demo_db: str, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(demo_db, redis_url, tmp_path))) as c:
        yield c


def _svc(c: TestClient) -> Any:
    return c.app.state.services  # type: ignore[attr-defined]


def _token(dsn: str, role: str, name: str | None = None) -> str:
    with psycopg.connect(dsn) as conn:
        return create_token(conn, name=name or f"op-{role}", role=role, area=None)[1]


def _auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def _text(component: Any) -> str:
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


def _walk(component: Any) -> Iterator[Any]:
    if isinstance(component, (list, tuple)):
        for c in component:
            yield from _walk(c)
        return
    if component is None or isinstance(component, (str, int, float)):
        return
    yield component
    yield from _walk(getattr(component, "children", None))


def _ids(component: Any, kind: str) -> list[dict[str, Any]]:
    return [c.id for c in _walk(component) if isinstance(getattr(c, "id", None), dict) and c.id.get("type") == kind]


def _place(dsn: str, van: str, lon: float, lat: float) -> None:
    """A van available at (lon, lat) with a fresh fix."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE vans SET geom = ST_SetSRID(ST_MakePoint(%s, %s), 4326), last_seen_at = now(), "
            "status = 'available' WHERE id = %s",
            (lon, lat, van),
        )


def _who(role: str) -> Principal:
    return Principal(1, f"op-{role}", role, None, kind="user", session_id="1")


# --- the callbacks as functions -------------------------------------------------------------------


def test_filtered_url_sets_and_clears_the_pin_filters() -> None:
    base = "/api/v1/layers/cases?bbox=1.0,2.0,3.0,4.0&format=geobuf&rev=123"
    url = wall.filtered_url(base, step="handling", type="grassland", level="town", severity="major", overdue=True)
    parts = urlsplit(url)
    assert parts.path == "/api/v1/layers/cases" and "bbox=1.0,2.0,3.0,4.0" in url  # the box as it was
    q = parse_qs(parts.query)
    assert {k: v[0] for k, v in q.items()} == {
        "bbox": "1.0,2.0,3.0,4.0",
        "format": "geobuf",
        "step": "handling",
        "type": "grassland",
        "level": "town",
        "severity": "major",
        "overdue": "true",
    }
    cleared = wall.filtered_url(url, step=None, type=None, level=None, severity=None, overdue=False)
    assert cleared == "/api/v1/layers/cases?bbox=1.0,2.0,3.0,4.0&format=geobuf"


def test_the_period_of_the_numbers() -> None:
    today = datetime.now(UTC).astimezone(CST).date()
    month = wall.period_of("month")
    assert month.start.date() == today.replace(day=1) and month.start.tzinfo is not None and month.name == "month"
    year = wall.period_of("year")
    assert (year.start.date(), year.end.date()) == (date(today.year, 1, 1), date(today.year + 1, 1, 1))
    quarter = wall.period_of("quarter")
    assert quarter.start.month in (1, 4, 7, 10) and quarter.start.date() <= today < quarter.end.date()
    dates = wall.period_of("dates", "2026-03-05", "2026-03-01")  # reversed: swapped, both days included
    assert (dates.start.date(), dates.end.date(), dates.name) == (date(2026, 3, 1), date(2026, 3, 6), "dates")
    assert wall.period_of("dates", None, "2026-03-01") == year  # not both dates yet: the default
    assert wall.period_of("nonsense") == year
    t = lambda k: ZH[k]  # noqa: E731
    assert wall.period_label(month, t) == "本月" and wall.period_label(dates, t) == "03-01~03-05"


def test_tiles_and_ranking_count_the_period(app_client: TestClient, demo_db: str) -> None:
    svc = _svc(app_client)
    month = wall.period_of("month")
    with psycopg.connect(demo_db) as conn:
        resolved = conn.execute(
            "SELECT count(*) FROM cases WHERE banner_code = %s AND closed_at >= %s AND closed_at < %s "
            "AND outcome IN ('mediated', 'judicial_confirmation')",
            (BANNER, month.start, month.end),
        ).fetchone()[0]
        major = conn.execute(
            "SELECT count(*) FROM cases WHERE banner_code = %s AND severity = 'major' "
            "AND step IN ('reported','accepted','dispatched','handling')",
            (BANNER,),
        ).fetchone()[0]
    with acting_as(_who("viewer")):
        tiles = wall.kpi_tiles(svc, BANNER, "zh-CN", month)
        by_id = {c.id: _text(c) for c in tiles if isinstance(getattr(c, "id", None), str)}
        assert by_id["kpi-resolved"] == f"{resolved} 本月已化解"
        assert by_id["kpi-open_major"] == f"{major} 在办重大" and "在办群体性" in by_id["kpi-open_group"]
        chips = _ids(tiles, LEVEL_CHIP)
        assert [c["level"] for c in chips] == ["grid", "village", "town", "banner"]  # clickable: filter the pins
        table = wall.ranking_table(svc, BANNER, "zh-CN", month)
        rows = [c for c in _walk(table) if "yitu-row-link" in (getattr(c, "className", "") or "")]
        assert rows and all(getattr(r, "data-href").startswith(f"/area/{BANNER}") for r in rows)
        assert {a.href for a in _walk(table) if getattr(a, "href", None)} == {getattr(r, "data-href") for r in rows}
        assert wall.ranking_title("zh-CN", month) == "本月镇级排名"


def test_van_rows_focus_the_van(app_client: TestClient, demo_db: str) -> None:
    svc = _svc(app_client)
    _place(demo_db, "V02", 107.5, 38.2)
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE vans SET geom = NULL WHERE id = 'V03'")
    with acting_as(_who("viewer")):  # the board is its reader's (the vans of the reader's banner)
        board = wall.van_board(svc, "zh-CN", VAN_ROW)
        assert [i["van"] for i in _ids(board, VAN_ROW)] == ["V01", "V02", "V03", "V04"]
        assert _ids(wall.van_board(svc, "zh-CN"), VAN_ROW) == []  # the dispatch page's board: plain rows
        viewport, card = wall.van_focus(svc, "V02", "zh-CN")
        assert viewport["center"] == pytest.approx([38.2, 107.5]) and "V02" in _text(card)  # type: ignore[index]
        viewport, card = wall.van_focus(svc, "V03", "zh-CN")
        assert viewport is wall.no_update and "尚无定位" in _text(card)


def test_the_case_card_links_to_the_case_page_and_shows_the_triage(app_client: TestClient, demo_db: str) -> None:
    lon, lat, _ = inner_point(demo_db)
    tok = _token(demo_db, "dispatcher")
    body = case_body(lon, lat, severity="major", people_involved=12, amount_yuan=35000)
    code = app_client.post("/api/v1/cases", json=body, headers=keyed(_auth(tok))).json()["code"]
    with acting_as(_who("viewer")):
        card = wall.case_card(_svc(app_client), code, "zh-CN")
    links = [c.href for c in _walk(card) if getattr(c, "href", None)]
    assert links == [f"/cases/{code}"]
    text = _text(card)
    assert "研判 重大" in text and "群体性" in text and "涉及人数 12" in text and "35,000.00 元" in text


def _dispatch(c: TestClient, tok: str, code: str, van: str) -> dict[str, Any]:
    r = c.post("/api/v1/dispatches", json={"case": code, "van": van}, headers=keyed(_auth(tok)))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _arrive(c: TestClient, dsn: str, van: str, lon: float, lat: float) -> None:
    """The van reports a fix at the case: it is on site (the case starts), as its GPS would say."""
    r = c.post(
        "/api/v1/vans/positions",
        json={"positions": [{"van": van, "lon": lon, "lat": lat, "time": datetime.now(UTC).isoformat()}]},
        headers=_auth(_token(dsn, "van", name=van)),
    )
    assert r.status_code == 200, r.text


def _two_visits(c: TestClient, dsn: str) -> tuple[str, str, dict[str, Any], dict[str, Any], str]:
    """Two new cases in one cell, V01 on its way to the first, V02 on site at the second; and the
    cell (the demo has more dispatched cases than the queue shows: a dispatcher of the cell sees these)."""
    tok = _token(dsn, "dispatcher")
    lon, lat, cell = inner_point(dsn, offset=7)
    lon2, lat2 = lon + 0.0005, lat
    codes = []
    for x, y in ((lon, lat), (lon2, lat2)):
        made = c.post("/api/v1/cases", json=case_body(x, y), headers=keyed(_auth(tok)))
        assert made.status_code == 201, made.text
        codes.append(made.json()["code"])
        assert c.post(
            f"/api/v1/cases/{codes[-1]}/transitions", json={"action": "accept"}, headers=_auth(tok)
        ).is_success
    _place(dsn, "V01", lon + 0.05, lat)
    _place(dsn, "V02", lon2 + 0.05, lat2)
    on_way = _dispatch(c, tok, codes[0], "V01")
    on_site = _dispatch(c, tok, codes[1], "V02")
    _arrive(c, dsn, "V02", lon2, lat2)
    return codes[0], codes[1], on_way, on_site, cell


def test_the_dispatch_queue_reaches_dispatched_cases_and_their_visits(app_client: TestClient, demo_db: str) -> None:
    svc, rt = _svc(app_client), app_client.app.state.cases_runtime  # type: ignore[attr-defined]
    going, there, on_way, on_site, cell = _two_visits(app_client, demo_db)
    now = datetime.now(UTC)
    for area in (None, cell):
        who = dpage.signed_in(Principal(1, "op-d", "dispatcher", area, kind="user", session_id="1"))
        assert who is not None
        active = dpage.waiting(svc, who, now, "active")
        with psycopg.connect(demo_db) as conn:
            expected = [
                r[0]
                for r in conn.execute(
                    "SELECT code FROM cases WHERE step IN ('dispatched', 'handling') "
                    "AND (%(a)s::text IS NULL OR grid_code = %(a)s) "
                    "ORDER BY deadline NULLS LAST, reported_at, id LIMIT 200",
                    {"a": area},
                )
            ]
        assert [r["code"] for r in active] == expected and len(expected) >= 2
    assert {going, there} <= set(expected)  # the cell's
    assert not {going, there} & {r["code"] for r in dpage.waiting(svc, who, now)}  # no longer waiting
    disp = dpage.signed_in(_who("dispatcher"))
    assert disp is not None
    assert "承办 V01 行走的调解室1号" in _text(dpage.queue_items(svc, who, None, "zh-CN", now, view="active"))
    # the visits: a van on its way may be called back, one on site ends its visit
    assert [(i["id"], i["action"]) for i in _ids(dpage.visits_panel(svc, disp, going, "zh-CN"), VISIT_ACTION)] == [
        (on_way["id"], "cancel")
    ]
    assert [(i["id"], i["action"]) for i in _ids(dpage.visits_panel(svc, disp, there, "zh-CN"), VISIT_ACTION)] == [
        (on_site["id"], "end")
    ]
    # only dispatchers act; the refusal in Chinese
    refused = dpage.act_on_visit(svc, rt, _who("viewer"), on_way["id"], "cancel", "zh-CN")
    assert refused["ok"] is False and refused["message"] == ZH["dispatch.no_right"]
    wrong = dpage.act_on_visit(svc, rt, disp, on_site["id"], "cancel", "zh-CN")  # on site: not called back
    assert wrong["ok"] is False and wrong["message"]
    out = dpage.act_on_visit(svc, rt, disp, on_way["id"], "cancel", "zh-CN", key="k1")
    assert out["ok"] is True and "V01" in out["message"] and going in out["message"], out
    again = dpage.act_on_visit(svc, rt, disp, on_way["id"], "cancel", "zh-CN", key="k1")  # a double click
    assert again["ok"] is True
    ended = dpage.act_on_visit(svc, rt, disp, on_site["id"], "end", "zh-CN")
    assert ended["ok"] is True and "V02" in ended["message"], ended
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute(
            "SELECT d.status, v.status FROM dispatches d JOIN vans v ON v.id = d.van_id WHERE d.id = ANY(%s) "
            "ORDER BY d.id",
            ([on_way["id"], on_site["id"]],),
        ).fetchall()
        events = conn.execute(
            "SELECT count(*) FROM outbox WHERE type IN ('dispatch.cancelled', 'dispatch.ended') "
            "AND event->>'id' = ANY(%s)",
            ([str(on_way["id"]), str(on_site["id"])],),
        ).fetchone()[0]
    assert rows == [("cancelled", "available"), ("ended", "available")]
    assert events == 2  # on the stream for the other screens (the double click acted once)
    assert dpage.visits_panel(svc, disp, going, "zh-CN")[-1].children == ZH["dispatch.no_visits"]


# --- the pages in Chromium ------------------------------------------------------------------------


def _case_urls(p: Page) -> list[str]:
    return p.evaluate(  # type: ignore[no-any-return]
        "() => performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.includes('/api/v1/layers/cases'))"
    )


def _wait_case_url(p: Page, *parts: str) -> None:
    """Until the case layer has fetched a URL with every one of ``parts`` (and no other filter)."""
    p.wait_for_function(
        """parts => performance.getEntriesByType('resource').map(e => e.name)
             .filter(n => n.includes('/api/v1/layers/cases')).slice(-1).some(n => parts.every(x => n.includes(x))
               && ['step=', 'type=', 'level=', 'severity=', 'overdue='].filter(f => n.includes(f)).length
                  === parts.length)""",
        arg=list(parts),
        timeout=15_000,
    )


# What the wall shows, told when a wait runs out: which of its parts did not come.
WALL_STATE = """() => { const m = window.yitu.maps[window.yitu.maps.length - 1]; const c = m && m.getCenter();
    const text = s => (document.querySelector(s) || {}).innerText;
    return {title: text('#wall-ranking-title'), detail: text('#wall-detail'), maps: window.yitu.maps.length,
            center: c && [c.lat, c.lng], zoom: m && m.getZoom(), period: text('#wall-period')}; }"""


def _wait_or_tell(p: Page, condition: str, what: str, timeout: float = 30_000) -> None:
    """Wait for ``condition``; if it does not come, fail saying what the wall showed instead (and keep
    a screenshot): a bare timeout once failed a CI run without a clue."""
    try:
        p.wait_for_function(condition, timeout=timeout)
    except PlaywrightTimeout as err:
        ARTIFACTS.mkdir(exist_ok=True)
        p.screenshot(path=str(ARTIFACTS / "wall-operable-timeout.png"))
        raise AssertionError(
            f"{what} did not come within {timeout / 1000:.0f} s; the wall: {p.evaluate(WALL_STATE)}"
        ) from err


# The case pins the map shows now (not clusters): their properties.
PINS = """() => { const m = window.yitu.maps[window.yitu.maps.length - 1]; const out = [];
    m.eachLayer(l => { const p = l.feature && l.feature.properties;
      if (p && p.code && p.step && !p.cluster) { out.push(p); } });
    return out; }"""


@pytest.mark.browser
def test_the_wall_filters_pins_picks_a_period_and_opens_rows(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    tok = _token(demo_db, "admin")
    lon, lat, _ = inner_point(demo_db, offset=9)
    made = httpx.post(
        srv.url + "/api/v1/cases",
        headers=keyed(_auth(tok)),
        json=case_body(lon, lat, severity="major", people_involved=9),
        timeout=30,
    )
    assert made.status_code == 201, made.text
    major = made.json()["code"]
    _place(demo_db, "V03", 107.6, 38.3)
    w = Watched(browser, srv.url, cookies=[{"name": "yitu_session", "value": srv.pair("大厅"), "url": srv.url}])
    p = w.page
    p.add_init_script("performance.setResourceTimingBufferSize(100000)")  # every fetch of the layer is read
    p.goto(srv.url + "/")
    p.wait_for_function(SETTLED, timeout=30_000)
    p.wait_for_selector("#wall-ranking tr.yitu-row-link")

    # severity: only the major pin is left, wearing its mark
    p.click("#wall-filter-severity")
    p.get_by_role("option", name="重大").click()
    _wait_case_url(p, "severity=major")
    p.wait_for_function(f"() => ({PINS})().length > 0 && ({PINS})().every(x => x.severity === 'major')")
    assert major in [x["code"] for x in p.evaluate(PINS)]
    assert p.locator(".yitu-pin-major .yitu-pin-mark").count() >= 1
    # step and overdue on top of it
    p.click("#wall-filter-step")
    p.get_by_role("option", name=ZH["step.reported"]).click()
    _wait_case_url(p, "severity=major", "step=reported")
    p.check("#wall-filter-overdue input")
    _wait_case_url(p, "severity=major", "step=reported", "overdue=true")
    # an overdue-by-level chip: that level's overdue cases, the other filters cleared
    p.click(f"#wall-kpis button[id*='{LEVEL_CHIP}'][id*='village']")
    _wait_case_url(p, "level=village", "overdue=true")
    p.wait_for_function(f"() => ({PINS})().every(x => x.level === 'village' && x.overdue)")
    assert p.inner_text("#wall-filter-level").strip().startswith("村级")
    # the live push reloads the filtered URL, not the whole layer
    httpx.post(srv.url + "/api/v1/cases", headers=keyed(_auth(tok)), json=case_body(lon, lat), timeout=30)
    p.wait_for_function(
        """() => performance.getEntriesByType('resource').map(e => e.name)
             .some(n => n.includes('/api/v1/layers/cases') && n.includes('rev=') && n.includes('level=village'))""",
        timeout=15_000,
    )
    p.click("#wall-filter-clear")
    _wait_case_url(p)
    assert p.evaluate("() => document.querySelector('#wall-filter-overdue input').checked") is False

    # the period: this month's figures and ranking
    p.click("#wall-period label:has-text('本月')")
    p.wait_for_function("() => document.querySelector('#wall-ranking-title').innerText === '本月镇级排名'")
    p.wait_for_function("() => document.querySelector('#kpi-resolved').innerText.includes('本月已化解')")
    # the top ten types follow the period too
    p.wait_for_function("() => document.querySelector('#wall-top-types h3').innerText === '本月十大纠纷类型'")
    month = wall.period_of("month")
    with psycopg.connect(demo_db) as conn:
        resolved = conn.execute(
            "SELECT count(*) FROM cases WHERE banner_code = %s AND closed_at >= %s AND closed_at < %s "
            "AND outcome IN ('mediated', 'judicial_confirmation')",
            (BANNER, month.start, month.end),
        ).fetchone()[0]
    assert p.inner_text("#kpi-resolved .yitu-kpi-value") == str(resolved)
    assert p.is_hidden("#wall-period-dates-box")
    p.click("#wall-period label:has-text('自选')")
    p.wait_for_selector("#wall-period-dates-box", state="visible")
    # no dates picked yet: the default period's numbers (drawn again, the van board with them)
    _wait_or_tell(
        p, "() => document.querySelector('#wall-ranking-title').innerText === '本年镇级排名'", "the year's title"
    )

    # a van's row: the map flies to it and its card shows
    p.click(f"#wall-vans button[id*='{VAN_ROW}'][id*='V03']")
    _wait_or_tell(
        p,
        """() => { const m = window.yitu.maps[window.yitu.maps.length - 1]; const c = m.getCenter();
                   return Math.abs(c.lat - 38.3) < 0.01 && Math.abs(c.lng - 107.6) < 0.01 && m.getZoom() === 13; }""",
        "the flight to V03",  # animated
    )
    assert "V03" in p.inner_text("#wall-detail")
    ARTIFACTS.mkdir(exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / "wall-operable-1920x1080.png"))

    # a ranking row, clicked anywhere: its area page
    row = p.locator("#wall-ranking tr.yitu-row-link").nth(1)
    href = row.get_attribute("data-href")
    assert href and href.startswith(f"/area/{BANNER}")
    row.locator("td").nth(2).click()
    p.wait_for_url(srv.url + href, timeout=15_000)
    w.close()


@pytest.mark.browser
def test_the_dispatch_page_chases_a_case_calls_a_van_back_and_ends_a_visit(
    live_server, demo_db: str, redis_url: str, browser: Browser, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    with TestClient(create_app(settings_for(demo_db, redis_url, tmp_path))) as c:
        going, there, on_way, on_site, cell = _two_visits(c, demo_db)
    create_user(demo_db, "dispatcher", cell, name="值班调度2")  # the cell's dispatcher: these two are in view
    w = Watched(browser, srv.url)
    p = w.page
    p.goto(srv.url + "/login?next=/dispatch")
    p.fill("#username", "值班调度2")
    p.fill("#password", PASSWORD)
    p.click("#signin")
    p.wait_for_selector("#dispatch-queue > *", timeout=15_000)
    assert p.locator(f".yitu-queue-item[id*='{going}']").count() == 0  # dispatched: not in the waiting queue
    p.click(f"#dispatch-queue-view label:has-text('{ZH['dispatch.view.active']}')")
    p.wait_for_selector(f".yitu-queue-item[id*='{going}']", timeout=15_000)
    assert "承办 V01 行走的调解室1号" in p.inner_text(f".yitu-queue-item[id*='{going}']")

    # on its way: call it back
    p.click(f".yitu-queue-item[id*='{going}']")
    p.wait_for_selector("#dispatch-visits button[data-action=cancel]", timeout=15_000)
    assert p.locator("#dispatch-visits button[data-action=end]").count() == 0
    p.click("#dispatch-visits button[data-action=cancel]")
    wait_for(lambda: "已撤回 V01" in p.inner_text("#dispatch-message"), what="the call-back confirmation")
    p.wait_for_function(
        "t => document.querySelector('#dispatch-visits').innerText.includes(t)", arg=ZH["dispatch.no_visits"]
    )
    # the queue shows the call-back (no van on the case any more); then, on site: end the visit
    p.wait_for_function(
        "c => !document.querySelector(`.yitu-queue-item[id*='${c}']`).innerText.includes('V01')", arg=going
    )
    p.click(f".yitu-queue-item[id*='{there}']")
    p.wait_for_selector("#dispatch-visits button[data-action=end]", timeout=15_000)
    p.click("#dispatch-visits button[data-action=end]")
    wait_for(
        lambda: "V02 行走的调解室2号 已结束" in p.inner_text("#dispatch-message"), what="the end-of-visit confirmation"
    )
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute(
            "SELECT status, ended_by FROM dispatches WHERE id = ANY(%s) ORDER BY id", ([on_way["id"], on_site["id"]],)
        ).fetchall()
        vans = conn.execute("SELECT status FROM vans WHERE id IN ('V01', 'V02') ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["cancelled", "ended"] and rows[1][1] == "值班调度2"
    assert vans == [("available",), ("available",)]
    ARTIFACTS.mkdir(exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / "dispatch-visits-1920x1080.png"))
    w.problems = [x for x in w.problems if "Password field" not in x]
    w.close()


def test_period_dates_outside_the_data_give_zeros(app_client: TestClient) -> None:
    """A period with no cases in it: zero resolved and no rate, nothing made up."""
    svc = _svc(app_client)
    old = wall.period_of("dates", "2001-01-01", "2001-01-31")
    assert old.end - old.start == timedelta(days=31)
    with acting_as(_who("viewer")):
        tiles = wall.kpi_tiles(svc, BANNER, "zh-CN", old)
    by_id = {c.id: _text(c) for c in tiles if isinstance(getattr(c, "id", None), str)}
    assert by_id["kpi-resolved"].startswith("0 ") and by_id["kpi-rate"].startswith("— ")


def test_an_empty_geobuf_answer_is_an_empty_collection(app_client: TestClient, demo_db: str) -> None:
    """A filter that matches nothing: the browser's geobuf decoder must still find a collection
    (without its message dash-leaflet failed on ``features`` of undefined)."""
    import geobuf

    tok = _token(demo_db, "viewer")
    r = app_client.get("/api/v1/layers/cases?bbox=100,20,100.01,20.01&format=geobuf", headers=_auth(tok))
    assert r.status_code == 200 and r.content.endswith(b"\x22\x00")
    assert geobuf.decode(r.content) == {"type": "FeatureCollection", "features": []}

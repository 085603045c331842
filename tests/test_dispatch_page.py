"""The dispatcher's page: its callbacks as plain functions, then the page in headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser

from callbacks import dispatch as page
from callbacks.pages import render
from dashboard.app import create_app
from dashboard.i18n import TEXTS
from services import identity
from services.identity import Principal, create_token

from .browser import SETTLED, Watched, browser  # noqa: F401 - browser is a fixture
from .cases_fixtures import settings_for
from .conftest import ARTIFACTS, PASSWORD, create_user, sign_in
from .helpers import keyed, wait_for

SEAT = (107.4812, 38.1834)
ORIGIN = {"Origin": "http://testserver"}


@pytest.fixture
def app_client(demo_db: str, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(demo_db, redis_url, tmp_path))) as c:
        yield c


def _svc(c: TestClient) -> Any:
    return c.app.state.services  # type: ignore[attr-defined]


def _token(dsn: str, role: str, area: str | None = None, name: str | None = None) -> str:
    with psycopg.connect(dsn) as conn:
        return create_token(conn, name=name or f"page-{role}", role=role, area=area)[1]


def _online(dsn: str, *vans: str, lon: float = SEAT[0], lat: float = SEAT[1]) -> None:
    """Put vans at the seat, available, with a fresh fix (the demo's vans have not reported today)."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE vans SET geom = ST_SetSRID(ST_MakePoint(%s, %s), 4326), last_seen_at = now(), "
            "status = 'available' WHERE id = ANY(%s)",
            (lon, lat, list(vans)),
        )


def _texts(component: Any) -> str:
    """All the text in a Dash component tree."""
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(_texts(c) for c in component)
    return _texts(getattr(component, "children", None))


def _ids(component: Any, kind: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(component, (list, tuple)):
        for c in component:
            out += _ids(c, kind)
        return out
    cid = getattr(component, "id", None)
    if isinstance(cid, dict) and cid.get("type") == kind:
        out.append(cid)
    children = getattr(component, "children", None)
    return out + (_ids(children, kind) if children is not None else [])


def _who(role: str, area: str | None = None, name: str | None = None) -> Principal:
    return Principal(1, name or f"page-{role}", role, area, kind="user", session_id="1")


def test_only_a_signed_in_dispatcher_or_admin_dispatches(app_client: TestClient, demo_db: str) -> None:
    """The page reads who asks from the session (identity.current()); only a dispatcher or an admin
    sees the queue and sends (the token typed into the page is gone: the person signs in at /login)."""
    svc = _svc(app_client)
    for role in ("dispatcher", "admin"):
        who = _who(role)
        assert page.signed_in(who) is who
        with identity.acting_as(who):
            assert page.signed_in() is who  # the request's principal, as the guard binds it
    for role in ("viewer", "grid_worker", "screen", "van"):
        assert page.signed_in(_who(role)) is None
    assert page.signed_in() is None  # nobody
    assert "无调度权限" in _texts(page.queue_items(svc, None, None, "zh-CN"))
    assert page.who_line(_who("dispatcher", "150623102", "值班调度"), "zh-CN") == "值班调度 · 调度员 · 150623102"
    # Over HTTP: the page needs a session, and a disabled person's page stops at once.
    c = app_client
    assert c.get("/dispatch", follow_redirects=False).headers["location"] == "/login?next=/dispatch"
    sign_in(c, demo_db, "dispatcher", name="值班调度")
    assert c.get("/dispatch", follow_redirects=False).status_code == 200
    with psycopg.connect(demo_db) as conn:
        identity.set_user_disabled(conn, "值班调度", True)
    assert c.get("/dispatch", follow_redirects=False).status_code == 302
    r = c.post("/_dash-update-component", json={"output": "dispatch-queue.children"}, headers=ORIGIN)
    assert r.status_code == 401


def test_the_queue_is_the_waiting_cases_of_the_area_most_urgent_first(app_client: TestClient, demo_db: str) -> None:
    svc = _svc(app_client)
    now = datetime.now(UTC)
    for area in (None, "150623102"):
        who = page.signed_in(_who("dispatcher", area, f"d-{area}"))
        assert who is not None
        rows = page.waiting(svc, who, now)
        with psycopg.connect(demo_db) as conn:
            expected = [
                r[0]
                for r in conn.execute(
                    "SELECT code FROM cases WHERE step IN ('reported', 'accepted')"
                    " AND (%(a)s::text IS NULL OR town_code = %(a)s) "
                    "ORDER BY deadline NULLS LAST, reported_at, id LIMIT 200",
                    {"a": area},
                )
            ]
        assert [r["code"] for r in rows] == expected and len(expected) > 5
        deadlines = [r["deadline"] for r in rows if r["deadline"]]
        assert deadlines == sorted(deadlines)
        assert all(r["overdue"] == (r["deadline"] is not None and r["deadline"] < now) for r in rows)
        items = page.queue_items(svc, who, expected[0], "zh-CN", now)
        assert [i["code"] for i in _ids(items, page.QUEUE_ITEM)] == expected
        assert "yitu-selected" in items[0].className
        assert "仅列出" not in _texts(items)  # all of them listed: nothing more to say


def test_a_queue_longer_than_the_page_lists_says_how_many_more_wait(
    app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = _svc(app_client)
    who = page.signed_in(_who("dispatcher"))
    assert who is not None
    total = len(page.waiting(svc, who, datetime.now(UTC)))
    monkeypatch.setattr(page, "QUEUE_LIMIT", 3)
    items = page.queue_items(svc, who, None, "zh-CN")
    assert len(_ids(items, page.QUEUE_ITEM)) == 3
    assert f"仅列出最紧急的 3 件（共 {total} 件）" in _texts(items)


def test_a_case_shows_masked_parties_its_vans_by_road_and_its_cameras(app_client: TestClient, demo_db: str) -> None:
    svc = _svc(app_client)
    _online(demo_db, "V01", "V02")
    who = page.signed_in(_who("dispatcher"))
    code = page.waiting(svc, who, datetime.now(UTC))[0]["code"]  # type: ignore[arg-type]
    card, candidates, cameras, focus = page.case_panels(svc, who, code, "zh-CN")
    text = _texts(card)
    assert code in text and "****" in text  # phones masked on the page too (a room screen)
    with psycopg.connect(demo_db) as conn:
        phones = [p["phone"] for p in conn.execute("SELECT parties FROM cases WHERE code = %s", (code,)).fetchone()[0]]
    assert phones and not any(p in text for p in phones)
    assert [i["van"] for i in _ids(candidates, page.SEND)] == ["V01", "V02"]  # only the dispatchable ones
    assert "公里" in _texts(candidates) and "分钟" in _texts(candidates)
    assert len(focus) == 2 and cameras
    # A token scoped to another town does not see the case.
    with psycopg.connect(demo_db) as conn:
        town = conn.execute("SELECT town_code FROM cases WHERE code = %s", (code,)).fetchone()[0]
        other = conn.execute(
            "SELECT code FROM areas WHERE level = 2 AND code <> %s ORDER BY code LIMIT 1", (town,)
        ).fetchone()[0]
    for hostile in ({"code": code}, [code], 7, code + "\x00"):  # the selection's store: any JSON back
        card, candidates, cameras, focus = page.case_panels(svc, who, hostile, "zh-CN")  # type: ignore[arg-type]
        assert (card, cameras, focus) == ([], [], []) and "在队列或地图上选择" in _texts(candidates)
        assert page.visits_panel(svc, who, hostile, "zh-CN") == []  # type: ignore[arg-type]
        rt = app_client.app.state.cases_runtime  # type: ignore[attr-defined]
        assert page.send(svc, rt, who, hostile, "V01", "zh-CN")["ok"] is False  # type: ignore[arg-type]
    for van in ({"id": "V01"}, "V0\x001", "V01\n", 7):  # the send button's id, as the browser sends it
        out = page.send(svc, app_client.app.state.cases_runtime, who, code, van, "zh-CN")  # type: ignore[arg-type,attr-defined]
        assert out["ok"] is False and out["field"] == "van", out
    outsider = page.signed_in(_who("dispatcher", other, "outsider"))
    card, candidates, _, _ = page.case_panels(svc, outsider, code, "zh-CN")
    assert card == [] and _ids(candidates, page.SEND) == []


def _panels_request(c: TestClient, code: str, tick: int, shown: object) -> dict[str, Any]:
    """The body Dash posts when a live round (LIVE_TICK) asks the dispatch page's panels again."""
    dash_app = c.app.state.dash  # type: ignore[attr-defined]
    key = next(k for k in dash_app.callback_map if "dispatch-visits.children" in k)
    outputs = [part.rsplit(".", 1) for part in key.strip(".").split("...")]
    return {
        "output": key,
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [
            {"id": "dispatch-selected", "property": "data", "value": code},
            {"id": page.LIVE_TICK, "property": "data", "value": tick},
            {"id": "dispatch-sent", "property": "data", "value": None},
        ],
        "changedPropIds": [f"{page.LIVE_TICK}.data"],
        "state": [
            {"id": "lang", "property": "data", "value": "zh-CN"},
            {"id": "dispatch-panels-shown", "property": "data", "value": shown},
        ],
    }


def test_a_live_round_redraws_only_the_panels_that_changed(app_client: TestClient, demo_db: str) -> None:
    """callbacks/shown.py on the dispatch page: a live round that changed nothing sends nothing (204),
    so the visit's 撤回 / 结束走访 buttons are not replaced under the dispatcher's click (the browser
    test lost that click about 1 run in 20); after a send, the visits and the candidates are sent
    again, the case's cameras are not."""
    c = app_client
    _online(demo_db, "V01", "V02")
    sign_in(c, demo_db, "dispatcher", name="轮次调度")
    who = page.signed_in(_who("dispatcher"))
    code = page.waiting(_svc(c), who, datetime.now(UTC))[0]["code"]  # type: ignore[arg-type]
    r = c.post("/_dash-update-component", json=_panels_request(c, code, 1, None), headers=ORIGIN)
    assert r.status_code == 200, r.text
    answer = r.json()["response"]
    shown = answer["dispatch-panels-shown"]["data"]
    assert len(shown) == 6 and {"dispatch-case", "dispatch-visits", "dispatch-cameras"} <= answer.keys()
    r = c.post("/_dash-update-component", json=_panels_request(c, code, 2, shown), headers=ORIGIN)
    assert r.status_code == 204, r.text  # nothing changed: nothing sent, nothing redrawn
    out = page.send(_svc(c), c.app.state.cases_runtime, _who("dispatcher"), code, "V01", "zh-CN")  # type: ignore[attr-defined]
    assert out["ok"], out
    r = c.post("/_dash-update-component", json=_panels_request(c, code, 3, shown), headers=ORIGIN)
    assert r.status_code == 200, r.text
    answer = r.json()["response"]
    assert {"dispatch-visits", "dispatch-candidates", "dispatch-panels-shown"} <= answer.keys()
    assert "dispatch-cameras" not in answer and "dispatch-focus" not in answer  # the same as shown
    assert "撤回" in str(answer["dispatch-visits"]["children"])
    later = answer["dispatch-panels-shown"]["data"]
    assert later[2] == shown[2] and later[5] != shown[5]


def test_sending_from_the_page_is_the_api_dispatch_with_its_refusals(app_client: TestClient, demo_db: str) -> None:
    svc, rt = _svc(app_client), app_client.app.state.cases_runtime  # type: ignore[attr-defined]
    _online(demo_db, "V01")
    disp = _who("dispatcher")
    first, second = [r["code"] for r in page.waiting(svc, disp, datetime.now(UTC))[:2]]
    assert page.send(svc, rt, _who("viewer"), first, "V01", "zh-CN")["ok"] is False
    assert page.send(svc, rt, None, first, "V01", "zh-CN")["ok"] is False
    out = page.send(svc, rt, disp, first, "V01", "zh-CN")
    assert out["ok"] is True and "V01" in out["message"] and first in out["message"], out
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT step FROM cases WHERE code = %s", (first,)).fetchone()[0] == "dispatched"
        assert conn.execute("SELECT status FROM vans WHERE id = 'V01'").fetchone()[0] == "en_route"
    busy = page.send(svc, rt, disp, second, "V01", "zh-CN")  # the van is on its way: refused, named
    assert busy["ok"] is False and busy["field"] == "van"
    # the refusal in the page's language, from its key: never the exception's English message
    assert busy["message"] == TEXTS["zh-CN"]["error.van_busy"] == "该调解车当前不可派：任务中、非待命或离线"
    english = page.send(svc, rt, disp, second, "V01", "en")
    assert english["message"] == TEXTS["en"]["error.van_busy"] and "dispatch" not in english["message"]
    unknown = page.send(svc, rt, disp, second, "V99", "zh-CN")
    assert unknown["ok"] is False and unknown["field"] == "van" and unknown["message"] == "未找到该调解车"
    assert page.send(svc, rt, disp, None, "V01", "zh-CN")["ok"] is False
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT step FROM cases WHERE code = %s", (second,)).fetchone()[0] in (
            "reported",
            "accepted",
        )
        assert conn.execute("SELECT count(*) FROM dispatches").fetchone()[0] == 1


@pytest.mark.browser
def test_a_dispatcher_signs_in_picks_a_case_and_sends_a_van_in_one_click(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    _online(demo_db, "V02")
    admin = _token(demo_db, "admin")
    create_user(demo_db, "dispatcher", name="值班调度")
    wall = Watched(browser, srv.url, cookies=[{"name": "yitu_session", "value": srv.pair("大厅"), "url": srv.url}])
    wall.page.goto(srv.url + "/")
    wall.page.wait_for_function(SETTLED, timeout=30_000)

    w = Watched(browser, srv.url)
    p = w.page
    p.goto(srv.url + "/dispatch")  # not signed in: the sign-in page, then back to the dispatch page
    p.wait_for_selector("#username")
    assert "/login?next=/dispatch" in p.url
    p.fill("#username", "值班调度")
    p.fill("#password", PASSWORD)
    p.click("#signin")
    p.wait_for_selector(".yitu-queue-item", timeout=15_000)
    assert p.url == srv.url + "/dispatch"
    assert p.inner_text("#dispatch-who").startswith("值班调度")

    # A case reported now joins the queue while the page is open (live push, no reload).
    r = httpx.post(
        srv.url + "/api/v1/cases",
        headers=keyed({"Authorization": f"Bearer {admin}"}),
        timeout=30,
        json={
            "type": "grassland",
            "description": "草场边界争议",
            "lon": SEAT[0] + 0.02,
            "lat": SEAT[1] + 0.01,
            "channel": "hotline_12345",
            "parties": [{"name": "巴特尔", "phone": "13912345678"}],
        },
    )
    assert r.status_code == 201
    code = r.json()["code"]
    item = f"[id*='{code}']"
    p.wait_for_selector(f".yitu-queue-item{item}", timeout=15_000)
    # The page's own map heard of it too: its case layer reloaded (the push bumps the layer's URL).
    p.wait_for_function("c => window.yitu.live.seen[c] !== undefined", arg=code, timeout=15_000)
    p.wait_for_function(
        "() => window.performance.getEntriesByType('resource').some("
        "e => e.name.includes('/api/v1/layers/cases') && e.name.includes('rev='))",
        timeout=15_000,
    )
    p.click(f".yitu-queue-item{item}")
    p.wait_for_selector(".yitu-send", timeout=15_000)
    assert code in p.inner_text("#dispatch-case") and "****5678" in p.inner_text("#dispatch-case")
    p.click(".yitu-send")
    wait_for(lambda: "V02" in p.inner_text("#dispatch-message"), what="the dispatch confirmation")
    with psycopg.connect(demo_db) as conn:
        step, assignee = conn.execute("SELECT step, assignee->>'id' FROM cases WHERE code = %s", (code,)).fetchone()
    assert (step, assignee) == ("dispatched", "V02")
    p.wait_for_function("c => !document.querySelector(`.yitu-queue-item[id*='${c}']`)", arg=code, timeout=15_000)
    # The open wall screen recolours the pin: the dispatch reached it through the stream.
    wall.page.wait_for_function("c => window.yitu.live.seen[c] !== undefined", arg=code, timeout=15_000)
    ARTIFACTS.mkdir(exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / "dispatch-1920x1080.png"))
    w.problems = [x for x in w.problems if "Password field" not in x]
    w.close()
    wall.close()


@pytest.mark.browser
def test_on_a_phone_picking_a_case_scrolls_to_its_card(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    """At 390×844 the desk is one column — the queue, the map, then the case card, below the fold: a
    case picked in the queue brings its card into view."""
    srv = live_server(demo_db, redis_url)
    create_user(demo_db, "dispatcher", name="手机调度")
    w = Watched(browser, srv.url, width=390, height=844)
    p = w.page
    p.goto(srv.url + "/dispatch")
    p.wait_for_selector("#username")
    p.fill("#username", "手机调度")
    p.fill("#password", PASSWORD)
    p.click("#signin")
    p.wait_for_selector(".yitu-queue-item", timeout=15_000)
    top = "() => document.getElementById('dispatch-case').getBoundingClientRect().top"
    assert p.evaluate("() => window.scrollY") == 0
    assert p.evaluate("() => document.getElementById('dispatch-map').getBoundingClientRect().bottom") > 844 / 2
    item = p.locator(".yitu-queue-item").first
    code = item.get_attribute("data-code")
    item.click()
    assert code
    p.wait_for_function("c => document.getElementById('dispatch-case').innerText.includes(c)", arg=code, timeout=15_000)
    # the card starts below the map: in view only because the page scrolled to it
    p.wait_for_function(f"() => {{ const t = ({top})(); return t >= 0 && t < 844 / 2; }}", timeout=5_000)
    assert p.evaluate("() => window.scrollY") > 844 / 2
    ARTIFACTS.mkdir(exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / "dispatch-picked-390x844.png"))
    w.problems = [x for x in w.problems if "Password field" not in x]
    w.close()


def test_dispatch_page_without_a_territory_says_so(db_url: str, redis_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(db_url, redis_url, tmp_path))) as c, identity.acting_as(_who("dispatcher")):
        out = render(_svc(c), "/dispatch", "")  # for the signed-in dispatcher the guard let in (unbound: 401)
    assert _texts(out) == "尚未导入辖区网格"

"""The case page (/cases/{code}): its functions, then the whole closed loop from the page in headless
Chromium, with a second screen on the same case following through the live push."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page

from callbacks import case as page
from dashboard.app import create_app
from geodata import casefile
from services.identity import Principal

from .browser import Watched, browser  # noqa: F401 - browser is a fixture
from .cases_fixtures import settings_for
from .conftest import ARTIFACTS, PASSWORD, create_user, make_token
from .helpers import keyed, wait_for

SEAT = (107.4812, 38.1834)


@pytest.fixture
def app_client(demo_db: str, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(demo_db, redis_url, tmp_path))) as c:
        yield c


def _who(role: str, name: str | None = None) -> Principal:
    return Principal(1, name or f"page-{role}", role, None, kind="user", session_id="1")


def _texts(component: Any) -> str:
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(_texts(c) for c in component)
    return _texts(getattr(component, "children", None))


def _actions(component: Any) -> list[str]:
    out: list[str] = []
    if isinstance(component, (list, tuple)):
        for c in component:
            out += _actions(c)
        return out
    cid = getattr(component, "id", None)
    if isinstance(cid, dict) and cid.get("type") == "case-action":
        out.append(cid["action"])
    children = getattr(component, "children", None)
    return out + (_actions(children) if children is not None else [])


def _report(url: str, token: str, phone: str = "13912345678") -> str:
    r = httpx.post(
        url + "/api/v1/cases",
        headers=keyed({"Authorization": f"Bearer {token}"}),
        timeout=30,
        json={
            "type": "grassland",
            "description": f"草场边界争议，联系电话{phone}",
            "lon": SEAT[0] + 0.02,
            "lat": SEAT[1] + 0.01,
            "channel": "grid_app",
            "parties": [{"name": "巴特尔", "phone": phone}, {"name": "其其格", "phone": "13800001111"}],
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["code"])


def _roster(dsn: str, code: str) -> tuple[str, str]:
    """Two mediators serving the case's area: one at its level (the grid's), one a level up (the village's)."""
    with psycopg.connect(dsn) as conn:
        level, town, village = conn.execute(
            "SELECT level, town_code, village_code FROM cases WHERE code = %s", (code,)
        ).fetchone()
        ids = []
        for name, lv, area in (("网格调解员乌兰", level, town), ("村调委会娜仁", "village", village or town)):
            ids.append(
                conn.execute(
                    "INSERT INTO mediators (name, level, area_code, specialties) VALUES (%s, %s, %s, %s) RETURNING id",
                    (name, lv, area, ["grassland"]),
                ).fetchone()[0]
            )
    return str(ids[0]), str(ids[1])


def test_a_viewer_sees_no_buttons_and_masked_parties(app_client: TestClient, demo_db: str) -> None:
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    rules = app_client.app.state.cases_runtime.rules  # type: ignore[attr-defined]
    with psycopg.connect(demo_db) as conn:
        code, parties = conn.execute(
            "SELECT code, parties FROM cases WHERE step = 'reported' AND parties <> '[]' ORDER BY id LIMIT 1"
        ).fetchone()
    phone = next(p["phone"] for p in parties if p.get("phone"))
    viewer = page.view(svc, rules, _who("viewer"), code, "zh-CN")
    assert viewer is not None
    assert _actions(viewer["actions"]) == [] and "无可执行" in _texts(viewer["actions"])
    assert phone not in _texts(viewer["parties"]) and "****" in _texts(viewer["parties"])
    dispatcher = page.view(svc, rules, _who("dispatcher"), code, "zh-CN")
    assert dispatcher is not None
    assert _actions(dispatcher["actions"]) == ["accept", "reject"]
    assert phone in _texts(dispatcher["parties"])  # a dispatcher handles the case: unmasked
    assert _actions(page.view(svc, rules, _who("grid_worker"), code, "zh-CN")["actions"]) == []  # type: ignore[index]
    assert "—" in _texts(viewer["facts"])  # no triage given: a dash, not "None"
    assert page.view(svc, rules, None, code, "zh-CN") is None


def test_a_refusal_says_in_chinese_what_is_allowed_now(app_client: TestClient, demo_db: str) -> None:
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    rt = app_client.app.state.cases_runtime  # type: ignore[attr-defined]
    with psycopg.connect(demo_db) as conn:
        code = conn.execute("SELECT code FROM cases WHERE step = 'reported' ORDER BY id LIMIT 1").fetchone()[0]
    out = page.act(svc, rt, _who("dispatcher"), code, "start", {}, "zh-CN")
    assert out["ok"] is False
    assert out["message"] == "案件当前所处环节不允许此操作 当前可执行：核实受理、不予受理。"
    by_role = page.act(svc, rt, _who("grid_worker"), code, "accept", {}, "zh-CN")
    assert by_role == {"ok": False, "message": "无权进行此操作", "field": "action", "at": by_role["at"]}
    no_reason = page.act(svc, rt, _who("dispatcher"), code, "reject", {"reason": None}, "zh-CN")
    assert no_reason["ok"] is False and no_reason["field"] == "reason"
    # A duplicate names the other case, and both pages link each other.
    with psycopg.connect(demo_db) as conn:
        other = conn.execute("SELECT code FROM cases WHERE code <> %s ORDER BY id LIMIT 1", (code,)).fetchone()[0]
    done = page.act(
        svc, rt, _who("dispatcher"), code, "reject", {"reason": "duplicate", "duplicate_of": other}, "zh-CN"
    )
    assert done["ok"] is True, done
    rules = rt.rules
    mine = page.view(svc, rules, _who("dispatcher"), code, "zh-CN")
    theirs = page.view(svc, rules, _who("dispatcher"), other, "zh-CN")
    assert f"/cases/{other}" in str(mine["facts"]) and f"/cases/{code}" in str(theirs["facts"])  # type: ignore[index]
    stale = page.act(svc, rt, _who("dispatcher"), code, "reopen", {"note": "误判"}, "zh-CN", version=1)
    assert stale["ok"] is False and "已被他人更新" in stale["message"]


def _act(p: Page, action: str, fill: dict[str, str] | None = None, pick: dict[str, str] | None = None) -> None:
    """Click the action's button, fill its form, send it."""
    p.click(f"button[data-action={action}]", timeout=15_000)
    confirm = f'#case-form button[data-action=confirm][id*=\'"action":"{action}"\']'  # this action's form
    p.wait_for_selector(confirm, timeout=15_000)
    for name, text in (pick or {}).items():
        p.locator(f".yitu-{name}-option", has_text=text).first.click()
    for name, value in (fill or {}).items():
        p.fill(f'[id*=\'"name":"{name}"\']', value)
    p.click(confirm)


def _events(dsn: str, code: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT e.action FROM case_events e JOIN cases c ON c.id = e.case_id WHERE c.code = %s "
                "ORDER BY e.occurred_at, e.id",
                (code,),
            )
        ]


@pytest.mark.browser
def test_the_whole_loop_from_the_page_with_a_second_screen_following(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    worker_token = make_token(demo_db, "grid_worker", name="网格员甲-终端")
    code = _report(srv.url, worker_token)
    first, second = _roster(demo_db, code)
    create_user(demo_db, "dispatcher", name="值班调度")
    create_user(demo_db, "grid_worker", name="网格员甲")
    create_user(demo_db, "viewer", name="领导")

    def open_as(name: str) -> Watched:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            r = http.post("/login", data={"username": name, "password": PASSWORD, "next": "/"})
            cookie = http.cookies.get("yitu_session")
        assert cookie, r.text
        w = Watched(browser, srv.url, cookies=srv.browser_cookie(cookie))
        w.page.goto(f"{srv.url}/cases/{code}")
        w.page.wait_for_selector(".yitu-event", timeout=30_000)
        return w

    disp, worker, watcher = open_as("值班调度"), open_as("网格员甲"), open_as("领导")
    d, g, v = disp.page, worker.page, watcher.page
    assert "****5678" in v.inner_text("#case-party-list") and "13912345678" not in v.inner_text("#case-parties")
    assert "13912345678" in d.inner_text("#case-party-list")

    steps = [
        (d, "accept", {}, {}),
        (d, "dispatch", {}, {"target": "网格调解员乌兰"}),
        (g, "start", {}, {}),
        (g, "attempt", {"note": "双方未达成一致"}, {"result": "调解未成"}),
        (g, "attempt", {"note": "再次调解未成"}, {"result": "调解未成"}),
        (g, "escalate", {"note": "两次调解未成，提请村调委会"}, {}),
        (d, "dispatch", {}, {"target": "村调委会娜仁"}),
        (g, "start", {}, {}),
        (g, "close", {"agreement_no": "XY-2026-001"}, {"outcome": "调解成功"}),
        (d, "evaluate", {"followup_note": "回访满意"}, {"satisfaction": "5"}),
    ]
    for n, (p, action, fill, pick) in enumerate(steps, start=2):  # the report is the first row
        _act(p, action, fill, pick)
        wait_for(
            lambda n=n: len(_events(demo_db, code)) == n,
            what=f"{action} written (the page says: {p.inner_text('#case-message')!r})",
        )
        for q in (d, g, v):  # every open screen follows: the timeline grows by the row (live push)
            q.wait_for_function("n => document.querySelectorAll('.yitu-event').length === n", arg=n, timeout=15_000)
        assert v.locator("button[data-action]").count() == 0  # a viewer never gets a button

    assert _events(demo_db, code) == ["report"] + [s[1] for s in steps]
    with psycopg.connect(demo_db) as conn:
        step, level, assignee, sat, data = conn.execute(
            """SELECT c.step, c.level, c.assignee->>'id', c.satisfaction,
                      (SELECT e.data FROM case_events e WHERE e.case_id = c.id AND e.action = 'close')
               FROM cases c WHERE c.code = %s""",
            (code,),
        ).fetchone()
    assert (step, level, assignee, sat) == ("evaluated", "village", second, 5)
    assert data["agreement_no"] == "XY-2026-001" and data["outcome"] == "mediated"
    assert first != second
    assert "XY-2026-001" in v.inner_text("#case-timeline")
    assert g.locator("button[data-action]").count() == 0, (
        g.inner_html("#case-form") + " | " + g.inner_html("#case-actions")
    )
    assert d.locator("button[data-action=reopen]").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    d.screenshot(path=str(ARTIFACTS / "case-1920x1080.png"))
    for w in (disp, worker, watcher):
        w.problems = [x for x in w.problems if "Password field" not in x]
        w.close()


def _ids_of(component: Any, kind: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(component, (list, tuple)):
        for c in component:
            out += _ids_of(c, kind)
        return out
    cid = getattr(component, "id", None)
    if isinstance(cid, dict) and cid.get("type") == kind:
        out.append(cid)
    children = getattr(component, "children", None)
    return out + (_ids_of(children, kind) if children is not None else [])


def test_a_flagged_case_has_its_cell_confirmed_or_moved_audited(app_client: TestClient, demo_db: str) -> None:
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    rt = app_client.app.state.cases_runtime  # type: ignore[attr-defined]
    with psycopg.connect(demo_db) as conn:
        code, cell = conn.execute(
            "SELECT code, grid_code FROM cases WHERE step = 'accepted' AND grid_code IS NOT NULL ORDER BY id LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE cases SET flags = '{near_boundary}' WHERE code = %s", (code,))
    disp = _who("dispatcher")
    shown = page.view(svc, rt.rules, disp, code, "zh-CN")
    assert {i["do"] for i in _ids_of(shown["facts"], "case-cell")} == {"confirm", "move"}  # type: ignore[index]
    assert "靠近网格边界" in _texts(shown["facts"])  # type: ignore[index]
    assert _ids_of(page.view(svc, rt.rules, _who("viewer"), code, "zh-CN")["facts"], "case-cell") == []  # type: ignore[index]
    assert page.place(svc, rt, _who("viewer"), code, None, "zh-CN")["message"].startswith("无权进行此操作")
    assert page.place(svc, rt, disp, code, None, "zh-CN")["ok"] is True
    refused = page.place(svc, rt, disp, code, None, "zh-CN")  # nothing left to confirm
    assert refused["ok"] is False and refused["field"] == "cell"
    # Outside the territory: a dispatcher assigns a neighbouring cell; the chain follows it.
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE cases SET flags = '{outside_territory}' WHERE code = %s", (code,))
        other = next(c for c in casefile.cells_near(conn, code) if c["code"] != cell)
    assert page.place(svc, rt, disp, code, "150623000000000", "zh-CN")["ok"] is False  # not a cell near it
    assert page.place(svc, rt, disp, code, other["code"], "zh-CN")["ok"] is True
    with psycopg.connect(demo_db) as conn:
        row = conn.execute(
            "SELECT grid_code, village_code, town_code, flags FROM cases WHERE code = %s", (code,)
        ).fetchone()
        events = conn.execute(
            "SELECT e.action, e.data FROM case_events e JOIN cases c ON c.id = e.case_id WHERE c.code = %s "
            "AND e.action LIKE '%%cell' ORDER BY e.id",
            (code,),
        ).fetchall()
    assert row == (other["code"], other["code"][:12], other["code"][:9], [])
    assert events == [("confirm_cell", {"cell": cell}), ("move_cell", {"from": cell, "to": other["code"]})]
    # The same through the API: a dispatcher's token may, a viewer's may not.
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE cases SET flags = '{near_boundary}' WHERE code = %s", (code,))
    viewer, dispatcher = make_token(demo_db, "viewer"), make_token(demo_db, "dispatcher")
    url = f"/api/v1/cases/{code}/cell"
    origin = {"Content-Type": "application/json"}
    r = app_client.post(url, json={"cell": None}, headers={**origin, "Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403
    r = app_client.post(url, json={"cell": cell}, headers={**origin, "Authorization": f"Bearer {dispatcher}"})
    assert r.status_code == 200 and r.json()["grid"][0] == cell and r.json()["flags"] == []


def test_a_double_click_acts_once_and_a_van_is_sent_from_the_same_form(app_client: TestClient, demo_db: str) -> None:
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    rt = app_client.app.state.cases_runtime  # type: ignore[attr-defined]
    disp = _who("dispatcher")
    with psycopg.connect(demo_db) as conn:
        code = conn.execute("SELECT code FROM cases WHERE step = 'handling' ORDER BY id LIMIT 1").fetchone()[0]
        attempts = conn.execute("SELECT attempts FROM cases WHERE code = %s", (code,)).fetchone()[0]
    values = {"result": "failed", "note": "未成"}
    first = page.act(svc, rt, disp, code, "attempt", values, "zh-CN", key="k1")
    again = page.act(svc, rt, disp, code, "attempt", values, "zh-CN", key="k1")  # the same form sent twice
    assert first["ok"] and again["ok"]
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT attempts FROM cases WHERE code = %s", (code,)).fetchone()[0] == attempts + 1
        accepted = conn.execute("SELECT code FROM cases WHERE step = 'accepted' ORDER BY id LIMIT 1").fetchone()[0]
        conn.execute(
            "UPDATE vans SET geom = ST_SetSRID(ST_MakePoint(107.4812, 38.1834), 4326), last_seen_at = now(), "
            "status = 'available' WHERE id = 'V01'"
        )
    options = [f"{r['kind']}:{r['id']}" for r in page.targets(svc, accepted)]
    assert "van:V01" in options
    sent = page.act(svc, rt, disp, accepted, "dispatch", {"target": "van:V01"}, "zh-CN", key="k2")
    assert sent["ok"] is True, sent
    with psycopg.connect(demo_db) as conn:
        step, assignee = conn.execute("SELECT step, assignee FROM cases WHERE code = %s", (accepted,)).fetchone()
    assert step == "dispatched" and assignee["kind"] == "van" and assignee["id"] == "V01"
    visits = page.view(svc, rt.rules, disp, accepted, "zh-CN")["dispatches"]  # type: ignore[index]
    assert "V01" in _texts(visits) and "在途" in _texts(visits)
    nobody = page.act(svc, rt, disp, accepted, "dispatch", {"target": "mediator:999999"}, "zh-CN")
    assert nobody["ok"] is False and nobody["field"] == "assignee"


def test_attachments_show_thumbnails_only_to_roles_that_see_content() -> None:
    rows = [
        {"id": 7, "kind": "image", "filename": "现场.jpg", "thumb_sha256": "ab"},
        {"id": 8, "kind": "document", "filename": "协议书.pdf", "thumb_sha256": None},
    ]
    dispatcher = str(page.attachment_list(rows, "dispatcher", "zh-CN"))
    assert "/api/v1/attachments/7/thumbnail" in dispatcher and "/api/v1/attachments/8" in dispatcher
    assert "协议书.pdf" in _texts(page.attachment_list(rows, "dispatcher", "zh-CN"))
    # a viewer sees that there is a photo and a document, not the names they were sent with (which
    # may name the parties: "张三身份证.jpg")
    viewer = page.attachment_list(rows, "viewer", "zh-CN")
    assert "/api/v1/attachments" not in str(viewer) and "协议书.pdf" not in str(viewer)
    assert _texts(viewer) == "附件 照片 文件"
    assert "无附件" in _texts(page.attachment_list([], "viewer", "zh-CN"))


def test_an_action_form_is_made_only_for_a_case_in_the_readers_area_and_an_action_it_may_take(
    app_client: TestClient, demo_db: str
) -> None:
    """callbacks/case.py ``form``: the case code and the action come from the browser; the dispatch form
    lists the mediators, units and vans by road for the case. A reader of another town, a viewer, and
    an action the case's step does not allow get no form at all (they got the whole list)."""
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    rules = app_client.app.state.cases_runtime.rules  # type: ignore[attr-defined]
    with psycopg.connect(demo_db) as conn:
        code, town = conn.execute(
            "SELECT code, town_code FROM cases WHERE step = 'accepted' ORDER BY id LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        other = conn.execute("SELECT code FROM areas WHERE level = 2 AND code <> %s LIMIT 1", (town,)).fetchone()[0]  # type: ignore[index]
    dispatcher = _who("dispatcher")
    assert "data-action" in str(page.form(svc, rules, dispatcher, code, "dispatch", "zh-CN"))  # its confirm button
    elsewhere = Principal(9, "outsider", "dispatcher", other, kind="user", session_id="9")
    assert page.form(svc, rules, elsewhere, code, "dispatch", "zh-CN") == []
    assert page.form(svc, rules, _who("viewer"), code, "dispatch", "zh-CN") == []
    assert page.form(svc, rules, dispatcher, code, "evaluate", "zh-CN") == []  # not at this step
    assert page.form(svc, rules, dispatcher, "150623-20990101-000001", "dispatch", "zh-CN") == []
    for hostile in ({}, [code], 5, True, code + "\x00", code + "\n"):  # the page's store: any JSON back
        assert page.form(svc, rules, dispatcher, hostile, "dispatch", "zh-CN") == []  # type: ignore[arg-type]
        assert page.view(svc, rules, dispatcher, hostile, "zh-CN") is None  # type: ignore[arg-type]
        rt = app_client.app.state.cases_runtime  # type: ignore[attr-defined]
        done = page.act(svc, rt, dispatcher, hostile, "accept", {}, "zh-CN")  # type: ignore[arg-type]
        assert done["ok"] is False and done["field"] == "code"
        assert page.place(svc, rt, dispatcher, hostile, None, "zh-CN")["field"] == "code"  # type: ignore[arg-type]
    for cell in ({"x": 1}, ["1"], "1\x00", "9" * 40):  # the radio's value, as the browser sends it
        assert page.place(svc, rt, dispatcher, code, cell, "zh-CN")["field"] == "cell"  # type: ignore[arg-type]

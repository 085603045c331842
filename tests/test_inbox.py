"""我的待办 (/inbox): exactly what waits on a grid worker, a mediator with a unit, a dispatcher; the
counts at a frozen instant; the page's rendering; and the page in headless Chromium, following the
live push, with the wall's deadline warnings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser
from psycopg import sql
from psycopg.types.json import Jsonb

from callbacks import inbox as page
from callbacks.pages import render
from dashboard.app import create_app
from geodata import warnings
from geodata.warnings import InboxQuery
from services import identity
from services.identity import Principal, create_user

from .browser import Watched, browser  # noqa: F401 - browser is a fixture
from .cases_fixtures import case_body, inner_point_where, settings_for
from .conftest import ARTIFACTS, PASSWORD
from .helpers import keyed

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # 10:00 China time; today ends 16:00 UTC


@pytest.fixture
def conn(demo_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(demo_db, autocommit=True) as c:
        yield c


@pytest.fixture
def app_client(demo_db: str, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(demo_db, redis_url, tmp_path))) as c:
        yield c


def _user(conn: psycopg.Connection, role: str, area: str | None = None) -> Principal:
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    uid = create_user(conn, name=name, role=role, area=area, password=PASSWORD)
    return Principal(uid, name, role, area, kind="user", session_id="1")


def _codes(conn: psycopg.Connection, area_column: str, area: str, n: int) -> list[str]:
    """``n`` cases of an area, all others of it closed: the test then sets each one's state."""
    column = sql.Identifier(area_column)
    rows = conn.execute(
        sql.SQL("SELECT code FROM cases WHERE {} = %s ORDER BY id LIMIT %s").format(column), (area, n)
    ).fetchall()
    assert len(rows) == n, f"the demo has fewer than {n} cases in {area}"
    conn.execute(
        sql.SQL("UPDATE cases SET step = 'closed', closed_at = reported_at WHERE {} = %s").format(column), (area,)
    )
    return [str(r[0]) for r in rows]


def _set(conn: psycopg.Connection, code: str, step: str, level: str, hours: float, assignee: Any = None) -> None:
    conn.execute(
        "UPDATE cases SET step = %s, level = %s, deadline = %s, assignee = %s, closed_at = NULL WHERE code = %s",
        (step, level, NOW + timedelta(hours=hours), Jsonb(assignee) if assignee else None, code),
    )


def _busiest(conn: psycopg.Connection, column: str, length: int) -> str:
    stmt = sql.SQL("SELECT {c} FROM cases WHERE length({c}) = %s GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
    row = conn.execute(stmt.format(c=sql.Identifier(column)), (length,)).fetchone()
    assert row is not None
    return str(row[0])


def _mediator(conn: psycopg.Connection, who: Principal | None, level: str, area: str, unit: int | None) -> int:
    row = conn.execute(
        "INSERT INTO mediators (name, level, area_code, unit_id, user_id) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (f"调解员{uuid.uuid4().hex[:4]}", level, area, unit, who.token_id if who else None),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _inbox(conn: psycopg.Connection, who: Principal) -> warnings.Inbox:
    return warnings.inbox(conn, InboxQuery.of(who.kind, who.token_id, who.role, who.area), NOW)


def test_a_grid_worker_sees_the_unassigned_cases_of_their_grid_at_the_grid_level(conn: psycopg.Connection) -> None:
    grid = _busiest(conn, "grid_code", 15)
    other_grid = conn.execute(
        "SELECT grid_code FROM cases WHERE grid_code <> %s AND length(grid_code) = 15 LIMIT 1", (grid,)
    ).fetchone()[0]
    reported, accepted, village, dispatched, closed = _codes(conn, "grid_code", grid, 5)
    (elsewhere,) = _codes(conn, "grid_code", other_grid, 1)
    _set(conn, reported, "reported", "grid", 3)
    _set(conn, accepted, "accepted", "grid", -1)
    _set(conn, village, "accepted", "village", 5)  # escalated: waits on the village now
    _set(conn, dispatched, "dispatched", "grid", 2, {"kind": "mediator", "id": "999999", "name": "某"})
    _set(conn, closed, "closed", "grid", 1)
    _set(conn, elsewhere, "reported", "grid", 1)  # another grid's
    worker = _user(conn, "grid_worker", grid)
    box = _inbox(conn, worker)
    assert [c["code"] for c in box.cases] == [accepted, reported]  # by deadline
    assert {c["why"] for c in box.cases} == {"queue"}
    assert (box.total, box.overdue, box.due_today, box.due_24h, box.warned) == (2, 1, 1, 1, 0)


def test_a_mediator_sees_what_is_assigned_to_them_and_their_unit_and_their_levels_queue(
    conn: psycopg.Connection,
) -> None:
    village_code = _busiest(conn, "village_code", 12)
    unit = conn.execute(
        "INSERT INTO units (name, kind, level, area_code) VALUES ('嘎查人民调解委员会', 'committee', 'village', %s) "
        "RETURNING id",
        (village_code,),
    ).fetchone()[0]
    other_unit = conn.execute(
        "INSERT INTO units (name, kind, level, area_code) VALUES ('派出所', 'police_station', 'village', %s) "
        "RETURNING id",
        (village_code,),
    ).fetchone()[0]
    person = _user(conn, "grid_worker", village_code)
    me = _mediator(conn, person, "village", village_code, unit)
    colleague = _mediator(conn, None, "village", village_code, unit)
    mine, ours, queued, theirs, other, done, grid_level, handling = _codes(conn, "village_code", village_code, 8)
    _set(conn, mine, "handling", "village", -2, {"kind": "mediator", "id": str(me), "name": "我"})
    _set(conn, ours, "dispatched", "village", 1, {"kind": "unit", "id": str(unit), "name": "委员会"})
    _set(conn, queued, "accepted", "village", 20)  # nobody assigned, at the village level
    _set(conn, theirs, "handling", "village", 1, {"kind": "mediator", "id": str(colleague), "name": "同事"})
    _set(conn, other, "dispatched", "village", 1, {"kind": "unit", "id": str(other_unit), "name": "派出所"})
    _set(conn, done, "closed", "village", 1, {"kind": "mediator", "id": str(me), "name": "我"})
    _set(conn, grid_level, "reported", "grid", 1)  # the grid's, not the village's
    _set(conn, handling, "handling", "village", 1)  # being handled (no assignee recorded): not a queue's
    outside = conn.execute(
        "SELECT code FROM cases WHERE village_code <> %s AND yitu_step_open(step) LIMIT 1", (village_code,)
    ).fetchone()[0]
    _set(conn, outside, "handling", "village", 1, {"kind": "mediator", "id": str(me), "name": "我"})  # out of scope
    box = _inbox(conn, person)
    assert [(c["code"], c["why"]) for c in box.cases] == [(mine, "mine"), (ours, "unit"), (queued, "queue")]
    # 10:00 China time: -2 h overdue; +1 h today and within 24 h; +20 h (06:00 tomorrow) within 24 h only
    assert (box.total, box.overdue, box.due_today, box.due_24h) == (3, 1, 1, 2)
    # Warnings for the current level and deadline show, those of a deadline since replaced do not.
    with conn.transaction():
        raised = warnings.raise_due(conn, NOW, warnings.WarnRules.hours(2, 24), notify=False)
    assert {e["code"] for e in raised} >= {ours, queued}
    box = _inbox(conn, person)
    assert box.warned == 2 and [c["code"] for c in box.cases if c["warned_at"]] == [ours, queued]
    _set(conn, queued, "accepted", "village", 30)  # a new deadline: that warning no longer applies
    assert _inbox(conn, person).warned == 1
    # A person with no mediator row and no queue (a viewer) has nothing waiting.
    assert _inbox(conn, _user(conn, "viewer", village_code)).total == 0


def test_a_dispatcher_without_an_area_sees_the_banners_unassigned_reported_and_accepted_cases(
    conn: psycopg.Connection,
) -> None:
    who = _user(conn, "dispatcher")
    box = warnings.inbox(conn, InboxQuery.of(who.kind, who.token_id, who.role, who.area), NOW, limit=50)
    expected = conn.execute(
        "SELECT code, deadline < %s FROM cases WHERE step IN ('reported', 'accepted') AND assignee IS NULL "
        "ORDER BY deadline NULLS LAST, reported_at, id",
        (NOW,),
    ).fetchall()
    assert box.total == len(expected) > 50  # the counts are of the whole list, the rows the first 50
    assert [c["code"] for c in box.cases] == [code for code, _ in expected[:50]]
    assert box.overdue == sum(1 for _, late in expected if late)
    assert {c["why"] for c in box.cases} == {"queue"}
    # A dispatcher of a town: the town's unassigned cases at the town level, nothing else.
    town = _busiest(conn, "town_code", 9)
    box = _inbox(conn, _user(conn, "dispatcher", town))
    assert (
        box.total
        == conn.execute(
            "SELECT count(*) FROM cases WHERE step IN ('reported', 'accepted') AND assignee IS NULL "
            "AND level = 'town' AND town_code = %s",
            (town,),
        ).fetchone()[0]
    )
    assert all(c["level"] == "town" for c in box.cases)


def test_the_page_renders_the_counts_and_links_each_case_to_its_page(
    app_client: TestClient, conn: psycopg.Connection
) -> None:
    grid = _busiest(conn, "grid_code", 15)
    late, soon = _codes(conn, "grid_code", grid, 2)
    _set(conn, late, "reported", "grid", -3)
    _set(conn, soon, "accepted", "grid", 1)
    worker = _user(conn, "grid_worker", grid)
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    tiles, table = page.view(svc, worker, "zh-CN", NOW)
    assert [(t.id, t.children[0].children) for t in tiles] == [
        ("inbox-count-overdue", "1"),
        ("inbox-count-due_today", "1"),
        ("inbox-count-due_24h", "1"),
        ("inbox-count-warned", "0"),
        ("inbox-count-total", "2"),
    ]
    rows = table[0].children[1].children
    links = [r.children[0].children for r in rows]
    assert [(a.children, a.href) for a in links] == [(late, f"/cases/{late}"), (soon, f"/cases/{soon}")]
    assert "超期 3h00m" in str(rows[0].children[5].children[0].children)
    _, none = page.view(svc, Principal(7, "大厅", "screen", None, kind="screen"), "zh-CN", NOW)
    assert "大屏账号没有个人待办" in none[0].children
    with identity.acting_as(worker):
        out = render(svc, "/inbox", "")
    assert out.className == "yitu-inbox"
    with identity.acting_as(worker):
        wall = render(svc, "/", "")
    assert "wall-warnings" in str(wall) and "inbox-link" in str(wall)


@pytest.mark.browser
def test_the_inbox_follows_the_live_push_and_the_wall_shows_the_warning(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url, YITU_SCHEDULER_INTERVAL="0.5", YITU_WARN_GRID_HOURS="24")
    lon, lat, grid = inner_point_where(demo_db, lambda code: len(code) == 15)
    with psycopg.connect(demo_db) as c:  # the grid starts empty: nothing waits
        c.execute("UPDATE cases SET step = 'closed', closed_at = reported_at WHERE grid_code = %s", (grid,))
        admin = identity.create_token(c, name="reporter", role="admin", area=None)[1]
    w = Watched(browser, srv.url, cookies=srv.browser_cookie(srv.sign_in("grid_worker", area=grid)))
    p = w.page
    p.goto(srv.url + "/inbox")
    p.wait_for_selector(".yitu-inbox-empty", timeout=30_000)
    assert p.inner_text("#inbox-count-total .yitu-kpi-value") == "0"
    r = httpx.post(
        srv.url + "/api/v1/cases",
        headers=keyed({"Authorization": f"Bearer {admin}"}),
        json=case_body(lon, lat),
        timeout=30,
    )
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    # No reload: the push's tick refreshes the list; then the scheduler's warning (24 h window) shows.
    p.wait_for_selector(f"tr[data-code='{code}']", timeout=20_000)
    p.wait_for_selector(f"tr[data-code='{code}'].yitu-warned", timeout=20_000)
    assert p.get_attribute(f"tr[data-code='{code}'] a", "href") == f"/cases/{code}"
    assert p.inner_text("#inbox-count-warned .yitu-kpi-value") == "1"
    assert p.inner_text("#inbox-count-due_24h .yitu-kpi-value") == "1"
    ARTIFACTS.mkdir(exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / "inbox-1920x1080.png"))
    # The wall (the same person's, scoped to the grid) shows the warning in its badge.
    p.goto(srv.url + "/")
    p.wait_for_selector("#wall-warnings .yitu-warnings", timeout=30_000)
    assert p.inner_text("#wall-warnings summary").strip().endswith("1")
    p.click("#wall-warnings summary")
    assert p.get_attribute(f"#wall-warnings a[href='/cases/{code}']", "href") == f"/cases/{code}"
    p.click("#inbox-link")
    p.wait_for_selector(f"tr[data-code='{code}']", timeout=20_000)
    w.close()


def test_the_walls_warning_badge_counts_the_area_the_wall_shows(
    app_client: TestClient, conn: psycopg.Connection
) -> None:
    """Drilled into a town, the badge counts that town's running warnings, not the whole territory's;
    the root (or an area outside the reader's) counts the reader's whole scope."""
    towns = [r[0] for r in conn.execute("SELECT code FROM areas WHERE level = 2 ORDER BY code LIMIT 2").fetchall()]
    for i, town in enumerate(towns):
        for code in _codes(conn, "town_code", town, i + 1):  # one case running in the first, two in the second
            _set(conn, code, "accepted", "grid", 2)
    with conn.transaction():
        raised = warnings.raise_due(conn, NOW, warnings.WarnRules.hours(24, 24), notify=False)
    assert len(raised) >= 3
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    dispatcher = _user(conn, "dispatcher")

    def badge(area: str | None, who: Principal = dispatcher) -> int:
        out = page.wall_view(svc, who, "zh-CN", NOW, area=area)
        return int(out[0].children[0].children[-1].children) if out else 0

    whole = warnings.current(conn, None, NOW)[0]
    assert [badge(t) for t in towns] == [1, 2]
    assert badge(None) == badge("1506") == badge("bogus") == whole > 2
    assert badge(towns[1], _user(conn, "dispatcher", towns[0])) == 1  # not the reader's area: its own scope

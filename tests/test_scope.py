"""Area scope everywhere (issue 12, item 6): a reader scoped to an area sees only its area's cases.

Lists, layers (whatever the box: one covering the whole banner included), the CSV, stats,
rankings (its own area's children), the callbacks (wall, area page, dispatch page) and the live
push. The scope is a parameter of the SQL (``yitu_in_scope``); the routes a page's browser
fetches read the principal the guard (api/guard.py) binds from the session cookie, the others
their bearer token; callbacks called here as plain functions get theirs through ``acting_as``.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from dash import no_update
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from callbacks import area as area_cb
from callbacks import dispatch as dispatch_page
from callbacks import pages, wall
from dashboard.app import create_app
from geodata import dispatch
from services.identity import Principal, acting_as
from services.live import LiveHub
from services.runtime import Services
from services.settings import Settings

from .cases_fixtures import auth, case_body, cases_settings, client, inner_point_where, token  # noqa: F401
from .conftest import pair_screen, sign_in
from .helpers import keyed
from .test_live_hub import _collect, _ids, _publish, _run

BANNER = "150623"
WHOLE_BANNER = "100,30,120,50"  # a box around the whole banner (and far beyond)


def _svc(c: TestClient) -> Services:
    return c.app.state.services  # type: ignore[attr-defined]


def _text(component: Any) -> str:
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


@pytest.fixture
def two_towns(client: TestClient, token: Callable[..., str], demo_db: str) -> dict[str, str]:
    """A new case in each of two towns: {"town_a", "town_b", "cell_a", "cell_b", "code_a", "code_b"}."""
    lon_a, lat_a, cell_a = inner_point_where(demo_db, lambda c: c.startswith("150623100"))
    lon_b, lat_b, cell_b = inner_point_where(demo_db, lambda c: not c.startswith("150623100"))
    dispatcher = auth(token("dispatcher"))
    code_a = client.post("/api/v1/cases", json=case_body(lon_a, lat_a), headers=keyed(dispatcher)).json()["code"]
    code_b = client.post("/api/v1/cases", json=case_body(lon_b, lat_b), headers=keyed(dispatcher)).json()["code"]
    return {
        "town_a": cell_a[:9],
        "town_b": cell_b[:9],
        "cell_a": cell_a,
        "cell_b": cell_b,
        "code_a": code_a,
        "code_b": code_b,
    }


def _towns_of(demo_db: str, codes: list[str]) -> set[str]:
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute("SELECT DISTINCT town_code FROM cases WHERE code = ANY(%s)", (codes,)).fetchall()
    return {r[0] for r in rows}


def test_a_scoped_token_reads_only_its_area_on_every_list_layer_csv_stats_and_ranking(
    client: TestClient, token: Callable[..., str], demo_db: str, two_towns: dict[str, str]
) -> None:
    town_a, town_b = two_towns["town_a"], two_towns["town_b"]
    worker = auth(token("grid_worker", area=town_a, name="worker-a"))
    everyone = auth(token("dispatcher", name="all-of-it"))
    # the case pins, with a box around the whole banner
    pins = client.get(f"/api/v1/layers/cases?bbox={WHOLE_BANNER}", headers=worker)
    assert pins.status_code == 200, pins.text
    codes = [f["properties"]["code"] for f in pins.json()["features"]]
    assert two_towns["code_a"] in codes and two_towns["code_b"] not in codes
    assert _towns_of(demo_db, codes) == {town_a}
    unscoped = [
        f["properties"]["code"] for f in client.get("/api/v1/layers/cases", headers=everyone).json()["features"]
    ]
    assert {two_towns["code_a"], two_towns["code_b"]} <= set(unscoped) and len(unscoped) > len(codes)
    # the search and the area lists
    listed = client.get("/api/v1/cases?limit=500", headers=worker).json()["cases"]
    assert listed and {c["grid"][2] for c in listed} == {town_a}
    assert client.get(f"/api/v1/cases?area={BANNER}", headers=worker).status_code == 403
    assert client.get(f"/api/v1/areas/{town_b}/cases", headers=worker).status_code == 403
    # a case of another town is to it as one that does not exist (a 403 told it the code exists)
    other = client.get(f"/api/v1/cases/{two_towns['code_b']}", headers=worker)
    unknown = client.get("/api/v1/cases/150623-20000101-999999", headers=worker)
    assert other.status_code == unknown.status_code == 404
    assert other.json()["field"] == unknown.json()["field"] == "code"
    # the CSV: its own area only; another town or the whole banner refused
    r = client.get(f"/api/v1/areas/{town_a}/cases.csv", headers=worker)
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows and _towns_of(demo_db, [x["code"] for x in rows]) == {town_a}
    for other in (town_b, BANNER, two_towns["cell_b"]):
        assert client.get(f"/api/v1/areas/{other}/cases.csv", headers=worker).status_code == 403
    # stats and the choropleth's figures
    assert client.get(f"/api/v1/areas/{town_b}/stats", headers=worker).status_code == 403
    assert client.get(f"/api/v1/areas/{BANNER}/stats", headers=worker).status_code == 403
    shading = client.get("/api/v1/layers/grids/stats?level=2", headers=worker).json()
    assert set(shading) == {town_a}
    villages = client.get("/api/v1/layers/grids/stats?level=3", headers=worker).json()
    assert villages and all(code.startswith(town_a) for code in villages)
    assert len(client.get("/api/v1/layers/grids/stats?level=2", headers=everyone).json()) > 1
    # the ranking: its own area's children by default; a parent outside its area refused
    ranking = client.get("/api/v1/stats/ranking", headers=worker)
    assert ranking.status_code == 200, ranking.text
    body = ranking.json()
    assert body["area"] == town_a and body["level"] == 3
    assert body["ranking"] and all(r["code"].startswith(town_a) for r in body["ranking"])
    assert client.get(f"/api/v1/stats/ranking?area={BANNER}", headers=worker).status_code == 403
    # ranking the towns (its own level) would compare it with the others: refused, naming the level
    towns = client.get("/api/v1/stats/ranking?level=2", headers=worker)
    assert towns.status_code == 403 and towns.json()["field"] == "level", towns.text
    assert client.get("/api/v1/stats/ranking", headers=everyone).json()["area"] == BANNER
    # dispatches of other towns are not listed; the vans of its banner are visible to a town's reader
    assert all(
        d["case"] != two_towns["code_b"] for d in client.get("/api/v1/dispatches", headers=worker).json()["dispatches"]
    )
    assert client.get("/api/v1/vans", headers=worker).json()["vans"]


def test_a_scoped_page_reader_gets_its_area_only_through_the_guard(
    cases_settings: Settings, demo_db: str, two_towns: dict[str, str]
) -> None:
    """The routes a page's browser fetches (layers, CSV, the area page) read the principal the
    guard binds; an area page outside the reader's area is a 403 (the refusal page)."""
    town_a, town_b = two_towns["town_a"], two_towns["town_b"]
    with TestClient(create_app(cases_settings)) as c:
        pair_screen(c, demo_db, "wall-a", area=town_a)  # a wall screen of town A, paired through its link
        codes = [f["properties"]["code"] for f in c.get(f"/api/v1/layers/cases?bbox={WHOLE_BANNER}").json()["features"]]
        assert two_towns["code_a"] in codes and _towns_of(demo_db, codes) == {town_a}
        assert c.get(f"/api/v1/areas/{town_b}/cases.csv").status_code == 403
        assert c.get(f"/api/v1/areas/{town_a}/cases.csv").status_code == 200
        assert c.get(f"/area/{town_b}").status_code == 403
        assert c.get(f"/area/{BANNER}").status_code == 403
        inside = c.get(f"/area/{two_towns['cell_a']}")
        assert inside.status_code == 200 and "<html" in inside.text.lower()
    with TestClient(create_app(cases_settings)) as c:
        # nobody signed in: the guard sends the page to sign-in (issue 12: no anonymous reader any more)
        r = c.get(f"/area/{town_b}", follow_redirects=False)
        assert r.status_code == 302 and r.headers["location"].startswith("/login?next=")
        sign_in(c, demo_db, "viewer")  # a reader of the whole territory gets town B's page
        assert c.get(f"/area/{town_b}").status_code == 200


def test_the_callbacks_show_a_scoped_reader_its_area_only(client: TestClient, two_towns: dict[str, str]) -> None:
    svc = _svc(client)
    town_a, town_b = two_towns["town_a"], two_towns["town_b"]
    with acting_as(Principal(1, "wall-a", "screen", town_a, kind="screen")):
        # pages: the wall of its own town; an area page elsewhere is the refusal page, in the page's language
        refused = pages.render(svc, f"/area/{town_b}", None)
        assert getattr(refused, "id", None) == "refused" and "403" in _text(refused) and "无权" in _text(refused)
        assert getattr(pages.render(svc, f"/area/{town_a}", None), "id", None) != "refused"
        wall_page = repr(pages.render(svc, "/", None))
        assert f"'code': '{town_a}'" in wall_page and f"'banner': '{town_a}'" in wall_page
        # the area page's table
        assert area_cb.table_page(svc, town_b, None, None, None, None, 0, [], "zh-CN") == ([], 1, 0)
        rows, _, total = area_cb.table_page(svc, town_a, None, None, None, None, 0, [], "zh-CN")
        # each code a link to its case page: [code](/cases/code)
        assert total > 0 and rows and all(r["code"].startswith(f"[{BANNER}") for r in rows)
        assert all(r["code"].endswith(f"(/cases/{r['code'][1:].split(']')[0]})") for r in rows)
        # the wall: cards, numbers, ranking, shading
        assert wall.case_card(svc, two_towns["code_b"], "zh-CN") == []
        assert two_towns["code_a"] in _text(wall.case_card(svc, two_towns["code_a"], "zh-CN"))
        assert wall.detail_for(svc, "layer-cases", {"code": two_towns["code_b"]}, "zh-CN") is no_update
        assert wall.in_scope(BANNER) == town_a and wall.in_scope(two_towns["cell_a"]) == two_towns["cell_a"]
        ranking = _text(wall.ranking_table(svc, BANNER, "zh-CN"))
        assert "敖勒召其镇" not in ranking  # towns are not ranked: its own town's villages are
        stats = wall.grid_hideout(svc, 2, "open", None, 9, {})["stats"]
        assert set(stats) == {town_a}
    # the dispatch page: a dispatcher scoped to town A (signed in: the page's principal) does not get town B's case
    scoped = dispatch_page.signed_in(Principal(2, "disp-a", "dispatcher", town_a, kind="user"))
    assert scoped is not None
    card, _, _, _ = dispatch_page.case_panels(svc, scoped, two_towns["code_b"], "zh-CN")
    assert card == []
    queue = _text(dispatch_page.queue_items(svc, scoped, None, "zh-CN"))
    assert two_towns["code_b"] not in queue and two_towns["code_a"] in queue


def _case_event(code: str, town: str, kind: str = "case.created") -> dict[str, Any]:
    return {"type": kind, "code": code, "step": "reported", "grid": [town + "001001", town + "001", town, BANNER]}


def test_a_scoped_screen_gets_no_event_from_another_town(redis_url: str) -> None:
    town_a, town_b = f"{BANNER}100", f"{BANNER}101"

    async def body(hub: LiveHub) -> None:
        async with hub.subscribe(None, town_a) as (scoped, _), hub.subscribe(None) as (everyone, _):
            await asyncio.to_thread(
                _publish,
                redis_url,
                _case_event("A-1", town_a),
                _case_event("B-1", town_b),
                {"type": "dispatch.created", "case": "B-1", "van": "V01", "grid": [None, None, town_b, BANNER]},
                {"type": "van.moved", "van": "V01", "lon": 108.1, "lat": 38.2},
                {"type": "case.changed", "code": "X-1", "step": "accepted"},  # no chain: the unscoped only
                _case_event("A-2", town_a, "case.changed"),
            )
            got = [(e.type, e.event.get("code") or e.event.get("van")) for e in await _collect(scoped, 3)]
            assert got == [("case.created", "A-1"), ("van.moved", "V01"), ("case.changed", "A-2")]
            assert len(await _collect(everyone, 6)) == 6
            assert await scoped.next(0.3) == []  # and nothing else comes

        first = (await asyncio.to_thread(_ids, redis_url))[0]  # a screen coming back after the first event
        async with hub.subscribe(first, town_a) as (again, missed):
            assert [e.event.get("code") or e.event.get("van") for e in missed] == ["V01", "A-2"]
            assert again.area == town_a

    _run(redis_url, body)


def test_dispatch_events_carry_the_case_grid_chain(demo_db: str, two_towns: dict[str, str]) -> None:
    """A dispatch's event names the case's grid chain, so the hub can keep it inside its area."""
    with psycopg.connect(demo_db) as conn, conn.cursor(row_factory=dict_row) as cur:
        d = cur.execute(
            """SELECT 1 AS id, c.code AS case_code, 'V01' AS van_id, 'en_route' AS status, 1.0 AS distance_m,
                      1.0 AS eta_s, 'road' AS method, ST_X(c.geom) AS case_lon, ST_Y(c.geom) AS case_lat,
                      c.grid_code, c.village_code, c.town_code, c.banner_code
               FROM cases c WHERE c.code = %s""",
            (two_towns["code_a"],),
        ).fetchone()
    assert d is not None
    event = dispatch.dispatch_event("dispatch.created", d, datetime.now(UTC))
    assert event["grid"] == [two_towns["cell_a"], two_towns["cell_a"][:12], two_towns["town_a"], BANNER]


def test_the_scope_function_and_the_python_check_agree(demo_db: str) -> None:
    """yitu_in_scope (SQL) and Principal.sees_case (Python) say the same for every level of a chain."""
    with psycopg.connect(demo_db) as conn:
        row = conn.execute("SELECT grid_code, village_code, town_code, banner_code FROM cases LIMIT 1").fetchone()
        assert row is not None
        chain = dict(zip(("grid_code", "village_code", "town_code", "banner_code"), row))
        for scope in (None, *row, "150623999", "150623100999"):
            (sql_says,) = conn.execute("SELECT yitu_in_scope(%s::text, %s, %s, %s, %s)", (scope, *row)).fetchone() or (
                None,
            )
            assert sql_says == Principal(1, "x", "viewer", scope).sees_case(chain), scope

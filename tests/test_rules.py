"""Each domain rule in one place: masking, the open steps, deadlines, the figures' cache, road
snapping, and refusals in the page's language — each checked where it is used, not only where it
is defined."""

from __future__ import annotations

import asyncio
import csv
import importlib
import io
import pkgutil
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import shapely
from fastapi.testclient import TestClient

from callbacks import dispatch as dispatch_page
from callbacks import wall
from dashboard.i18n import TEXTS, refusal
from geodata import masking
from geodata.demo import cases as demo_cases
from geodata.demo.territory import Area, Territory
from geodata.errors import Conflict, YituError
from geodata.workflow import OPEN_STEPS, ROLES, STEPS, DeadlineRules
from services.identity import Principal, acting_as
from services.live import LiveHub
from services.runtime import Services

from .cases_fixtures import auth, case_body, cases_settings, client, inner_point, token  # noqa: F401
from .helpers import keyed
from .test_live_hub import _collect, _run

WALL = Principal(1, "wall", "screen", None, kind="screen")  # a paired wall screen, the whole territory
MOBILE, LANDLINE = "13812345678", "81234567"  # an 8-digit local landline: 7 of its digits showed on the wall


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


# --- masking ---------------------------------------------------------------------------------------


def test_every_role_has_one_masking_policy() -> None:
    assert set(ROLES) <= set(masking.SEES_PERSONAL_DATA)
    assert [r for r in ROLES if masking.sees_personal_data(r)] == ["admin", "dispatcher", "grid_worker", "van"]
    for reader in ("viewer", masking.SCREEN, None, "someone-new"):
        assert masking.sees_personal_data(reader) is False


def test_a_landline_and_a_mobile_show_their_last_4_digits_in_the_api_and_the_cards_and_not_in_the_csv(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    lon, lat, cell = inner_point(demo_db)
    parties = [{"name": "巴图", "phone": MOBILE}, {"name": "乌兰其其格", "phone": LANDLINE}]
    body = case_body(lon, lat, parties=parties, description=f"巴图电话{MOBILE}，乌兰其其格座机{LANDLINE}")
    r = client.post("/api/v1/cases", json=body, headers=keyed(auth(token("dispatcher"))))
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    shown_mobile, shown_landline = "****5678", "****4567"

    def clean(text: str) -> None:
        """Neither number, nor the prefix the old masks kept (138****, 812****)."""
        for raw in (MOBILE, LANDLINE, "138*", "812*"):
            assert raw not in text, (raw, text)

    note = f"已电话联系巴图{MOBILE}，乌兰其其格座机{LANDLINE}"  # clerks write the parties into notes too
    accept = {"action": "accept", "note": note}
    r = client.post(f"/api/v1/cases/{code}/transitions", json=accept, headers=auth(token("dispatcher")))
    assert r.status_code == 200, r.text
    # the API, for a viewer (a dispatcher gets the parties as reported)
    viewer = auth(token("viewer"))
    case = client.get(f"/api/v1/cases/{code}", headers=viewer).json()
    assert case["timeline"][-1]["note"] == f"已电话联系巴*{shown_mobile}，乌****座机{shown_landline}"
    assert [p["phone"] for p in case["parties"]] == [shown_mobile, shown_landline]
    assert [p["name"] for p in case["parties"]] == ["巴*", "乌****"]
    assert case["description"] == f"巴*电话{shown_mobile}，乌****座机{shown_landline}"
    listed = client.get(f"/api/v1/areas/{cell}/cases", headers=viewer).json()["cases"]
    assert next(c for c in listed if c["code"] == code)["parties"] == case["parties"]
    full = client.get(f"/api/v1/cases/{code}", headers=auth(token("dispatcher"))).json()
    assert [p["phone"] for p in full["parties"]] == [MOBILE, LANDLINE] and full["timeline"][-1]["note"] == note
    # the area export names no reader: it carries no personal data at all, not even the last 4 digits
    r = client.get(f"/api/v1/areas/{cell}/cases.csv", headers=viewer)  # it needs a caller, like everything now
    row = next(x for x in csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))) if x["code"] == code)
    assert "parties" not in row and "5678" not in ",".join(row.values()) and "4567" not in ",".join(row.values())
    clean(r.content.decode("utf-8-sig"))
    # the wall screen's case card, and the dispatch page's (a room screen, whoever signed in)
    svc = _svc(client)
    with acting_as(WALL):  # a callback serves the principal the guard bound (unbound: 401)
        card = _text(wall.case_card(svc, code, "zh-CN"))
    assert f"巴* {shown_mobile}" in card and f"乌**** {shown_landline}" in card
    clean(card)
    who = dispatch_page.signed_in(Principal(1, "page-dispatcher", "dispatcher", None, kind="user"))
    page_card = _text(dispatch_page.case_panels(svc, who, code, "zh-CN")[0])
    assert f"乌**** {shown_landline}" in page_card
    clean(page_card)
    with acting_as(Principal(0, "boss", "admin", None, kind="user")):  # whoever signed in to a room page
        assert f"乌**** {shown_landline}" in _text(wall.case_card(svc, code, "zh-CN"))


# --- the open steps --------------------------------------------------------------------------------


def test_the_sql_function_and_the_python_constant_agree_on_every_step(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        for step in (*STEPS, "no-such-step"):
            (open_,) = conn.execute("SELECT yitu_step_open(%s)", (step,)).fetchone()  # type: ignore[misc]
            assert open_ is (step in OPEN_STEPS), step
        assert set(demo_cases.OPEN_STEP_SHARE) == OPEN_STEPS and sum(demo_cases.OPEN_STEP_SHARE.values()) == 1


def test_no_query_spells_the_open_steps_out() -> None:
    sql_dir = Path(__file__).resolve().parent.parent / "geodata" / "sql"
    spelled = re.compile(r"'reported',\s*'accepted',\s*'dispatched',\s*'handling'\s*\)")
    found = [
        p.name for p in sorted(sql_dir.glob("*.sql")) if spelled.search(p.read_text()) and p.name[:3] not in {"004"}
    ]
    assert found == ["012_open_steps.sql"]  # the function's own definition; 004 is history (its index is replaced)


def test_the_function_is_inlined_and_the_open_cases_index_still_serves(demo_db: str) -> None:
    with psycopg.connect(demo_db) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN (VERBOSE) SELECT count(*) FROM cases "
                "WHERE yitu_step_open(step) AND step = 'handling' AND deadline < now()"
            )
        )
        # The index's predicate implies the query's (else it could not serve at all). The step is
        # named so that the index's leading column makes it the cheapest: with the deadline alone
        # the planner may take cases_assignee_open_idx (025_roster.sql, the same predicate) instead,
        # as it did once on a freshly analysed demo.
        assert "cases_open_idx" in plan, plan
        shown = "\n".join(r[0] for r in conn.execute("EXPLAIN (VERBOSE) SELECT yitu_step_open(step) FROM cases"))
        assert "yitu_step_open" not in shown and "ANY" in shown, shown  # inlined: the IN list it replaced
        (pred,) = conn.execute(  # type: ignore[misc]
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = 'cases_open_idx'::regclass"
        ).fetchone()
        assert pred == "yitu_step_open(step)"


# --- deadlines -------------------------------------------------------------------------------------


def _tiny_territory() -> Territory:
    box = shapely.box(107.40, 38.10, 107.50, 38.20)
    seat = (107.45, 38.15)
    return Territory(
        [
            Area("150623", "鄂托克前旗", 1, None, box, seat),
            Area("150623100", "敖勒召其镇", 2, "150623", box, seat),
            Area("150623100001", "某嘎查", 3, "150623100", box, seat, {"kind": "gacha"}),
            Area("150623100001001", "第一网格", 4, "150623100001", box, seat),
        ],
        seat,
    )


def test_the_demo_generator_uses_the_workflows_deadline_rule() -> None:
    """Under rules of its own (no same-day grid), every generated case is due exactly when the
    rules say, counted from one of its own moments (the start of its level)."""
    rules = DeadlineRules(hours={"grid": 5, "village": 30, "town": 50, "banner": 80})
    as_of = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    gen = demo_cases.generate_cases(_tiny_territory(), 300, 200, as_of, np.random.default_rng(5), rules=rules)
    rows, events = [], []
    for r, e in gen:
        rows += r
        events += e
    moments: dict[int, set[datetime]] = {}
    for e in events:
        moments.setdefault(e[0], set()).add(e[1])
    assert len(rows) == 500
    for row in rows:
        cid, level, step, deadline = row[0], row[12], row[13], row[14]
        due = {rules.deadline(level, t) for t in moments[cid]}
        assert deadline in due, (cid, level, step, deadline)
    open_rows = [r for r in rows if r[13] in OPEN_STEPS]
    assert open_rows and {r[13] for r in open_rows} == OPEN_STEPS


def test_the_seeded_demo_is_due_by_the_default_rule(demo_dsn: str) -> None:
    rules = DeadlineRules()
    with psycopg.connect(demo_dsn) as conn:
        cases = conn.execute("SELECT id, level, deadline FROM cases ORDER BY id").fetchall()
        moments: dict[int, set[datetime]] = {}
        for cid, at in conn.execute("SELECT case_id, occurred_at FROM case_events"):
            moments.setdefault(cid, set()).add(at)
    assert len(cases) > 1000
    late = [cid for cid, level, deadline in cases if deadline not in {rules.deadline(level, t) for t in moments[cid]}]
    assert late == []


# --- one cache of figures --------------------------------------------------------------------------


def test_a_case_change_updates_the_tiles_and_the_map_shading_together(
    client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    svc = _svc(client)
    lon, lat, cell = inner_point(demo_db)
    town = cell[:9]

    def figures() -> tuple[int, int]:
        with acting_as(WALL):  # what a paired wall screen's callbacks read
            tiles = {t.id: _text(t) for t in wall.kpi_tiles(svc, town, "zh-CN") if getattr(t, "id", None)}
            shading = wall.grid_hideout(svc, 2, "open", None, 9, {})["stats"][town]["open"]
        return int(tiles["kpi-in_progress"].split()[0]), int(shading)

    before = figures()
    assert before[0] == before[1]  # one definition of "open", one moment
    dispatcher = auth(token("dispatcher"))

    async def body(hub: LiveHub) -> tuple[int, int]:
        async with hub.subscribe(None) as (sub, _):  # a screen is open: the hub drops the figures
            r = await asyncio.to_thread(
                client.post, "/api/v1/cases", json=case_body(lon, lat), headers=keyed(dispatcher)
            )
            assert r.status_code == 201, r.text
            got = await _collect(sub, 1)
            assert got[0].type == "case.created"
            return await asyncio.to_thread(figures)  # what the screen reloads when told

    after = _run(redis_url, body)
    assert after == (before[0] + 1, before[1] + 1)


# --- road snapping ---------------------------------------------------------------------------------


def test_road_snapping_is_one_function_used_by_every_route(demo_dsn: str) -> None:
    sql_dir = Path(__file__).resolve().parent.parent / "geodata" / "sql"
    for name in ("van_candidates.sql", "sim_route.sql"):
        text = (sql_dir / name).read_text()
        assert "yitu_snap_to_road(" in text and "ST_LineLocatePoint" not in text, name
    with psycopg.connect(demo_dsn) as conn:
        lon, lat = 107.4812, 38.1834
        got = conn.execute(
            "SELECT edge, fraction, snap_m FROM yitu_snap_to_road(ST_SetSRID(ST_MakePoint(%s, %s), 4326))", (lon, lat)
        ).fetchall()
        brute = conn.execute(
            """SELECT r.id, ST_LineLocatePoint(r.geom, p.g),
                      ST_DistanceSpheroid(ST_ClosestPoint(r.geom, p.g), p.g,
                                          'SPHEROID["WGS 84",6378137,298.257223563]') AS m
               FROM roads r, (SELECT ST_SetSRID(ST_MakePoint(%s, %s), 4326) AS g) p
               ORDER BY m, r.id LIMIT 1""",
            (lon, lat),
        ).fetchone()
    assert len(got) == 1 and got[0][0] == brute[0]  # type: ignore[index]
    assert got[0][1] == pytest.approx(brute[1]) and got[0][2] == pytest.approx(brute[2])  # type: ignore[index]


# --- refusals in the page's language ---------------------------------------------------------------


def _error_classes() -> set[type[YituError]]:
    for pkg in ("geodata", "services", "api", "layers", "callbacks", "dashboard"):
        mod = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    found: set[type[YituError]] = {YituError}
    todo = [YituError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def test_every_refusal_has_a_text_in_both_languages() -> None:
    classes = _error_classes()
    assert len(classes) > 20
    keys = {cls.__new__(cls).key for cls in classes}  # the key is the class's name: no message needed
    keys |= {f"error.{cls.code}" for cls in classes}
    for lang in ("zh-CN", "en"):
        missing = sorted(k for k in keys if k not in TEXTS[lang])
        assert missing == [], (lang, missing)


def test_a_refusal_falls_back_to_its_kinds_text() -> None:
    class SomethingNew(Conflict):
        """A refusal nobody wrote a text for yet."""

    exc = SomethingNew("van V01 is doing something new")
    assert exc.key == "error.something_new"
    assert refusal(exc, "zh-CN") == TEXTS["zh-CN"]["error.conflict"]
    assert refusal(exc, "en") == TEXTS["en"]["error.conflict"]
    assert "V01" not in refusal(exc, "en")

"""Vans belong to a banner (issue 16 item 2): a banner's readers see and dispatch only their banner's vans.

A two-banner deployment (the seeded demo 150623 with its vans V01–V04 based at its banner centre,
and a second banner 150621 imported beside it, as tests/test_banners.py builds it) gets a centre and
a van B01 in the second banner, and a league van L01 with no base centre (市级: every reader's).
A reader scoped to the first banner, or to a town of it, sees only V01–V04 and L01 on every path
(the list and track API, the vans layer and its trails, the wall's van board, focus and card, the
dispatch candidates of the API, the dispatch page and the case page, the crew page's read and its
picker, the live push); a reader of the second banner only B01 and L01; the root-scoped and the
unscoped reader every van. A dispatcher of one banner sending the other's van is refused (404
naming ``van``) and nothing is written. The events name the van and its banner, never its crew.
The mediation centres on the map follow the vans' rule; the cameras the cases' (the reader's area).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from callbacks import case as casepage
from callbacks import dispatch as dpage
from callbacks import wall
from dashboard.pages.wall import VAN_ROW
from geodata import io, queries
from services.identity import Principal, acting_as, create_user
from services.live import Entry, LiveHub, Subscription
from services.runtime import Services

from .cases_fixtures import auth, case_body, cases_settings, client, inner_point, token  # noqa: F401
from .conftest import PASSWORD
from .helpers import keyed
from .test_banners import FIRST, ROOT, SECOND, SECOND_POINT, second_banner_file

FIRST_VANS = ["V01", "V02", "V03", "V04"]
LEAGUE_VAN = "L01"
SECOND_VAN = "B01"
EVERY_VAN = sorted([*FIRST_VANS, SECOND_VAN, LEAGUE_VAN])
SEES_FIRST = sorted([*FIRST_VANS, LEAGUE_VAN])
SEES_SECOND = sorted([SECOND_VAN, LEAGUE_VAN])
WHOLE = "100,30,120,50"  # a box around both banners (and far beyond)
# What a van's live event may carry: where it is and how it moves, never who rides in it.
VAN_EVENT_FIELDS = {
    "type",
    "van",
    "banner",
    "lon",
    "lat",
    "time",
    "speed_kmh",
    "heading",
    "latest",
    "odometer_km",
    "status",
}


def _svc(c: TestClient) -> Services:
    return c.app.state.services  # type: ignore[attr-defined]


def _place(conn: psycopg.Connection, van: str, lon: float, lat: float) -> None:
    conn.execute(
        "UPDATE vans SET geom = ST_SetSRID(ST_MakePoint(%s, %s), 4326), last_seen_at = now() - interval '10 s', "
        "status = 'available' WHERE id = %s",
        (lon, lat, van),
    )


@pytest.fixture
def two_banners_with_vans(demo_db: str, tmp_path: Any) -> dict[str, tuple[float, float]]:
    """The second banner with a centre and its van B01, and the league van L01; every van located
    and available. Returns a point inside each banner (``first``, ``second``)."""
    lon, lat, cell = inner_point(demo_db)  # a cell of the first banner (before the second is there)
    assert cell.startswith(FIRST)
    io.import_grids(demo_db, second_banner_file(tmp_path))
    with psycopg.connect(demo_db) as conn:
        (centre,) = conn.execute(  # type: ignore[misc]
            """INSERT INTO mediation_centers (code, name, level, area_code, geom)
               VALUES ('B2-CENTRE', '示例二旗调解中心', 1, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326))
               RETURNING id""",
            (SECOND + "100001001", *SECOND_POINT),
        ).fetchone()
        conn.execute(
            "INSERT INTO vans (id, name, plate, base_center_id) VALUES (%s, '二旗调解车', '蒙K·B0001', %s)",
            (SECOND_VAN, centre),
        )
        conn.execute("INSERT INTO vans (id, name, plate) VALUES (%s, '市级调解车', '蒙K·L0001')", (LEAGUE_VAN,))
        for van in FIRST_VANS:
            _place(conn, van, lon + 0.01, lat)
        _place(conn, SECOND_VAN, SECOND_POINT[0] + 0.01, SECOND_POINT[1])
        _place(conn, LEAGUE_VAN, SECOND_POINT[0] + 0.02, SECOND_POINT[1])
    return {"first": (lon, lat), "second": SECOND_POINT}


def _town_of(dsn: str, banner: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT code FROM areas WHERE level = 2 AND left(code, 6) = %s ORDER BY code LIMIT 1", (banner,)
        ).fetchone()
    assert row is not None
    return str(row[0])


def _listed(client: TestClient, headers: dict[str, str]) -> list[str]:
    r = client.get("/api/v1/vans", headers=headers)
    assert r.status_code == 200, r.text
    return sorted(v["id"] for v in r.json()["vans"])


def _on_layer(client: TestClient, headers: dict[str, str], kind: str = "van") -> list[str]:
    r = client.get("/api/v1/layers/vans", headers=headers)
    assert r.status_code == 200, r.text
    return sorted(f["properties"]["id"] for f in r.json()["features"] if f["properties"]["kind"] == kind)


def _new_case(client: TestClient, tok: str, lon: float, lat: float, accept: bool = True) -> str:
    r = client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(auth(tok)))
    assert r.status_code == 201, r.text
    code = str(r.json()["code"])
    if accept:
        r = client.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept"}, headers=auth(tok))
        assert r.status_code == 200, r.text
    return code


def _written(dsn: str) -> tuple[Any, ...]:
    """What a dispatch would write: dispatches, outbox, audit rows, the cases' and vans' state."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            """SELECT (SELECT count(*) FROM dispatches), (SELECT coalesce(max(seq), 0) FROM outbox),
                      (SELECT count(*) FROM case_events),
                      (SELECT md5(string_agg(code || step || coalesce(assignee::text, ''), ',' ORDER BY code))
                       FROM cases WHERE reported_at > now() - interval '1 hour'),
                      (SELECT string_agg(id || status, ',' ORDER BY id) FROM vans)"""
        ).fetchone()
    assert row is not None
    return tuple(row)


# --- the rule ------------------------------------------------------------------------------------------


def test_a_van_is_its_base_centres_banners_and_sql_and_python_agree(
    demo_db: str, two_banners_with_vans: dict[str, Any]
) -> None:
    with psycopg.connect(demo_db) as conn:
        banners = dict(conn.execute("SELECT id, yitu_van_banner(base_center_id) FROM vans").fetchall())
        assert banners == {**dict.fromkeys(FIRST_VANS, FIRST), SECOND_VAN: SECOND, LEAGUE_VAN: None}
        town = _town_of(demo_db, FIRST)
        scopes = [None, ROOT, FIRST, town, town + "001", SECOND, SECOND + "100", "150700"]
        for scope in scopes:
            for banner in (FIRST, SECOND, None):
                (sql_says,) = conn.execute(  # type: ignore[misc]
                    "SELECT yitu_van_in_scope(%s::text, %s::text)", (scope, banner)
                ).fetchone()
                assert sql_says == queries.van_in_scope(scope, banner), (scope, banner)
    assert queries.van_in_scope(town, FIRST) and not queries.van_in_scope(town, SECOND)
    assert queries.van_in_scope(ROOT, SECOND) and queries.van_in_scope(SECOND, None)


# --- reading the vans ------------------------------------------------------------------------------------


def test_each_reader_lists_maps_and_tracks_only_the_vans_it_may_see(
    client: TestClient, token: Callable[..., str], demo_db: str, two_banners_with_vans: dict[str, Any]
) -> None:
    town = _town_of(demo_db, FIRST)
    readers = {
        "unscoped": (auth(token("viewer")), EVERY_VAN),
        "root": (auth(token("viewer", area=ROOT)), EVERY_VAN),
        "first": (auth(token("viewer", area=FIRST)), SEES_FIRST),
        "first's town": (auth(token("viewer", area=town)), SEES_FIRST),
        "second": (auth(token("dispatcher", area=SECOND)), SEES_SECOND),
    }
    # a trail for a van of each banner and the league's: pings of the last minutes, by the admin
    admin = auth(token("admin"))
    now = datetime.now(UTC)
    pings = []
    for van, (lon, lat) in (
        ("V01", two_banners_with_vans["first"]),
        (SECOND_VAN, SECOND_POINT),
        (LEAGUE_VAN, SECOND_POINT),
    ):
        pings += [
            {"van": van, "lon": lon + i * 0.001, "lat": lat, "time": (now - timedelta(seconds=60 - i)).isoformat()}
            for i in range(3)
        ]
    r = client.post("/api/v1/vans/positions", json={"positions": pings}, headers=admin)
    assert r.status_code == 200 and r.json()["stored"] == 9, r.text

    for name, (headers, wanted) in readers.items():
        assert _listed(client, headers) == wanted, name
        assert _on_layer(client, headers) == wanted, name
        trails = _on_layer(client, headers, "trail")
        assert trails == sorted(v for v in ("V01", SECOND_VAN, LEAGUE_VAN) if v in wanted), name
        for van in (SECOND_VAN, "V01"):
            track = client.get(f"/api/v1/vans/{van}/track", headers=headers)
            if van in wanted:
                assert track.status_code == 200 and track.json()["properties"]["count"] == 3, (name, track.text)
            else:  # another banner's van: as an unknown one
                assert (track.status_code, track.json()["field"]) == (404, "van"), name
    # the crew's columns are not in the list, whoever asks
    row = client.get("/api/v1/vans", headers=admin).json()["vans"][0]
    assert not {"crew", "users", "phone", "banner"} & set(row)


def test_the_wall_board_focus_and_card_are_the_readers(
    client: TestClient, demo_db: str, two_banners_with_vans: dict[str, Any]
) -> None:
    svc = _svc(client)
    town = _town_of(demo_db, FIRST)
    van_layer = "layer-vans"
    for area, wanted in ((None, EVERY_VAN), (ROOT, EVERY_VAN), (FIRST, SEES_FIRST), (town, SEES_FIRST)):
        who = Principal(7, "墙", "viewer", area, kind="user")
        with acting_as(who):
            board = wall.van_board(svc, "zh-CN", VAN_ROW)
            ids = [
                c.id["van"]
                for c in board
                if isinstance(getattr(c, "id", None), dict) and c.id.get("type") == VAN_ROW  # type: ignore[union-attr]
            ]
            assert sorted(ids) == wanted, area
            viewport, card = wall.van_focus(svc, SECOND_VAN, "zh-CN")
            shown = wall.detail_for(svc, van_layer, {"kind": "van", "id": SECOND_VAN}, "zh-CN")
            if SECOND_VAN in wanted:
                assert viewport["center"][1] == pytest.approx(SECOND_POINT[0] + 0.01)  # type: ignore[index]
                assert SECOND_VAN in str(card) and SECOND_VAN in str(shown)
            else:
                assert (viewport, card, shown) == (wall.no_update, wall.no_update, wall.no_update), area
            assert LEAGUE_VAN in str(wall.detail_for(svc, van_layer, {"kind": "van", "id": LEAGUE_VAN}, "zh-CN"))
    # the dispatch page's board (plain rows) for its reader too
    with acting_as(Principal(8, "调度", "dispatcher", SECOND, kind="user")):
        text = str(wall.van_board(svc, "zh-CN"))
    assert SECOND_VAN in text and LEAGUE_VAN in text and not any(v in text for v in FIRST_VANS)


# --- dispatching ----------------------------------------------------------------------------------------


def test_a_banners_dispatcher_is_offered_and_sends_only_its_banners_vans(
    client: TestClient, token: Callable[..., str], demo_db: str, two_banners_with_vans: dict[str, Any]
) -> None:
    league = token("dispatcher")
    first_disp, second_disp = token("dispatcher", area=FIRST), token("dispatcher", area=SECOND)
    first_case = _new_case(client, league, *two_banners_with_vans["first"])
    second_case = _new_case(client, league, *SECOND_POINT)

    def offered(tok: str, code: str) -> list[str]:
        r = client.get(f"/api/v1/cases/{code}/van-candidates", headers=auth(tok))
        assert r.status_code == 200, r.text
        return sorted(c["id"] for c in r.json()["candidates"])

    assert offered(league, first_case) == EVERY_VAN == offered(token("dispatcher", area=ROOT), second_case)
    assert offered(first_disp, first_case) == SEES_FIRST
    assert offered(second_disp, second_case) == SEES_SECOND
    assert offered(token("dispatcher", area=_town_of(demo_db, FIRST)), first_case) == SEES_FIRST

    # the dispatch page and the case page offer the same
    svc = _svc(client)
    who = dpage.signed_in(Principal(9, "一旗调度", "dispatcher", FIRST, kind="user"))
    _, candidates, _, _ = dpage.case_panels(svc, who, first_case, "zh-CN")
    sendable = [
        c.id["van"]
        for c in _walk(candidates)
        if isinstance(getattr(c, "id", None), dict) and c.id["type"] == dpage.SEND
    ]
    assert sorted(sendable) == SEES_FIRST
    vans = [r["id"] for r in casepage.targets(svc, first_case, scope=FIRST) if r["kind"] == "van"]
    assert sorted(vans) == SEES_FIRST
    assert sorted(r["id"] for r in casepage.targets(svc, first_case) if r["kind"] == "van") == EVERY_VAN

    # another banner's van: refused as unknown, naming the van; nothing written
    before = _written(demo_db)
    for tok, code, van in ((first_disp, first_case, SECOND_VAN), (second_disp, second_case, "V01")):
        r = client.post("/api/v1/dispatches", json={"case": code, "van": van}, headers=keyed(auth(tok)))
        assert (r.status_code, r.json()["field"]) == (404, "van"), r.text
    assert _written(demo_db) == before
    rt = client.app.state.cases_runtime  # type: ignore[attr-defined]
    reported = _new_case(client, league, *two_banners_with_vans["first"], accept=False)
    before = _written(demo_db)
    out = dpage.send(svc, rt, who, reported, SECOND_VAN, "zh-CN")  # 核实并派车: the accept is undone too
    assert out["ok"] is False and out["field"] == "van", out
    assert _written(demo_db) == before
    with psycopg.connect(demo_db) as conn:
        step = conn.execute("SELECT step FROM cases WHERE code = %s", (reported,)).fetchone()
    assert step == ("reported",)

    # its own banner's van and the league's van go
    r = client.post("/api/v1/dispatches", json={"case": second_case, "van": SECOND_VAN}, headers=auth(second_disp))
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/dispatches", json={"case": first_case, "van": LEAGUE_VAN}, headers=auth(first_disp))
    assert r.status_code == 201, r.text


def _walk(component: Any) -> list[Any]:
    if isinstance(component, (list, tuple)):
        return [x for c in component for x in _walk(c)]
    if component is None or isinstance(component, (str, int, float)):
        return []
    return [component, *_walk(getattr(component, "children", None))]


def test_the_crew_read_keeps_the_crew_to_its_van_and_a_dispatcher_to_its_banner(
    client: TestClient, token: Callable[..., str], demo_db: str, two_banners_with_vans: dict[str, Any]
) -> None:
    first_disp = auth(token("dispatcher", area=FIRST))
    assert client.get(f"/api/v1/vans/{SECOND_VAN}/dispatch", headers=first_disp).status_code == 404
    assert client.get("/api/v1/vans/V02/dispatch", headers=first_disp).status_code == 200
    assert client.get(f"/api/v1/vans/{LEAGUE_VAN}/dispatch", headers=first_disp).status_code == 200
    assert client.get(f"/m/van?van={SECOND_VAN}", headers=first_disp).status_code == 404
    picker = client.get("/m/van", headers=first_disp).text
    assert all(f"?van={v}" in picker for v in SEES_FIRST) and f"?van={SECOND_VAN}" not in picker
    # a crew member of the second banner's van, whatever its area, reads its van and no other
    name = "二旗车组"
    with psycopg.connect(demo_db) as conn:
        create_user(conn, name=name, role="van", van=SECOND_VAN, password=PASSWORD, area=FIRST)
    r = client.post("/login", data={"username": name, "password": PASSWORD, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    mine = client.get(f"/api/v1/vans/{SECOND_VAN}/dispatch")
    assert mine.status_code == 200 and mine.json()["van"]["id"] == SECOND_VAN, mine.text
    assert client.get("/api/v1/vans/V01/dispatch").status_code == 403
    client.cookies.clear()


# --- the live push ---------------------------------------------------------------------------------------


def _moves(entries: list[Entry]) -> list[Entry]:
    """The vans' events: the fixture's grid import may still be on its way as ``areas.changed``."""
    return [e for e in entries if e.type.startswith("van.")]


async def _gather(sub: Subscription, n: int) -> list[Entry]:
    got: list[Entry] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + 15.0
    while len(got) < n:
        batch = await sub.next(max(0.05, end - loop.time()))
        assert batch is not None, "unexpected resync"
        got.extend(_moves(batch))
        assert loop.time() <= end, f"got {len(got)} of {n} entries"
    return got


def test_a_scoped_screen_gets_only_its_banners_van_events(
    client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str, two_banners_with_vans: dict[str, Any]
) -> None:
    town = _town_of(demo_db, FIRST)
    admin = auth(token("admin"))
    now = datetime.now(UTC)
    lon, lat = two_banners_with_vans["first"]
    pings = [
        {"van": "V01", "lon": lon, "lat": lat, "time": now.isoformat()},
        {"van": SECOND_VAN, "lon": SECOND_POINT[0], "lat": SECOND_POINT[1], "time": now.isoformat()},
        {"van": LEAGUE_VAN, "lon": SECOND_POINT[0], "lat": SECOND_POINT[1], "time": now.isoformat()},
    ]

    def post() -> None:
        r = client.post("/api/v1/vans/positions", json={"positions": pings}, headers=admin)
        assert r.status_code == 200 and r.json()["stored"] == 3, r.text

    async def body() -> dict[str | None, list[str]]:
        hub = LiveHub(redis_url, 2.0)
        await hub.start()
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while not hub.healthy:
                assert asyncio.get_running_loop().time() < deadline, "the hub never read the stream"
                await asyncio.sleep(0.02)
            areas: list[str | None] = [None, FIRST, town, SECOND]
            async with (
                hub.subscribe(None, None) as (everywhere, _),
                hub.subscribe(None, FIRST) as (first, _),
                hub.subscribe(None, town) as (first_town, _),
                hub.subscribe(None, SECOND) as (second, _),
            ):
                await asyncio.to_thread(post)
                subs = [everywhere, first, first_town, second]
                wanted = [3, 2, 2, 2]
                got = {a: await _gather(s, n) for a, s, n in zip(areas, subs, wanted, strict=True)}
                for s in subs:  # and no more of the vans' events comes
                    assert _moves(await s.next(0.3) or []) == []
            return {a: sorted(e.event["van"] for e in entries) for a, entries in got.items()}
        finally:
            await hub.stop()

    seen = asyncio.run(body())
    assert seen == {
        None: sorted(["V01", SECOND_VAN, LEAGUE_VAN]),
        FIRST: ["L01", "V01"],
        town: ["L01", "V01"],
        SECOND: sorted([SECOND_VAN, LEAGUE_VAN]),
    }
    # as committed: each names its van's banner (null: the league's), and nothing of its crew
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute("SELECT event FROM outbox WHERE type = 'van.moved' ORDER BY seq").fetchall()
    events = {e["van"]: e for (e,) in rows}
    assert {v: events[v]["banner"] for v in ("V01", SECOND_VAN, LEAGUE_VAN)} == {
        "V01": FIRST,
        SECOND_VAN: SECOND,
        LEAGUE_VAN: None,
    }
    assert all(set(e) <= VAN_EVENT_FIELDS for e in events.values()), events


def test_one_banner_deployments_see_every_van_as_before(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    town = _town_of(demo_db, FIRST)
    for area in (None, FIRST, town):
        assert _listed(client, auth(token("viewer", area=area))) == FIRST_VANS
    # an event written before vans had a banner reaches every screen, as it did
    legacy = Entry("1-0", "van.moved", '{"van": "V01", "lon": 107.5, "lat": 38.2}')
    assert legacy.visible_in(FIRST) and legacy.visible_in(town) and legacy.visible_in(None)


# --- the banners' other resources: cameras and mediation centres ------------------------------------


def test_cameras_stay_in_the_readers_area_and_centres_in_its_banner(
    client: TestClient, token: Callable[..., str], demo_db: str, two_banners_with_vans: dict[str, Any]
) -> None:
    """layers/cameras.py: a scoped reader's camera layer and camera cards hold the cameras inside its
    area only (a camera's stream is a view into a place); layer_centers.sql: the mediation centres
    of its banner and the league's, as the vans based at them. A camera of the second banner is not
    the first banner's readers'; one outside every area is the whole territory's readers' only."""
    town = _town_of(demo_db, FIRST)
    with psycopg.connect(demo_db) as conn:
        conn.execute(
            """INSERT INTO cameras (device_code, name, kind, status, stream_url, area_code, geom) VALUES
               ('CAM-B2', '二旗探头', 'dome', 'online', 'rtsp://b2.example/1', %s,
                ST_SetSRID(ST_MakePoint(%s, %s), 4326)),
               ('CAM-OUT', '境外探头', 'dome', 'online', 'rtsp://out.example/1', NULL,
                ST_SetSRID(ST_MakePoint(100.5, 30.5), 4326))""",
            (SECOND + "100001001", *SECOND_POINT),
        )
        cameras = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, device_code, area_code FROM cameras")}
        centres = {r[0]: r[1] for r in conn.execute("SELECT code, area_code FROM mediation_centers WHERE level <= 3")}
        conn.execute(
            "INSERT INTO mediation_centers (code, name, level, area_code, geom)"
            " VALUES ('LEAGUE-CENTRE', '市调解中心', 1, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
            (ROOT, *SECOND_POINT),
        )
    centres["LEAGUE-CENTRE"] = ROOT
    by_code = {code: cid for cid, (code, _area) in cameras.items()}
    assert len(cameras) > 2 and any(a and a.startswith(town) for _c, a in cameras.values())

    def in_area(area: str | None) -> set[int]:
        return {c for c, (_code, a) in cameras.items() if area is None or (a is not None and a.startswith(area))}

    def in_banner(area: str | None) -> set[str]:
        return {c for c, a in centres.items() if area is None or len(a) < 6 or a[:6] == area[:6] or area == ROOT}

    svc = _svc(client)
    for area in (None, ROOT, FIRST, town, SECOND):
        headers = auth(token("viewer", area=area))
        r = client.get(f"/api/v1/layers/cameras?bbox={WHOLE}", headers=headers)
        assert r.status_code == 200, r.text
        shown = {f["properties"]["id"] for f in r.json()["features"]}
        wanted = in_area(None if area == ROOT else area)  # the root's reader is the whole territory's
        assert shown == wanted, area
        r = client.get(f"/api/v1/layers/centers?bbox={WHOLE}", headers=headers)
        assert r.status_code == 200, r.text
        assert {f["properties"]["code"] for f in r.json()["features"]} == in_banner(area), area
        with acting_as(Principal(9, "墙", "viewer", area, kind="user")):
            for camera in (by_code["CAM-B2"], next(iter(in_area(town)))):
                card = wall.detail_for(svc, "layer-cameras", {"id": camera}, "zh-CN")
                assert (card is not wall.no_update) == (camera in wanted), (area, camera)
            for junk in ("1", 1.5, True, None, [1]):  # a forged click: no card, no error
                assert wall.detail_for(svc, "layer-cameras", {"id": junk}, "zh-CN") is wall.no_update

"""Van dispatch: candidates by road distance (checked against a Dijkstra of our own), sending a
van (one wins when 50 try at once), arrival from the van's GPS, the end of a visit, cancelling,
cameras near a case, and bad input. All on the real PostGIS (pgRouting) and Redis."""

from __future__ import annotations

import heapq
import json
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis
import shapely
from fastapi.testclient import TestClient
from pyproj import Geod

from geodata import tracking

from .cases_fixtures import auth, case_body, cases_settings, client, inner_point, settings_for, token  # noqa: F401
from .helpers import all_published, keyed, wait_for

GEOD = Geod(ellps="WGS84")
DETOUR, SNAP_MAX = 1.3, 2000.0
SPEED_MPS = {"trunk": 80 / 3.6, "county": 60 / 3.6, "village": 40 / 3.6}
OFFROAD_MPS = 30 / 3.6
VANS = ("V01", "V02", "V03", "V04")


# --- helpers -------------------------------------------------------------------------------------


def offset(lon: float, lat: float, metres: float, azimuth: float = 90.0) -> tuple[float, float]:
    x, y, _ = GEOD.fwd(lon, lat, azimuth, metres)
    return float(x), float(y)


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(GEOD.inv(a[0], a[1], b[0], b[1])[2])


def place_van(dsn: str, van: str, lon: float, lat: float, seen_ago: timedelta = timedelta(seconds=10)) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE vans SET geom = ST_SetSRID(ST_MakePoint(%s, %s), 4326), last_seen_at = now() - %s WHERE id = %s",
            (lon, lat, seen_ago, van),
        )


def new_case(client: TestClient, tok: str, lon: float, lat: float, accept: bool = True) -> str:
    r = client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(auth(tok)))
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    if accept:
        r = client.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept"}, headers=auth(tok))
        assert r.status_code == 200, r.text
    return code


def send(client: TestClient, tok: str, case: str, van: str, **extra: Any) -> Any:
    return client.post("/api/v1/dispatches", json={"case": case, "van": van, **extra}, headers=auth(tok))


def stream(redis_url: str, kind: str) -> list[dict[str, Any]]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [json.loads(f["event"]) for _, f in r.xrange("yitu:events") if f["type"] == kind]
    finally:
        r.close()


def one(dsn: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


# --- an independent router: shapely for snapping, our own Dijkstra over the roads rows ----------


class Roads:
    """The ``roads`` table in memory, routed the way van_candidates.sql promises to."""

    def __init__(self, dsn: str) -> None:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT id, kind, source, target, length_m, ST_AsBinary(geom) FROM roads").fetchall()
        self.edges = {r[0]: (r[1], r[2], r[3], r[4], shapely.from_wkb(bytes(r[5]))) for r in rows}
        self.adj: dict[int, list[tuple[int, int]]] = defaultdict(list)
        at: dict[int, set[tuple[float, float]]] = defaultdict(set)
        for eid, (_kind, s, t, _len, g) in self.edges.items():
            self.adj[s].append((t, eid))
            self.adj[t].append((s, eid))
            at[s].add(tuple(round(c, 7) for c in g.coords[0]))  # type: ignore[arg-type]
            at[t].add(tuple(round(c, 7) for c in g.coords[-1]))  # type: ignore[arg-type]
        # the convention the fractions rely on: a road's geometry runs from its source to its target
        assert all(len(points) == 1 for points in at.values())

    def snap(self, p: tuple[float, float]) -> tuple[int, float, float]:
        """(edge, fraction, ellipsoidal metres) of the nearest road point."""
        pt = shapely.Point(p)
        best = None
        for eid, (*_rest, line) in self.edges.items():
            f = line.project(pt, normalized=True)
            q = line.interpolate(f, normalized=True)
            d = metres(p, (q.x, q.y))
            if best is None or (d, eid) < (best[2], best[0]):
                best = (eid, f, d)
        assert best is not None
        return best

    def dijkstra(self, sources: dict[int, tuple[float, float]]) -> dict[int, tuple[float, float]]:
        """Vertex → (metres, seconds) along the shortest-by-metres path from any source (with its start cost)."""
        done: dict[int, tuple[float, float]] = {}
        heap = [(m, s, v) for v, (m, s) in sources.items()]
        heapq.heapify(heap)
        while heap:
            m, s, v = heapq.heappop(heap)
            if v in done:
                continue
            done[v] = (m, s)
            for w, eid in self.adj[v]:
                if w not in done:
                    kind, *_x, length, _g = self.edges[eid]
                    heapq.heappush(heap, (m + length, s + length / SPEED_MPS[kind], w))
        return done

    def ends(self, edge: int, f: float) -> dict[int, tuple[float, float]]:
        kind, s, t, length, _g = self.edges[edge]
        v = SPEED_MPS[kind]
        a, b = (f * length, f * length / v), ((1 - f) * length, (1 - f) * length / v)
        if s == t:
            return {s: min(a, b)}
        return {s: a, t: b}

    def route(self, case: tuple[float, float], van: tuple[float, float]) -> tuple[str, float, float]:
        """(method, metres, seconds) from the van to the case."""
        ce, cf, cd = self.snap(case)
        ve, vf, vd = self.snap(van)
        if cd > SNAP_MAX or vd > SNAP_MAX:
            gc = DETOUR * metres(van, case)
            return "great_circle", gc, gc / OFFROAD_MPS
        reach = self.dijkstra(self.ends(ce, cf))
        options = [(reach[v][0] + m, reach[v][1] + s) for v, (m, s) in self.ends(ve, vf).items() if v in reach]
        if ce == ve:
            kind, *_x, length, _g = self.edges[ce]
            along = abs(cf - vf) * length
            options.append((along, along / SPEED_MPS[kind]))
        if not options:
            gc = DETOUR * metres(van, case)
            return "great_circle", gc, gc / OFFROAD_MPS
        m, s = min(options)
        off = DETOUR * (cd + vd)
        return "road", off + m, off / OFFROAD_MPS + s

    def point_on(self, edge: int, f: float, aside_m: float) -> tuple[float, float]:
        """A point ``aside_m`` metres to the side of the road at fraction f (north of it)."""
        q = self.edges[edge][4].interpolate(f, normalized=True)
        return offset(q.x, q.y, aside_m, 0.0)

    def far_point(self, dsn: str, min_m: float) -> tuple[float, float]:
        """A point inside the territory farther than ``min_m`` from every road."""
        with psycopg.connect(dsn) as conn:
            cells = conn.execute(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM areas"
                " WHERE level = 4 ORDER BY code) s"
            ).fetchall()
        for lon, lat in cells:
            if self.snap((lon, lat))[2] > min_m:
                return float(lon), float(lat)
        raise AssertionError("no grid cell lies that far from the roads")


@pytest.fixture
def roads(demo_db: str) -> Roads:
    return Roads(demo_db)


@pytest.fixture
def dispatcher(token: Callable[..., str]) -> str:
    return token("dispatcher")


# --- candidates ----------------------------------------------------------------------------------


def _long_roads(roads: Roads, kind: str, n: int) -> list[int]:
    return sorted((e for e, r in roads.edges.items() if r[0] == kind), key=lambda e: -roads.edges[e][3])[:n]


def test_candidates_rank_as_an_independent_dijkstra_does(
    client: TestClient, dispatcher: str, demo_db: str, roads: Roads
) -> None:
    village = _long_roads(roads, "village", 3)
    case_at = roads.point_on(village[0], 0.4, 150)
    code = new_case(client, dispatcher, *case_at)
    spots = {
        "V01": roads.point_on(village[1], 0.7, 300),  # another village road
        "V02": roads.point_on(village[0], 0.9, 80),  # the case's own road
        "V03": roads.far_point(demo_db, 4 * SNAP_MAX),  # off the network: great circle
        "V04": roads.point_on(village[2], 0.5, 50),
    }  # close, but offline
    for van, (lon, lat) in spots.items():
        place_van(demo_db, van, lon, lat, timedelta(hours=1) if van == "V04" else timedelta(seconds=10))
    r = client.get(f"/api/v1/cases/{code}/van-candidates", headers=auth(dispatcher))
    assert r.status_code == 200, r.text
    got = r.json()["candidates"]
    expect = {van: roads.route(case_at, spot) for van, spot in spots.items()}
    online = sorted((v for v in VANS if v != "V04"), key=lambda v: expect[v][1])
    assert [c["id"] for c in got] == [*online, "V04"]
    for c in got:
        method, m, s = expect[c["id"]]
        assert c["method"] == method, c
        assert c["distance_m"] == pytest.approx(m, abs=1.0), c
        assert c["eta_s"] == pytest.approx(s, abs=2.0), c
        assert (c["lon"], c["lat"]) == (pytest.approx(spots[c["id"]][0]), pytest.approx(spots[c["id"]][1]))
    assert expect["V03"][0] == "great_circle" and {expect[v][0] for v in ("V01", "V02", "V04")} == {"road"}
    by_id = {c["id"]: c for c in got}
    assert by_id["V04"]["status"] == "offline" and not by_id["V04"]["dispatchable"]
    assert by_id["V04"]["reason"] == "offline"
    assert all(by_id[v]["dispatchable"] and by_id[v]["status"] == "available" for v in online)
    assert {"name", "plate"} <= set(got[0]) and got[0]["plate"].startswith("蒙K")


def test_a_case_far_from_every_road_is_reached_by_great_circle(
    client: TestClient, dispatcher: str, demo_db: str, roads: Roads
) -> None:
    far = roads.far_point(demo_db, 3 * SNAP_MAX)
    code = new_case(client, dispatcher, *far)
    for i, van in enumerate(VANS):
        place_van(demo_db, van, *roads.point_on(_long_roads(roads, "village", 4)[i], 0.5, 10))
    got = client.get(f"/api/v1/cases/{code}/van-candidates", headers=auth(dispatcher)).json()["candidates"]
    assert {c["method"] for c in got} == {"great_circle"}
    with psycopg.connect(demo_db) as conn:
        pos = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, ST_X(geom), ST_Y(geom) FROM vans")}
    for c in got:
        assert c["distance_m"] == pytest.approx(DETOUR * metres(pos[c["id"]], far), abs=1.0)
        assert c["eta_s"] == pytest.approx(c["distance_m"] / OFFROAD_MPS, abs=1.0)
    assert [c["distance_m"] for c in got] == sorted(c["distance_m"] for c in got)


def test_busy_vans_are_listed_after_the_free_ones(
    client: TestClient, dispatcher: str, demo_db: str, roads: Roads
) -> None:
    lon, lat, _ = inner_point(demo_db)
    first, second = new_case(client, dispatcher, lon, lat), new_case(client, dispatcher, lon, lat)
    for i, van in enumerate(VANS):
        place_van(demo_db, van, *offset(lon, lat, 1000 + 1000 * i))
    assert send(client, dispatcher, first, "V01").status_code == 201
    got = client.get(f"/api/v1/cases/{second}/van-candidates", headers=auth(dispatcher)).json()["candidates"]
    assert sorted(c["id"] for c in got[:3]) == ["V02", "V03", "V04"] and got[-1]["id"] == "V01"
    assert [c["distance_m"] for c in got[:3]] == sorted(c["distance_m"] for c in got[:3])
    assert [c["dispatchable"] for c in got] == [True, True, True, False]
    assert got[-1]["status"] == "en_route" and got[-1]["reason"] == "on_dispatch" and got[-1]["active_dispatch"]


# --- sending a van -------------------------------------------------------------------------------


def test_dispatch_sends_the_van_and_moves_the_case(
    client: TestClient, dispatcher: str, demo_db: str, redis_url: str
) -> None:
    lon, lat, _ = inner_point(demo_db)
    code = new_case(client, dispatcher, lon, lat)
    place_van(demo_db, "V02", *offset(lon, lat, 3000))
    r = send(client, dispatcher, code, "V02", note="带上草场确权资料")
    assert r.status_code == 201, r.text
    d = r.json()
    assert (d["case"], d["van"], d["status"], d["created_by"]) == (code, "V02", "en_route", "test-dispatcher")
    assert d["distance_m"] > 3000 and d["eta_s"] > 0 and d["method"] in ("road", "great_circle")
    assert d["created_at"] and d["arrived_at"] is None
    case = client.get(f"/api/v1/cases/{code}", headers=auth(dispatcher)).json()
    assert case["step"] == "dispatched"
    assert case["assignee"] == {"kind": "van", "id": "V02", "name": "行走的调解室2号"}
    audit = case["timeline"][-1]
    assert (audit["action"], audit["note"], audit["actor"]) == ("dispatch", "带上草场确权资料", "test-dispatcher")
    assert one(demo_db, "SELECT status FROM vans WHERE id = 'V02'") == "en_route"
    created = wait_for(lambda: stream(redis_url, "dispatch.created"), what="dispatch.created")
    assert created[-1]["id"] == d["id"] and created[-1]["van"] == "V02" and created[-1]["case"] == code
    changed = [e for e in stream(redis_url, "case.changed") if e["code"] == code]
    assert changed[-1]["action"] == "dispatch" and changed[-1]["step"] == "dispatched"
    listed = client.get("/api/v1/dispatches?active=true", headers=auth(dispatcher)).json()["dispatches"]
    assert [(x["id"], x["case"], x["van"], x["status"]) for x in listed] == [(d["id"], code, "V02", "en_route")]
    assert client.get(f"/api/v1/dispatches/{d['id']}", headers=auth(dispatcher)).json()["id"] == d["id"]


def test_fifty_dispatchers_one_van_exactly_one_wins(client: TestClient, dispatcher: str, demo_db: str) -> None:
    with psycopg.connect(demo_db) as conn:
        codes = [
            r[0]
            for r in conn.execute(
                "SELECT code FROM cases WHERE step IN ('accepted', 'dispatched') ORDER BY code LIMIT 50"
            )
        ]
    assert len(codes) == 50
    place_van(demo_db, "V03", 107.5, 38.2)
    with ThreadPoolExecutor(50) as ex:
        answers = list(ex.map(lambda c: send(client, dispatcher, c, "V03"), codes))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 49, statuses
    assert {a.json()["field"] for a in answers if a.status_code == 409} == {"van"}
    winner = next(a.json() for a in answers if a.status_code == 201)
    assert one(demo_db, "SELECT count(*) FROM dispatches WHERE status IN ('en_route', 'on_site')") == 1
    assert one(demo_db, "SELECT count(*) FROM dispatches") == 1
    assert one(demo_db, "SELECT status FROM vans WHERE id = 'V03'") == "en_route"
    assert one(demo_db, "SELECT count(*) FROM cases WHERE assignee->>'kind' = 'van'") == 1
    assert one(demo_db, "SELECT code FROM cases WHERE assignee->>'kind' = 'van'") == winner["case"]


def test_the_database_itself_refuses_double_booking(demo_db: str) -> None:
    with psycopg.connect(demo_db) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM cases ORDER BY id LIMIT 2")]
        insert = (
            "INSERT INTO dispatches (case_id, case_code, van_id, created_by)"
            " SELECT id, code, 'V01', 'test' FROM cases WHERE id = %s"
        )
        conn.execute(insert, (ids[0],))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, (ids[1],))


def test_refusals_name_the_field(client: TestClient, dispatcher: str, token: Callable[..., str], demo_db: str) -> None:
    lon, lat, _ = inner_point(demo_db)
    code = new_case(client, dispatcher, lon, lat)
    place_van(demo_db, "V01", *offset(lon, lat, 2000))
    place_van(demo_db, "V02", *offset(lon, lat, 2000), seen_ago=timedelta(hours=2))
    r = send(client, dispatcher, "150623-19990101-000001", "V01")
    assert (r.status_code, r.json()["field"]) == (404, "case")
    r = send(client, dispatcher, code, "V99")
    assert (r.status_code, r.json()["field"]) == (404, "van")
    r = send(client, dispatcher, code, "V02")
    assert (r.status_code, r.json()["field"]) == (409, "van") and "offline" in r.json()["message"]
    reported = new_case(client, dispatcher, lon, lat, accept=False)
    r = send(client, dispatcher, reported, "V01")
    assert r.status_code == 409 and r.json()["allowed"] == ["accept", "reject"] and r.json()["field"] == "action"
    assert one(demo_db, "SELECT status FROM vans WHERE id = 'V01'") == "available"  # nothing half-written
    for role in ("grid_worker", "viewer", "van"):
        r = send(client, token(role), code, "V01")
        assert r.status_code == 403, role
    assert send(client, dispatcher, code, "V01").status_code == 201
    place_van(demo_db, "V03", *offset(lon, lat, 2500))
    r = send(client, dispatcher, code, "V03")
    assert (r.status_code, r.json()["field"]) == (409, "case")  # one van at a time per case
    assert one(demo_db, "SELECT count(*) FROM dispatches") == 1


def test_bad_bodies_and_parameters(client: TestClient, dispatcher: str, demo_db: str) -> None:
    h = auth(dispatcher)
    r = client.post("/api/v1/dispatches", content=b'{"case": ', headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid"
    r = client.post(
        "/api/v1/dispatches",
        content=b"case=x&van=V01",
        headers={**h, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (r.status_code, r.json()["field"]) == (415, "Content-Type")
    r = client.post("/api/v1/dispatches/1/end", content=b"done", headers={**h, "Content-Type": "text/plain"})
    assert r.status_code == 415
    assert client.post("/api/v1/dispatches", json={"case": "nope", "van": "V01"}, headers=h).json()["field"] == "case"
    assert (
        client.post("/api/v1/dispatches", json={"case": "150623-20261122-000001", "van": "V 1"}, headers=h).json()[
            "field"
        ]
        == "van"
    )
    assert (
        client.post(
            "/api/v1/dispatches", json={"case": "150623-20261122-000001", "van": "V01", "x": 1}, headers=h
        ).json()["field"]
        == "x"
    )
    lon, lat, _ = inner_point(demo_db)
    code = new_case(client, dispatcher, lon, lat)
    for radius in ("0", "5001", "abc", "nan"):
        r = client.get(f"/api/v1/cases/{code}/cameras?radius={radius}", headers=h)
        assert (r.status_code, r.json()["field"]) == (422, "radius"), radius
    r = client.get("/api/v1/cases/150623-19990101-000001/van-candidates", headers=h)
    assert (r.status_code, r.json()["field"]) == (404, "code")
    r = client.get("/api/v1/cases/150623-19990101-000001/cameras", headers=h)
    assert (r.status_code, r.json()["field"]) == (404, "code")
    r = client.post("/api/v1/dispatches/999999/end", json={}, headers=h)
    assert (r.status_code, r.json()["field"]) == (404, "id")
    assert client.get("/api/v1/dispatches/999999", headers=h).status_code == 404
    assert client.get(f"/api/v1/cases/{code}/van-candidates").status_code == 401


def test_area_scope(client: TestClient, dispatcher: str, token: Callable[..., str], demo_db: str) -> None:
    lon, lat, grid = inner_point(demo_db)
    code = new_case(client, dispatcher, lon, lat)
    other_town = one(demo_db, "SELECT code FROM areas WHERE level = 2 AND code <> %s ORDER BY code LIMIT 1", grid[:9])
    place_van(demo_db, "V01", *offset(lon, lat, 2000))
    outsider = token("dispatcher", area=other_town)
    # a case of another town is to the outsider as one that does not exist (a 403 told it exists)
    r = client.get(f"/api/v1/cases/{code}/van-candidates", headers=auth(outsider))
    assert (r.status_code, r.json()["field"]) == (404, "code")
    assert client.get(f"/api/v1/cases/{code}/cameras", headers=auth(outsider)).status_code == 404
    r = send(client, outsider, code, "V01")
    assert (r.status_code, r.json()["field"]) == (404, "case")
    assert send(client, outsider, "150623-20000101-999999", "V01").json()["field"] == "case"
    insider = token("dispatcher", area=grid[:9])
    d = send(client, insider, code, "V01").json()
    assert client.get("/api/v1/dispatches", headers=auth(outsider)).json()["dispatches"] == []
    assert [x["id"] for x in client.get("/api/v1/dispatches", headers=auth(insider)).json()["dispatches"]] == [d["id"]]
    r = client.post(f"/api/v1/dispatches/{d['id']}/cancel", headers=auth(outsider))
    assert (r.status_code, r.json()["field"]) == (404, "id")


def test_a_vans_crew_reads_its_own_vans_visits_and_a_viewer_the_notes_masked(
    client: TestClient, dispatcher: str, token: Callable[..., str], demo_db: str
) -> None:
    """``GET /api/v1/dispatches``: a van's crew (its token) reads its own van's visit while it lasts,
    never another van's (it listed every visit of the territory, notes unmasked); a viewer reads a note with the
    parties' names masked (only long numbers were), and never the parties themselves."""
    lon, lat, _ = inner_point(demo_db)
    a = new_case(client, dispatcher, lon, lat)
    b = new_case(client, dispatcher, *offset(lon, lat, 300))
    place_van(demo_db, "V01", *offset(lon, lat, 2000))
    place_van(demo_db, "V02", *offset(lon, lat, 2500))
    mine = send(client, dispatcher, a, "V01", note="先去巴图家，再找乌兰其其格").json()
    theirs = send(client, dispatcher, b, "V02").json()
    crew = token("van", name="V01")
    listed = client.get("/api/v1/dispatches", headers=auth(crew)).json()["dispatches"]
    assert mine["id"] in {x["id"] for x in listed} and {x["van"] for x in listed} == {"V01"}
    assert client.get("/api/v1/dispatches", params={"van": "V02"}, headers=auth(crew)).json()["dispatches"] == []
    assert client.get(f"/api/v1/dispatches/{theirs['id']}", headers=auth(crew)).status_code == 404
    own = client.get(f"/api/v1/dispatches/{mine['id']}", headers=auth(crew))
    assert own.status_code == 200 and own.json()["note"] == "先去巴图家，再找乌兰其其格"  # the crew goes to them
    seen = client.get(f"/api/v1/dispatches/{mine['id']}", headers=auth(token("viewer"))).json()
    assert "巴图" not in seen["note"] and "乌兰其其格" not in seen["note"] and "parties" not in seen
    listed = client.get("/api/v1/dispatches", params={"case": a}, headers=auth(token("viewer"))).json()["dispatches"]
    assert [x["note"] for x in listed] == [seen["note"]]
    full = client.get(f"/api/v1/dispatches/{mine['id']}", headers=auth(dispatcher)).json()
    assert full["note"] == "先去巴图家，再找乌兰其其格" and "parties" not in full
    # called back: the visit is over, and with it the crew's sight of that case
    assert client.post(f"/api/v1/dispatches/{mine['id']}/cancel", headers=auth(dispatcher)).status_code == 200
    assert client.get(f"/api/v1/dispatches/{mine['id']}", headers=auth(crew)).status_code == 404
    assert client.get("/api/v1/dispatches", headers=auth(crew)).json()["dispatches"] == []


# --- arrival, end, cancel ------------------------------------------------------------------------


def _ping(client: TestClient, tok: str, van: str, at: datetime, lon: float, lat: float) -> None:
    r = client.post(
        "/api/v1/vans/positions",
        json={"positions": [{"van": van, "lon": lon, "lat": lat, "time": at.isoformat()}]},
        headers=auth(tok),
    )
    assert r.status_code == 200, r.text


def _dispatch_status(dsn: str, dispatch_id: int) -> tuple[str, datetime | None]:
    return one(dsn, "SELECT status, arrived_at FROM dispatches WHERE id = %s", dispatch_id)


def test_arrival_from_the_vans_gps_then_the_end_of_the_visit(
    client: TestClient, dispatcher: str, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    lon, lat, _ = inner_point(demo_db)
    code = new_case(client, dispatcher, lon, lat)
    place_van(demo_db, "V01", *offset(lon, lat, 5000))
    d = send(client, dispatcher, code, "V01").json()
    created = datetime.fromisoformat(d["created_at"])
    van = token("van", name="V01")
    _ping(client, van, "V01", created + timedelta(seconds=60), *offset(lon, lat, 500))
    assert _dispatch_status(demo_db, d["id"]) == ("en_route", None)  # 500 m: not there yet
    _ping(client, van, "V01", created + timedelta(seconds=30), *offset(lon, lat, 50))  # late: never arrives
    assert _dispatch_status(demo_db, d["id"]) == ("en_route", None)
    there = created + timedelta(seconds=90)
    _ping(client, van, "V01", there, *offset(lon, lat, 150, 200))
    assert _dispatch_status(demo_db, d["id"]) == ("on_site", there)
    assert one(demo_db, "SELECT status FROM vans WHERE id = 'V01'") == "on_site"
    case = client.get(f"/api/v1/cases/{code}", headers=auth(dispatcher)).json()
    assert case["step"] == "handling" and case["timeline"][-1]["action"] == "start"
    assert (case["timeline"][-1]["actor"], case["timeline"][-1]["role"]) == ("V01", "van")
    arrived = wait_for(lambda: stream(redis_url, "dispatch.arrived"), what="dispatch.arrived")
    assert len(arrived) == 1
    first = arrived[0]
    assert (first["id"], first["case"], first["van"], first["status"]) == (d["id"], code, "V01", "on_site")
    assert first["arrived_at"] == there.isoformat() and first["case_started"] is True
    assert [e["action"] for e in stream(redis_url, "case.changed") if e["code"] == code][-1] == "start"
    # the screens learn it from the arrival ping's van.moved: the van shows on site
    moved = [e for e in stream(redis_url, "van.moved") if e["van"] == "V01" and e["latest"]]
    assert moved[-1]["time"] == there.isoformat() and moved[-1]["status"] == "on_site"
    # the crew ends the visit: mediated
    before = one(demo_db, "SELECT cases_mediated FROM vans WHERE id = 'V01'")
    assert (
        client.post(f"/api/v1/dispatches/{d['id']}/end", json={}, headers=auth(token("van", name="V02"))).status_code
        == 403
    )
    # A crew's token reads and moves the case its van is sent to, and no other case, nor the lists.
    other = new_case(client, dispatcher, lon, lat)
    mine = client.get(f"/api/v1/cases/{code}", headers=auth(van))
    assert mine.status_code == 200 and mine.json()["parties"][0]["phone"] == case_body(lon, lat)["parties"][0]["phone"]
    # another van's case, or one no van is sent to: as one that does not exist; the lists: not a crew's
    assert client.get(f"/api/v1/cases/{code}", headers=auth(token("van", name="V02"))).status_code == 404
    assert client.get(f"/api/v1/cases/{other}", headers=auth(van)).status_code == 404
    for url in ("/api/v1/cases", f"/api/v1/areas/{code[:6]}/cases"):
        assert client.get(url, headers=auth(van)).status_code == 403, url
    r = client.post(f"/api/v1/cases/{other}/transitions", json={"action": "start"}, headers=auth(van))
    assert (r.status_code, r.json()["field"]) == (404, "code"), r.text
    r = client.post(
        f"/api/v1/dispatches/{d['id']}/end",
        headers=auth(van),
        json={"result": "success", "outcome": "mediated", "note": "双方达成协议"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["result"], r.json()["outcome"]) == ("ended", "success", "mediated")
    assert one(demo_db, "SELECT status, cases_mediated FROM vans WHERE id = 'V01'") == ("available", before + 1)
    case = client.get(f"/api/v1/cases/{code}", headers=auth(dispatcher)).json()
    assert (case["step"], case["outcome"], case["attempts"]) == ("closed", "mediated", 1)
    assert [e["action"] for e in case["timeline"]][-2:] == ["attempt", "close"]
    ended = wait_for(lambda: stream(redis_url, "dispatch.ended"), what="dispatch.ended")
    assert ended[0]["id"] == d["id"] and ended[0]["was_on_site"] is True
    r = client.post(f"/api/v1/dispatches/{d['id']}/end", json={}, headers=auth(dispatcher))
    assert (r.status_code, r.json()["field"]) == (409, "id")
    assert client.get("/api/v1/dispatches?active=true", headers=auth(dispatcher)).json()["dispatches"] == []


def test_arrival_through_osmand(client: TestClient, dispatcher: str, demo_db: str) -> None:
    lon, lat, _ = inner_point(demo_db)
    code = new_case(client, dispatcher, lon, lat)
    place_van(demo_db, "V04", *offset(lon, lat, 4000))
    with psycopg.connect(demo_db) as conn:
        tracking.register_device(conn, "V04", "v4-phone-0001")
    d = send(client, dispatcher, code, "V04").json()
    at = int(datetime.fromisoformat(d["created_at"]).timestamp()) + 5
    here = offset(lon, lat, 20)
    r = client.get(f"/osmand?id=v4-phone-0001&lat={here[1]}&lon={here[0]}&timestamp={at}")
    assert r.status_code == 200
    assert _dispatch_status(demo_db, d["id"])[0] == "on_site"
    assert client.get(f"/api/v1/cases/{code}", headers=auth(dispatcher)).json()["step"] == "handling"


def test_ending_without_a_result_and_failed_attempts(client: TestClient, dispatcher: str, demo_db: str) -> None:
    lon, lat, _ = inner_point(demo_db)
    code = new_case(client, dispatcher, lon, lat)
    place_van(demo_db, "V02", *offset(lon, lat, 100))
    d = send(client, dispatcher, code, "V02").json()
    r = client.post(f"/api/v1/dispatches/{d['id']}/end", json={"result": "failed"}, headers=auth(dispatcher))
    assert r.status_code == 409 and "start" in r.json()["allowed"]  # still en route: the case is not in handling
    assert _dispatch_status(demo_db, d["id"]) == ("en_route", None)
    r = client.post(f"/api/v1/dispatches/{d['id']}/end", headers=auth(dispatcher))  # no body at all
    assert r.status_code == 200 and r.json()["status"] == "ended"
    assert one(demo_db, "SELECT status, cases_mediated FROM vans WHERE id = 'V02'") == ("available", 0)
    case = client.get(f"/api/v1/cases/{code}", headers=auth(dispatcher)).json()
    # The van went home without arriving: it comes off the case, which waits for the next van.
    assert (case["step"], case["assignee"]) == ("dispatched", None)
    assert case["timeline"][-1]["action"] == "cancel_dispatch"
    other = send(client, dispatcher, code, "V02")
    assert other.status_code == 201, other.text


def test_a_case_closed_or_escalated_through_the_loop_frees_its_van(
    client: TestClient, dispatcher: str, demo_db: str, redis_url: str
) -> None:
    lon, lat, _ = inner_point(demo_db)
    for van, action, body in (
        ("V01", "escalate", {"action": "escalate"}),
        ("V03", "close", {"action": "close", "outcome": "withdrawn", "note": "当事人撤回"}),
    ):
        code = new_case(client, dispatcher, lon, lat)
        place_van(demo_db, van, *offset(lon, lat, 3000))
        d = send(client, dispatcher, code, van).json()
        r = client.post(f"/api/v1/cases/{code}/transitions", json=body, headers=auth(dispatcher))
        assert r.status_code == 200, r.text
        ended = client.get(f"/api/v1/dispatches/{d['id']}", headers=auth(dispatcher)).json()
        assert ended["status"] == "ended" and action in ended["end_note"]
        assert one(demo_db, "SELECT status FROM vans WHERE id = %s", van) == "available"
        assert send(client, dispatcher, new_case(client, dispatcher, lon, lat), van).status_code == 201
    all_published(demo_db)  # both visits' events: the relay publishes them a moment after the commits
    released = [e for e in stream(redis_url, "dispatch.ended") if e.get("reason")]
    assert {e["reason"] for e in released} == {"escalate", "close"}


def test_cancel_a_van_on_its_way(client: TestClient, dispatcher: str, demo_db: str, redis_url: str) -> None:
    lon, lat, _ = inner_point(demo_db)
    code = new_case(client, dispatcher, lon, lat)
    place_van(demo_db, "V03", *offset(lon, lat, 3000))
    d = send(client, dispatcher, code, "V03").json()
    r = client.post(f"/api/v1/dispatches/{d['id']}/cancel", json={"note": "当事人已自行和解"}, headers=auth(dispatcher))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["end_note"]) == ("cancelled", "当事人已自行和解")
    assert one(demo_db, "SELECT status, cases_mediated FROM vans WHERE id = 'V03'") == ("available", 0)
    case = client.get(f"/api/v1/cases/{code}", headers=auth(dispatcher)).json()
    assert (case["step"], case["assignee"]) == ("dispatched", None)
    last = case["timeline"][-1]
    assert (last["action"], last["from_step"], last["to_step"], last["note"]) == (
        "cancel_dispatch",
        "dispatched",
        "dispatched",
        "当事人已自行和解",
    )
    assert last["data"]["dispatch"] == d["id"] and last["data"]["van"] == "V03"
    assert wait_for(lambda: stream(redis_url, "dispatch.cancelled"), what="dispatch.cancelled")[0]["id"] == d["id"]
    r = client.post(f"/api/v1/dispatches/{d['id']}/cancel", headers=auth(dispatcher))
    assert (r.status_code, r.json()["field"]) == (409, "id")
    # the case can be dispatched again at once, to another van
    assert send(client, dispatcher, code, "V03").status_code == 201


# --- cameras -------------------------------------------------------------------------------------


def test_cameras_near_a_case_match_a_brute_force_check(client: TestClient, dispatcher: str, demo_db: str) -> None:
    with psycopg.connect(demo_db) as conn:
        cams = conn.execute(
            "SELECT device_code, name, kind, status, stream_url, ST_X(geom), ST_Y(geom) FROM cameras"
        ).fetchall()
        busiest = conn.execute(
            "SELECT ST_X(geom), ST_Y(geom) FROM cameras c ORDER BY"
            " (SELECT count(*) FROM cameras o WHERE ST_DWithin(o.geom, c.geom, 0.01)) DESC,"
            " device_code LIMIT 1"
        ).fetchone()
    assert busiest is not None
    at = offset(busiest[0], busiest[1], 120, 45)
    code = new_case(client, dispatcher, *at)
    for radius in (500, 1500):
        r = client.get(f"/api/v1/cases/{code}/cameras?radius={radius}", headers=auth(dispatcher))
        assert r.status_code == 200, r.text
        got = r.json()["cameras"]
        expect = sorted(
            ((metres(at, (c[5], c[6])), c) for c in cams if metres(at, (c[5], c[6])) <= radius),
            key=lambda x: (x[0], x[1][0]),
        )
        assert len(got) == len(expect) > 3
        for g, (m, c) in zip(got, expect):
            assert (g["code"], g["name"], g["type"], g["status"], g["stream_url"]) == c[:5]
            assert g["distance_m"] == pytest.approx(m, abs=0.1)
    default = client.get(f"/api/v1/cases/{code}/cameras", headers=auth(dispatcher)).json()
    assert default["radius_m"] == 500

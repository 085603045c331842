"""Van GPS: batch ingest, late and repeated pings, offline, mileage, auth, bad input, Redis down."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from cli.stack import EmbeddedStack
from dashboard.app import create_app
from geodata import tracking
from services.settings import Settings

from .cases_fixtures import auth, cases_settings, client, settings_for, token  # noqa: F401
from .helpers import wait_for

URL = "/api/v1/vans/positions"
BASE = (107.48, 38.18)  # near the banner seat


@pytest.fixture
def t0(demo_db: str) -> datetime:
    """A start time a little in the past; every van last reported an hour before it."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE vans SET last_seen_at = %s", (start - timedelta(hours=1),))
    return start


@pytest.fixture
def admin(token: Callable[..., str]) -> dict[str, str]:
    return auth(token("admin"))


def ping(van: str, t: datetime, lon: float = BASE[0], lat: float = BASE[1], **extra: Any) -> dict[str, Any]:
    return {"van": van, "lon": lon, "lat": lat, "time": t.isoformat(), **extra}


def history(dsn: str, van: str) -> list[tuple[datetime, float, float]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT recorded_at, ST_X(geom), ST_Y(geom) FROM van_positions WHERE van_id = %s ORDER BY recorded_at",
            (van,),
        ).fetchall()


def latest(dsn: str, van: str) -> tuple[datetime, float, float, float]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT last_seen_at, ST_X(geom), ST_Y(geom), odometer_km FROM vans WHERE id = %s", (van,)
        ).fetchone()
    assert row is not None
    return row


def count_positions(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM van_positions").fetchone()[0]  # type: ignore[index]


def stream_events(redis_url: str, kind: str = "van.moved") -> list[dict[str, Any]]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [json.loads(f["event"]) for _, f in r.xrange("yitu:events") if f["type"] == kind]
    finally:
        r.close()


def test_batch_ingest_stores_history_moves_vans_and_tells_redis(
    client: TestClient, admin: dict[str, str], demo_db: str, redis_url: str, t0: datetime
) -> None:
    body = {
        "positions": [
            ping("V01", t0, 107.48, 38.18, speed=30, heading=90),
            ping("V02", t0, 107.50, 38.20),
            ping("V01", t0 + timedelta(seconds=20), 107.482, 38.18, speed=36.5, heading=92.5),
            ping("V01", t0 + timedelta(seconds=10), 107.481, 38.18),
            ping("V02", t0 + timedelta(seconds=5), 107.501, 38.201, heading=0),
        ]
    }
    r = client.post(URL, json=body, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 5, "stored": 5, "duplicates": 0, "moved": ["V01", "V02"]}
    assert [h[0] for h in history(demo_db, "V01")] == [t0, t0 + timedelta(seconds=10), t0 + timedelta(seconds=20)]
    seen, lon, lat, _ = latest(demo_db, "V01")
    assert (seen, round(lon, 6), round(lat, 6)) == (t0 + timedelta(seconds=20), 107.482, 38.18)
    vans = {v["id"]: v for v in client.get("/api/v1/vans", headers=admin).json()["vans"]}
    v1 = vans["V01"]
    assert (v1["lon"], v1["lat"], v1["speed_kmh"], v1["heading"]) == (
        pytest.approx(107.482),
        pytest.approx(38.18),
        36.5,
        92.5,
    )
    assert v1["status"] == "available" and v1["name"] and v1["plate"] and v1["cases_mediated"] == 0
    assert v1["last_seen_at"] == (t0 + timedelta(seconds=20)).isoformat()
    assert vans["V03"]["status"] == "offline"  # silent for an hour
    moved = wait_for(lambda: len(e := stream_events(redis_url)) >= 5 and e, what="5 van.moved events")
    assert len(moved) == 5  # type: ignore[arg-type]
    # Redis holds no copy of a van (the vans row is the one every reader reads): only the stream, and
    # beside it the newest outbox id of each family of events in it (services/layer_answers.py)
    rc = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert sorted(rc.scan_iter("yitu:*")) == ["yitu:events", "yitu:events:last"]
        last = max(int(f["outbox_id"]) for _, f in rc.xrange("yitu:events"))
        assert rc.hgetall("yitu:events:last") == {"van": str(last), "*": str(last)}
    finally:
        rc.close()
    assert [e["latest"] for e in moved if e["van"] == "V01"] == [False, False, True]
    last = next(e for e in moved if e["van"] == "V01" and e["latest"])
    assert last["time"] == v1["last_seen_at"] and last["odometer_km"] == v1["odometer_km"]
    assert (last["lon"], last["speed_kmh"]) == (107.482, 36.5)
    last2 = next(e for e in moved if e["van"] == "V02" and e["latest"])
    assert (last2["lon"], last2["lat"]) == (pytest.approx(107.501, abs=1e-5), pytest.approx(38.201, abs=1e-5))


def test_late_and_repeated_pings_never_move_a_van_back(
    client: TestClient, admin: dict[str, str], demo_db: str, redis_url: str, t0: datetime
) -> None:
    t3 = t0 + timedelta(seconds=30)
    assert client.post(URL, json={"positions": [ping("V01", t3, 107.49)]}, headers=admin).status_code == 200
    late = [
        ping("V01", t0, 107.47),
        ping("V01", t3, 107.40),  # t3 again, elsewhere: a duplicate
        ping("V01", t0 + timedelta(seconds=10), 107.475),
        ping("V01", t0, 107.47),
    ]  # t0 twice in one batch
    r = client.post(URL, json={"positions": late}, headers=admin)
    assert r.status_code == 200
    assert r.json() == {"received": 4, "stored": 2, "duplicates": 2, "moved": []}
    rows = history(demo_db, "V01")
    assert [(t, round(x, 3)) for t, x, _ in rows] == [(t0, 107.47), (t0 + timedelta(seconds=10), 107.475), (t3, 107.49)]
    seen, lon, _, _ = latest(demo_db, "V01")
    assert (seen, round(lon, 3)) == (t3, 107.49)
    v1 = next(v for v in client.get("/api/v1/vans", headers=admin).json()["vans"] if v["id"] == "V01")
    assert (v1["lon"], v1["last_seen_at"]) == (pytest.approx(107.49), t3.isoformat())  # what readers see
    moved = wait_for(lambda: len(e := stream_events(redis_url)) >= 3 and e, what="3 van.moved events")
    assert [e["latest"] for e in moved] == [True, False, False]  # type: ignore[union-attr]  # 3 stored pings, 3 events


def test_a_fix_in_any_offset_is_stored_at_its_instant_to_the_microsecond_and_the_last_bit(
    client: TestClient, admin: dict[str, str], demo_db: str, t0: datetime
) -> None:
    """The batch reaches PostgreSQL as JSON text (geodata/tracking.py ``_batch``): a China-time
    offset, microseconds and a coordinate's every bit come through as they were sent."""
    t = (t0 + timedelta(seconds=5, microseconds=123457)).astimezone(timezone(timedelta(hours=8)))
    lon, lat = 107.48123456789012, 38.18098765432109
    r = client.post(URL, json={"positions": [ping("V02", t, lon, lat, speed=12.5, heading=271.25)]}, headers=admin)
    assert r.status_code == 200 and r.json()["stored"] == 1, r.text
    assert history(demo_db, "V02")[-1] == (t, lon, lat)  # the same instant, the same doubles
    seen, x, y, _ = latest(demo_db, "V02")
    assert (seen, x, y) == (t, lon, lat)
    with psycopg.connect(demo_db) as conn:
        row = conn.execute("SELECT speed_kmh, heading FROM vans WHERE id = 'V02'").fetchone()
    assert row == (12.5, 271.25)


def test_concurrent_batches_end_at_the_newest_ping(
    cases_settings: Settings, admin: dict[str, str], demo_db: str, redis_url: str, t0: datetime
) -> None:
    times = [t0 + timedelta(seconds=s) for s in range(40)]
    batches = [[ping("V02", t, 107.48 + i * 1e-4) for i, t in enumerate(times) if i % 8 == k] for k in range(8)]
    with TestClient(create_app(cases_settings)) as c, ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda b: c.post(URL, json={"positions": b}, headers=admin).status_code, batches))
    assert codes == [200] * 8
    assert len(history(demo_db, "V02")) == 40
    assert latest(demo_db, "V02")[0] == times[-1]
    moved = wait_for(lambda: len(e := stream_events(redis_url)) >= 40 and e, what="40 van.moved events")
    assert len(moved) == 40  # type: ignore[arg-type]  # every ping told, and the newest as the one the van shows
    assert any(e["latest"] and e["time"] == times[-1].isoformat() for e in moved)


def test_offline_is_computed_when_read(client: TestClient, admin: dict[str, str], demo_db: str, t0: datetime) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE vans SET last_seen_at = %s WHERE id = 'V01'", (now - timedelta(seconds=299),))
        conn.execute(
            "UPDATE vans SET last_seen_at = %s, status = 'en_route' WHERE id = 'V02'", (now - timedelta(seconds=301),)
        )
        conn.execute("UPDATE vans SET last_seen_at = NULL WHERE id = 'V03'")
        conn.commit()
        # a frozen clock: the same rows seen at other instants
        at = {r["id"]: r["status"] for r in tracking.van_list(conn, offline_seconds=300, at=now)}
        later = {
            r["id"]: r["status"] for r in tracking.van_list(conn, offline_seconds=300, at=now + timedelta(seconds=2))
        }
        earlier = {
            r["id"]: r["status"] for r in tracking.van_list(conn, offline_seconds=300, at=now - timedelta(seconds=10))
        }
    assert at == {"V01": "available", "V02": "offline", "V03": "offline", "V04": "offline"}
    assert later["V01"] == "offline"
    assert earlier["V02"] == "en_route"  # its dispatch status is kept, not overwritten
    vans = {v["id"]: v for v in client.get("/api/v1/vans", headers=admin).json()["vans"]}
    assert vans["V02"]["status"] == "offline" and vans["V02"]["dispatch_status"] == "en_route"
    # a ping brings it back as it was
    r = client.post(URL, json={"positions": [ping("V02", now - timedelta(seconds=1))]}, headers=admin)
    assert r.status_code == 200
    vans = {v["id"]: v for v in client.get("/api/v1/vans", headers=admin).json()["vans"]}
    assert vans["V02"]["status"] == "en_route"


def test_offline_threshold_is_a_setting(
    demo_db: str, redis_url: str, tmp_path: Path, token: Callable[..., str]
) -> None:
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE vans SET last_seen_at = now() - interval '90 seconds'")
    settings = settings_for(demo_db, redis_url, tmp_path, van_offline_seconds=60)
    with TestClient(create_app(settings)) as c:
        body = c.get("/api/v1/vans", headers=auth(token("viewer"))).json()
    assert body["offline_after_seconds"] == 60 and {v["status"] for v in body["vans"]} == {"offline"}


def _geodesic_km(dsn: str, points: list[tuple[float, float]]) -> list[float]:
    """Independent check: PostGIS's spheroidal distance between consecutive points."""
    with psycopg.connect(dsn) as conn:
        return [
            conn.execute(
                "SELECT ST_Distance(ST_MakePoint(%s, %s)::geography, ST_MakePoint(%s, %s)::geography)",
                (a[0], a[1], b[0], b[1]),
            ).fetchone()[0]
            / 1000  # type: ignore[index]
            for a, b in itertools.pairwise(points)
        ]


def test_mileage_follows_in_order_pings_and_ignores_glitches(
    client: TestClient, admin: dict[str, str], demo_db: str, t0: datetime
) -> None:
    with psycopg.connect(demo_db) as conn:
        conn.execute(
            "UPDATE vans SET geom = ST_SetSRID(ST_MakePoint(107.48, 38.18), 4326), odometer_km = 100 WHERE id = 'V04'"
        )
    start = (107.48, 38.18)
    path = [(107.49, 38.18), (107.50, 38.185), (107.51, 38.19)]  # ~0.9 km a minute: 50-ish km/h
    body = [ping("V04", t0 + timedelta(minutes=i + 1), *p) for i, p in enumerate(path)]
    assert client.post(URL, json={"positions": body}, headers=admin).status_code == 200
    expect = 100 + sum(_geodesic_km(demo_db, [start, *path]))
    assert latest(demo_db, "V04")[3] == pytest.approx(expect, abs=1e-6)
    # a jump of ~50 km in 10 s (a glitch), then back: neither step counts; a late ping counts nothing
    glitch = [
        ping("V04", t0 + timedelta(minutes=3, seconds=10), 108.0, 38.19),
        ping("V04", t0 + timedelta(minutes=4), 107.52, 38.19),
        ping("V04", t0 + timedelta(seconds=30), 107.0, 38.0),
    ]
    assert client.post(URL, json={"positions": glitch}, headers=admin).status_code == 200
    after = latest(demo_db, "V04")[3]
    jump = _geodesic_km(demo_db, [path[-1], (108.0, 38.19), (107.52, 38.19)])
    assert jump[0] > 40 and jump[1] > 40
    assert after == pytest.approx(expect, abs=1e-6)
    # the next ordinary step counts again
    assert (
        client.post(
            URL, json={"positions": [ping("V04", t0 + timedelta(minutes=5), 107.53, 38.19)]}, headers=admin
        ).status_code
        == 200
    )
    step = _geodesic_km(demo_db, [(107.52, 38.19), (107.53, 38.19)])[0]
    assert latest(demo_db, "V04")[3] == pytest.approx(after + step, abs=1e-6)
    van = next(v for v in client.get("/api/v1/vans", headers=admin).json()["vans"] if v["id"] == "V04")
    assert van["odometer_km"] == pytest.approx(after + step, abs=1e-3)
    assert tracking.mileage_km([(107.0, 38.0, t0)], 200) == 0.0


def test_who_may_post(client: TestClient, token: Callable[..., str], demo_db: str, t0: datetime) -> None:
    body = {"positions": [ping("V01", t0)]}
    r = client.post(URL, json=body)
    assert r.status_code == 401 and r.json()["field"] == "Authorization"
    assert client.post(URL, json=body, headers=auth("yitu_nope")).status_code == 401
    for role in ("viewer", "dispatcher", "grid_worker"):
        r = client.post(URL, json=body, headers=auth(token(role)))
        assert r.status_code == 403 and r.json()["field"] == "Authorization", role
    v01 = auth(token("van", name="V01"))
    r = client.post(URL, json={"positions": [ping("V01", t0), ping("V02", t0)]}, headers=v01)
    assert r.status_code == 403 and r.json()["field"] == "positions.1.van"
    assert count_positions(demo_db) == 0
    assert client.post(URL, json=body, headers=v01).status_code == 200
    assert client.post(URL, json={"positions": [ping("V02", t0)]}, headers=auth(token("admin"))).status_code == 200
    assert count_positions(demo_db) == 2
    # reading needs a token of any role
    assert client.get("/api/v1/vans").status_code == 401
    assert client.get("/api/v1/vans", headers=auth(token("viewer"))).status_code == 200


def _future(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def _without(key: str) -> dict[str, Any]:
    p = ping("V01", datetime.now(UTC) - timedelta(minutes=1))
    del p[key]
    return p


def _with(**kw: Any) -> dict[str, Any]:
    return {**ping("V01", datetime.now(UTC) - timedelta(minutes=1)), **kw}


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (_without("lon"), "positions.1.lon"),
        (_without("lat"), "positions.1.lat"),
        (_without("time"), "positions.1.time"),
        (_without("van"), "positions.1.van"),
        (_with(lon=180.5), "positions.1.lon"),
        (_with(lat=-91), "positions.1.lat"),
        (_with(lon="east"), "positions.1.lon"),
        (_with(time=lambda: _future(10)), "positions.1.time"),  # resolved when the test runs, not at collection
        (_with(time="yesterday"), "positions.1.time"),
        (_with(time="2026-11-22T08:00:00"), "positions.1.time"),  # no offset: ambiguous
        (_with(time="1999-01-01T00:00:00Z"), "positions.1.time"),
        (_with(speed=-1), "positions.1.speed"),
        (_with(speed=1000), "positions.1.speed"),
        (_with(heading=360), "positions.1.heading"),
        (_with(heading=-0.5), "positions.1.heading"),
        (_with(van="V 01"), "positions.1.van"),
        (_with(van="V99"), "positions.1.van"),  # no such van
        (_with(altitude=1200), "positions.1.altitude"),
    ],
)
def test_a_bad_row_rejects_the_whole_batch(
    client: TestClient, admin: dict[str, str], demo_db: str, bad: dict[str, Any], field: str
) -> None:
    bad = {k: v() if callable(v) else v for k, v in bad.items()}
    good = ping("V01", datetime.now(UTC) - timedelta(minutes=2))
    r = client.post(URL, json={"positions": [good, bad]}, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert count_positions(demo_db) == 0  # nothing half-written


def test_every_bad_row_is_reported(client: TestClient, admin: dict[str, str]) -> None:
    now = datetime.now(UTC)
    rows = [ping("V01", now), _with(lat=95), ping("V01", now - timedelta(seconds=1)), _with(heading=400)]
    r = client.post(URL, json={"positions": rows}, headers=admin)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["positions.1.lat", "positions.3.heading"]


def test_future_within_five_minutes_is_clock_drift(client: TestClient, admin: dict[str, str], demo_db: str) -> None:
    r = client.post(URL, json={"positions": [_with(time=_future(4))]}, headers=admin)
    assert r.status_code == 200 and count_positions(demo_db) == 1


def test_batch_shape_size_and_format(client: TestClient, admin: dict[str, str], demo_db: str, t0: datetime) -> None:
    too_many = [ping("V01", t0 + timedelta(milliseconds=i)) for i in range(5001)]
    r = client.post(URL, json={"positions": too_many}, headers=admin)
    assert r.status_code == 422 and r.json()["field"] == "positions"
    r = client.post(URL, json={"positions": []}, headers=admin)
    assert r.status_code == 422 and r.json()["field"] == "positions"
    r = client.post(URL, json=[ping("V01", t0)], headers=admin)
    assert r.status_code == 422
    r = client.post(URL, content=b'{"positions": [', headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid"
    r = client.post(URL, data={"van": "V01", "lon": "107", "lat": "38"}, headers=admin)
    assert r.status_code == 415 and r.json()["field"] == "Content-Type"
    assert count_positions(demo_db) == 0
    exactly = [ping("V01", t0 + timedelta(milliseconds=i)) for i in range(5000)]
    r = client.post(URL, json={"positions": exactly}, headers=admin)
    assert r.status_code == 200 and r.json()["stored"] == 5000


def test_track_for_replay(client: TestClient, admin: dict[str, str], t0: datetime) -> None:
    pts = [
        ping("V03", t0 + timedelta(seconds=s), 107.48 + s * 1e-4, 38.18, speed=20, heading=90) for s in (30, 0, 20, 10)
    ]
    assert client.post(URL, json={"positions": pts}, headers=admin).status_code == 200
    q = {"since": t0.isoformat(), "until": (t0 + timedelta(seconds=30)).isoformat()}
    fc = client.get("/api/v1/vans/V03/track", params=q, headers=admin).json()
    assert fc["type"] == "FeatureCollection" and fc["properties"]["count"] == 3  # until is exclusive
    line, *points = fc["features"]
    assert line["geometry"]["type"] == "LineString"
    assert [c[0] for c in line["geometry"]["coordinates"]] == pytest.approx([107.48, 107.481, 107.482])
    assert [p["properties"]["time"] for p in points] == [(t0 + timedelta(seconds=s)).isoformat() for s in (0, 10, 20)]
    assert points[0]["properties"]["speed_kmh"] == 20
    fc = client.get("/api/v1/vans/V03/track", params={**q, "limit": 2}, headers=admin).json()
    assert fc["properties"]["truncated"] is True and fc["properties"]["count"] == 2
    # default: the last hour
    assert client.get("/api/v1/vans/V03/track", headers=admin).json()["properties"]["count"] == 4
    assert client.get("/api/v1/vans/V04/track", headers=admin).json()["features"] == []


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"since": "2026-11-20T00:00:00Z", "until": "2026-11-19T00:00:00Z"}, 422, "since"),
        ({"since": "2026-11-01T00:00:00Z", "until": "2026-11-20T00:00:00Z"}, 422, "since"),
        ({"since": "last week"}, 422, "since"),
        ({"until": "2026-11-20T00:00:00"}, 422, "until"),
        ({"limit": "0"}, 422, "limit"),
    ],
)
def test_track_refuses_bad_ranges(
    client: TestClient, admin: dict[str, str], params: dict[str, str], status: int, field: str
) -> None:
    r = client.get("/api/v1/vans/V01/track", params=params, headers=admin)
    assert r.status_code == status and r.json()["field"] == field


def test_track_of_an_unknown_van(client: TestClient, admin: dict[str, str]) -> None:
    r = client.get("/api/v1/vans/V99/track", headers=admin)
    assert r.status_code == 404 and r.json()["field"] == "van"
    assert client.get("/api/v1/vans/V01/track").status_code == 401


@pytest.fixture
def redis_outage(
    scratch_stack: EmbeddedStack, demo_db: str, tmp_path: Path
) -> Iterator[tuple[TestClient, EmbeddedStack]]:
    """An app on the demo clone whose Redis is the scratch stack's (so it can be stopped)."""
    settings = settings_for(demo_db, scratch_stack.redis_url(), tmp_path)
    with TestClient(create_app(settings)) as c:
        yield c, scratch_stack


def test_redis_down_positions_are_still_saved(
    redis_outage: tuple[TestClient, EmbeddedStack], token: Callable[..., str], demo_db: str, t0: datetime
) -> None:
    c, stack = redis_outage
    admin = auth(token("admin"))
    assert c.post(URL, json={"positions": [ping("V01", t0)]}, headers=admin).status_code == 200
    stack.stop_redis()
    wait_for(lambda: not stack.redis_running(), what="the scratch Redis to stop")
    r = c.post(URL, json={"positions": [ping("V01", t0 + timedelta(seconds=i)) for i in (1, 2)]}, headers=admin)
    assert r.status_code == 200 and r.json()["stored"] == 2
    assert len(history(demo_db, "V01")) == 3 and latest(demo_db, "V01")[0] == t0 + timedelta(seconds=2)
    assert c.get("/api/v1/vans", headers=admin).status_code == 200
    stack.start_redis()
    live = redis.Redis.from_url(stack.redis_url(), decode_responses=True)
    try:
        wait_for(live.ping, what="the scratch Redis to return")
        # The pings stored while Redis was down wrote their events to the outbox: once Redis is
        # back the relay publishes them, in order, once (before, they were dropped).
        outage = [(t0 + timedelta(seconds=i)).isoformat() for i in (1, 2)]

        def times() -> list[str]:
            return [json.loads(f["event"])["time"] for _, f in live.xrange("yitu:events") if f["type"] == "van.moved"]

        wait_for(lambda: set(outage) <= set(times()), timeout=20, what="the outage's pings in the live stream")
        got = times()
        assert [t for t in got if t in outage] == outage  # in order, each once
        ids = [int(f["outbox_id"]) for _, f in live.xrange("yitu:events")]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # consecutive outbox ids
    finally:
        live.close()


def test_the_vans_layer_draws_a_trail_by_its_shape_not_by_every_fix(
    client: TestClient, admin: dict[str, str], demo_db: str, redis_url: str
) -> None:
    """A van reporting every second along a straight road, then turning: its trail on the map keeps
    the start, the corner and the end (~5 m tolerance), not the 120 fixes (a wall fetching every
    van's hour at 1 Hz drew 3,600 points a van)."""
    start = datetime.now(UTC) - timedelta(minutes=5)
    east = [ping("V01", start + timedelta(seconds=i), BASE[0] + 0.0001 * i, BASE[1]) for i in range(60)]
    corner = (BASE[0] + 0.0059, BASE[1])
    north = [ping("V01", start + timedelta(seconds=60 + i), corner[0], corner[1] + 0.0001 * (i + 1)) for i in range(60)]
    assert client.post(URL, json={"positions": east + north}, headers=admin).status_code == 200
    layer = client.get("/api/v1/layers/vans", headers=admin).json()
    trail = next(f for f in layer["features"] if f["properties"] == {"id": "V01", "kind": "trail"})
    points = trail["geometry"]["coordinates"]
    assert 3 <= len(points) <= 4, points
    assert points[0] == [pytest.approx(BASE[0]), pytest.approx(BASE[1])]
    assert [pytest.approx(corner[0], abs=1e-6), pytest.approx(corner[1], abs=1e-6)] in points
    assert points[-1] == [pytest.approx(corner[0]), pytest.approx(BASE[1] + 0.006)]


def test_the_trail_is_kept_rolled_simplified_and_the_layer_draws_the_same_shape_from_it(
    client: TestClient, admin: dict[str, str], demo_db: str
) -> None:
    """geodata/tracking.py ``roll_trails`` (the scheduler's ``trails`` job): 120 fixes along a road
    with a corner become the trail's few points of shape; the layer draws the same line from them
    as from the fixes, goes on with the fixes stored since, and a fix that comes later for an
    earlier time stays in the history only."""
    start = datetime.now(UTC) - timedelta(minutes=5)
    east = [ping("V01", start + timedelta(seconds=i), BASE[0] + 0.0001 * i, BASE[1]) for i in range(60)]
    corner = (BASE[0] + 0.0059, BASE[1])
    north = [ping("V01", start + timedelta(seconds=60 + i), corner[0], corner[1] + 0.0001 * (i + 1)) for i in range(60)]
    assert client.post(URL, json={"positions": east + north}, headers=admin).status_code == 200

    def trail() -> list[list[float]]:
        # the layer's query itself (the route shares an answer between screens for a few seconds)
        return _trail(demo_db, "V01")

    from_fixes = trail()
    with psycopg.connect(demo_db, autocommit=True) as conn:
        rolled = tracking.roll_trails(conn)
        kept = conn.execute(
            "SELECT at, ST_X(geom), ST_Y(geom) FROM van_trail WHERE van_id = 'V01' ORDER BY at"
        ).fetchall()
        until = conn.execute("SELECT until FROM van_trail_until WHERE van_id = 'V01'").fetchone()
        again = tracking.roll_trails(conn)
    assert rolled["fixes"] >= 120 and 3 <= len(kept) <= 4, (rolled, kept)  # start, corner, end
    assert until is not None and until[0] == start + timedelta(seconds=119)
    assert (kept[0][1], kept[0][2]) == (pytest.approx(BASE[0]), pytest.approx(BASE[1]))
    assert any(x == pytest.approx(corner[0], abs=1e-6) and y == pytest.approx(corner[1], abs=1e-6) for _, x, y in kept)
    assert again["fixes"] == 0  # nothing new: nothing rolled twice
    with psycopg.connect(demo_db, autocommit=True) as conn:  # the rolled fixes out of the layer's reach
        conn.execute("DELETE FROM van_positions WHERE van_id = 'V01' AND recorded_at <= %s", until)
    assert trail() == from_fixes  # the same line, drawn from the rolled trail alone

    # fixes after the roll: on the layer at once (read from the history since the trail's end)
    west = [
        ping("V01", start + timedelta(seconds=120 + i), corner[0] - 0.0001 * (i + 1), BASE[1] + 0.006)
        for i in range(30)
    ]
    late = ping("V01", start + timedelta(seconds=30.5), BASE[0], BASE[1] - 0.01)  # an earlier time, come late
    assert client.post(URL, json={"positions": [*west, late]}, headers=admin).status_code == 200
    after = trail()
    assert after[-1] == [pytest.approx(corner[0] - 0.003), pytest.approx(BASE[1] + 0.006)]
    with psycopg.connect(demo_db, autocommit=True) as conn:
        tracking.roll_trails(conn)
        lowest = conn.execute("SELECT min(ST_Y(geom)) FROM van_trail WHERE van_id = 'V01'").fetchone()[0]
    assert trail() == after
    assert lowest == pytest.approx(BASE[1])  # the late fix is not on the trail ...
    assert (start + timedelta(seconds=30.5), BASE[0], BASE[1] - 0.01) in [  # (the rest of it deleted above)
        (t, pytest.approx(x), pytest.approx(y)) for t, x, y in history(demo_db, "V01")
    ]  # ... but in the history


KEPT = "SELECT ST_X(geom), ST_Y(geom) FROM van_trail WHERE van_id = 'V01' ORDER BY at"  # V01's trail points


def _trail(dsn: str, van: str, minutes: int = 60) -> list[list[float]]:
    """The van's trail as the vans layer's query draws it (registry.get("vans").features)."""
    from layers import registry
    from services.settings import Settings

    spec = registry.get("vans")
    configured = spec.configured(Settings(_env_file=None))
    values = {**{f.name: f.default for f in spec.filters}, **configured, "scope": None, "trail_minutes": minutes}
    with psycopg.connect(dsn) as conn:
        layer = json.loads(spec.features(conn, values))
    found = [f for f in layer["features"] if f["properties"] == {"id": van, "kind": "trail"}]
    assert len(found) == 1, layer
    return list(found[0]["geometry"]["coordinates"])


def test_a_trail_rolled_as_it_is_driven_stays_its_shape_however_long_the_road(
    client: TestClient, admin: dict[str, str], demo_db: str
) -> None:
    """Each roll simplifies the trail's newest point again with the new fixes: a van driving a
    straight road for ten rolls keeps a trail of two points (where it started, where it is), and
    a turn adds the corner; the layer draws the same line as from every fix, and a shorter
    window starts where the van was when it opened, on the straight road's first stretch."""
    start = datetime.now(UTC) - timedelta(minutes=3)
    fixes = [ping("V01", start + timedelta(seconds=i), BASE[0] + 0.0001 * i, BASE[1]) for i in range(100)]
    with psycopg.connect(demo_db, autocommit=True) as conn:
        for chunk in range(10):
            batch = fixes[chunk * 10 : chunk * 10 + 10]
            assert client.post(URL, json={"positions": batch}, headers=admin).status_code == 200
            rolled = tracking.roll_trails(conn)
            assert rolled["fixes"] == 10, rolled
        points = conn.execute(
            "SELECT ST_X(geom), ST_Y(geom) FROM van_trail WHERE van_id = 'V01' ORDER BY at"
        ).fetchall()
        assert [(pytest.approx(x), pytest.approx(y)) for x, y in points] == [BASE, (BASE[0] + 0.0099, BASE[1])]
        north = [
            ping("V01", start + timedelta(seconds=100 + i), BASE[0] + 0.0099, BASE[1] + 0.0001 * (i + 1))
            for i in range(20)
        ]
        assert client.post(URL, json={"positions": north}, headers=admin).status_code == 200
        tracking.roll_trails(conn)
        points = conn.execute(
            "SELECT ST_X(geom), ST_Y(geom) FROM van_trail WHERE van_id = 'V01' ORDER BY at"
        ).fetchall()
    corner, end = (BASE[0] + 0.0099, BASE[1]), (BASE[0] + 0.0099, BASE[1] + 0.002)
    assert [(pytest.approx(x), pytest.approx(y)) for x, y in points] == [BASE, corner, end]
    assert _trail(demo_db, "V01") == [[pytest.approx(x), pytest.approx(y)] for x, y in (BASE, corner, end)]
    opened = datetime.now(UTC) - timedelta(minutes=2)  # within the straight road's first 100 s
    drawn = _trail(demo_db, "V01", minutes=2)
    first = 0.0001 * ((opened - start).total_seconds() // 1 + 1)  # its first fix after the window opened
    assert drawn[0] == [pytest.approx(BASE[0] + first, abs=0.00025), pytest.approx(BASE[1])], drawn
    assert drawn[1:] == [[pytest.approx(x), pytest.approx(y)] for x, y in (corner, end)]

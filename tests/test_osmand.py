"""The OsmAnd protocol (Traccar Client) and `yitu van register`: the device identifier is the credential."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cli.vans import van_group
from services.settings import Settings

from .cases_fixtures import cases_settings, client  # noqa: F401
from .helpers import wait_for

DEVICE = "van1-phone-7f3a9c"


def _cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(van_group, list(args), obj=settings)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def device(cases_settings: Settings, demo_db: str) -> str:
    """DEVICE registered to V01, whose last report was an hour ago."""
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE vans SET last_seen_at = now() - interval '1 hour'")
    code, _, err = _cli(cases_settings, "register", "V01", "--device", DEVICE)
    assert code == 0, err
    return DEVICE


def rows(dsn: str) -> list[tuple[str, datetime, float, float, float | None, float | None]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT van_id, recorded_at, ST_X(geom), ST_Y(geom), speed_kmh, heading "
            "FROM van_positions ORDER BY recorded_at"
        ).fetchall()


def _unix(dt: datetime) -> int:
    return int(dt.timestamp())


def test_register_stores_only_a_hash_and_prints_nothing_secret(cases_settings: Settings, demo_db: str) -> None:
    code, out, err = _cli(cases_settings, "register", "V02", "--device", DEVICE)
    assert code == 0, err
    assert DEVICE not in out + err and "registered for van V02" in err
    with psycopg.connect(demo_db) as conn:
        stored = conn.execute("SELECT device_hash, van_id FROM van_devices").fetchall()
    assert stored == [(hashlib.sha256(DEVICE.encode()).hexdigest(), "V02")]
    # the same device moved to another van
    code, _, err = _cli(cases_settings, "register", "V03", "--device", DEVICE)
    assert code == 0 and "reported for V02" in err
    code, out, _ = _cli(cases_settings, "list")
    assert code == 0 and "V03\t" in out and out.splitlines()[3].endswith("\t1") and DEVICE not in out
    code, out, _ = _cli(cases_settings, "unregister", "--device", DEVICE)
    assert code == 0 and "V03" in out
    code, _, err = _cli(cases_settings, "unregister", "--device", DEVICE)
    assert code == 1 and "no such device" in err


def test_register_generates_an_identifier_once(cases_settings: Settings, demo_db: str) -> None:
    code, out, err = _cli(cases_settings, "register", "V04", "--generate")
    assert code == 0, err
    ident = out.strip()
    assert len(ident) >= 20 and "shown only now" in err
    with psycopg.connect(demo_db) as conn:
        assert conn.execute(
            "SELECT van_id FROM van_devices WHERE device_hash = %s", (hashlib.sha256(ident.encode()).hexdigest(),)
        ).fetchone() == ("V04",)


def test_register_refuses_bad_input(cases_settings: Settings) -> None:
    code, _, err = _cli(cases_settings, "register", "V99", "--device", DEVICE)
    assert code == 2 and "no van with id 'V99'" in err
    code, _, err = _cli(cases_settings, "register", "V01", "--device", "123456")
    assert code == 2 and "--device" in err and "8 to 200" in err
    code, _, err = _cli(cases_settings, "register", "V01")
    assert code == 2 and "--generate" in err
    code, _, err = _cli(cases_settings, "register", "V01", "--device", DEVICE, "--generate")
    assert code == 2


def test_get_stores_a_ping_with_speed_in_knots(client: TestClient, device: str, demo_db: str, redis_url: str) -> None:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    r = client.get(
        "/osmand",
        params={
            "id": device,
            "lat": "38.18",
            "lon": "107.48",
            "timestamp": str(_unix(t)),
            "speed": "10",
            "bearing": "271.5",
            "altitude": "1300",
            "batt": "88",
        },
    )
    assert r.status_code == 200 and r.content == b""
    (row,) = rows(demo_db)
    assert row[:4] == ("V01", t, 107.48, 38.18)
    assert row[4] == pytest.approx(18.52, abs=1e-3) and row[5] == 271.5  # 10 kn = 18.52 km/h
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT last_seen_at FROM vans WHERE id = 'V01'").fetchone() == (t,)
    rc = redis.Redis.from_url(redis_url, decode_responses=True)
    try:  # published by the app's relay once committed (asynchronously: waited for)
        (entry,) = wait_for(
            lambda: [json.loads(f["event"]) for _, f in rc.xrange("yitu:events") if f["type"] == "van.moved"],
            what="the van.moved event",
        )
        assert entry["van"] == "V01" and entry["latest"] is True
    finally:
        rc.close()


def test_post_form_body_and_timestamp_forms(client: TestClient, device: str, demo_db: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    t1, t2, t3, t4 = (now - timedelta(seconds=s) for s in (40, 30, 20, 10))
    r = client.post(
        "/osmand", data={"id": device, "lat": "38.1", "lon": "107.1", "timestamp": t1.isoformat(), "speed": "0"}
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/osmand",
        params={"deviceid": device, "location": "38.2,107.2", "heading": "10", "timestamp": str(_unix(t2) * 1000)},
    )  # milliseconds
    assert r.status_code == 200, r.text
    r = client.get(
        "/osmand", params={"id": device, "lat": "38.3", "lon": "107.3", "timestamp": t3.strftime("%Y-%m-%d %H:%M:%S")}
    )
    assert r.status_code == 200, r.text
    r = client.get(
        "/osmand",
        params={"id": device, "lat": "38.4", "lon": "107.4", "timestamp": t4.strftime("%Y-%m-%dT%H:%M:%S.000Z")},
    )
    assert r.status_code == 200, r.text
    got = rows(demo_db)
    assert [(r[1], r[2], r[3]) for r in got] == [
        (t1, 107.1, 38.1),
        (t2, 107.2, 38.2),
        (t3, 107.3, 38.3),
        (t4, 107.4, 38.4),
    ]
    assert got[0][4] == 0 and got[1][5] == 10


def test_no_timestamp_means_now(client: TestClient, device: str, demo_db: str) -> None:
    before = datetime.now(UTC)
    assert client.get("/osmand", params={"id": device, "lat": "38.18", "lon": "107.48"}).status_code == 200
    (row,) = rows(demo_db)
    assert before - timedelta(seconds=1) <= row[1] <= datetime.now(UTC)


def test_traccar_client_json(client: TestClient, device: str, demo_db: str) -> None:
    t = (datetime.now(UTC) - timedelta(seconds=5)).replace(microsecond=0)
    body: dict[str, Any] = {
        "device_id": device,
        "location": {
            "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "is_moving": True,
            "odometer": 0,
            "coords": {"latitude": 38.19, "longitude": 107.49, "speed": 10.0, "heading": 45, "accuracy": 5},
            "battery": {"level": 0.8, "is_charging": False},
        },
    }
    assert client.post("/osmand", json=body).status_code == 200
    (row,) = rows(demo_db)
    assert row[1:4] == (t, 107.49, 38.19) and row[4] == pytest.approx(36.0, abs=1e-3) and row[5] == 45
    body["location"]["coords"].update(speed=-1, heading=-1)
    body["location"]["timestamp"] = (t + timedelta(seconds=1)).isoformat()
    assert client.post("/osmand", json=body).status_code == 200
    assert rows(demo_db)[-1][4:] == (None, None)  # -1: unknown


def test_no_fix_is_acknowledged_not_stored(client: TestClient, device: str, demo_db: str) -> None:
    assert (
        client.get("/osmand", params={"id": device, "lat": "38.18", "lon": "107.48", "valid": "false"}).status_code
        == 200
    )
    assert client.get("/osmand", params={"id": device, "lat": "0", "lon": "0"}).status_code == 200
    assert rows(demo_db) == []


def test_unknown_or_missing_device_is_refused(client: TestClient, device: str, demo_db: str) -> None:
    r = client.get("/osmand", params={"id": "not-registered-1", "lat": "38.18", "lon": "107.48"})
    assert r.status_code == 403 and r.json()["field"] == "id"
    r = client.post("/osmand", data={"id": "not-registered-1", "lat": "38.18", "lon": "107.48"})
    assert r.status_code == 403
    r = client.get("/osmand", params={"id": "not-registered-1", "lat": "bad"})
    assert r.status_code == 403  # the credential is checked first
    r = client.get("/osmand", params={"lat": "38.18", "lon": "107.48"})
    assert r.status_code == 422 and r.json()["field"] == "id"
    assert rows(demo_db) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"lon": "107.48"}, "lat"),
        ({"lat": "38.18"}, "lon"),
        ({"lat": "91", "lon": "107.48"}, "lat"),
        ({"lat": "38.18", "lon": "nan"}, "lon"),
        ({"lat": "38.18", "lon": "107.48", "speed": "-3"}, "speed"),
        ({"lat": "38.18", "lon": "107.48", "speed": "500"}, "speed"),
        ({"lat": "38.18", "lon": "107.48", "bearing": "361"}, "bearing"),
        ({"lat": "38.18", "lon": "107.48", "timestamp": "tomorrow"}, "timestamp"),
        ({"lat": "38.18", "lon": "107.48", "timestamp": str(_unix(datetime.now(UTC)) + 3600)}, "timestamp"),
    ],
)
def test_bad_values_are_named(
    client: TestClient, device: str, demo_db: str, params: dict[str, str], field: str
) -> None:
    r = client.get("/osmand", params={"id": device, **params})
    assert r.status_code == 422 and r.json()["field"] == field, r.text
    assert rows(demo_db) == []


def test_bearing_360_is_north(client: TestClient, device: str, demo_db: str) -> None:
    assert (
        client.get("/osmand", params={"id": device, "lat": "38.18", "lon": "107.48", "bearing": "360"}).status_code
        == 200
    )
    assert rows(demo_db)[0][5] == 0


def test_bad_json_body(client: TestClient, device: str) -> None:
    r = client.post("/osmand", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    r = client.post("/osmand", json={"device_id": device, "location": {"timestamp": "x"}})
    assert r.status_code == 422 and r.json()["field"] == "location.coords"

"""Triage at intake (issue 14 item 5): severity sets the starting level and so the first deadline,
people involved mark a group dispute (群体性), the amount is kept; old clients keep today's behaviour."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from api.intake import IntakeLanes
from dashboard.app import create_app
from geodata import cases, kpi
from geodata.cases import Actor, IntakeRequest, NewCase
from services.scheduler import deadline_rules
from services.settings import Settings

from .cases_fixtures import auth, case_body, cases_settings, client, inner_point, settings_for, token  # noqa: F401
from .helpers import keyed

CLERK = Actor("clerk", "dispatcher", 9)


def _post(client: TestClient, tok: str, body: dict, key: str | None = None):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/cases", json=body, headers=keyed(auth(tok), key))


def _count(dsn: str, sql: str, *args: object) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchone()[0]  # type: ignore[index]


def _hours_to_deadline(case: dict) -> float:
    return (datetime.fromisoformat(case["deadline"]) - datetime.now(UTC)).total_seconds() / 3600


@pytest.mark.parametrize(
    ("severity", "level", "hours"),
    [("simple", "grid", None), ("ordinary", "village", 72), ("complex", "town", 120), ("major", "banner", 168)],
)
def test_severity_sets_the_starting_level_and_its_deadline(
    client: TestClient, token: Callable[..., str], demo_db: str, severity: str, level: str, hours: float | None
) -> None:
    lon, lat, cell = inner_point(demo_db)
    r = _post(client, token("grid_worker"), case_body(lon, lat, severity=severity))
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["severity"] == severity and case["level"] == level
    assert case["grid"][0] == cell  # located as always: only the level it starts at changes
    if hours is None:  # grid: by the end of the day (China time)
        assert 0 < _hours_to_deadline(case) <= 24
    else:
        assert abs(_hours_to_deadline(case) - hours) < 0.1
    with psycopg.connect(demo_db) as conn:
        row = conn.execute(
            "SELECT e.level, c.severity FROM case_events e JOIN cases c ON c.id = e.case_id "
            "WHERE c.code = %s AND e.action = 'report'",
            (case["code"],),
        ).fetchone()
    assert row == (level, severity)  # the first audit row carries the starting level


def test_group_flag_from_people_involved_and_the_amount(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    lon, lat, _ = inner_point(demo_db, offset=1)
    tok = token("dispatcher")
    group = _post(client, tok, case_body(lon, lat, people_involved=5, amount_yuan=12500.5)).json()
    assert group["people_involved"] == 5 and group["group"] is True and "group" in group["flags"]
    assert group["amount_yuan"] == 12500.5 and group["level"] == "grid"
    few = _post(client, tok, case_body(lon, lat, people_involved=4, amount_yuan=0)).json()
    assert few["group"] is False and "group" not in few["flags"] and few["amount_yuan"] == 0
    with psycopg.connect(demo_db) as conn:
        stored = conn.execute(
            "SELECT people_involved, amount_yuan, flags FROM cases WHERE code = %s", (group["code"],)
        ).fetchone()
    assert stored == (5, Decimal("12500.50"), ["group"])
    # the case as read back carries them too
    got = client.get(f"/api/v1/cases/{group['code']}", headers=auth(tok)).json()
    assert (got["people_involved"], got["amount_yuan"], got["group"]) == (5, 12500.5, True)


def test_an_old_client_gets_todays_behaviour(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    lon, lat, _ = inner_point(demo_db, offset=2)
    r = _post(client, token("grid_worker"), case_body(lon, lat))
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["level"] == "grid" and 0 < _hours_to_deadline(case) <= 24
    assert case["severity"] is None and case["people_involved"] is None and case["amount_yuan"] is None
    assert case["group"] is False and "group" not in case["flags"]


def test_an_old_clients_request_hash_is_unchanged() -> None:
    """Keys stored before the upgrade still match their retries: the hash of a report without the
    triage fields is the one the earlier code computed."""
    new = NewCase("grassland", "草场纠纷", 108.1, 38.2, "grid_app", [{"name": "巴图"}])
    before = {
        "type": new.type,
        "description": new.description,
        "lon": new.lon,
        "lat": new.lat,
        "channel": new.channel,
        "parties": new.parties,
        "reported_at": None,
    }
    old = hashlib.sha256(json.dumps(before, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    assert cases.request_hash(new) == old
    with_triage = NewCase(*before.values(), severity="major")  # type: ignore[arg-type]
    assert cases.request_hash(with_triage) != old
    # 12.5 and 12.50 are the same sum
    a = NewCase("grassland", "x", 108.1, 38.2, "grid_app", [], amount_yuan=Decimal("12.5"))
    b = NewCase("grassland", "x", 108.1, 38.2, "grid_app", [], amount_yuan=Decimal("12.50"))
    assert cases.request_hash(a) == cases.request_hash(b)


def test_the_idempotency_key_covers_the_triage(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    lon, lat, _ = inner_point(demo_db, offset=3)
    tok = token("dispatcher")
    body = case_body(lon, lat, severity="complex", people_involved=30, amount_yuan=99.99)
    first = _post(client, tok, body, key="triage-key-1")
    assert first.status_code == 201, first.text
    again = _post(client, tok, body, key="triage-key-1")
    assert again.status_code == 200 and again.json()["code"] == first.json()["code"]
    for change in ({"severity": "major"}, {"people_involved": 31}, {"amount_yuan": 100}, {"severity": None}):
        other = {k: v for k, v in {**body, **change}.items() if v is not None}
        r = _post(client, tok, other, key="triage-key-1")
        assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key", (change, r.text)
    assert _count(demo_db, "SELECT count(*) FROM cases WHERE code = %s", first.json()["code"]) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"severity": "huge"}, "severity"),
        ({"severity": ""}, "severity"),
        ({"people_involved": 0}, "people_involved"),
        ({"people_involved": 100_001}, "people_involved"),
        ({"people_involved": 2.5}, "people_involved"),
        ({"people_involved": "5"}, "people_involved"),
        ({"amount_yuan": -0.01}, "amount_yuan"),
        ({"amount_yuan": 12.345}, "amount_yuan"),
        ({"amount_yuan": 1e12 + 1}, "amount_yuan"),
        ({"amount_yuan": "12.50"}, "amount_yuan"),
        ({"amount_yuan": True}, "amount_yuan"),
    ],
)
def test_bad_triage_is_a_422_naming_the_field(
    client: TestClient, token: Callable[..., str], demo_db: str, change: dict, field: str
) -> None:
    lon, lat, _ = inner_point(demo_db)
    before = _count(demo_db, "SELECT count(*) FROM cases")
    r = _post(client, token("dispatcher"), case_body(lon, lat, **change))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert _count(demo_db, "SELECT count(*) FROM cases") == before


def test_the_largest_amount_fits(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    lon, lat, _ = inner_point(demo_db)
    r = _post(client, token("dispatcher"), case_body(lon, lat, amount_yuan=1e12, people_involved=100_000))
    assert r.status_code == 201, r.text
    assert r.json()["amount_yuan"] == 1e12 and r.json()["group"] is True


def test_the_levels_come_from_the_settings(demo_db: str, redis_url: str, tmp_path: Path, token) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(
        demo_db,
        redis_url,
        tmp_path,
        severity_levels={"simple": "grid", "ordinary": "grid", "complex": "village", "major": "town"},
        group_dispute_people=20,
    )
    lon, lat, _ = inner_point(demo_db)
    tok = token("dispatcher")
    with TestClient(create_app(settings)) as c:
        major = _post(c, tok, case_body(lon, lat, severity="major", people_involved=19)).json()
        assert major["level"] == "town" and abs(_hours_to_deadline(major) - 120) < 0.1
        assert major["group"] is False
        ordinary = _post(c, tok, case_body(lon, lat, severity="ordinary", people_involved=20)).json()
        assert ordinary["level"] == "grid" and ordinary["group"] is True


@pytest.mark.parametrize(
    "levels",
    [
        {"simple": "grid", "ordinary": "village", "complex": "town"},  # one missing
        {"simple": "grid", "ordinary": "village", "complex": "town", "major": "county"},  # no such level
        {"simple": "town", "ordinary": "village", "complex": "town", "major": "banner"},  # simple above ordinary
        {"simple": "grid", "ordinary": "village", "complex": "town", "major": "banner", "huge": "banner"},
    ],
)
def test_the_levels_setting_is_validated(levels: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="severity_levels"):
        Settings(_env_file=None, severity_levels=levels)


def test_the_levels_setting_reads_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "YITU_SEVERITY_LEVELS", '{"simple": "grid", "ordinary": "grid", "complex": "town", "major": "banner"}'
    )
    monkeypatch.setenv("YITU_GROUP_DISPUTE_PEOPLE", "8")
    s = Settings(_env_file=None)
    assert s.severity_levels["ordinary"] == "grid" and s.group_dispute_people == 8
    assert deadline_rules(s).start_level("complex") == "town" and deadline_rules(s).is_group(8)


def test_a_point_outside_the_territory_still_starts_at_the_banner(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    """The triage sets the lowest level: a report the map puts higher (no cell there) stays higher."""
    r = _post(client, token("dispatcher"), case_body(100.0, 30.0, severity="simple"))
    assert r.status_code == 201, r.text
    assert r.json()["level"] == "banner" and "outside_territory" in r.json()["flags"]


def test_batch_intake_keeps_each_reports_triage(demo_db: str) -> None:
    lon, lat, _ = inner_point(demo_db, offset=4)
    rules = deadline_rules(settings_for(demo_db, "redis://unused", Path("/tmp")))
    plain = NewCase("grassland", "草场", lon, lat, "grid_app", [])
    reqs = [
        IntakeRequest(NewCase(**{**plain.__dict__, "severity": "major", "people_involved": 50}), CLERK, "b-1"),
        IntakeRequest(plain, CLERK, "b-2"),
        IntakeRequest(NewCase(**{**plain.__dict__, "severity": "ordinary", "amount_yuan": Decimal("3.5")}), CLERK),
        IntakeRequest(NewCase(**{**plain.__dict__, "severity": "complex", "type": "no_such_type"}), CLERK),
    ]

    async def run() -> list[cases.IntakeResult]:
        async with AsyncConnectionPool(demo_db, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
            lanes = IntakeLanes(pool, rules, lanes=1)
            return list(await asyncio.gather(*(lanes.submit(r) for r in reqs)))

    major, old, ordinary, bad = asyncio.run(run())
    assert isinstance(bad, cases.UnknownType)  # one bad report never costs its neighbours
    assert isinstance(major, tuple) and isinstance(old, tuple) and isinstance(ordinary, tuple)
    assert (major[0]["level"], major[0]["severity"], "group" in major[0]["flags"]) == ("banner", "major", True)
    assert abs((major[0]["deadline"] - datetime.now(UTC)) - timedelta(hours=168)) < timedelta(minutes=5)
    assert (old[0]["level"], old[0]["severity"], old[0]["flags"]) == ("grid", None, [])
    assert (ordinary[0]["level"], ordinary[0]["amount_yuan"]) == ("village", Decimal("3.50"))


def test_pins_filter_and_mark_by_triage(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    lon, lat, _ = inner_point(demo_db, offset=5)
    tok = token("dispatcher")
    major = _post(client, tok, case_body(lon, lat, severity="major")).json()["code"]
    group = _post(client, tok, case_body(lon, lat, people_involved=12)).json()["code"]
    box = f"{lon - 0.01:.4f},{lat - 0.01:.4f},{lon + 0.01:.4f},{lat + 0.01:.4f}"
    pins = client.get(f"/api/v1/layers/cases?bbox={box}", headers=auth(tok)).json()["features"]
    by_code = {f["properties"]["code"]: f["properties"] for f in pins}
    assert by_code[major]["severity"] == "major" and by_code[major]["group"] is False
    assert by_code[group]["severity"] is None and by_code[group]["group"] is True
    only = client.get(f"/api/v1/layers/cases?bbox={box}&severity=major", headers=auth(tok)).json()["features"]
    assert {f["properties"]["code"] for f in only} == {major}
    banner = client.get(f"/api/v1/layers/cases?bbox={box}&level=banner", headers=auth(tok)).json()["features"]
    assert major in {f["properties"]["code"] for f in banner} and group not in {f["properties"]["code"] for f in banner}
    r = client.get(f"/api/v1/layers/cases?bbox={box}&severity=huge", headers=auth(tok))
    assert r.status_code == 422 and r.json()["field"] == "severity"


def test_kpis_count_open_major_and_group_cases(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    lon, lat, cell = inner_point(demo_db, offset=6)
    town = cell[:9]
    with psycopg.connect(demo_db) as conn:
        before = kpi.tiles(conn, town)
    tok = token("dispatcher")
    _post(client, tok, case_body(lon, lat, severity="major", people_involved=6))
    _post(client, tok, case_body(lon, lat, people_involved=7))
    with psycopg.connect(demo_db) as conn:
        after = kpi.tiles(conn, town)
    assert after["open_major"] == before["open_major"] + 1
    assert after["open_group"] == before["open_group"] + 2


def test_a_whole_number_written_as_a_float_is_a_number_of_people(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    """JSON Schema's integer allows 6.0 (the schema says integer, and a generated client may send it)."""
    lon, lat, _ = inner_point(demo_db)
    r = _post(client, token("dispatcher"), case_body(lon, lat, people_involved=6.0))
    assert r.status_code == 201, r.text
    assert r.json()["people_involved"] == 6 and r.json()["group"] is True

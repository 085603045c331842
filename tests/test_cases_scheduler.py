"""The overdue sweep with a frozen clock, auto-escalation, and the scheduler thread in the app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from dashboard.app import create_app
from geodata import cases
from geodata.cases import Actor, NewCase
from services.scheduler import deadline_rules, run_once

from .cases_fixtures import auth, case_body, inner_point, settings_for, token  # noqa: F401
from .helpers import keyed, relay_running, stream_entries, wait_for

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # 10:00 China time; the grid's deadline is 23:59:59
CLERK = Actor("clerk", "dispatcher", 0)


@pytest.fixture
def pool(demo_db: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(demo_db, min_size=1, max_size=2) as p:
        yield p


def _new_case(pool: ConnectionPool, demo_db: str, *, accept: bool = False) -> str:
    lon, lat, _ = inner_point(demo_db)
    body = case_body(lon, lat)
    new = NewCase(body["type"], body["description"], lon, lat, body["channel"], body["parties"], T0)
    rules = deadline_rules(settings_for(demo_db, "redis://unused", Path("/tmp")))
    with pool.connection() as conn:
        row, _ = cases.intake(conn, new, CLERK, rules, T0)
        if accept:
            cases.transition(conn, row["code"], "accept", {}, CLERK, rules, T0 + timedelta(minutes=5))
    return row["code"]


def _case(pool: ConnectionPool, code: str) -> dict:
    with pool.connection() as conn:
        row = cases.get_case(conn, code)
        assert row is not None
        row["events"] = cases.timeline(conn, row["id"])
    return row


def _mine(events: list[dict], code: str) -> list[dict]:
    return [e for e in events if e["code"] == code]


def test_overdue_is_flagged_once_with_a_frozen_clock(
    pool: ConnectionPool, demo_db: str, redis_url: str, tmp_path: Path
) -> None:
    settings = settings_for(demo_db, redis_url, tmp_path)
    code = _new_case(pool, demo_db)
    assert _mine(run_once(pool, settings, now=T0 + timedelta(hours=13)), code) == []  # 23:00: not yet
    late = datetime(2026, 11, 22, 16, 0, 1, tzinfo=UTC)  # 00:00:01 the next day, China time
    published = _mine(run_once(pool, settings, now=late), code)
    assert [(e["type"], e["action"], e["overdue"]) for e in published] == [("case.changed", "overdue", True)]
    case = _case(pool, code)
    assert "overdue" in case["flags"] and case["step"] == "reported" and case["level"] == "grid"
    assert case["version"] == 1  # a flag, not a workflow change: clerks' versions stay valid
    assert [(e["action"], e["actor"], e["role"]) for e in case["events"]][-1] == ("overdue", "scheduler", "system")
    # Written to the outbox with the flag, published by a relay once committed (asynchronously: waited for).
    with relay_running(demo_db, redis_url):
        wait_for(
            lambda: any(
                e.get("code") == code and e.get("action") == "overdue" for _, _, e in stream_entries(redis_url)
            ),
            what="the overdue event in the stream",
        )
    assert _mine(run_once(pool, settings, now=late + timedelta(hours=1)), code) == []  # once only


def test_auto_escalation_climbs_to_the_banner(
    pool: ConnectionPool, demo_db: str, redis_url: str, tmp_path: Path
) -> None:
    settings = settings_for(demo_db, redis_url, tmp_path, auto_escalate=True)
    code = _new_case(pool, demo_db, accept=True)
    now = datetime(2026, 11, 22, 16, 0, 1, tzinfo=UTC)
    for level, hours in (("village", 72), ("town", 120), ("banner", 168)):
        events = _mine(run_once(pool, settings, now=now), code)
        assert [e["action"] for e in events][-1] == "escalate"
        case = _case(pool, code)
        assert case["level"] == level and case["step"] == "accepted" and "overdue" not in case["flags"]
        assert case["deadline"] == now + timedelta(hours=hours)
        assert _mine(run_once(pool, settings, now=now + timedelta(hours=hours - 1)), code) == []
        now += timedelta(hours=hours, seconds=1)
    events = _mine(run_once(pool, settings, now=now), code)
    assert [e["action"] for e in events] == ["overdue"]
    case = _case(pool, code)
    assert case["level"] == "banner" and "overdue" in case["flags"]
    escalations = [e for e in case["events"] if e["action"] == "escalate"]
    assert [(e["actor"], e["level"]) for e in escalations] == [
        ("scheduler", "village"),
        ("scheduler", "town"),
        ("scheduler", "banner"),
    ]
    assert _mine(run_once(pool, settings, now=now + timedelta(days=1)), code) == []


def test_without_auto_escalate_overdue_cases_stay_at_their_level(
    pool: ConnectionPool, demo_db: str, redis_url: str, tmp_path: Path
) -> None:
    settings = settings_for(demo_db, redis_url, tmp_path)
    code = _new_case(pool, demo_db, accept=True)
    run_once(pool, settings, now=T0 + timedelta(days=2))
    case = _case(pool, code)
    assert case["level"] == "grid" and "overdue" in case["flags"]


def test_the_scheduler_runs_in_the_app(demo_db: str, redis_url: str, tmp_path: Path, token: Callable[..., str]) -> None:
    settings = settings_for(demo_db, redis_url, tmp_path).model_copy(update={"scheduler_interval": 0.2})
    lon, lat, _ = inner_point(demo_db)
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    with TestClient(create_app(settings)) as c:
        tok = token("dispatcher")
        code = c.post(
            "/api/v1/cases", json=case_body(lon, lat, reported_at=two_days_ago), headers=keyed(auth(tok))
        ).json()["code"]

        def flagged() -> bool:
            return "overdue" in c.get(f"/api/v1/cases/{code}", headers=auth(tok)).json()["flags"]

        wait_for(flagged, timeout=20, what="the scheduler to flag the overdue case")
        listed = c.get("/api/v1/cases?overdue=true&limit=500", headers=auth(tok)).json()["cases"]
        assert code in [x["code"] for x in listed]
    with psycopg.connect(demo_db) as conn:
        n = conn.execute(
            "SELECT count(*) FROM case_events e JOIN cases c ON c.id = e.case_id "
            "WHERE c.code = %s AND e.action = 'overdue'",
            (code,),
        ).fetchone()[0]
    assert n == 1

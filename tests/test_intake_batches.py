"""Intake in batches (geodata/cases.py intake_many, api/intake.py lanes): each report keeps its
own answer, and a bad one never costs its neighbours."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import AsyncConnectionPool

from api.intake import IntakeLanes
from dashboard.app import create_app
from geodata import cases
from geodata.cases import Actor, IntakeRequest, NewCase
from services.scheduler import deadline_rules

from .cases_fixtures import auth, case_body, inner_point, inner_point_where, settings_for, token  # noqa: F401
from .helpers import keyed, relay_running, stream_entries, wait_for

CLERK = Actor("clerk", "dispatcher", 7)


def _new(lon: float, lat: float, **change: object) -> NewCase:
    body = {**case_body(lon, lat), **change}
    return NewCase(body["type"], body["description"], body["lon"], body["lat"], body["channel"], body["parties"])


def _count(dsn: str, sql: str, *args: object) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchone()[0]  # type: ignore[index]


def _rows(dsn: str, sql: str, *args: object) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()


def _rules(dsn: str):  # type: ignore[no-untyped-def]
    return deadline_rules(settings_for(dsn, "redis://unused", Path("/tmp")))


def test_a_batch_gives_each_report_its_own_result(demo_db: str) -> None:
    lon, lat, cell = inner_point(demo_db)
    with psycopg.connect(demo_db) as conn:
        other_village = conn.execute(
            "SELECT code FROM areas WHERE level = 3 AND code <> %s ORDER BY code LIMIT 1", (cell[:12],)
        ).fetchone()[0]
    n_cases = _count(demo_db, "SELECT count(*) FROM cases")
    reqs = [
        IntakeRequest(_new(lon, lat), CLERK),  # 0 made
        IntakeRequest(_new(lon, lat, type="unicorn"), CLERK),  # 1 unknown type
        IntakeRequest(_new(lon, lat), CLERK, scope=other_village),  # 2 outside the scope
        IntakeRequest(_new(lon, lat, description="同一键"), CLERK, key="k-1"),  # 3 made
        IntakeRequest(_new(lon, lat, description="同一键"), CLERK, key="k-1"),  # 4 the retry of 3, same batch
        IntakeRequest(_new(lon, lat, description="另一件事"), CLERK, key="k-1"),  # 5 the key reused: refused
        IntakeRequest(_new(100.0, 30.0), CLERK),  # 6 outside the territory: queued
    ]
    with psycopg.connect(demo_db, autocommit=True) as conn:
        out = cases.intake_many(conn, reqs, _rules(demo_db), datetime.now(UTC))
    assert isinstance(out[1], cases.UnknownType) and out[1].field == "type"
    assert isinstance(out[2], cases.OutsideScope) and other_village in out[2].message
    assert isinstance(out[5], cases.KeyReused) and out[5].field == "Idempotency-Key"
    (made, c0), (keyed, c3), (retry, c4), (outside, c6) = out[0], out[3], out[4], out[6]  # type: ignore[misc]
    assert (c0, c3, c4, c6) == (True, True, False, True)
    assert (
        made["grid_code"] == cell
        and made["step"] == "reported"
        and made["description"] == case_body(0, 0)["description"]
    )
    assert retry["code"] == keyed["code"] and "request_hash" not in retry
    assert outside["grid_code"] is None and "outside_territory" in outside["flags"] and outside["level"] == "banner"
    assert len({made["code"], keyed["code"], outside["code"]}) == 3
    assert _count(demo_db, "SELECT count(*) FROM cases") == n_cases + 3
    for row in (made, keyed, outside):  # each with its first audit row
        assert (
            _count(demo_db, "SELECT count(*) FROM case_events WHERE case_id = %s AND action = 'report'", row["id"]) == 1
        )


def test_a_report_the_database_refuses_does_not_fail_the_reports_beside_it(demo_db: str, redis_url: str) -> None:
    """A NUL character passes no API validation (tested below) but here it reaches PostgreSQL,
    which refuses the whole statement: the lane writes the batch again one report at a time."""
    lon, lat, _ = inner_point(demo_db)
    rules = _rules(demo_db)
    n_cases = _count(demo_db, "SELECT count(*) FROM cases")

    async def run() -> tuple[list[object], int]:
        pool = AsyncConnectionPool(demo_db, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False)
        await pool.open()
        lanes = IntakeLanes(pool, rules, lanes=1)
        try:
            bad = IntakeRequest(_new(lon, lat, description="坏\x00字"), CLERK)
            good = [IntakeRequest(_new(lon, lat, description=f"好 {i}"), CLERK) for i in range(5)]
            out = await asyncio.gather(*(lanes.submit(r) for r in [good[0], bad, *good[1:]]), return_exceptions=True)
            return out, lanes.isolated
        finally:
            await pool.close()

    out, isolated = asyncio.run(run())
    assert isolated == 1  # the batch failed as a whole once, then went one by one
    assert isinstance(out[1], psycopg.Error)
    made = [o for i, o in enumerate(out) if i != 1]
    assert all(isinstance(o, tuple) and o[1] for o in made)
    assert [o[0]["description"] for o in made] == [f"好 {i}" for i in range(5)]  # type: ignore[index]
    assert _count(demo_db, "SELECT count(*) FROM cases") == n_cases + 5


def test_reports_that_arrive_together_are_written_together_and_all_published(demo_db: str, redis_url: str) -> None:
    lon, lat, _ = inner_point(demo_db)
    rules = _rules(demo_db)

    async def run() -> tuple[list[object], int]:
        pool = AsyncConnectionPool(demo_db, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False)
        await pool.open()
        lanes = IntakeLanes(pool, rules, lanes=2, max_batch=16)
        try:
            reqs = [IntakeRequest(_new(lon, lat, description=f"一起 {i}"), CLERK) for i in range(60)]
            out = await asyncio.gather(*(lanes.submit(q) for q in reqs))
            return list(out), lanes.batches
        finally:
            await pool.close()

    out, batches = asyncio.run(run())
    assert all(created for _, created in out)  # type: ignore[misc]
    # 60 queued at once (the lanes start on the loop's next step) through 2 lanes of at most
    # 16: batches of 16, 16, 16 and 12, not 60 statements
    assert batches == 4, batches
    codes = [row["code"] for row, _ in out]  # type: ignore[misc]
    assert len(set(codes)) == 60
    # Each case's event was committed with it, before the answers (the outbox) …
    outboxed = [r[0] for r in _rows(demo_db, "SELECT event->>'code' FROM outbox WHERE type = 'case.created'")]
    assert sorted(outboxed) == sorted(codes)
    # … and reaches the stream once, when a relay runs (asynchronously: waited for).
    with relay_running(demo_db, redis_url):
        published = wait_for(
            lambda: (
                (p := [e["code"] for _, kind, e in stream_entries(redis_url) if kind == "case.created"])
                and len(p) >= 60
                and p
            ),
            what="60 case.created events",
        )
    assert len(published) == 60 and set(published) == set(codes)  # type: ignore[arg-type]


@pytest.fixture
def client_cached(demo_db: str, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """An app that trusts a looked-up token for a minute, as a deployment does."""
    settings = settings_for(demo_db, redis_url, tmp_path, auth_cache_seconds=60)
    with TestClient(create_app(settings), raise_server_exceptions=True) as c:
        yield c


def test_the_api_refuses_nul_characters_with_the_field_named(
    client_cached: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    lon, lat, _ = inner_point(demo_db)
    tok = token("dispatcher")
    n_cases = _count(demo_db, "SELECT count(*) FROM cases")
    for change, field in (
        ({"description": "a\x00b"}, "description"),
        ({"parties": [{"name": "张\x00三"}]}, "parties.0.name"),
        ({"reported_at": "0001-01-01T00:00:00+14:00"}, "reported_at"),
    ):
        for _ in range(2):  # the token not cached yet, then cached
            r = client_cached.post("/api/v1/cases", json={**case_body(lon, lat), **change}, headers=keyed(auth(tok)))
            assert r.status_code == 422 and r.json()["field"] == field, r.text
    assert _count(demo_db, "SELECT count(*) FROM cases") == n_cases
    code = client_cached.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(auth(tok))).json()["code"]
    r = client_cached.post(
        f"/api/v1/cases/{code}/transitions", json={"action": "accept", "note": "好\x00"}, headers=auth(tok)
    )
    assert r.status_code == 422 and r.json()["field"] == "note", r.text
    assert (
        _count(demo_db, "SELECT count(*) FROM case_events e JOIN cases c ON c.id = e.case_id WHERE c.code = %s", code)
        == 1
    )  # the report only

"""Intake as the API runs it: one statement that commits on its own, the scope checked in SQL,
and the intake pool recovering from connections the server closed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from geodata import cases
from geodata.cases import Actor, NewCase
from services.scheduler import deadline_rules

from .cases_fixtures import auth, case_body, cases_settings, client, inner_point, inner_point_where, settings_for, token  # noqa: F401
from .helpers import keyed, stream_entries, wait_for

CLERK = Actor("clerk", "dispatcher", 0)


def _new(lon: float, lat: float) -> NewCase:
    body = case_body(lon, lat)
    return NewCase(body["type"], body["description"], lon, lat, body["channel"], body["parties"])


def _count(dsn: str, sql: str, *args: object) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchone()[0]  # type: ignore[index]


def test_intake_committed_is_durable_on_return_and_leaves_the_connection_as_it_was(demo_db: str) -> None:
    lon, lat, cell = inner_point(demo_db)
    rules = deadline_rules(settings_for(demo_db, "redis://unused", Path("/tmp")))
    with psycopg.connect(demo_db) as conn:
        row, created = cases.intake_committed(conn, _new(lon, lat), CLERK, rules, datetime.now(UTC))
        assert created and row["grid_code"] == cell and not conn.autocommit
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        # committed already: another session sees the case and its audit row
        assert _count(demo_db, "SELECT count(*) FROM cases WHERE code = %s", row["code"]) == 1
        assert (
            _count(demo_db, "SELECT count(*) FROM case_events WHERE case_id = %s AND action = 'report'", row["id"]) == 1
        )
        conn.execute("SELECT 1")  # now in a transaction of the caller's: refused, nothing run
        with pytest.raises(RuntimeError, match="outside a transaction"):
            cases.intake_committed(conn, _new(lon, lat), CLERK, rules, datetime.now(UTC))


def test_the_scope_is_checked_in_the_statement(demo_db: str) -> None:
    lon, lat, cell = inner_point(demo_db)
    rules = deadline_rules(settings_for(demo_db, "redis://unused", Path("/tmp")))
    with psycopg.connect(demo_db) as conn:
        other_village = conn.execute(
            "SELECT code FROM areas WHERE level = 3 AND code <> %s ORDER BY code LIMIT 1", (cell[:12],)
        ).fetchone()[0]
    n_cases = _count(demo_db, "SELECT count(*) FROM cases")
    n_keys = _count(demo_db, "SELECT count(*) FROM case_idempotency_keys")
    with psycopg.connect(demo_db) as conn:
        with pytest.raises(cases.OutsideScope, match=f"lies in {cell}, outside your area {other_village}"):
            cases.intake_committed(conn, _new(lon, lat), CLERK, rules, datetime.now(UTC), "k-1", scope=other_village)
        for scope in (cell, cell[:12], cell[:9], cell[:6]):  # any level of the point's chain
            row, created = cases.intake_committed(conn, _new(lon, lat), CLERK, rules, datetime.now(UTC), scope=scope)
            assert created and row["grid_code"] == cell
    assert _count(demo_db, "SELECT count(*) FROM cases") == n_cases + 4
    assert _count(demo_db, "SELECT count(*) FROM case_idempotency_keys") == n_keys  # the refused key was not kept


def test_a_refused_scoped_report_does_not_use_up_its_idempotency_key(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    lon_in, lat_in, cell_in = inner_point(demo_db)
    lon_out, lat_out, _ = inner_point_where(demo_db, lambda cell: cell[:12] != cell_in[:12])
    worker = token("grid_worker", area=cell_in[:12])
    headers = {**auth(worker), "Idempotency-Key": "phone-9-report-1"}
    refused = client.post("/api/v1/cases", json=case_body(lon_out, lat_out), headers=headers)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert cell_in[:12] in refused.json()["message"]
    made = client.post("/api/v1/cases", json=case_body(lon_in, lat_in), headers=headers)
    assert made.status_code == 201 and made.json()["grid"][0] == cell_in


def test_intake_recovers_from_connections_the_server_closed(
    client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    lon, lat, _ = inner_point(demo_db)
    headers = auth(token("dispatcher"))
    assert client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(headers)).status_code == 201
    with psycopg.connect(demo_db, autocommit=True) as conn:  # what a server restart does to the pools
        killed = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'yitu' AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert killed >= 1
    for _ in range(3):
        r = client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(headers))
        assert r.status_code == 201, r.text
    # Published by the relay once committed (asynchronously: waited for), each once.
    created = wait_for(
        lambda: (c := [e for _, kind, e in stream_entries(redis_url) if kind == "case.created"]) and len(c) >= 4 and c,
        what="4 case.created events",
    )
    assert len(created) == 4  # type: ignore[arg-type]

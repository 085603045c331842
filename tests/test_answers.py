"""Answers that never lie about a commit: the in-doubt write, for real.

A TCP relay (tests/tcp_cut.py) sits between the app's pools and PostgreSQL and cuts a connection
right after forwarding a chosen message (the server acts on it; its answer never comes back) or
right before. Cut after the COMMIT (or the intake's autocommit statement): the change is in the
database, and the answer is ``503 outcome_unknown`` telling the client to send it again with the
same Idempotency-Key, which then answers the case the first attempt made, without a duplicate.
Cut before the COMMIT: PostgreSQL aborts the transaction, and ``503 service_unavailable`` ("nothing
was written") is the truth. The bounded 503 under an outage is in tests/test_health.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from callbacks import dispatch as page
from dashboard.app import create_app
from dashboard.i18n import TEXTS
from services.identity import Principal

from .cases_fixtures import auth, case_body, inner_point, settings_for, token  # noqa: F401
from .helpers import as_runtime, keyed
from .tcp_cut import TcpCut


@pytest.fixture
def relay(demo_db: str) -> Iterator[TcpCut]:
    info = conninfo_to_dict(demo_db)
    with TcpCut(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)) as cut:
        yield cut


@pytest.fixture
def client(demo_db: str, redis_url: str, tmp_path: Path, relay: TcpCut) -> Iterator[TestClient]:
    """The app with both its pools (the main one and the intake lanes') behind the relay."""
    behind = make_conninfo(as_runtime(demo_db), host="127.0.0.1", port=relay.port)
    with TestClient(create_app(settings_for(demo_db, redis_url, tmp_path, database_url=behind))) as c:
        yield c


def _one(dsn: str, sql: str, *args: object) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, args).fetchone()
    return row[0] if row else None


def _row(dsn: str, sql: str, *args: object) -> tuple[Any, ...] | None:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchone()


def _marker() -> str:
    return f"cut-{uuid.uuid4().hex}"


def _in_doubt(r: Any) -> None:
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["error"] == "outcome_unknown" and body["field"] == "Idempotency-Key", body
    assert "may or may not have been written" in body["message"] and "same Idempotency-Key" in body["message"]
    assert int(r.headers["retry-after"]) >= 1


def _nothing_written(r: Any) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "service_unavailable" and "nothing was written" in r.json()["message"]
    assert r.headers["retry-after"] == "5"


def test_a_report_whose_connection_is_cut_after_its_statement_is_in_doubt_and_its_retry_finds_it(
    client: TestClient, relay: TcpCut, demo_db: str, token: Callable[..., str]
) -> None:
    lon, lat, _ = inner_point(demo_db)
    headers = auth(token("grid_worker"))
    assert client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(headers)).status_code == 201
    mark = _marker()
    body = case_body(lon, lat, description=f"断线上报 {mark}")
    key = {**headers, "Idempotency-Key": f"report-{mark}"}

    relay.arm(mark.encode(), forward=True)  # the intake statement (autocommit) reaches the server
    _in_doubt(client.post("/api/v1/cases", json=body, headers=key))
    assert relay.cuts == 1
    stored = _one(demo_db, "SELECT code FROM cases WHERE description LIKE %s", f"%{mark}")
    assert stored is not None  # it was written: "nothing was written" would have been a lie

    retry = client.post("/api/v1/cases", json=body, headers=key)
    assert retry.status_code == 200, retry.text  # the case the first attempt made, not a second one
    assert retry.json()["code"] == stored
    assert _one(demo_db, "SELECT count(*) FROM cases WHERE description LIKE %s", f"%{mark}") == 1


def _reported_case(client: TestClient, headers: dict[str, str], demo_db: str) -> str:
    lon, lat, _ = inner_point(demo_db, offset=3)
    r = client.post("/api/v1/cases", json=case_body(lon, lat), headers={**headers, "Idempotency-Key": _marker()})
    assert r.status_code == 201, r.text
    return str(r.json()["code"])


def test_a_transition_cut_after_its_commit_is_in_doubt_and_committed(
    client: TestClient, relay: TcpCut, demo_db: str, token: Callable[..., str]
) -> None:
    headers = auth(token("dispatcher"))
    code = _reported_case(client, headers, demo_db)
    mark = _marker()

    relay.arm(b"COMMIT", after=mark.encode(), forward=True)  # the COMMIT of the change carrying the note
    r = client.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept", "note": mark}, headers=headers)
    _in_doubt(r)
    assert relay.cuts == 1
    assert _one(demo_db, "SELECT step FROM cases WHERE code = %s", code) == "accepted"
    assert _one(demo_db, "SELECT count(*) FROM case_events WHERE note = %s", mark) == 1
    # Sent again, the change is not made twice: the case has moved on (with the Idempotency-Key of
    # the idempotency work, the stored answer is replayed instead).
    again = client.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept", "note": mark}, headers=headers)
    assert again.status_code == 409, again.text
    assert _one(demo_db, "SELECT count(*) FROM case_events WHERE note = %s", mark) == 1


def test_a_transition_cut_before_its_commit_wrote_nothing_and_says_so(
    client: TestClient, relay: TcpCut, demo_db: str, token: Callable[..., str]
) -> None:
    headers = auth(token("dispatcher"))
    code = _reported_case(client, headers, demo_db)
    before = _row(demo_db, "SELECT step, version, updated_at FROM cases WHERE code = %s", code)
    mark = _marker()

    relay.arm(mark.encode(), forward=False)  # the statement carrying the note never reaches the server
    r = client.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept", "note": mark}, headers=headers)
    _nothing_written(r)
    assert relay.cuts == 1
    assert _row(demo_db, "SELECT step, version, updated_at FROM cases WHERE code = %s", code) == before
    assert _one(demo_db, "SELECT count(*) FROM case_events WHERE note = %s", mark) == 0
    ok = client.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept", "note": mark}, headers=headers)
    assert ok.status_code == 200, ok.text  # sent again, it is written once
    assert _one(demo_db, "SELECT count(*) FROM case_events WHERE note = %s", mark) == 1


def test_a_gps_batch_cut_after_its_commit_is_in_doubt_and_its_retry_stores_nothing_twice(
    client: TestClient, relay: TcpCut, demo_db: str, token: Callable[..., str]
) -> None:
    headers = auth(token("admin"))
    now = datetime.now(UTC).replace(microsecond=0)
    warm = {"positions": [{"van": "V02", "lon": 107.48, "lat": 38.18, "time": now.isoformat()}]}
    assert client.post("/api/v1/vans/positions", json=warm, headers=headers).status_code == 200
    batch = {"positions": [{"van": "V03", "lon": 107.49, "lat": 38.19, "time": now.isoformat()}]}

    relay.arm(b"COMMIT", after=b"V03", forward=True)  # ingest's own transaction commits
    _in_doubt(client.post("/api/v1/vans/positions", json=batch, headers=headers))
    assert relay.cuts == 1
    at = "SELECT count(*) FROM van_positions WHERE van_id = 'V03' AND recorded_at = %s"
    assert _one(demo_db, at, now) == 1

    retry = client.post("/api/v1/vans/positions", json=batch, headers=headers)
    assert retry.status_code == 200, retry.text
    assert (retry.json()["stored"], retry.json()["duplicates"]) == (0, 1)
    assert _one(demo_db, at, now) == 1


def test_the_dispatch_page_says_when_the_outcome_of_a_send_is_unknown(
    client: TestClient, relay: TcpCut, demo_db: str
) -> None:
    svc, rt = client.app.state.services, client.app.state.cases_runtime  # type: ignore[attr-defined]
    with psycopg.connect(demo_db) as conn:
        conn.execute(
            "UPDATE vans SET geom = ST_SetSRID(ST_MakePoint(107.4812, 38.1834), 4326), last_seen_at = now(), "
            "status = 'available' WHERE id = 'V01'"
        )
    who = Principal(1, "page-dispatcher", "dispatcher", None, kind="user", session_id="1")
    code = page.waiting(svc, who, datetime.now(UTC))[0]["code"]

    relay.arm(b"COMMIT", after=code.encode(), forward=True)
    out = page.send(svc, rt, who, code, "V01", "zh-CN")
    assert out["ok"] is False
    assert out["message"] == TEXTS["zh-CN"]["dispatch.outcome_unknown"].format(van="V01", case=code)
    assert "结果未知" in out["message"] and "确认未派出后再重试" in out["message"]
    assert _one(demo_db, "SELECT count(*) FROM dispatches WHERE case_code = %s", code) == 1  # it was sent
    assert _one(demo_db, "SELECT status FROM vans WHERE id = 'V01'") == "en_route"

    other = page.waiting(svc, who, datetime.now(UTC))[0]["code"]
    relay.arm(other.encode(), forward=False)  # lost before anything of it reached the server
    refused = page.send(svc, rt, who, other, "V02", "zh-CN")
    assert refused["ok"] is False and refused["message"] == TEXTS["zh-CN"]["error.service_unavailable"]
    assert _one(demo_db, "SELECT count(*) FROM dispatches WHERE case_code = %s", other) == 0


def test_a_dispatch_cut_after_its_commit_is_in_doubt_and_not_sent_twice(
    client: TestClient, relay: TcpCut, demo_db: str, token: Callable[..., str]
) -> None:
    headers = auth(token("dispatcher"))
    code = _reported_case(client, headers, demo_db)
    ok = client.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept"}, headers=headers)
    assert ok.status_code == 200, ok.text
    with psycopg.connect(demo_db) as conn:
        conn.execute(
            "UPDATE vans SET geom = ST_SetSRID(ST_MakePoint(107.4812, 38.1834), 4326), last_seen_at = now(), "
            "status = 'available' WHERE id = 'V04'"
        )
    mark = _marker()
    send = {"case": code, "van": "V04", "note": mark}

    relay.arm(b"COMMIT", after=mark.encode(), forward=True)
    _in_doubt(client.post("/api/v1/dispatches", json=send, headers=headers))
    assert _one(demo_db, "SELECT count(*) FROM dispatches WHERE case_code = %s AND note = %s", code, mark) == 1
    again = client.post("/api/v1/dispatches", json=send, headers=headers)
    assert again.status_code == 409, again.text  # the van is on its way already: not sent twice
    assert _one(demo_db, "SELECT count(*) FROM dispatches WHERE case_code = %s", code) == 1


def test_a_read_whose_connection_breaks_keeps_the_plain_503(
    client: TestClient, relay: TcpCut, demo_db: str, token: Callable[..., str]
) -> None:
    headers = auth(token("dispatcher"))
    code = _reported_case(client, headers, demo_db)
    relay.arm(b"COMMIT", after=code.encode(), forward=True)
    _nothing_written(client.get(f"/api/v1/cases/{code}", headers=headers))
    assert relay.cuts == 1
    assert client.get(f"/api/v1/cases/{code}", headers=headers).status_code == 200

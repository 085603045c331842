"""The case API on a clone of the seeded demo: intake, transitions, idempotency, bad input, events."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from dashboard.app import create_app
from geodata.queries import grid_chain
from services.events import STREAM

from .cases_fixtures import auth, case_body, cases_settings, client, inner_point, settings_for, token  # noqa: F401
from .helpers import free_port, keyed, wait_for

CODE = re.compile(r"^150623-\d{8}-\d{6}$")


def _count(dsn: str, sql: str, *params: object) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def _post(client: TestClient, tok: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post("/api/v1/cases", json=body, headers={**keyed(auth(tok)), **headers})


def _act(client: TestClient, tok: str, code: str, action: str, **params: Any) -> httpx.Response:
    return client.post(f"/api/v1/cases/{code}/transitions", json={"action": action, **params}, headers=auth(tok))


def _stream(redis_url: str) -> list[dict[str, Any]]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [json.loads(fields["event"]) for _id, fields in r.xrange(STREAM)]
    finally:
        r.close()


def test_intake_finds_the_grid_chain_level_and_deadline(
    client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    tok = token("grid_worker", name="gw-巴图")
    lon, lat, cell = inner_point(demo_db)
    r = _post(client, tok, case_body(lon, lat))
    assert r.status_code == 201, r.text
    case = r.json()
    with psycopg.connect(demo_db) as conn:
        chain = grid_chain(conn, lon, lat)
    assert CODE.match(case["code"])
    assert case["grid"] == [chain.code_at(4), chain.code_at(3), chain.code_at(2), chain.code_at(1)]
    assert case["grid"][0] == cell and case["level"] == "grid" and case["step"] == "reported"
    assert case["deadline"].endswith("15:59:59+00:00")  # 23:59:59 China time, the same day
    assert case["flags"] == [] and case["reporter"] == "gw-巴图" and case["version"] == 1
    assert case["parties"][0]["phone"] == "13812345678"  # a grid worker handles the case: unmasked
    events = wait_for(lambda: _stream(redis_url), what="the case.created event")
    assert events[-1]["type"] == "case.created" and events[-1]["code"] == case["code"]
    assert events[-1]["grid"] == case["grid"] and events[-1]["step"] == "reported"
    assert {"level", "lon", "lat", "at"} <= set(events[-1])
    assert "parties" not in events[-1]  # no personal data on the wall-screen stream
    timeline = client.get(f"/api/v1/cases/{case['code']}", headers=auth(tok)).json()["timeline"]
    assert [(e["action"], e["actor"], e["role"], e["to_step"]) for e in timeline] == [
        ("report", "gw-巴图", "grid_worker", "reported")
    ]


def test_codes_continue_the_day_and_never_repeat(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    tok = token("dispatcher")
    lon, lat, _ = inner_point(demo_db, offset=3)
    codes = [
        _post(client, tok, case_body(lon, lat, reported_at="2026-11-20T03:00:00+00:00")).json()["code"]
        for _ in range(3)
    ]
    before = _count(
        demo_db,
        "SELECT max(split_part(code, '-', 3)::int) FROM cases WHERE code LIKE '150623-20261120-%%' AND code <> ALL(%s)",
        codes,
    )
    assert [int(c.rsplit("-", 1)[1]) for c in codes] == [before + 1, before + 2, before + 3]
    assert all(c.startswith("150623-20261120-") for c in codes)


def test_outside_the_territory_goes_to_the_banner_queue(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    r = _post(client, token("dispatcher"), case_body(100.0, 30.0, channel="hotline_12345"))
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["grid"] == [None, None, None, "150623"] and case["level"] == "banner"
    assert "outside_territory" in case["flags"]
    assert _count(demo_db, "SELECT count(*) FROM cases WHERE code = %s", case["code"]) == 1


def test_near_a_cell_boundary_is_flagged(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    with psycopg.connect(demo_db) as conn:
        # 20 m inside a cell edge: a vertex of the cell pulled 20 m towards its interior point
        row = conn.execute(
            """WITH c AS (SELECT code, geom, ST_PointOnSurface(geom) AS inner_pt FROM areas WHERE level = 4
                          ORDER BY code LIMIT 1),
                    v AS (SELECT code, inner_pt, ST_ClosestPoint(ST_Boundary(geom), inner_pt) AS edge FROM c)
               SELECT ST_X(p), ST_Y(p), code FROM (
                   SELECT code, ST_Project(edge::geography, 20, ST_Azimuth(edge, inner_pt))::geometry AS p FROM v) s"""
        ).fetchone()
        chain = grid_chain(conn, row[0], row[1])
    assert chain.near_boundary
    case = _post(client, token("dispatcher"), case_body(row[0], row[1])).json()
    assert "near_boundary" in case["flags"] and case["grid"][0] == chain.code_at(4)


def test_the_whole_loop_with_audit(client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str) -> None:
    tok = token("dispatcher", name="值班调度")
    lon, lat, _ = inner_point(demo_db, offset=5)
    code = _post(client, tok, case_body(lon, lat)).json()["code"]
    steps = [
        ("accept", {}, "accepted"),
        ("dispatch", {"assignee": {"kind": "mediator", "id": "m-17", "name": "王调解员"}}, "dispatched"),
        ("start", {}, "handling"),
        ("attempt", {"result": "failed", "note": "第一次劝调未果"}, "handling"),
        ("escalate", {"note": "升级到村"}, "accepted"),
        ("dispatch", {"assignee": {"kind": "unit", "id": "village-room"}}, "dispatched"),
        ("start", {}, "handling"),
        ("attempt", {"result": "success"}, "handling"),
        ("close", {"outcome": "mediated"}, "closed"),
        ("evaluate", {"satisfaction": 5, "followup_note": "回访：双方满意"}, "evaluated"),
        ("reopen", {"note": "协议未履行"}, "handling"),
        ("close", {"outcome": "judicial_confirmation"}, "closed"),
    ]
    for action, params, step in steps:
        r = _act(client, tok, code, action, **params)
        assert r.status_code == 200, (action, r.text)
        assert r.json()["step"] == step
    case = client.get(f"/api/v1/cases/{code}", headers=auth(tok)).json()
    assert case["level"] == "village" and case["outcome"] == "judicial_confirmation" and case["version"] == 13
    assert case["satisfaction"] is None  # the reopened case's old evaluation no longer applies
    timeline = case["timeline"]
    assert [e["action"] for e in timeline] == ["report"] + [a for a, _, _ in steps]
    assert all(e["actor"] == "值班调度" and e["role"] == "dispatcher" for e in timeline)
    esc = timeline[5]
    assert (esc["from_step"], esc["to_step"], esc["level"], esc["note"]) == (
        "handling",
        "accepted",
        "village",
        "升级到村",
    )
    assert esc["data"]["from_level"] == "grid"
    assert set(case["time_in"]["levels"]) == {"grid", "village"}
    events = wait_for(lambda: (e := _stream(redis_url)) and len(e) >= 13 and e, what="13 events")
    assert [e["type"] for e in events] == ["case.created"] + ["case.changed"] * 12
    assert [e.get("action") for e in events[1:]] == [a for a, _, _ in steps]


def test_illegal_transition_is_409_listing_the_allowed(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    tok = token("dispatcher")
    lon, lat, _ = inner_point(demo_db)
    code = _post(client, tok, case_body(lon, lat)).json()["code"]
    r = _act(client, tok, code, "close", outcome="mediated")
    assert r.status_code == 409
    assert r.json()["allowed"] == ["accept", "reject"] and r.json()["field"] == "action"
    assert (
        _count(demo_db, "SELECT count(*) FROM case_events e JOIN cases c ON c.id = e.case_id WHERE c.code = %s", code)
        == 1
    )


def test_stale_version_is_refused(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    tok = token("dispatcher")
    lon, lat, _ = inner_point(demo_db)
    code = _post(client, tok, case_body(lon, lat)).json()["code"]
    assert _act(client, tok, code, "accept", version=1).status_code == 200
    r = _act(client, tok, code, "reject", version=1, reason="not_dispute")
    assert r.status_code == 409 and r.json()["field"] == "version"
    assert r.json()["allowed"] == ["dispatch", "escalate", "close"]


def test_reject_as_duplicate_names_the_other_case(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    tok = token("dispatcher")
    lon, lat, _ = inner_point(demo_db)
    first = _post(client, tok, case_body(lon, lat)).json()["code"]
    second = _post(client, tok, case_body(lon, lat)).json()["code"]
    r = _act(client, tok, second, "reject", reason="duplicate", duplicate_of="150623-19990101-000001")
    assert r.status_code == 422 and r.json()["field"] == "duplicate_of"
    # a case of another town, to a dispatcher of this one: as a code that does not exist
    with psycopg.connect(demo_db) as conn:
        here = conn.execute("SELECT town_code FROM cases WHERE code = %s", (second,)).fetchone()[0]  # type: ignore[index]
        elsewhere = conn.execute(
            "SELECT code FROM cases WHERE town_code <> %s ORDER BY id LIMIT 1", (here,)
        ).fetchone()[0]  # type: ignore[index]
    local = token("dispatcher", area=here)
    r = _act(client, local, second, "reject", reason="duplicate", duplicate_of=elsewhere)
    assert r.status_code == 422 and r.json()["field"] == "duplicate_of"
    r = _act(client, tok, second, "reject", reason="duplicate", duplicate_of=first)
    assert r.status_code == 200 and r.json()["step"] == "rejected" and r.json()["duplicate_of"] == first
    # nothing is deleted: the rejected case stays, and can be taken back
    assert _act(client, tok, second, "reopen").json()["step"] == "reported"


def test_three_failed_attempts_propose_escalation(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    tok = token("dispatcher")
    lon, lat, _ = inner_point(demo_db)
    code = _post(client, tok, case_body(lon, lat)).json()["code"]
    for action, params in (("accept", {}), ("dispatch", {"assignee": {"kind": "unit", "id": "u"}}), ("start", {})):
        _act(client, tok, code, action, **params)
    answers = [_act(client, tok, code, "attempt", result="failed").json() for _ in range(3)]
    assert [a["attempts"] for a in answers] == [1, 2, 3]
    assert answers[-1]["proposal"] == "escalate" and "escalation_proposed" in answers[-1]["flags"]
    r = _act(client, tok, code, "attempt", result="failed")
    assert r.status_code == 409 and r.json()["allowed"] == ["escalate", "close"]


def test_escalation_through_all_levels(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    tok = token("admin")
    lon, lat, _ = inner_point(demo_db)
    code = _post(client, tok, case_body(lon, lat)).json()["code"]
    _act(client, tok, code, "accept")
    deadlines = []
    for level in ("village", "town", "banner"):
        case = _act(client, tok, code, "escalate").json()
        assert case["level"] == level and case["attempts"] == 0
        deadlines.append(case["deadline"])
    assert deadlines == sorted(deadlines)
    r = _act(client, tok, code, "escalate")
    assert r.status_code == 409 and "escalate" not in r.json()["allowed"]


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lon": None}, "lon"),
        ({"lat": 91}, "lat"),
        ({"lon": 181.5}, "lon"),
        ({"lon": "107.5"}, "lon"),
        ({"lon": 0.0, "lat": 0.0}, "lon"),  # a phone's GPS without a fix: outside China
        ({"lon": 2.35, "lat": 48.86}, "lon"),  # Paris
        ({"lat": 60.0}, "lat"),  # north of China
        ({"lon": 38.18, "lat": 107.48}, "lon"),  # lon and lat swapped
        ({"type": "unicorn"}, "type"),
        ({"type": "Bad Type"}, "type"),
        ({"description": "x" * 4001}, "description"),
        ({"description": "   "}, "description"),
        ({"channel": "fax"}, "channel"),
        ({"parties": [{"name": "张三"}] * 11}, "parties"),
        ({"parties": [{"name": "张三", "phone": "call me"}]}, "parties.0.phone"),
        ({"reported_at": "2026-11-22T10:00:00"}, "reported_at"),
        ({"reported_at": "2099-01-01T00:00:00+08:00"}, "reported_at"),
        ({"reported_at": (datetime.now(UTC) + timedelta(hours=3)).isoformat()}, "reported_at"),  # a clock hours ahead
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_intake_is_a_4xx_naming_the_field(
    client: TestClient, token: Callable[..., str], demo_db: str, change: dict, field: str
) -> None:
    lon, lat, _ = inner_point(demo_db)
    body = {k: v for k, v in {**case_body(lon, lat), **change}.items() if v is not None}
    before = _count(demo_db, "SELECT count(*) FROM cases")
    r = _post(client, token("dispatcher"), body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert _count(demo_db, "SELECT count(*) FROM cases") == before


def test_an_inactive_type_is_refused(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE case_types SET active = false WHERE code = 'seed_corn'")
    lon, lat, _ = inner_point(demo_db)
    r = _post(client, token("dispatcher"), case_body(lon, lat, type="seed_corn"))
    assert r.status_code == 422 and r.json()["field"] == "type"


def test_malformed_json_and_wrong_content_type(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    headers = keyed(auth(token("dispatcher")))
    r = client.post(
        "/api/v1/cases", content=b'{"type": "grassland", ', headers={**headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"] == "invalid"
    r = client.post(
        "/api/v1/cases",
        content=b"type=grassland",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415 and r.json()["field"] == "Content-Type"
    r = client.post("/api/v1/cases", content=b"[1, 2]", headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 422
    r = client.post(
        "/api/v1/cases/150623-20261122-000001/transitions",
        content=b"accept",
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert r.status_code == 415


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "explode"}, "action"),
        ({"action": "close", "outcome": "won"}, "outcome"),
        ({"action": "accept", "note": "n" * 2001}, "note"),
        ({"action": "evaluate", "satisfaction": 9}, "satisfaction"),
        ({"action": "dispatch", "assignee": {"kind": "van", "id": "v1"}}, "assignee.kind"),
    ],
)
def test_bad_transition_input(
    client: TestClient, token: Callable[..., str], demo_db: str, body: dict, field: str
) -> None:
    tok = token("dispatcher")
    lon, lat, _ = inner_point(demo_db)
    code = _post(client, tok, case_body(lon, lat)).json()["code"]
    r = client.post(f"/api/v1/cases/{code}/transitions", json=body, headers=auth(tok))
    assert r.status_code == 422 and r.json()["field"] == field


def test_unknown_and_malformed_codes(client: TestClient, token: Callable[..., str]) -> None:
    tok = token("dispatcher")
    r = client.get("/api/v1/cases/150623-19990101-000001", headers=auth(tok))
    assert r.status_code == 404 and r.json()["field"] == "code"
    assert _act(client, tok, "150623-19990101-000001", "accept").status_code == 404
    assert client.get("/api/v1/cases/not-a-code", headers=auth(tok)).status_code == 422


# --- idempotency -------------------------------------------------------------------------------


def test_idempotency_key_returns_the_same_case(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    tok = token("grid_worker")
    lon, lat, _ = inner_point(demo_db)
    body = case_body(lon, lat)
    first = _post(client, tok, body, **{"Idempotency-Key": "phone-42-report-7"})
    again = _post(client, tok, body, **{"Idempotency-Key": "phone-42-report-7"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["code"] == first.json()["code"]
    other = _post(client, tok, {**body, "description": "另一件事"}, **{"Idempotency-Key": "phone-42-report-7"})
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"  # 422 (issue 13; was 409)
    # keys are per token: another phone may use the same key
    assert _post(client, token("grid_worker"), body, **{"Idempotency-Key": "phone-42-report-7"}).status_code == 201


def test_concurrent_retries_with_one_key_make_one_case(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    tok = token("grid_worker")
    lon, lat, _ = inner_point(demo_db, offset=7)
    body = case_body(lon, lat, description="并发重试")
    n = 12
    barrier = threading.Barrier(n)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def retry() -> None:
        barrier.wait()
        r = _post(client, tok, body, **{"Idempotency-Key": "retry-storm"})
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=retry) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers) == [200] * (n - 1) + [201]
    assert len({r.json()["code"] for r in answers}) == 1
    assert _count(demo_db, "SELECT count(*) FROM cases WHERE description = '并发重试'") == 1


# --- concurrency and outages on the real server --------------------------------------------------


def test_two_clerks_closing_at_once_exactly_one_wins(
    live_server: Callable[..., Any], demo_db: str, redis_url: str, token: Callable[..., str]
) -> None:
    srv = live_server(demo_db, redis_url, YITU_SCHEDULER_INTERVAL="0")
    headers = auth(token("dispatcher"))
    lon, lat, _ = inner_point(demo_db)

    def close(code: str, barrier: threading.Barrier, answers: list[httpx.Response], outcome: str) -> None:
        barrier.wait()
        answers.append(
            httpx.post(
                f"{srv.url}/api/v1/cases/{code}/transitions",
                json={"action": "close", "outcome": outcome},
                headers=headers,
                timeout=30,
            )
        )

    for round_ in range(8):
        code = httpx.post(
            srv.url + "/api/v1/cases", json=case_body(lon, lat), headers=keyed(headers), timeout=30
        ).json()["code"]
        for action, params in (("accept", {}), ("dispatch", {"assignee": {"kind": "unit", "id": "u"}}), ("start", {})):
            httpx.post(
                f"{srv.url}/api/v1/cases/{code}/transitions",
                json={"action": action, **params},
                headers=headers,
                timeout=30,
            ).raise_for_status()
        barrier = threading.Barrier(2)
        answers: list[httpx.Response] = []
        threads = [threading.Thread(target=close, args=(code, barrier, answers, o)) for o in ("mediated", "withdrawn")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r.status_code for r in answers) == [200, 409], (round_, [r.text for r in answers])
        loser = next(r for r in answers if r.status_code == 409).json()
        assert loser["allowed"] == ["evaluate", "reopen"]
        assert (
            _count(
                demo_db,
                "SELECT count(*) FROM case_events e JOIN cases c ON c.id = e.case_id "
                "WHERE c.code = %s AND e.action = 'close'",
                code,
            )
            == 1
        )


def test_a_redis_outage_never_blocks_or_loses_a_write(demo_db: str, tmp_path: Path, token: Callable[..., str]) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    settings = settings_for(demo_db, dead_redis, tmp_path)
    tok = token("dispatcher")
    lon, lat, _ = inner_point(demo_db)
    with TestClient(create_app(settings)) as c:
        started = time.monotonic()
        codes = [_post(c, tok, case_body(lon, lat)).json()["code"] for _ in range(5)]
        code = codes[0]
        assert _act(c, tok, code, "accept").status_code == 200
        elapsed = time.monotonic() - started
    assert elapsed < 5
    assert _count(demo_db, "SELECT count(*) FROM cases WHERE code = ANY(%s)", codes) == 5
    assert (
        _count(demo_db, "SELECT count(*) FROM case_events e JOIN cases c ON c.id = e.case_id WHERE c.code = %s", code)
        == 2
    )


def test_openapi_lists_the_case_endpoints(client: TestClient, token: Callable[..., str]) -> None:
    paths = client.get("/openapi.json", headers=auth(token("viewer"))).json()["paths"]  # signed-in callers only
    for path in (
        "/api/v1/cases",
        "/api/v1/cases/{code}",
        "/api/v1/cases/{code}/transitions",
        "/api/v1/areas/{code}",
        "/api/v1/areas/{code}/children",
        "/api/v1/areas/{code}/stats",
        "/api/v1/areas/{code}/cases",
        "/api/v1/stats/ranking",
    ):
        assert path in paths


def test_concurrent_intakes_on_a_new_day_get_distinct_codes(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    tok = token("dispatcher")
    lon, lat, _ = inner_point(demo_db)
    n = 16
    barrier = threading.Barrier(n)
    codes: list[str] = []

    def report() -> None:
        barrier.wait()
        r = _post(client, tok, case_body(lon, lat, reported_at="2025-06-01T04:00:00+00:00"))
        assert r.status_code == 201, r.text
        codes.append(r.json()["code"])

    threads = [threading.Thread(target=report) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(codes)) == n and all(c.startswith("150623-20250601-") for c in codes)
    assert min(int(c.rsplit("-", 1)[1]) for c in codes) == 1

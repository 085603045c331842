"""Idempotency-Key on every write (geodata/idempotency.py, api/idempotency.py): a retry gets the first
answer and nothing happens twice; a reused key with another request is a 422 naming the header; a
report without a key is a 428 naming it; keys are the caller's own; old keys are pruned. All on the
real PostGIS and Redis, over HTTP (TestClient) and, for the waiting of two requests with one key,
on two connections of our own."""

from __future__ import annotations

import http.server
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from fastapi.testclient import TestClient

from callbacks import dispatch as page
from dashboard.app import create_app
from geodata import idempotency
from services.identity import Principal
from services.scheduler import prune_keys

from .cases_fixtures import auth, case_body, inner_point, settings_for, token  # noqa: F401
from .helpers import all_published, keyed, wait_for
from .test_dispatch import new_case, one, place_van, stream

REPLAYED = "idempotency-replayed"


@pytest.fixture
def client(demo_db: str, redis_url: str, tmp_path: Path) -> Any:
    with TestClient(create_app(settings_for(demo_db, redis_url, tmp_path))) as c:
        yield c


def _key() -> str:
    return f"idem-{uuid.uuid4().hex}"


def _act(c: TestClient, tok: str, code: str, key: str | None, **body: Any) -> Any:
    headers = auth(tok) if key is None else {**auth(tok), "Idempotency-Key": key}
    return c.post(f"/api/v1/cases/{code}/transitions", json=body, headers=headers)


def _case(c: TestClient, tok: str, demo_db: str, offset: int = 0, accept: bool = True) -> str:
    lon, lat, _ = inner_point(demo_db, offset=offset)
    return new_case(c, tok, lon, lat, accept=accept)


def _dispatched(c: TestClient, tok: str, code: str) -> None:
    """accepted → dispatched (to a unit), ready to start."""
    r = _act(c, tok, code, None, action="dispatch", assignee={"kind": "unit", "id": "u-1"})
    assert r.status_code == 200, r.text


def _in_progress(c: TestClient, tok: str, code: str) -> None:
    _dispatched(c, tok, code)
    assert _act(c, tok, code, None, action="start").status_code == 200


# --- reports -------------------------------------------------------------------------------------


def test_a_report_without_a_key_is_refused_428_naming_the_header(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    tok = token("grid_worker")
    lon, lat, _ = inner_point(demo_db)
    before = one(demo_db, "SELECT count(*) FROM cases")
    r = client.post("/api/v1/cases", json=case_body(lon, lat), headers=auth(tok))
    assert r.status_code == 428, r.text
    assert r.json()["error"] == "precondition_required" and r.json()["field"] == "Idempotency-Key"
    assert "Idempotency-Key" in r.json()["message"]
    assert one(demo_db, "SELECT count(*) FROM cases") == before  # nothing written
    # who asks comes first: a role that may not report gets its 403, with or without a key
    assert client.post("/api/v1/cases", json=case_body(lon, lat), headers=auth(token("viewer"))).status_code == 403
    # the same report with a key: written once, replayed once
    headers = keyed(auth(tok))
    first = client.post("/api/v1/cases", json=case_body(lon, lat), headers=headers)
    again = client.post("/api/v1/cases", json=case_body(lon, lat), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["code"] == first.json()["code"]
    assert REPLAYED not in first.headers and again.headers[REPLAYED] == "true"
    other = client.post("/api/v1/cases", json=case_body(lon, lat, description="另一件事"), headers=headers)
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key", other.text
    assert one(demo_db, "SELECT count(*) FROM cases") == before + 1


@pytest.mark.parametrize(
    "bad",
    ["x" * 201, "has space", "tab\tinside", "bell\x07", "del\x7f", "中文键", ""],
    ids=["too-long", "space", "tab", "control", "delete", "non-ascii", "empty"],
)
def test_a_hostile_key_is_a_422_naming_the_header(
    client: TestClient, token: Callable[..., str], demo_db: str, bad: str
) -> None:
    tok = token("admin")
    lon, lat, _ = inner_point(demo_db)
    code = _case(client, tok, demo_db)
    _dispatched(client, tok, code)
    before = one(demo_db, "SELECT count(*) FROM cases")
    raw = bad.encode("utf-8")  # sent as the bytes they are (httpx would refuse to encode some)
    headers = [(b"authorization", f"Bearer {tok}".encode()), (b"idempotency-key", raw)]
    for path, body in (
        ("/api/v1/cases", case_body(lon, lat)),
        (f"/api/v1/cases/{code}/transitions", {"action": "start"}),
        ("/api/v1/vans/positions", {"positions": [{"van": "V01", "lon": lon, "lat": lat, "time": _now_iso()}]}),
        ("/api/v1/dispatches", {"case": code, "van": "V01"}),
    ):
        r = client.post(path, json=body, headers=headers)
        assert r.status_code == 422, (path, bad, r.text)
        assert r.json()["field"] == "Idempotency-Key", (path, r.text)
    assert one(demo_db, "SELECT count(*) FROM cases") == before
    assert one(demo_db, "SELECT step FROM cases WHERE code = %s", code) == "dispatched"  # not started
    assert one(demo_db, "SELECT count(*) FROM idempotency_keys") == 0


def _now_iso() -> str:
    return (datetime.now(UTC) - timedelta(seconds=30)).isoformat()


# --- transitions ---------------------------------------------------------------------------------


def test_a_retried_escalation_climbs_one_level_and_a_retried_attempt_counts_once(
    client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    tok = token("dispatcher")
    code = _case(client, tok, demo_db)
    _in_progress(client, tok, code)
    key = _key()
    first = _act(client, tok, code, key, action="attempt", result="failed", note="第一次调解")
    again = _act(client, tok, code, key, action="attempt", result="failed", note="第一次调解")
    assert first.status_code == again.status_code == 200, again.text
    assert again.json() == first.json() and first.json()["attempts"] == 1
    assert REPLAYED not in first.headers and again.headers[REPLAYED] == "true"
    assert one(demo_db, "SELECT attempts FROM cases WHERE code = %s", code) == 1
    key = _key()
    up = _act(client, tok, code, key, action="escalate", note="上报")
    up_again = _act(client, tok, code, key, action="escalate", note="上报")
    assert up.status_code == up_again.status_code == 200
    assert up.json()["level"] == up_again.json()["level"] == "village"
    assert one(demo_db, "SELECT level FROM cases WHERE code = %s", code) == "village"  # one level, not two
    audit = one(
        demo_db,
        "SELECT count(*) FROM case_events e JOIN cases c ON c.id = e.case_id WHERE c.code = %s AND action = %s",
        code,
        "escalate",
    )
    assert audit == 1
    all_published(demo_db)
    changed = [e for e in stream(redis_url, "case.changed") if e["code"] == code and e["action"] == "escalate"]
    assert len(changed) == 1  # the replay published nothing
    # The same key with another request: 422 naming the header, nothing done.
    other = _act(client, tok, code, key, action="escalate", note="再上报")
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key", other.text
    elsewhere = _case(client, tok, demo_db, offset=5)
    _dispatched(client, tok, elsewhere)
    moved = _act(client, tok, elsewhere, key, action="start")  # another case (another path) is another request
    assert moved.status_code == 422 and moved.json()["field"] == "Idempotency-Key"
    assert one(demo_db, "SELECT level FROM cases WHERE code = %s", code) == "village"
    assert one(demo_db, "SELECT step FROM cases WHERE code = %s", elsewhere) == "dispatched"


def test_a_refused_request_keeps_no_answer_so_its_retry_is_asked_again(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    tok = token("dispatcher")
    code = _case(client, tok, demo_db, accept=False)
    key = _key()
    refused = _act(client, tok, code, key, action="start")  # a reported case cannot start
    assert refused.status_code == 409
    assert one(demo_db, "SELECT count(*) FROM idempotency_keys") == 0  # rolled back with the refusal
    assert _act(client, tok, code, None, action="accept").status_code == 200
    _dispatched(client, tok, code)
    retried = _act(client, tok, code, key, action="start")  # the same request, now allowed
    assert retried.status_code == 200 and retried.json()["step"] == "handling"
    assert REPLAYED not in retried.headers


def test_two_requests_with_one_key_at_once_make_one_change(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    tok = token("dispatcher")
    code = _case(client, tok, demo_db)
    _in_progress(client, tok, code)
    key = _key()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _act(client, tok, code, key, action="attempt", result="failed"), range(8)))
    assert {r.status_code for r in answers} == {200}, [r.text for r in answers]
    assert len({r.text for r in answers}) == 1  # every one the first one's answer, to the byte
    assert sum(REPLAYED not in r.headers for r in answers) == 1
    assert one(demo_db, "SELECT attempts FROM cases WHERE code = %s", code) == 1


def test_the_second_claim_waits_for_the_first_and_replays_what_it_committed(demo_db: str) -> None:
    """On two connections: the second claim of a key blocks on the first transaction's row until it
    commits, then returns the stored answer; after a rollback it gets the claim itself."""
    got: list[idempotency.Answer | None] = []
    with (
        psycopg.connect(demo_db) as first,
        psycopg.connect(demo_db) as second,
        psycopg.connect(demo_db, autocommit=True) as watch,
    ):
        pid = second.info.backend_pid

        def waiting() -> bool:
            row = watch.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            return row is not None and row[0] == "Lock"

        def claim_second(key: idempotency.Key) -> threading.Thread:
            def run() -> None:
                got.append(idempotency.claim(second, key))
                second.commit()

            thread = threading.Thread(target=run)
            thread.start()
            wait_for(waiting, what="the second claim waiting on the first")
            return thread

        key = idempotency.Key.of(42, "wait-for-me", "POST /test", {"a": 1})
        assert key is not None
        assert idempotency.claim(first, key) is None  # claimed; the transaction stays open
        waiter = claim_second(key)
        assert not got  # still waiting
        idempotency.record(first, key, 201, {"id": 7, "text": "首次"})
        first.commit()
        waiter.join(10)
        assert got == [idempotency.Answer(201, {"id": 7, "text": "首次"})]
        # After the first one's rollback, the waiter gets the claim itself.
        other = idempotency.Key.of(42, "rolled-back", "POST /test", {"a": 1})
        assert other is not None
        assert idempotency.claim(first, other) is None
        got.clear()
        waiter = claim_second(other)
        first.rollback()
        waiter.join(10)
        assert got == [None]
    mismatch = idempotency.Key.of(42, "wait-for-me", "POST /test", {"a": 2})
    with psycopg.connect(demo_db) as conn, pytest.raises(idempotency.KeyMismatch) as refused:
        idempotency.claim(conn, mismatch)
    assert refused.value.field == "Idempotency-Key"


def test_two_callers_keys_never_collide(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    one_tok, other_tok = token("dispatcher", name="甲"), token("dispatcher", name="乙")
    a, b = _case(client, one_tok, demo_db, offset=1), _case(client, one_tok, demo_db, offset=2)
    _dispatched(client, one_tok, a)
    _dispatched(client, one_tok, b)
    key = "shared-key-0001"
    ra = _act(client, one_tok, a, key, action="start")
    rb = _act(client, other_tok, b, key, action="start")  # another caller, the same key: its own request
    assert (ra.status_code, rb.status_code) == (200, 200), rb.text
    assert REPLAYED not in rb.headers
    assert one(demo_db, "SELECT count(*) FROM cases WHERE code IN (%s, %s) AND step = 'handling'", a, b) == 2


# --- dispatches ----------------------------------------------------------------------------------


def test_a_retried_dispatch_sends_one_van_and_a_retried_end_counts_one_attempt(
    client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    tok = token("dispatcher")
    lon, lat, _ = inner_point(demo_db, offset=7)
    code = new_case(client, tok, lon, lat)
    place_van(demo_db, "V02", lon + 0.001, lat)
    key = {**auth(tok), "Idempotency-Key": _key()}
    body = {"case": code, "van": "V02", "note": "近"}
    first = client.post("/api/v1/dispatches", json=body, headers=key)
    again = client.post("/api/v1/dispatches", json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json() == first.json() and again.headers[REPLAYED] == "true"
    assert one(demo_db, "SELECT count(*) FROM dispatches WHERE case_code = %s", code) == 1
    all_published(demo_db)
    assert len([e for e in stream(redis_url, "dispatch.created") if e["case"] == code]) == 1
    other = client.post("/api/v1/dispatches", json={**body, "van": "V03"}, headers=key)
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
    did = first.json()["id"]
    # on site, then the visit ends with a failed attempt, sent twice
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE dispatches SET status = 'on_site', arrived_at = now() WHERE id = %s", (did,))
        conn.execute("UPDATE vans SET status = 'on_site' WHERE id = 'V02'")
        conn.execute("UPDATE cases SET step = 'handling' WHERE code = %s", (code,))
    end_key = {**auth(tok), "Idempotency-Key": _key()}
    ended = client.post(f"/api/v1/dispatches/{did}/end", json={"result": "failed"}, headers=end_key)
    ended_again = client.post(f"/api/v1/dispatches/{did}/end", json={"result": "failed"}, headers=end_key)
    assert (ended.status_code, ended_again.status_code) == (200, 200), ended_again.text
    assert ended_again.json() == ended.json() and ended_again.headers[REPLAYED] == "true"
    assert one(demo_db, "SELECT attempts FROM cases WHERE code = %s", code) == 1
    # without a key the retry is a new request: refused, the visit is over
    assert client.post(f"/api/v1/dispatches/{did}/end", json={"result": "failed"}, headers=auth(tok)).status_code == 409


def test_a_retried_cancel_answers_as_the_first(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    tok = token("dispatcher")
    lon, lat, _ = inner_point(demo_db, offset=9)
    code = new_case(client, tok, lon, lat)
    place_van(demo_db, "V03", lon + 0.001, lat)
    did = client.post("/api/v1/dispatches", json={"case": code, "van": "V03"}, headers=auth(tok)).json()["id"]
    key = {**auth(tok), "Idempotency-Key": _key()}
    first = client.post(f"/api/v1/dispatches/{did}/cancel", headers=key)  # no body: fine too
    again = client.post(f"/api/v1/dispatches/{did}/cancel", headers=key)
    assert (first.status_code, again.status_code) == (200, 200), again.text
    assert first.json()["status"] == "cancelled" and again.json() == first.json()
    assert again.headers[REPLAYED] == "true"
    with_note = client.post(f"/api/v1/dispatches/{did}/cancel", json={"note": "改派"}, headers=key)
    assert with_note.status_code == 422 and with_note.json()["field"] == "Idempotency-Key"


def test_the_dispatch_pages_double_send_makes_one_dispatch(client: TestClient, demo_db: str) -> None:
    svc, rt = client.app.state.services, client.app.state.cases_runtime  # type: ignore[attr-defined]
    with psycopg.connect(demo_db) as conn:
        conn.execute(
            "UPDATE vans SET geom = ST_SetSRID(ST_MakePoint(107.4812, 38.1834), 4326), last_seen_at = now(), "
            "status = 'available' WHERE id IN ('V01', 'V04')"
        )
    disp = Principal(1, "值班调度", "dispatcher", None, kind="user", session_id="1")
    code = page.waiting(svc, disp, datetime.now(UTC))[0]["code"]
    form = "form-key-1"  # the page's send key (Ids.SEND_KEY), the same in both callbacks
    with ThreadPoolExecutor(2) as pool:
        clicks = list(pool.map(lambda _: page.send(svc, rt, disp, code, "V01", "zh-CN", form), range(2)))
    assert [c["ok"] for c in clicks] == [True, True], clicks
    assert clicks[0]["id"] == clicks[1]["id"]
    assert one(demo_db, "SELECT count(*) FROM dispatches WHERE case_code = %s", code) == 1
    # a click on another van with the same form is a request of its own: refused, the case has its van
    other = page.send(svc, rt, disp, code, "V04", "zh-CN", form)
    assert other["ok"] is False and other["field"] == "case"
    assert one(demo_db, "SELECT count(*) FROM dispatches") == 1
    assert one(demo_db, "SELECT count(*) FROM idempotency_keys WHERE scope = -1") == 1  # the person's scope


# --- GPS -----------------------------------------------------------------------------------------


def test_a_retried_gps_batch_is_stored_once_and_answered_as_the_first(
    client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    tok = token("admin")
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    pings = [
        {"van": "V04", "lon": 107.48 + i * 0.001, "lat": 38.18, "time": (t0 + timedelta(seconds=10 * i)).isoformat()}
        for i in range(5)
    ]
    key = {**auth(tok), "Idempotency-Key": _key()}
    before = one(demo_db, "SELECT count(*) FROM van_positions WHERE van_id = 'V04'")
    first = client.post("/api/v1/vans/positions", json={"positions": pings}, headers=key)
    again = client.post("/api/v1/vans/positions", json={"positions": pings}, headers=key)
    assert (first.status_code, again.status_code) == (200, 200), again.text
    assert first.json() == again.json() == {"received": 5, "stored": 5, "duplicates": 0, "moved": ["V04"]}
    assert again.headers[REPLAYED] == "true"
    assert one(demo_db, "SELECT count(*) FROM van_positions WHERE van_id = 'V04'") == before + 5
    all_published(demo_db)
    moved = [e for e in stream(redis_url, "van.moved") if e.get("van") == "V04"]
    assert len(moved) == 5  # one per stored ping, none for the replay
    other = client.post("/api/v1/vans/positions", json={"positions": pings[:4]}, headers=key)
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"


# --- pruning -------------------------------------------------------------------------------------


def test_keys_are_pruned_after_the_days_reports_keys_too(
    demo_db: str, redis_url: str, tmp_path: Path, token: Callable[..., str]
) -> None:
    settings = settings_for(demo_db, redis_url, tmp_path, idempotency_days=3)
    with TestClient(create_app(settings)) as c:
        tok = token("dispatcher")
        lon, lat, _ = inner_point(demo_db)
        report_key = keyed(auth(tok))
        made = c.post("/api/v1/cases", json=case_body(lon, lat), headers=report_key)
        assert made.status_code == 201
        code = made.json()["code"]
        act_key = _key()
        assert _act(c, tok, code, act_key, action="accept").status_code == 200
        with psycopg.connect(demo_db) as conn:  # both keys 4 days old; one more made just now
            conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '4 days'")
            conn.execute("UPDATE case_idempotency_keys SET created_at = now() - interval '4 days'")
        fresh = _key()
        assert _act(c, tok, code, fresh, action="dispatch", assignee={"kind": "unit", "id": "u"}).status_code == 200
        pruned = prune_keys(c.app.state.services)  # type: ignore[attr-defined]
        assert pruned == {"keys": 1, "report_keys": 1}
        assert one(demo_db, "SELECT array_agg(key) FROM idempotency_keys") == [fresh]
        # a forgotten key is a new request: the report is made again (the client waited too long)
        again = c.post("/api/v1/cases", json=case_body(lon, lat), headers=report_key)
        assert again.status_code == 201 and again.json()["code"] != code


def test_the_setting_is_validated(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from services.settings import Settings

    assert Settings(_env_file=None, home=tmp_path).idempotency_days == 7  # type: ignore[call-arg]
    for bad in (0, -1, 1000):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, home=tmp_path, idempotency_days=bad)  # type: ignore[call-arg]


# --- the simulator's client ------------------------------------------------------------------------


class _Flaky(http.server.BaseHTTPRequestHandler):
    """A server that loses the first answer (closes the connection), then says 503 with a
    Retry-After, then answers 201: what a phone sees through a crash and a restart."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_POST(self) -> None:  # the http.server naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append((self.path, self.headers.get("Idempotency-Key")))
        n = len(type(self).seen)
        if n == 1:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # the answer is lost
            return
        status, body = (503, b'{"error": "outcome_unknown"}') if n == 2 else (201, b'{"id": 1}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 503:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_simulator_sends_a_write_again_with_the_same_key_until_it_is_answered() -> None:
    from collections import Counter

    from sim.client import Api, retry_after

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    counts: Counter[str] = Counter()
    api = Api(f"http://127.0.0.1:{server.server_address[1]}", counts)
    try:
        a = api.call("POST", "/api/v1/dispatches", "tok", {"case": "x", "van": "V01"})
        assert a is not None and a.status == 201, a
        keys = {k for _, k in _Flaky.seen}
        assert len(_Flaky.seen) == 3 and len(keys) == 1 and None not in keys  # one key, three sends
        assert counts["write_retries"] == 2
        _Flaky.seen.clear()
        api.call("POST", "/api/v1/cases", "tok", {}, key="sim-run-1")  # the caller's key is the one sent
        assert _Flaky.seen[0][1] == "sim-run-1"
    finally:
        api.close()
        server.shutdown()
    assert retry_after("3") == 3.0 and retry_after("3600") == 5.0  # honoured, with a bound
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 1.0 and retry_after("-1") == 0.0

"""/healthz on the real servers: ok, 503 naming the failing part, and recovery without a restart.

The parts and versions are for a signed-in admin (here a bearer token the server keeps cached for
the length of a test, so it stays known while the database is down); anyone else gets only
``{"status": "ok"}`` or 503 ``{"status": "degraded"}``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import psycopg
from fastapi.testclient import TestClient

from cli.stack import EmbeddedStack
from dashboard.app import create_app
from geodata.migrate import migrate
from services.settings import Settings

from .conftest import make_token
from .helpers import free_port, wait_for, with_redis_db


def test_healthz_ok_reports_the_postgis_version(app_settings: Settings, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        version = conn.execute("SELECT postgis_lib_version()").fetchone()[0]
    admin = make_token(db_url, "admin")
    with TestClient(create_app(app_settings)) as client:
        r = client.get("/healthz", headers={"Authorization": f"Bearer {admin}"})
        anonymous = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert _parts(body) == {"status": "ok", "postgis": version, "redis": "ok"}
    assert set(body["scheduler"]["jobs"]) == {"overdue", "reconcile", "partitions", "idempotency", "warnings", "trails"}
    assert body["rows_in_default_partitions"] == {"case_events": 0, "van_positions": 0}
    assert body["outbox"]["pending"] == 0 and set(body["outbox"]["relay"]) >= {"leader", "last_run", "last_error"}
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}


ADMIN: dict[str, str] = {}  # the admin token of the test's server, by its URL


def _serve_with_admin(live_server, dsn: str, redis_url: str, runtime_url: str | None = None, **extra: str):  # type: ignore[no-untyped-def]
    """A server with an admin token it keeps cached for the test (so it works while PostgreSQL is down)."""
    token = make_token(dsn, "admin", name="monitor")
    srv = live_server(dsn, redis_url, runtime_url=runtime_url, YITU_AUTH_CACHE_SECONDS="3600", **extra)
    ADMIN[srv.url] = token
    return srv


def _health(srv) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    token = ADMIN.get(srv.url)
    r = srv.get("/healthz", headers={"Authorization": f"Bearer {token}"} if token else {})
    return r.status_code, r.json()


def _ok(srv) -> dict | None:  # type: ignore[no-untyped-def,type-arg]
    status, body = _health(srv)
    return _parts(body) if status == 200 else None


def _parts(body: dict) -> dict:  # type: ignore[type-arg]
    """The parts' answers, without the scheduler's, the partitions' and the outbox's figures beside them."""
    return {k: v for k, v in body.items() if k not in ("scheduler", "rows_in_default_partitions", "outbox")}


def test_redis_outage_gives_503_then_recovers(live_server, scratch_stack: EmbeddedStack, db_url: str) -> None:  # type: ignore[no-untyped-def]
    srv = _serve_with_admin(live_server, db_url, with_redis_db(scratch_stack.redis_url(), 0))
    assert _health(srv)[0] == 200

    scratch_stack.stop_redis()
    status, body = _health(srv)
    assert status == 503
    assert body["failing"] == ["redis"]
    assert body["status"] == "unavailable" and body["redis"].startswith("unreachable")
    assert body["postgis"][0].isdigit()  # the database side still answers with its version

    anonymous = srv.get("/healthz", cookies={})
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "degraded"}

    scratch_stack.start_redis()
    wait_for(
        lambda: _ok(srv) == {"status": "ok", "postgis": body["postgis"], "redis": "ok"},
        what="healthz 200 after Redis came back",
    )
    assert srv.proc.poll() is None


def test_postgis_outage_gives_503_then_recovers(live_server, scratch_stack: EmbeddedStack, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    migrate(scratch_stack.database_url())
    srv = _serve_with_admin(
        live_server,
        scratch_stack.database_url(),
        redis_url,
        runtime_url=scratch_stack.runtime_url(),
        YITU_DB_CONNECT_TIMEOUT="1",
    )
    status, body = _health(srv)
    assert status == 200
    version = body["postgis"]

    scratch_stack.stop_pg()
    status, body = _health(srv)
    assert status == 503
    assert body["failing"] == ["postgis"]
    assert body["redis"] == "ok"
    assert not body["postgis"][0].isdigit()

    scratch_stack.start_pg()
    wait_for(
        lambda: _ok(srv) == {"status": "ok", "postgis": version, "redis": "ok"},
        what="healthz 200 after PostgreSQL came back",
    )
    assert srv.proc.poll() is None


def test_app_starts_while_both_services_are_down(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(
        f"postgresql://nobody:x@127.0.0.1:{free_port()}/none",
        f"redis://127.0.0.1:{free_port()}/0",
        YITU_DB_CONNECT_TIMEOUT="1",
        YITU_REDIS_TIMEOUT="1",
    )
    # Nobody can be known without the database: the answer is the anonymous one, and the parts
    # are in the server's log.
    status, body = _health(srv)
    assert status == 503 and body == {"status": "degraded"}
    wait_for(lambda: "health check failed postgis=" in srv.log(), what="the failing parts in the log")


def test_database_without_postgis_is_reported_not_crashed(live_server, fresh_db: str, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(fresh_db, redis_url)
    status, body = _health(srv)  # no tables, so no admin either: the anonymous answer, the detail in the log
    assert status == 503 and body == {"status": "degraded"}
    wait_for(lambda: "yitu db migrate" in srv.log(), what="the hint to migrate in the log")


def test_a_postgis_outage_answers_every_request_503_within_the_bound_however_many_queue(
    live_server,
    scratch_stack: EmbeddedStack,  # type: ignore[no-untyped-def]
    redis_url: str,
) -> None:
    """Not a request hanging for the pool's 30 s, nor a 500, nor a queue of batches each waiting a
    pool timeout: with PostgreSQL down and more clients than the intake lanes and the thread pool
    take at once, every answer is a 503 saying nothing was written, within its pool's timeout of
    its own sending: a report the connect timeout + 2 s, the other routes + 7 s (geodata/db.py)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from services.identity import create_token

    migrate(scratch_stack.database_url())
    with psycopg.connect(scratch_stack.database_url()) as conn:
        _, tok = create_token(conn, name="outage", role="dispatcher", area=None)
    connect_timeout = 1.0
    srv = live_server(
        scratch_stack.database_url(),
        redis_url,
        YITU_DB_CONNECT_TIMEOUT=str(connect_timeout),
        YITU_AUTH_CACHE_SECONDS="300",
    )  # the token stays known while the database is down
    h = {"Authorization": f"Bearer {tok}"}
    body = {"type": "neighbour", "description": "停电时的上报", "lon": 110.0, "lat": 40.0, "channel": "grid_app"}
    code = "150621-20261205-000001"  # no such case: the route needs the database to say so
    calls: dict[str, Callable[[httpx.Client], httpx.Response]] = {
        "report": lambda c: c.post("/api/v1/cases", json=body, headers={**h, "Idempotency-Key": uuid.uuid4().hex}),
        "transition": lambda c: c.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept"}, headers=h),
        "read": lambda c: c.get("/api/v1/cases", headers=h),
    }

    with httpx.Client(base_url=srv.url, timeout=60) as warm:
        assert calls["report"](warm).status_code == 409  # no territory in this database: refused, but answered
        assert calls["report"](warm).json()["error"] == "conflict"  # (now the token is cached)
        assert calls["transition"](warm).status_code == 404
    # 40 reports (more than a batch's lanes take at once) and 48 requests of the thread pool's
    # routes (more than its 40 threads), all at the same moment.
    kinds = ["report"] * 40 + ["transition"] * 24 + ["read"] * 24
    start = threading.Barrier(len(kinds))

    def one(kind: str) -> tuple[str, float, httpx.Response]:
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            start.wait()
            sent = time.monotonic()
            r = calls[kind](http)
            return kind, time.monotonic() - sent, r

    scratch_stack.stop_pg()
    try:
        with ThreadPoolExecutor(len(kinds)) as pool:
            answers = list(pool.map(one, kinds))
    finally:
        scratch_stack.start_pg()
    slack = 1.5  # for a busy test machine: 88 answers are made at about the same moment
    bound = {"report": connect_timeout + 2.0 + slack, "transition": connect_timeout + 7.0 + slack}
    bound["read"] = bound["transition"]
    for kind, took, r in answers:
        assert r.status_code == 503, (kind, r.text)
        # "nothing was written, try again" (the handler and the intake lanes alike)
        assert r.json()["error"] == "service_unavailable" and " written" in r.json()["message"], (kind, r.text)
        assert r.headers["retry-after"] == "5"
        assert took < bound[kind], (kind, took, sorted(round(t, 2) for _, t, _ in answers))
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        wait_for(lambda: calls["report"](http).status_code == 409, what="intake answering after PostgreSQL came back")
        wait_for(lambda: calls["transition"](http).status_code == 404, what="the other routes answering again")
    assert srv.proc.poll() is None

"""What runs beside the requests (services/scheduler.py): supervised jobs that survive any error,
the reconciler freeing vans stranded by a path that did not free them (the scheduler's own
auto-escalation included), and the history partitions made ahead and pruned behind."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from dashboard.app import create_app
from geodata import cases as store
from geodata import partitions
from services import dispatching
from services.scheduler import Job, Scheduler, deadline_rules

from .cases_fixtures import auth, inner_point, settings_for, token  # noqa: F401
from .helpers import wait_for
from .test_dispatch import new_case, offset, one, place_van, send, stream

# --- supervision ---------------------------------------------------------------------------------


def test_a_job_that_fails_in_any_way_runs_again_and_the_others_go_on() -> None:
    calls = {"flaky": 0, "steady": 0}
    lock = threading.Lock()

    def flaky() -> None:
        with lock:
            calls["flaky"] += 1
            n = calls["flaky"]
        if n == 1:
            raise KeyError("a bug in the first run")
        if n == 2:
            raise ZeroDivisionError("another one")

    def steady() -> None:
        with lock:
            calls["steady"] += 1

    flaky_job, steady_job = Job("flaky", 0.05, flaky, at_start=True), Job("steady", 0.05, steady)
    sched = Scheduler([flaky_job, steady_job])
    sched.start()
    try:
        wait_for(lambda: calls["flaky"] >= 4 and calls["steady"] >= 4, timeout=10, what="both jobs running on")
        status = sched.status()
        assert status["running"] is True and status["restarts"] == 0
        flaky_state = status["jobs"]["flaky"]
        assert flaky_state["failures"] == 2 and flaky_state["runs"] >= 4
        assert flaky_state["last_error"] is None and flaky_state["last_ok"] is not None  # recovered
        assert status["jobs"]["steady"]["failures"] == 0
    finally:
        sched.stop()
    assert not sched.status()["running"]


def test_the_apps_scheduler_shows_each_jobs_last_run_in_healthz(
    demo_db: str, redis_url: str, tmp_path: Path, token: Callable[..., str]
) -> None:
    settings = settings_for(demo_db, redis_url, tmp_path, scheduler_interval=0.2)
    admin = {"Authorization": f"Bearer {token('admin')}"}  # the jobs are an admin's to see
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").json() == {"status": "ok"}  # anyone: the status only

        def ran() -> dict[str, object] | None:
            body = c.get("/healthz", headers=admin).json()
            jobs = body.get("scheduler", {}).get("jobs", {})
            return body if jobs and all(j["last_ok"] for j in jobs.values()) else None

        body = wait_for(ran, timeout=20, what="every job run once")
        assert isinstance(body, dict)
        assert set(body["scheduler"]["jobs"]) == {
            "overdue",
            "reconcile",
            "partitions",
            "idempotency",
            "warnings",
            "trails",
        }
        assert body["scheduler"]["running"] is True
        assert body["rows_in_default_partitions"] == {"case_events": 0, "van_positions": 0}


# --- the reconciler ------------------------------------------------------------------------------


@pytest.fixture
def app_client(demo_db: str, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(demo_db, redis_url, tmp_path))) as c:
        yield c


def test_the_reconciler_frees_a_van_whose_case_was_escalated_without_freeing_it(
    app_client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    tok = token("dispatcher")
    lon, lat, _ = inner_point(demo_db)
    code = new_case(app_client, tok, lon, lat)
    place_van(demo_db, "V02", *offset(lon, lat, 2500))
    d = send(app_client, tok, code, "V02").json()
    # The case escalates through the store alone, as a process killed before its release would leave it.
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    with psycopg.connect(demo_db) as conn:
        store.transition(
            conn,
            code,
            "escalate",
            {},
            store.Actor("clerk", "dispatcher"),
            deadline_rules(svc.settings),
            datetime.now(UTC),
        )
    assert one(demo_db, "SELECT status FROM vans WHERE id = 'V02'") != "available"
    freed = dispatching.reconcile(svc)
    assert [(f["id"], f["van_id"], f["action"]) for f in freed] == [(d["id"], "V02", "escalate")]
    assert one(demo_db, "SELECT status FROM vans WHERE id = 'V02'") == "available"
    assert one(demo_db, "SELECT status, end_note FROM dispatches WHERE id = %s", d["id"]) == (
        "ended",
        "case escalate: visit over",
    )
    wait_for(  # published by the app's relay once committed (asynchronously)
        lambda: any(e.get("reason") == "escalate" and e["id"] == d["id"] for e in stream(redis_url, "dispatch.ended")),
        what="the dispatch.ended event",
    )
    assert dispatching.reconcile(svc) == []  # nothing left, nothing twice


def test_the_schedulers_own_auto_escalation_frees_the_van(
    demo_db: str, redis_url: str, tmp_path: Path, token: Callable[..., str]
) -> None:
    settings = settings_for(demo_db, redis_url, tmp_path, scheduler_interval=0.2, auto_escalate=True)
    tok = token("dispatcher")
    lon, lat, _ = inner_point(demo_db)
    with TestClient(create_app(settings_for(demo_db, redis_url, tmp_path))) as c:
        code = new_case(c, tok, lon, lat)
        place_van(demo_db, "V03", *offset(lon, lat, 2500))
        d = send(c, tok, code, "V03").json()
    with psycopg.connect(demo_db) as conn:  # the case's deadline passes
        conn.execute("UPDATE cases SET deadline = now() - interval '1 minute' WHERE code = %s", (code,))
    with TestClient(create_app(settings)):
        wait_for(
            lambda: one(demo_db, "SELECT status FROM dispatches WHERE id = %s", d["id"]) == "ended",
            timeout=20,
            what="the van freed after the scheduler escalated its case",
        )
    assert one(demo_db, "SELECT level FROM cases WHERE code = %s", code) == "village"
    assert one(demo_db, "SELECT status FROM vans WHERE id = 'V03'") == "available"


# --- partitions ----------------------------------------------------------------------------------


def _parts(dsn: str, parent: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass",
            (parent,),
        ).fetchall()
    return {r[0] for r in rows}


def test_partitions_are_made_ahead_so_nothing_lands_in_the_default(demo_db: str) -> None:
    db_url = demo_db
    now = datetime(2031, 11, 20, 12, tzinfo=UTC)
    with psycopg.connect(db_url) as conn:
        made = partitions.ensure_ahead(conn, now)
        assert made == 6  # 2031-11, -12 and 2032-01, for each of the two tables
        assert partitions.ensure_ahead(conn, now) == 0
    for table in partitions.HISTORY_TABLES:
        assert {f"{table}_y2031m11", f"{table}_y2031m12", f"{table}_y2032m01"} <= _parts(db_url, table)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO van_positions (van_id, recorded_at, geom) "
            "SELECT id, '2032-01-31 23:00+00', ST_SetSRID(ST_MakePoint(107.5, 38.2), 4326) FROM vans LIMIT 1"
        )
        assert one(demo_db, "SELECT count(*) FROM van_positions_y2032m01") == 0  # not committed yet
        conn.commit()
        assert one(demo_db, "SELECT count(*) FROM van_positions_y2032m01") == 1
        assert partitions.rows_in_default(conn) == {"case_events": 0, "van_positions": 0}


def test_old_gps_months_are_dropped_and_the_case_audit_never(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        for table in partitions.HISTORY_TABLES:
            conn.execute("SELECT yitu_ensure_month_partitions(%s::regclass, '2024-01-01', '2024-04-01')", (table,))
        conn.commit()
        assert partitions.drop_old_gps(conn, datetime(2025, 3, 10, tzinfo=UTC), 0) == []
        dropped = partitions.drop_old_gps(conn, datetime(2025, 3, 10, tzinfo=UTC), 12)
    # keep 12 whole months before March 2025: March 2024 onwards stays
    assert dropped == ["van_positions_y2024m01", "van_positions_y2024m02"]
    assert {"van_positions_y2024m03", "van_positions_y2024m04"} <= _parts(db_url, "van_positions")
    assert {f"case_events_y2024m0{m}" for m in (1, 2, 3, 4)} <= _parts(db_url, "case_events")

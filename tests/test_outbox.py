"""The transactional outbox and its relay (issue 13, item 1), on the real PostGIS and Redis.

Every change writes its events in its own transaction; one relay across all processes publishes
them in order with consecutive outbox ids, once: after a kill between commit and publish, through
a Redis outage, across a relay crash between XADD and the mark, and when the leader dies.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from cli.stack import EmbeddedStack
from dashboard.app import create_app
from geodata import cases, outbox
from geodata.warnings import WARNING_EVENT
from services import events
from services.relay import Relay
from services.scheduler import deadline_rules

from .cases_fixtures import auth, case_body, cases_settings, client, inner_point, settings_for, token  # noqa: F401
from .conftest import make_token
from .helpers import as_runtime, keyed, relay_running, stream_entries, wait_for, with_redis_db

CLERK = cases.Actor("clerk", "dispatcher", 0)


def _pending(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return outbox.pending(conn)


def _outboxed(dsn: str) -> list[tuple[str, dict[str, Any]]]:
    """The outbox's rows in the order they were written: (type, event)."""
    with psycopg.connect(dsn) as conn:
        return [(t, e) for t, e in conn.execute("SELECT type, event FROM outbox ORDER BY seq")]


def _append(dsn: str, *codes: str) -> None:
    """One committed transaction writing one ``case.changed`` event per code."""
    with psycopg.connect(dsn) as conn:
        outbox.append(conn, [{"type": "case.changed", "code": c} for c in codes])


def _codes(redis_url: str) -> list[str]:
    return [e.get("code") for _, _, e in stream_entries(redis_url)]


def _assert_consecutive_once(redis_url: str) -> list[tuple[int, str, dict[str, Any]]]:
    entries = stream_entries(redis_url)
    ids = [i for i, _, _ in entries]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids  # consecutive: nothing twice, no gap
    return entries


@pytest.fixture
def lock_held(demo_db: str) -> Iterator[psycopg.Connection]:
    """The relay's lock, held by the test: no relay of any app may lead (publish) while it is."""
    conn = psycopg.connect(demo_db, autocommit=True)
    assert outbox.try_lead(conn)
    try:
        yield conn
    finally:
        conn.close()


def _report(url_or_client: Any, headers: dict[str, str], demo_db: str, i: int) -> str:
    lon, lat, _ = inner_point(demo_db, offset=i)
    body = case_body(lon, lat, description=f"outbox {i}")
    if isinstance(url_or_client, str):
        r = httpx.post(url_or_client + "/api/v1/cases", json=body, headers=keyed(headers), timeout=30)
    else:
        r = url_or_client.post("/api/v1/cases", json=body, headers=keyed(headers))
    assert r.status_code == 201, r.text
    return str(r.json()["code"])


# --- the outbox rows themselves --------------------------------------------------------------------


def test_the_intake_statement_writes_the_same_event_as_event_of(demo_db: str) -> None:
    """case.created is built in SQL (case_intake.sql) for the hot path: it must read exactly as the
    Python shape (geodata/cases.py event_of) every other event has."""
    lon, lat, _ = inner_point(demo_db)
    body = case_body(lon, lat)
    now = datetime(2026, 11, 22, 2, 0, 0, 123400, tzinfo=UTC)
    new = cases.NewCase(body["type"], body["description"], lon, lat, body["channel"], body["parties"])
    with psycopg.connect(demo_db) as conn:
        row, created = cases.intake(conn, new, CLERK, deadline_rules(settings_for(demo_db, "", Path("/tmp"))), now)
        (event,) = conn.execute("SELECT event::text FROM outbox WHERE type = 'case.created'").fetchone() or ("",)
    assert created
    expected = json.loads(orjson.dumps(cases.event_of("case.created", row, now, channel=row["channel"])))
    assert json.loads(event) == expected
    assert expected["at"] == "2026-11-22T02:00:00.123400+00:00"  # Python's isoformat, microseconds and all


def test_a_rolled_back_change_leaves_no_event_and_the_runtime_role_cannot_rewrite_one(demo_db: str) -> None:
    runtime = as_runtime(demo_db)
    with psycopg.connect(runtime) as conn:
        outbox.append(conn, [{"type": "case.changed", "code": "GONE"}])
        conn.rollback()
        outbox.append(conn, [{"type": "case.changed", "code": "KEPT"}])
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE outbox SET event = '{}'::json")
    assert [e["code"] for _, e in _outboxed(demo_db)] == ["KEPT"]


def test_events_are_stored_as_written_in_order_on_both_connections(demo_db: str) -> None:
    """The batch goes as one JSON text (geodata/outbox.py): each event's text is orjson's, to the byte,
    whatever it holds (quotes, backslashes, Chinese, nesting, a time), its type beside it, in order."""
    awkward = [
        {"type": "van.moved", "van": 'v"1', "note": 'back\\slash \\" and \u0000-free', "lon": 111.123456789012},
        {"type": "case.changed", "code": "150623-20261206-000001", "名": "张三", "grid": [None, ["a", {"b": 1}]]},
        {"type": "areas.changed", "at": datetime(2026, 12, 6, 8, 0, 0, 123456, tzinfo=UTC), "ok": True},
        {"code": "no type"},
    ]
    with psycopg.connect(demo_db) as conn:
        assert outbox.append(conn, awkward[:2]) == 2
        assert outbox.append(conn, []) == 0
        conn.commit()

    async def more() -> None:
        async with await psycopg.AsyncConnection.connect(demo_db) as conn:
            assert await outbox.append_async(conn, awkward[2:]) == 2
            await conn.commit()

    asyncio.run(more())
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute("SELECT type, event::text FROM outbox ORDER BY seq").fetchall()
    assert rows == [(str(e.get("type", "")), orjson.dumps(e, default=str).decode()) for e in awkward]


# --- published once, in order, whatever happened --------------------------------------------------


def test_changes_committed_while_no_relay_runs_go_out_when_one_starts_once_in_order(
    demo_db: str, redis_url: str
) -> None:
    _append(demo_db, "A1", "A2")
    _append(demo_db, "B1")
    assert stream_entries(redis_url) == [] and _pending(demo_db) == 3
    with relay_running(as_runtime(demo_db), redis_url):
        wait_for(lambda: len(stream_entries(redis_url)) >= 3, what="3 entries")
        _append(demo_db, "C1")  # while it runs: woken by the commit's notification
        wait_for(lambda: len(stream_entries(redis_url)) >= 4, what="4 entries")
    with relay_running(as_runtime(demo_db), redis_url) as again:  # a second relay: nothing twice
        wait_for(lambda: again.state.last_run is not None, what="the second relay's first round")
    entries = _assert_consecutive_once(redis_url)
    assert [(i, t, e["code"]) for i, t, e in entries] == [
        (1, "case.changed", "A1"),
        (2, "case.changed", "A2"),
        (3, "case.changed", "B1"),
        (4, "case.changed", "C1"),
    ]
    assert _pending(demo_db) == 0


def test_a_relay_that_died_after_xadd_before_marking_sent_publishes_nothing_twice(demo_db: str, redis_url: str) -> None:
    _append(demo_db, *[f"E{i}" for i in range(1, 6)])
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with psycopg.connect(demo_db, autocommit=True) as conn:
            rows = outbox.claim(conn, 0, 3)  # numbered 1-3 and committed …
        assert [r.outbox_id for r in rows] == [1, 2, 3]
        events.publish(client, [(r.outbox_id, r.type, r.event) for r in rows[:2]])  # … 1-2 in the stream …
        # … and the relay died there: 1-2 published but not marked, 3 numbered but not published.
    finally:
        client.close()
    assert _pending(demo_db) == 5
    _append(demo_db, "E6")
    with relay_running(as_runtime(demo_db), redis_url):
        wait_for(lambda: len(stream_entries(redis_url)) >= 6 and _pending(demo_db) == 0, what="6 entries, 0 pending")
    entries = _assert_consecutive_once(redis_url)
    assert [(i, e["code"]) for i, _, e in entries] == [(i, f"E{i}") for i in range(1, 7)]


def test_two_relays_one_publishes_and_the_other_takes_over_when_its_connection_dies(
    demo_db: str, redis_url: str
) -> None:
    clients = [redis.Redis.from_url(redis_url, decode_responses=True) for _ in range(2)]
    relays = [Relay(as_runtime(demo_db), c, poll=0.2) for c in clients]
    for r in relays:
        r.start()
    try:
        wait_for(lambda: any(r.state.leader for r in relays), what="a leader")
        leader, follower = sorted(relays, key=lambda r: not r.state.leader)
        tried = follower.state.lock_tries
        wait_for(lambda: follower.state.lock_tries >= tried + 3, what="three more tries of the other one")
        assert leader.state.leader and not follower.state.leader  # it stays a follower
        _append(demo_db, "L1", "L2")
        wait_for(lambda: len(stream_entries(redis_url)) >= 2, what="2 entries")
        # The leader counts them once it has marked them sent, a moment after the XADD.
        wait_for(lambda: leader.state.published == 2, what="the leader counting the 2 it published")
        assert follower.state.published == 0
        # The leader's connection dies (its server process killed): the lock goes with it.
        assert leader._conn is not None
        pid = leader._conn.info.backend_pid
        with psycopg.connect(demo_db, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        started = time.monotonic()
        _append(demo_db, "L3")
        wait_for(lambda: len(stream_entries(redis_url)) >= 3, timeout=10, what="the third entry")
        assert time.monotonic() - started < 5  # handed over within seconds
        wait_for(lambda: sum(r.state.leader for r in relays) == 1, what="one leader again")
    finally:
        for r in relays:
            r.stop()
        for c in clients:
            c.close()
    entries = _assert_consecutive_once(redis_url)
    assert [e["code"] for _, _, e in entries] == ["L1", "L2", "L3"]


def _writes(entries: list[tuple[int, str, dict[str, Any]]]) -> list[tuple[int, str, dict[str, Any]]]:
    """The entries of the test's own writes: a live process's deadline-warnings job adds
    ``case.warning`` events of its own when a new case is due within hours (a grid case reported
    after ~22:00 China time is due that day: both tests below failed in a run at 14:05 UTC)."""
    return [x for x in entries if x[1] != WARNING_EVENT]


def test_reports_committed_before_a_kill_are_published_by_the_next_process_once(
    live_server: Callable[..., Any], demo_db: str, redis_url: str, lock_held: psycopg.Connection
) -> None:
    """The app commits and answers, then is SIGKILLed before anything was published (its relay
    could not lead: the test holds the lock). The next process publishes them, once, in order."""
    srv = live_server(demo_db, redis_url)
    headers = auth(make_token(demo_db, "dispatcher"))
    codes = [_report(srv.url, headers, demo_db, i) for i in range(4)]
    r = httpx.post(
        f"{srv.url}/api/v1/cases/{codes[0]}/transitions", json={"action": "accept"}, headers=headers, timeout=30
    )
    assert r.status_code == 200, r.text
    assert _pending(demo_db) == 5 and stream_entries(redis_url) == []
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    lock_held.close()  # the lock is free: the next process's relay leads
    live_server(demo_db, redis_url)
    wait_for(lambda: len(stream_entries(redis_url)) >= 5, what="the 5 events after the restart")
    wait_for(lambda: _pending(demo_db) == 0, what="nothing pending")
    entries = _writes(_assert_consecutive_once(redis_url))
    assert [(i, t, e["code"]) for i, t, e in entries] == [
        *[(n + 1, "case.created", c) for n, c in enumerate(codes)],
        (5, "case.changed", codes[0]),
    ]


def test_when_the_leading_process_dies_another_takes_over_within_seconds(
    live_server: Callable[..., Any], demo_db: str, redis_url: str
) -> None:
    a, b = live_server(demo_db, redis_url, ready=False), live_server(demo_db, redis_url, ready=False)
    a.ready(), b.ready()
    admin = auth(make_token(demo_db, "admin"))
    headers = auth(make_token(demo_db, "dispatcher"))

    def leading(srv: Any) -> bool:
        return bool(srv.get("/healthz", headers=admin).json()["outbox"]["relay"]["leader"])

    wait_for(lambda: leading(a) or leading(b), what="a leader")
    assert [leading(a), leading(b)].count(True) == 1
    leader, other = (a, b) if leading(a) else (b, a)
    first = _report(other.url, headers, demo_db, 0)
    wait_for(lambda: first in _codes(redis_url), what="the first report in the stream")
    leader.proc.send_signal(signal.SIGKILL)
    leader.proc.wait()
    started = time.monotonic()
    second = _report(other.url, headers, demo_db, 1)
    wait_for(lambda: second in _codes(redis_url), timeout=15, what="the report after the kill in the stream")
    assert time.monotonic() - started < 8
    assert leading(other)
    entries = _writes(_assert_consecutive_once(redis_url))
    assert [e["code"] for _, _, e in entries] == [first, second]


@pytest.fixture
def outage_app(scratch_stack: EmbeddedStack, demo_db: str, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    """An app on the demo clone whose Redis is the scratch stack's (so it can be stopped)."""
    url = with_redis_db(scratch_stack.redis_url(), 0)
    with TestClient(create_app(settings_for(demo_db, url, tmp_path))) as c:
        yield c, url


def test_changes_written_while_redis_is_down_are_all_in_the_stream_once_in_order_after(
    outage_app: tuple[TestClient, str], scratch_stack: EmbeddedStack, demo_db: str, token: Callable[..., str]
) -> None:
    c, url = outage_app
    headers, admin = auth(token("dispatcher")), auth(token("admin"))
    before = _report(c, headers, demo_db, 0)
    wait_for(lambda: before in _codes(url), what="the first report in the stream")
    scratch_stack.stop_redis()
    wait_for(lambda: not scratch_stack.redis_running(), what="Redis to stop")
    during = [_report(c, headers, demo_db, i) for i in range(1, 5)]  # the writes stand
    assert (
        c.post(f"/api/v1/cases/{during[0]}/transitions", json={"action": "accept"}, headers=headers).status_code == 200
    )
    health = c.get("/healthz", headers=admin)
    assert health.status_code == 503 and health.json()["outbox"]["pending"] == 5  # waiting, counted
    scratch_stack.start_redis()
    wait_for(lambda: _pending(demo_db) == 0, timeout=30, what="the outbox to drain after Redis returns")
    entries = _assert_consecutive_once(url)
    got = [(t, e["code"]) for _, t, e in entries]
    outage = [*[("case.created", code) for code in during], ("case.changed", during[0])]
    assert [x for x in got if x[1] in during] == outage  # every change of the outage, in order, once
    assert c.get("/healthz", headers=admin).json()["outbox"]["pending"] == 0


def test_healthz_shows_what_is_pending_and_who_leads(
    client: TestClient, demo_db: str, token: Callable[..., str]
) -> None:
    admin = auth(token("admin"))
    wait_for(lambda: client.get("/healthz", headers=admin).json()["outbox"]["relay"]["leader"], what="the lead")
    lock = psycopg.connect(demo_db, autocommit=True)
    try:
        # The app's relay leads; the test makes it lose the lead by ending its connection and
        # taking the lock meanwhile: then events wait, and healthz says so.
        with psycopg.connect(demo_db, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'yitu-relay'"
            )

        def taken() -> bool:
            return outbox.try_lead(lock)

        wait_for(taken, what="the test to hold the relay's lock")
        _report(client, auth(token("dispatcher")), demo_db, 0)
        body = client.get("/healthz", headers=admin).json()
        assert body["outbox"]["pending"] == 1
        assert body["outbox"]["relay"]["leader"] is False and body["outbox"]["relay"]["running"] is True
    finally:
        lock.close()
    wait_for(lambda: client.get("/healthz", headers=admin).json()["outbox"]["pending"] == 0, what="pending 0")
    relay = client.get("/healthz", headers=admin).json()["outbox"]["relay"]
    assert relay["leader"] is True and relay["last_publish"] and relay["published"] >= 1


def test_sent_rows_are_pruned_after_a_day_and_the_ids_go_on(demo_db: str, redis_url: str) -> None:
    _append(demo_db, "P1", "P2")
    with relay_running(as_runtime(demo_db), redis_url):
        wait_for(lambda: _pending(demo_db) == 0, what="both sent")
    with psycopg.connect(as_runtime(demo_db)) as conn:
        assert outbox.prune(conn, datetime.now(UTC) - timedelta(days=1)) == 0  # sent just now: kept
        assert outbox.prune(conn, datetime.now(UTC) + timedelta(seconds=1)) == 2
    _append(demo_db, "P3")
    with relay_running(as_runtime(demo_db), redis_url):
        wait_for(lambda: _pending(demo_db) == 0, what="the third sent")
    assert [(i, e["code"]) for i, _, e in _assert_consecutive_once(redis_url)] == [(1, "P1"), (2, "P2"), (3, "P3")]


class _Broken:
    """A stream client with a bug in it (not a Redis error): what the supervision is for."""

    def xrevrange(self, *args: object, **kwargs: object) -> object:
        raise ValueError("a bug, not an outage")


def test_the_relay_is_supervised_an_unexpected_error_is_logged_and_the_loop_goes_on(
    demo_db: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    _append(demo_db, "S1")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    relay = Relay(as_runtime(demo_db), _Broken(), poll=0.1)  # type: ignore[arg-type]
    relay.start()
    try:
        wait_for(lambda: relay.state.restarts >= 2, what="two restarts of the relay's loop")
        assert relay.status()["running"] and "ValueError: a bug, not an outage" in (relay.state.last_error or "")
        assert any(r.exc_info and "restarting" in r.getMessage() for r in caplog.records)  # with its traceback
        relay.stream = client  # the bug gone: the same thread publishes what waited
        wait_for(lambda: _codes(redis_url) == ["S1"], what="the event after the restarts")
        wait_for(lambda: relay.state.last_error is None, what="the error cleared")
    finally:
        relay.stop()
        client.close()

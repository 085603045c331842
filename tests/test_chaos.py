"""The fault harness's own checks (bench/chaos.py), on small real data: a short run of one client
against a real ``yitu serve`` on a clone of the demo, no faults, and then planted faults — a
second case for one report key, an acknowledged write that is not in PostgreSQL, a change missing
from the stream, a van left en route — each of which must turn its line to FAIL.

The 60-second run under real faults is ``make chaos`` (part of ``make test``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import psycopg
import pytest

from bench import chaos

from .conftest import LiveServer, make_token
from .helpers import wait_for


@pytest.fixture
def played(
    demo_db: str, redis_url: str, live_server: Callable[..., LiveServer]
) -> Iterator[tuple[chaos.Run, chaos.Follower, str]]:
    """One client (with van V01) has played its plans for three seconds; the stream is followed."""
    srv = live_server(demo_db, redis_url)
    follower = chaos.Follower(redis_url)
    follower.start()
    now = time.monotonic()
    run = chaos.Run(
        srv.url,
        uuid.uuid4().hex[:8],
        make_token(demo_db, "dispatcher", name="chaos-test-dispatcher"),
        make_token(demo_db, "admin", name="chaos-test-admin"),
        chaos._points(demo_db, 7),
        chaos._bases(demo_db),
        ends_at=now + 3,
        gives_up_at=now + 30,
    )
    client = chaos.Client(run, 0, 7)
    client.start()
    client.join(timeout=60)
    assert not client.is_alive()
    yield run, follower, demo_db
    follower.stop.set()


def _settled(run: chaos.Run, follower: chaos.Follower, dsn: str) -> chaos.Stored:
    """What is stored, once every stored change of the run is in the follower's log (published
    after the commit, possibly by a relay a moment later)."""
    ops = run.ledger.ops

    def caught_up() -> bool:
        follower.poll()
        st = chaos.read_stored(dsn, run.tag, ops)
        return chaos.check_stream(follower.entries, ops, st, None).numbers["missing"] == 0

    wait_for(caught_up, timeout=30, what="every stored change of the run in the stream")
    return chaos.read_stored(dsn, run.tag, ops)


def test_a_clean_run_passes_and_planted_faults_fail(played: tuple[chaos.Run, chaos.Follower, str]) -> None:
    run, follower, dsn = played
    ops = list(run.ledger.ops)
    kinds = {op.kind for op in ops}
    assert {"report", "transition"} <= kinds, kinds
    assert all(op.state == "acked" for op in ops), [chaos._op(op) for op in ops if op.state != "acked"]
    st = _settled(run, follower, dsn)

    eq, lost = chaos.check_writes(ops, st)
    assert eq.ok and lost.ok, (eq.line(), lost.line(), eq.detail, lost.detail)
    assert eq.numbers["acked"] == len(ops)
    assert chaos.check_duplicates(st).ok
    stream = chaos.check_stream(follower.entries, ops, st, chaos.outbox_rows(dsn))
    assert stream.numbers["missing"] == 0 and stream.numbers["twice"] == 0, stream.detail
    assert chaos.check_vans(dsn, 1, 0).ok

    # An acknowledged write PostgreSQL does not hold: lost, and acknowledged != stored.
    report = next(op for op in ops if op.kind == "report")
    ghost = replace(report, key=f"{run.tag}-ghost", answer={"code": "150000-20260101-000001"})
    eq, lost = chaos.check_writes([*ops, ghost], st)
    assert not lost.ok and lost.numbers["lost"] == 1
    assert not eq.ok and eq.numbers["missing"] == 1

    # A write refused (or never answered) that PostgreSQL holds all the same: the answer lied.
    eq, _ = chaos.check_writes([*ops, replace(report, state="refused", status=409)], st)
    assert not eq.ok and eq.numbers["phantom"] == 1

    # A change missing from the stream, and one in it twice.
    codes = {c for cs in st.cases_by_key.values() for c in cs}
    created = next(i for i, e in enumerate(follower.entries) if e.type == "case.created" and e.event["code"] in codes)
    without = follower.entries[:created] + follower.entries[created + 1 :]
    assert chaos.check_stream(without, ops, st, None).numbers["missing"] == 1
    twice = [*follower.entries, follower.entries[created]]
    verdict = chaos.check_stream(twice, ops, st, None)
    assert not verdict.ok and verdict.numbers["twice"] == 1

    # A second case for one report key (a client's retry that the server took for a new report).
    r = httpx.post(
        f"{run.url}/api/v1/cases",
        json=report.body,
        headers={"Authorization": f"Bearer {run.dispatcher}", "Idempotency-Key": f"{run.tag}-planted"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    dup = chaos.check_duplicates(chaos.read_stored(dsn, run.tag, ops))
    assert not dup.ok and dup.numbers["keys"] == 1, dup.line()

    # A van shown on its way with no visit to make: stuck (the check's deadline: none).
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE vans SET status = 'en_route' WHERE id = 'V04'")
    stuck = chaos.check_vans(dsn, 1, 0)
    assert not stuck.ok and stuck.numbers["stuck"] == 1, stuck.detail


def test_the_schedule_spreads_the_faults_over_the_run() -> None:
    faults = chaos.schedule(60, 3, 15)
    assert [f.kind for f in faults].count("kill") == 3
    assert {f.kind for f in faults} == {"kill", "pg", "redis"}
    assert all(0 <= f.at < 60 for f in faults)
    redis_at = next(f.at for f in faults if f.kind == "redis")
    assert redis_at + 15 < 60  # Redis is back before the run ends

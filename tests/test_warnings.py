"""Deadline warnings: raised once at the right time (a frozen clock), through the outbox to the
stream, and the webhook against a real local receiver — failures retried with backoff, an app
restarted in the middle, each warning received exactly once; hostile settings refused clearly."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from click.testing import CliRunner
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool
from pydantic import ValidationError

from cli.main import main
from dashboard.app import create_app
from geodata import cases
from geodata.cases import Actor, NewCase
from services import notify
from services.runtime import Services
from services.scheduler import deadline_rules, raise_warnings
from services.settings import Settings

from .cases_fixtures import case_body, inner_point, settings_for
from .helpers import relay_running, stream_entries, wait_for

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # 10:00 China time; the grid's deadline is 23:59:59
GRID_DEADLINE = datetime(2026, 11, 22, 15, 59, 59, tzinfo=UTC)  # 23:59:59 China time
CLERK = Actor("clerk", "dispatcher", 0)


@pytest.fixture
def pool(demo_db: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(demo_db, min_size=1, max_size=2) as p:
        yield p


def _new_case(pool: ConnectionPool, demo_db: str, settings: Settings, at: datetime = T0) -> str:
    lon, lat, _ = inner_point(demo_db)
    body = case_body(lon, lat)
    new = NewCase(body["type"], body["description"], lon, lat, body["channel"], body["parties"], at)
    with pool.connection() as conn:
        row, _ = cases.intake(conn, new, CLERK, deadline_rules(settings), at)
    return str(row["code"])


def _mine(events: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [e for e in events if e["code"] == code]


def _warnings(dsn: str, code: str) -> list[tuple[str, datetime, str]]:
    with psycopg.connect(dsn) as conn:
        return [
            (str(lv), dl, str(n))
            for lv, dl, n in conn.execute(
                "SELECT w.level, w.deadline, w.notify FROM deadline_warnings w JOIN cases c ON c.id = w.case_id "
                "WHERE c.code = %s ORDER BY w.id",
                (code,),
            ).fetchall()
        ]


def test_a_warning_is_raised_once_per_level_and_deadline_at_the_right_time(
    pool: ConnectionPool, demo_db: str, redis_url: str, tmp_path: Path
) -> None:
    settings = settings_for(demo_db, redis_url, tmp_path)
    code = _new_case(pool, demo_db, settings)
    two_hours_before = GRID_DEADLINE - timedelta(hours=2)
    assert _mine(raise_warnings(pool, settings, now=two_hours_before - timedelta(seconds=1)), code) == []
    raised = _mine(raise_warnings(pool, settings, now=two_hours_before), code)
    assert [(e["type"], e["action"], e["level"], e["deadline"]) for e in raised] == [
        ("case.warning", "warning", "grid", GRID_DEADLINE.isoformat())
    ]
    assert isinstance(raised[0]["warning"], int) and raised[0]["grid"][3] == "150623"  # scoped like any case event
    assert _warnings(demo_db, code) == [("grid", GRID_DEADLINE, "off")]  # no webhook: nothing to deliver
    for later in (two_hours_before + timedelta(minutes=1), GRID_DEADLINE - timedelta(seconds=1)):
        assert _mine(raise_warnings(pool, settings, now=later), code) == []  # once only
    # Through the outbox to the live stream, once committed.
    with relay_running(demo_db, redis_url):
        wait_for(
            lambda: any(
                e.get("code") == code and e.get("action") == "warning" for _, _, e in stream_entries(redis_url)
            ),
            what="the warning in the stream",
        )

    # Escalated to the village: a new level and deadline (72 h), a new warning 24 h before it.
    at = GRID_DEADLINE - timedelta(hours=1)
    rules = deadline_rules(settings)
    with pool.connection() as conn:
        cases.transition(conn, code, "accept", {}, CLERK, rules, at)
        row, _ = cases.transition(conn, code, "escalate", {}, CLERK, rules, at)
    village_deadline = at + timedelta(hours=72)
    assert row["deadline"] == village_deadline
    assert _mine(raise_warnings(pool, settings, now=village_deadline - timedelta(hours=24, seconds=1)), code) == []
    assert [
        e["level"] for e in _mine(raise_warnings(pool, settings, now=village_deadline - timedelta(hours=24)), code)
    ] == ["village"]
    assert _mine(raise_warnings(pool, settings, now=village_deadline - timedelta(hours=1)), code) == []
    assert [w[:2] for w in _warnings(demo_db, code)] == [("grid", GRID_DEADLINE), ("village", village_deadline)]


def test_no_warning_for_a_deadline_already_passed_or_a_closed_case(
    pool: ConnectionPool, demo_db: str, redis_url: str, tmp_path: Path
) -> None:
    settings = settings_for(demo_db, redis_url, tmp_path)
    late, closed = _new_case(pool, demo_db, settings), _new_case(pool, demo_db, settings)
    with pool.connection() as conn:
        cases.transition(conn, closed, "accept", {}, CLERK, deadline_rules(settings), T0)
        cases.transition(conn, closed, "close", {"outcome": "withdrawn"}, CLERK, deadline_rules(settings), T0)
    # The first sweep after the deadline passed: the overdue flag says it, no warning comes after the fact.
    assert _mine(raise_warnings(pool, settings, now=GRID_DEADLINE + timedelta(seconds=1)), late) == []
    assert _warnings(demo_db, late) == []
    assert _mine(raise_warnings(pool, settings, now=GRID_DEADLINE - timedelta(hours=1)), closed) == []
    assert _warnings(demo_db, closed) == []


def test_the_warning_windows_follow_the_settings(
    pool: ConnectionPool, demo_db: str, redis_url: str, tmp_path: Path
) -> None:
    off = settings_for(demo_db, redis_url, tmp_path, warn_grid_hours=0)
    code = _new_case(pool, demo_db, off)
    assert _mine(raise_warnings(pool, off, now=GRID_DEADLINE - timedelta(minutes=1)), code) == []  # 0: none
    wide = settings_for(demo_db, redis_url, tmp_path, warn_grid_hours=13.5)
    assert _mine(raise_warnings(pool, wide, now=GRID_DEADLINE - timedelta(hours=14)), code) == []
    assert len(_mine(raise_warnings(pool, wide, now=GRID_DEADLINE - timedelta(hours=13.5)), code)) == 1


def test_two_processes_sweeping_at_once_raise_each_warning_once(
    pool: ConnectionPool, demo_db: str, redis_url: str, tmp_path: Path
) -> None:
    settings = settings_for(demo_db, redis_url, tmp_path)
    codes = [_new_case(pool, demo_db, settings) for _ in range(5)]
    now = GRID_DEADLINE - timedelta(hours=1)
    out: list[list[dict[str, Any]]] = []
    barrier = threading.Barrier(4)

    def sweep() -> None:
        with ConnectionPool(demo_db, min_size=1, max_size=1) as own:
            barrier.wait()
            out.append(raise_warnings(own, settings, now=now))

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    raised = Counter(e["code"] for batch in out for e in batch)
    assert all(raised[c] == 1 for c in codes), raised
    for c in codes:
        assert len(_warnings(demo_db, c)) == 1


# --- the webhook --------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on a free local port: records every POST, answers by a script of its own
    (``fail``: how many POSTs of a warning id to answer 500 first; ``down``: answer 503 to all)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.accepted: Counter[int] = Counter()
        self.tries: Counter[int] = Counter()
        self.fail: dict[int, int] = {}
        self.fail_every_first = 0  # every warning's first N POSTs fail
        self.down = False
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                wid = int(body["yitu"]["id"])
                with receiver.lock:
                    receiver.posts.append(body)
                    receiver.headers.append(dict(self.headers))
                    receiver.tries[wid] += 1
                    fails = receiver.down or receiver.tries[wid] <= max(
                        receiver.fail.get(wid, 0), receiver.fail_every_first
                    )
                    if not fails:
                        receiver.accepted[wid] += 1
                status, answer = (500, {"errcode": 500}) if fails else (200, {"errcode": 0, "errmsg": "ok"})
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cgi-bin/webhook/send?key=s3cr3t-robot-key"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _due_soon(dsn: str, n: int, offset: int = 0) -> list[str]:
    """Give ``n`` open demo cases a village-level deadline an hour from now (the demo's deadlines
    have long passed): the next warnings sweep of a running app warns them."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "UPDATE cases SET level = 'village', deadline = now() + interval '1 hour', flags = '{}' WHERE id IN ("
            " SELECT id FROM cases WHERE yitu_step_open(step) AND step = 'accepted' ORDER BY id OFFSET %s LIMIT %s)"
            " RETURNING code",
            (offset, n),
        ).fetchall()
    assert len(rows) == n
    return [str(r[0]) for r in rows]


def _warning_ids(dsn: str, codes: list[str]) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.code, w.id FROM deadline_warnings w JOIN cases c ON c.id = w.case_id WHERE c.code = ANY(%s)",
            (codes,),
        ).fetchall()
    return {str(c): int(i) for c, i in rows}


def _states(dsn: str, ids: list[int]) -> dict[int, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id, notify FROM deadline_warnings WHERE id = ANY(%s)", (ids,)).fetchall()
    return {int(i): str(s) for i, s in rows}


def _webhook_settings(demo_db: str, redis_url: str, tmp_path: Path, url: str, **extra: Any) -> Settings:
    return settings_for(
        demo_db,
        redis_url,
        tmp_path,
        scheduler_interval=0.2,
        notify_webhook_url=url,
        notify_backoff_seconds=0.2,
        notify_timeout=2,
        public_url="https://yitu.example",
        **extra,
    )


def test_the_webhook_gets_each_warning_once_through_failures_and_a_restart(
    demo_db: str, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _webhook_settings(demo_db, redis_url, tmp_path, receiver.url)
    first = _due_soon(demo_db, 3)
    receiver.fail_every_first = 2  # every warning: two 500s, then the robot takes it
    with TestClient(create_app(settings)):
        wait_for(lambda: len(_warning_ids(demo_db, first)) == 3, timeout=20, what="the first warnings raised")
        ids = _warning_ids(demo_db, first)
        wait_for(lambda: all(receiver.accepted[i] == 1 for i in ids.values()), timeout=30, what="three deliveries")
        assert all(receiver.tries[i] == 3 for i in ids.values())  # failed twice, then taken
        assert set(_states(demo_db, list(ids.values())).values()) == {"sent"}
        receiver.down = True  # the receiver goes down; a warning raised now waits, retried
        second = _due_soon(demo_db, 2, offset=10)
        wait_for(lambda: len(_warning_ids(demo_db, second)) == 2, timeout=20, what="the second warnings raised")
        pending = _warning_ids(demo_db, second)
        wait_for(lambda: any(receiver.tries[i] >= 1 for i in pending.values()), timeout=20, what="a failed try")
    # The app stopped in the middle (its deliveries pending); one delivery was claimed by a process
    # that died while sending: its lease ran out.
    with psycopg.connect(demo_db) as conn:
        conn.execute(
            "UPDATE deadline_warnings SET notify = 'sending', next_attempt_at = now() - interval '1 second' "
            "WHERE id = %s",
            (next(iter(pending.values())),),
        )
    receiver.down = False
    third = _due_soon(demo_db, 1, offset=20)
    with TestClient(create_app(settings)):  # restarted
        wait_for(lambda: len(_warning_ids(demo_db, third)) == 1, timeout=20, what="a warning raised after the restart")
        every = {**ids, **pending, **_warning_ids(demo_db, third)}
        wait_for(lambda: set(_states(demo_db, list(every.values())).values()) == {"sent"}, timeout=30, what="all sent")
    assert {i: receiver.accepted[i] for i in every.values()} == dict.fromkeys(every.values(), 1)  # each exactly once
    # What was sent: the robots' text shape plus yitu's fields, no personal data, the key never echoed.
    body = next(p for p in receiver.posts if p["yitu"]["id"] == ids[first[0]])
    assert body["msgtype"] == "text" and first[0] in body["text"]["content"]
    assert "临期预警" in body["text"]["content"] and f"https://yitu.example/cases/{first[0]}" in body["text"]["content"]
    assert {"id", "key", "code", "case_type", "level", "deadline", "raised_at"} <= set(body["yitu"])
    assert body["yitu"]["level"] == "village" and body["yitu"]["code"] == first[0]
    with psycopg.connect(demo_db) as conn:
        parties, description = conn.execute(
            "SELECT parties::text, description FROM cases WHERE code = %s", (first[0],)
        ).fetchone()
    names = [p["name"] for p in json.loads(parties) if p.get("name")]
    text = json.dumps(body, ensure_ascii=False)
    assert names and not any(n in text for n in names) and (not description or description not in text)
    assert all(h.get("Idempotency-Key", "").startswith("yitu-warning-") for h in receiver.headers)


def test_processes_delivering_at_once_send_each_warning_once(
    pool: ConnectionPool, demo_db: str, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _webhook_settings(demo_db, redis_url, tmp_path, receiver.url)
    codes = [_new_case(pool, demo_db, settings) for _ in range(8)]
    raised = _mine_all(raise_warnings(pool, settings, now=GRID_DEADLINE - timedelta(hours=1)), codes)
    assert len(raised) == 8
    delivery = notify.Delivery.of(settings)
    assert delivery is not None
    barrier = threading.Barrier(3)

    def process() -> None:
        with ConnectionPool(demo_db, min_size=1, max_size=1) as own:
            svc = Services(settings=settings, pool=own, redis=redis.Redis.from_url(redis_url))
            barrier.wait()
            while notify.deliver_due(svc, delivery)["sent"]:
                pass
            svc.redis.close()

    threads = [threading.Thread(target=process) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [e["warning"] for e in raised]
    assert {i: receiver.tries[i] for i in ids} == dict.fromkeys(ids, 1)  # one POST each, none twice
    assert set(_states(demo_db, ids).values()) == {"sent"}


def _mine_all(events: list[dict[str, Any]], codes: list[str]) -> list[dict[str, Any]]:
    return [e for e in events if e["code"] in codes]


def test_a_receiver_that_keeps_failing_is_given_up_after_the_attempts(
    demo_db: str, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.down = True
    settings = _webhook_settings(demo_db, redis_url, tmp_path, receiver.url, notify_max_attempts=3)
    codes = _due_soon(demo_db, 1)
    with TestClient(create_app(settings)):
        wait_for(lambda: len(_warning_ids(demo_db, codes)) == 1, timeout=20, what="the warning raised")
        wid = _warning_ids(demo_db, codes)[codes[0]]
        wait_for(lambda: _states(demo_db, [wid]) == {wid: "failed"}, timeout=30, what="the delivery given up")
    assert receiver.tries[wid] == 3 and receiver.accepted[wid] == 0
    with psycopg.connect(demo_db) as conn:
        (error,) = conn.execute("SELECT last_error FROM deadline_warnings WHERE id = %s", (wid,)).fetchone()
    assert error == "HTTP 500" and "s3cr3t" not in error


def test_without_a_webhook_warnings_are_not_queued_for_one(demo_db: str, redis_url: str, tmp_path: Path) -> None:
    settings = settings_for(demo_db, redis_url, tmp_path, scheduler_interval=0.2)
    codes = _due_soon(demo_db, 1)
    with TestClient(create_app(settings)) as c:
        wait_for(lambda: len(_warning_ids(demo_db, codes)) == 1, timeout=20, what="the warning raised")
        assert c.app.state.cases_runtime.notifier is None  # type: ignore[attr-defined]
    wid = _warning_ids(demo_db, codes)[codes[0]]
    assert _states(demo_db, [wid]) == {wid: "off"}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ftp://robot.example/send?key=s3cr3t", "must be an http(s) URL with a host"),
        ("https://", "must be an http(s) URL with a host"),
        ("javascript:alert(1)//s3cr3t", "must be an http(s) URL with a host"),
        ("https://robot.example:99999/s3cr3t", "must be an http(s) URL with a host"),
        ("https://robot.example/send?key=s3cr3t\r\nX-Evil: 1", "spaces or control characters"),
        ("https://robot.example/?key=s3cr3t" + "A" * 1_000_000, "at most 2000"),
    ],
)
def test_a_bad_webhook_url_is_a_clear_error_that_does_not_repeat_it(
    value: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(_env_file=None, notify_webhook_url=value)
    (e,) = err.value.errors()
    assert e["loc"] == ("notify_webhook_url",) and says in e["msg"] and "s3cr3t" not in e["msg"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YITU_NOTIFY_WEBHOOK_URL", value)
    result = CliRunner().invoke(main, ["db", "status"])
    assert result.exit_code != 0 and "YITU_NOTIFY_WEBHOOK_URL" in result.output and says in result.output
    assert "s3cr3t" not in result.output and "Traceback" not in result.output
    assert len(result.output) < 1000


@pytest.mark.parametrize(
    ("field", "value"),
    [("warn_grid_hours", -1), ("warn_grid_hours", 25), ("warn_hours", "1e400"), ("notify_timeout", 0)],
)
def test_bad_warning_and_notify_numbers_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(_env_file=None, **{field: value})
    assert field in {str(e["loc"][0]) for e in err.value.errors()}


def test_a_good_webhook_url_is_kept_secret() -> None:
    s = Settings(_env_file=None, notify_webhook_url="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=s3cr3t")
    assert s.notify_webhook_url is not None and "s3cr3t" not in repr(s)
    assert s.notify_webhook_url.get_secret_value().endswith("key=s3cr3t")

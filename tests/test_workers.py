"""Several app processes on one database behind the real nginx (issue 17, item 1).

Two `yitu serve` processes, one deploy/nginx.conf in front of both (its upstream with two `server` lines):
both serve; the scheduler's jobs run in exactly one of them (the holder of the scheduler's advisory lock,
services/leader.py, which /healthz names); kill -9 of the leader and the other takes the jobs over within
10 s; a wall screen open through nginx whose process is killed reconnects through nginx to the survivor and
gets the new events. `yitu serve --workers 2` runs two processes on one port, one of them leading.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser

from services.identity import create_token

from .browser import Watched
from .conftest import ROOT, LiveServer
from .helpers import as_runtime, free_port, wait_for
from .nginx import Nginx, Proxies, _signed_in, report_through, tls_browser  # noqa: F401  (the fixture)
from .test_live_browser import _open_wall, _wait_pin

FAST = {"YITU_SCHEDULER_INTERVAL": "1", "YITU_ACCESS_LOG": "true"}


def _token(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return create_token(conn, name="workers-admin", role="admin", area=None)[1]


def _scheduler(url: str, token: str) -> dict[str, Any] | None:
    """The scheduler part of an admin's /healthz straight from one process (None: it does not answer)."""
    try:
        r = httpx.get(url + "/healthz", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    except httpx.HTTPError:
        return None
    return r.json().get("scheduler") if r.status_code == 200 else None


def _name(pid: int) -> str:
    """How the leader's process appears in /healthz and in the database: the role, host and pid."""
    return f"yitu-scheduler {os.uname().nodename}:{pid}"


Pair = tuple[LiveServer, LiveServer, Nginx]


@pytest.fixture
def two_behind_nginx(live_server, redis_url: str, tmp_path: Path) -> Iterator[Callable[[str], Pair]]:  # type: ignore[no-untyped-def]
    proxies = Proxies(tmp_path)

    def start(dsn: str) -> Pair:
        a, b = live_server(dsn, redis_url, ready=False, **FAST), live_server(dsn, redis_url, ready=False, **FAST)
        a.ready()
        b.ready()
        # deploy/nginx.conf's upstream as a site with two processes writes it: one `server` line for each.
        return a, b, proxies.start(f"127.0.0.1:{a.port};\n    server 127.0.0.1:{b.port}")

    yield start
    proxies.stop()


def _leader_of(a: LiveServer, b: LiveServer, token: str) -> tuple[LiveServer, LiveServer]:
    """Exactly one of the two leads, and both name it: (leader, follower)."""

    def one() -> tuple[LiveServer, LiveServer] | None:
        sa, sb = _scheduler(a.url, token), _scheduler(b.url, token)
        if sa is None or sb is None or sa["leader"] == sb["leader"]:
            return None
        lead, follow = (a, b) if sa["leader"] else (b, a)
        if not (sa["leader_process"] == sb["leader_process"] == _name(lead.proc.pid)):
            return None
        return lead, follow

    found = wait_for(one, timeout=20, what="exactly one process leading the scheduler")
    assert isinstance(found, tuple)
    return found


def test_two_processes_behind_nginx_serve_and_one_runs_the_scheduler(two_behind_nginx, db_url: str) -> None:  # type: ignore[no-untyped-def]
    a, b, proxy = two_behind_nginx(db_url)
    token = _token(db_url)
    auth = {"Authorization": f"Bearer {token}"}

    # Both serve: nginx spreads the requests over the two processes, and each answers.
    with proxy.client() as c:
        for i in range(8):
            r = c.get(proxy.base + f"/api/v1/vans?probe={i}", headers=auth)
            assert r.status_code == 200, r.text
    for srv in (a, b):
        wait_for(lambda srv=srv: "yitu.access: GET /api/v1/vans " in srv.log(), timeout=15, what="both serving")

    # Exactly one runs the jobs: its overdue sweep goes every second, the other's never.
    leader, follower = _leader_of(a, b, token)
    wait_for(
        lambda: (_scheduler(leader.url, token) or {}).get("jobs", {}).get("overdue", {}).get("runs", 0) >= 2,
        timeout=15,
        what="the leader's overdue sweeps",
    )
    idle = _scheduler(follower.url, token)
    assert idle is not None and idle["running"] and not idle["leader"]
    assert all(job["runs"] == 0 for job in idle["jobs"].values()), idle["jobs"]

    # kill -9 of the leader: its session ends, the lock with it, and the other takes the jobs over within 10 s.
    os.kill(leader.proc.pid, signal.SIGKILL)
    leader.proc.wait(timeout=10)

    def took_over() -> bool:
        st = _scheduler(follower.url, token)
        return bool(st and st["leader"] and st["leader_process"] == _name(follower.proc.pid))

    wait_for(took_over, timeout=10, what="the survivor leading the scheduler")
    wait_for(
        lambda: (_scheduler(follower.url, token) or {}).get("jobs", {}).get("overdue", {}).get("runs", 0) >= 1,
        timeout=10,
        what="the survivor's overdue sweep",
    )
    # nginx keeps serving, from the survivor alone.
    with proxy.client() as c:
        for i in range(4):
            assert c.get(proxy.base + f"/api/v1/vans?after={i}", headers=auth).status_code == 200


@pytest.mark.browser
def test_a_screen_through_nginx_moves_to_the_surviving_process(  # type: ignore[no-untyped-def]
    two_behind_nginx, demo_db: str, tls_browser: Browser
) -> None:
    a, b, proxy = two_behind_nginx(demo_db)
    token = _token(demo_db)
    w = Watched(tls_browser, proxy.base)
    socket = "yitu.access: WS /_dash-ws-callback "
    _signed_in(w, a, proxy, demo_db)  # the session is in PostgreSQL: either process knows it
    wait_for(lambda: any(socket in s.log() for s in (a, b)), timeout=15, what="the signed-in page's socket")
    counts = {s.port: s.log().count(socket) for s in (a, b)}
    page = _open_wall(w, proxy.base)  # loaded again: a new socket, to either process
    page.wait_for_function("() => !!window.dash_clientside", timeout=10_000)
    holder = wait_for(
        lambda: next((s for s in (a, b) if s.log().count(socket) > counts[s.port]), None),
        timeout=15,
        what="the wall screen's socket",
    )
    assert isinstance(holder, LiveServer)
    survivor = b if holder is a else a
    before = survivor.log().count(socket)
    os.kill(holder.proc.pid, signal.SIGKILL)  # the screen's process dies; its socket with it
    holder.proc.wait(timeout=10)

    # A case reported through nginx (served by the survivor), pushed on the new socket, through nginx.
    code = report_through(proxy, token, "草场边界争议（进程被杀后）", 0.002, -0.002)
    _wait_pin(page, code, timeout=60_000)
    assert survivor.log().count(socket) > before
    assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded"
    # The browser logged the lost connection — the socket, and a callback request in flight to the
    # killed process, which nginx answered 502 Bad Gateway (the page's next one goes to the survivor);
    # nothing else went wrong.
    w.problems = [
        p
        for p in w.problems
        if "WebSocket" not in p
        and "Failed to load resource" not in p
        and not ("Callback error updating" in p and "502 Bad Gateway" in p)
    ]
    w.close()


def test_yitu_serve_workers_runs_n_processes_with_one_leader(db_url: str, redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        **FAST,
        "YITU_DATABASE_URL": as_runtime(db_url),
        "YITU_DATABASE_OWNER_URL": db_url,
        "YITU_REDIS_URL": redis_url,
        "YITU_HOST": "127.0.0.1",
        "YITU_PORT": str(port),
    }
    log_path = tmp_path / "workers.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    token = _token(db_url)
    url = f"http://127.0.0.1:{port}"
    try:
        # Two worker processes start (uvicorn's supervisor: "Started server process [pid]" for each).
        wait_for(
            lambda: len(set(re.findall(r"Started server process \[(\d+)\]", log_path.read_text()))) == 2,
            timeout=90,
            what=f"two worker processes ({log_path})",
        )
        workers = {int(p) for p in re.findall(r"Started server process \[(\d+)\]", log_path.read_text())}
        # Each answers (whichever the kernel hands a connection): one leads, the others idle.
        seen: dict[str, dict[str, Any]] = {}

        def both() -> bool:
            st = _scheduler(url, token)  # a new connection each time, to any worker
            if st is not None:
                seen[st["process"]] = st
            return len(seen) == 2 and len({s["leader_process"] for s in seen.values()}) == 1

        wait_for(both, timeout=60, what=f"answers from both workers ({seen})")
        assert sorted(s["leader"] for s in seen.values()) == [False, True]
        leader = next(s for s in seen.values() if s["leader"])
        assert leader["leader_process"] == f"yitu-scheduler {leader['process']}"
        assert {int(p.rsplit(":", 1)[1]) for p in seen} == workers
    finally:
        proc.terminate()
        proc.wait(timeout=30)

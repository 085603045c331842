"""Intake at a steady rate while wall screens are open: a report's answer time at 100 reports/s.

    .venv/bin/python bench/bench_intake_rate.py                       # the app as deployed, 3 rounds
    .venv/bin/python bench/bench_intake_rate.py --screens 0 --rounds 1   # the server alone

Target (issue 11, item 7): **p95 < 50 ms at 100 reports/s on this machine while 10 wall screens
are connected**. A banner reports a few dozen cases a day and a league of banners a few thousand,
so 100 a second is a burst far above any day, not a throughput race: this bench measures latency
at that rate, where bench/bench_intake.py measures how many reports a closed loop can push.

Each run, for each app (``--app LABEL=module:factory``, repeatable; the apps of a round alternate
their order from round to round, so neither always gets the quieter minute):

1. the banner demo (``yitu_bench_demo``, seeded by bench_wallscreen.py's helper when missing;
   ``--scale city`` for ``yitu_bench``) is cloned into a scratch database, used and dropped, and
   the bench's Redis database (``--redis-db``, flushed) holds its event stream;
2. the server is the uvicorn factory as a deployment runs it — ``uvicorn --factory <app>
   --workers N`` with uvicorn's defaults otherwise (uvloop and httptools when installed; one
   process, the default, is what ``yitu serve`` runs: ``uvicorn.run(create_app(settings))``),
   all other settings at their defaults (the overdue sweep on, the 10 s token cache);
3. ``--screens`` wall screens: pages of ``/`` at 1920×1080 in headless Chromium (Debian's, through
   Playwright; one browser, a context per screen), each waited for until its map has settled, and
   then a probe report whose event every screen must receive over its live WebSocket before the
   clock starts (so each screen is connected and subscribed);
4. a warm-up of ``--warmup`` s of reports at the rate, untimed;
5. the baseline, in the same minute on the same server with the same screens open: ``GET /healthz``
   (a database query and a Redis ping, through the framework) at the same rate for
   ``--baseline-seconds``;
6. reports at ``--rate`` per second for ``--seconds``, **open loop**: request *i* is sent at
   ``start + i / rate`` whatever the answers to the earlier ones (no connection limit holds it
   back), and its latency runs from that scheduled time to the end of its answer, so a stall of
   the server shows in the figures instead of slowing the sender. Each report has its own
   Idempotency-Key and a valid body (bench_intake.py's: points in every cell and 0.5% outside,
   seven types, two parties); every answer must be 201. Cases written and events published are
   counted in PostGIS and Redis, and a last probe must reach every screen.

Printed per run: n, the achieved sending rate, median, p95, p99, max and errors of the reports and
of the baseline, how late the sender was against its schedule, the load average before the run
and where the CPU went (app, PostgreSQL, Redis, browser, this load client, other processes); at
the end a table of every run and the median over rounds of each app's p95 against the target.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import redis
import uvloop
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_intake import _body, _points
from bench.bench_wallscreen import _database
from bench.common import (
    Ticks,
    clone_database,
    cpu_line,
    cpu_spent,
    cpu_ticks,
    descendants,
    drop_database,
    free_port,
    pair,
    wait_healthy,
)
from cli.stack import EmbeddedStack
from services.events import STREAM
from services.identity import create_token
from services.settings import Settings
from tests.browser import CHROMIUM_ARGS, SETTLED, chromium_path

TARGET_P95_MS = 50.0
# Case-layer fetches a page has made (the resource-timing buffer is enlarged by _SCREEN_INIT).
RELOADS_JS = "() => performance.getEntriesByType('resource').filter(e => e.name.includes('/layers/cases')).length"
_SCREEN_INIT = "performance.setResourceTimingBufferSize(1000000);"
# The screens stand for machines of their own: what they paint is not the server's load. Headless
# Chromium paints on the CPU (no GPU), where the overdue pins' endless pulse costs each page a
# fifth of a core; without animations the same requests and pushes cost the machine far less.
_NO_ANIMATION = """document.addEventListener('DOMContentLoaded', () => {
  const s = document.createElement('style');
  s.textContent = '*, *::before, *::after { animation: none !important; transition: none !important; }';
  document.head.appendChild(s);
});"""
SEEN_JS = "c => window.yitu && window.yitu.live && window.yitu.live.seen[c] !== undefined"


# --- figures ---------------------------------------------------------------------------------------


@dataclass
class Stats:
    """One open-loop stream of requests: latencies from each request's scheduled time."""

    name: str
    n: int
    sent_rate: float
    lat_ms: list[float]
    errors: int
    error_kinds: dict[str, int]
    lag_ms: list[float]  # how late the sender started each request against its schedule
    connections: int  # connections the sender opened (a new one whenever none was free)

    def pct(self, q: float) -> float:
        ordered = sorted(self.lat_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        lag = sorted(self.lag_ms)
        kinds = f" ({', '.join(f'{k} {v}' for k, v in sorted(self.error_kinds.items()))})" if self.errors else ""
        return (
            f"{self.name:<26} n={self.n:>6}  sent {self.sent_rate:6.1f}/s  median {statistics.median(self.lat_ms):6.1f}"
            f" ms  p95 {self.pct(0.95):6.1f} ms  p99 {self.pct(0.99):6.1f} ms  max {max(self.lat_ms):7.1f} ms"
            f"  errors {self.errors}{kinds}  (sender late p99 {lag[int(0.99 * (len(lag) - 1))]:.1f} ms,"
            f" {self.connections} connections)"
        )


@dataclass
class Run:
    label: str
    round: int
    started: str
    load_at_start: str
    load: str
    baseline: Stats
    intake: Stats
    notes: list[str] = field(default_factory=list)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- the open-loop sender ------------------------------------------------------------------------

Request = Callable[[int], bytes]  # request i, as the bytes sent on the wire


class _Http:
    """A lean HTTP/1.1 client for one server: keep-alive connections, a new one whenever none is free.

    httpx took a quarter of a core at 100 requests/s, and a load client starved for CPU on a busy
    machine is late with its requests and its reading, which an open-loop timing rightly counts
    against the server. This one costs a few percent of a core: raw requests prepared beforehand,
    the status line and Content-Length read from the answer (uvicorn's JSON answers have one).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def send(self, raw: bytes) -> int:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.opened += 1
        try:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    raise ValueError("chunked answers are not read by this client")
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _open_loop(url: str, rate: float, seconds: float, request: Request, expect: int, name: str) -> Stats:
    """Fire request ``i`` at ``t0 + i / rate`` whatever became of the others; time it from then."""
    n = max(1, round(rate * seconds))
    lat = [0.0] * n
    lag = [0.0] * n
    kinds: dict[str, int] = {}
    host, port = url.removeprefix("http://").split(":")
    client = _Http(host, int(port))
    now = time.perf_counter  # uvloop's loop.time() counts whole milliseconds

    async def one(i: int, due: float) -> None:
        lag[i] = (now() - due) * 1000
        try:
            status = await asyncio.wait_for(client.send(request(i)), 30)
            kind = None if status == expect else str(status)
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            kind = type(exc).__name__
        lat[i] = (now() - due) * 1000
        if kind is not None:
            kinds[kind] = kinds.get(kind, 0) + 1

    tasks = []
    t0 = now() + 0.05
    first = last = t0
    for i in range(n):
        due = t0 + i / rate
        wait = due - now()
        if wait > 0:
            await asyncio.sleep(wait)
        if i == 0:
            first = now()
        last = now()
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    client.close()
    sent_rate = (n - 1) / (last - first) if n > 1 and last > first else float(n)
    return Stats(name, n, sent_rate, lat, sum(kinds.values()), kinds, lag, client.opened)


def _in_thread(coro: Awaitable[Stats]) -> Stats:
    """Run the sender on a uvloop of its own thread, beside Playwright's synchronous API."""
    out: list[Stats] = []

    def target() -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            out.append(runner.run(coro))  # type: ignore[arg-type]

    t = threading.Thread(target=target, name="open-loop sender")
    t.start()
    t.join()
    return out[0]


def _reports(url: str, token: str, points: list[tuple[float, float]], tag: str) -> Request:
    """POST /api/v1/cases: request ``i`` gets body ``i`` (encoded beforehand) and its own Idempotency-Key."""
    host = url.removeprefix("http://")
    bodies = [orjson.dumps(_body(points[i % len(points)], i)) for i in range(len(points))]
    heads = [
        (
            f"POST /api/v1/cases HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n"
        ).encode()
        for b in bodies
    ]

    def request(i: int) -> bytes:
        k = i % len(bodies)
        return heads[k] + f"Idempotency-Key: {tag}-{i}\r\n\r\n".encode() + bodies[k]

    return request


def _healthz(url: str) -> Request:
    raw = f"GET /healthz HTTP/1.1\r\nHost: {url.removeprefix('http://')}\r\n\r\n".encode()
    return lambda i: raw


# --- where the CPU went --------------------------------------------------------------------------


def _cpu_share(
    before: Ticks,
    after: Ticks,
    seconds: float,
    server_pid: int,
    postmaster: int | None,
    redis_port: int,
    self_cpu: float,
    busy: int,
) -> str:
    """% of one core per group during the measured run (2 cores = 200%): the app, this cluster's
    PostgreSQL, this Redis, the browser (Playwright's driver and Chromium), this load client, and
    everything else on the machine (the other workers' test suites, including processes that
    started and ended within the run, which only the machine's total ``busy`` ticks show)."""
    app = descendants(after, {server_pid})
    pg = descendants(after, {postmaster}) if postmaster else set()
    mine = descendants(after, {os.getpid()}) - app

    def group_of(pid: int, args: str) -> str:
        if pid in app:
            return "app"
        if pid in pg:
            return "PostgreSQL"
        if "redis-server" in args and f":{redis_port}" in args:
            return "Redis"
        return "browser" if pid in mine else "other processes"

    groups = dict.fromkeys(("app", "PostgreSQL", "Redis", "browser", "load client", "other processes"), 0.0)
    cpu_spent(before, after, groups, group_of)
    groups["load client"] = self_cpu * os.sysconf("SC_CLK_TCK")
    groups["other processes"] += max(0.0, busy - sum(groups.values()))
    return cpu_line(groups, seconds)


def _busy_ticks() -> int:
    """Clock ticks the whole machine spent busy (/proc/stat): what exited processes spent is in it too."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return user + nice + system + irq + softirq + steal


def _self_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def _postmaster(stack: EmbeddedStack) -> int | None:
    try:
        return int((stack.pg_data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # an external server: its processes count as "other"


# --- one run ---------------------------------------------------------------------------------------


def _serve(factory: str, dsn: str, redis_url: str, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "YITU_DATABASE_URL": dsn, "YITU_REDIS_URL": redis_url, "YITU_LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    # A session of its own, as a service is started: with the kernel's autogroup scheduling (on in
    # Debian) a session shares the CPU fairly with the others, so the server does not split one
    # share with this load client. Chromium gets a session of its own from Playwright (detached).
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(proc, url, 120, log)
    return proc, url


def _open_screens(browser: Browser, url: str, dsn: str, n: int, animate: bool) -> list[Page]:
    pages = []
    for _ in range(n):
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        pair(context, url, dsn)
        page = context.new_page()
        page.add_init_script(_SCREEN_INIT)
        if not animate:
            page.add_init_script(_NO_ANIMATION)
        page.goto(url + "/", wait_until="commit")
        pages.append(page)
    for page in pages:
        page.wait_for_function(SETTLED, timeout=180_000)
    return pages


def _probe(
    url: str, token: str, point: tuple[float, float], pages: list[Page], timeout_s: float, *, strict: bool
) -> tuple[float, int]:
    """Report one case; wait until every screen has its event (``strict``) or a live batch sent after it.

    Returns (seconds from the POST until the last screen had it, screens that registered the
    probe's own code). A screen busy with earlier batches may skip one (Dash runs a clientside
    callback on the newest value of its store), so the strict check is for quiet screens, before
    the clock starts; after the run, a batch arriving proves the WebSocket still up.
    """
    before = [p.evaluate("() => window.yitu.live.batches") for p in pages]
    t = time.monotonic()
    r = httpx.post(
        url + "/api/v1/cases",
        json=_body(point, 0),
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"probe-{uuid.uuid4().hex}"},
        timeout=30,
    )
    if r.status_code != 201:
        raise SystemExit(f"probe report failed: {r.status_code} {r.text[:300]}")
    code = r.json()["code"]
    for page, n in zip(pages, before, strict=True):
        page.wait_for_function(
            "([c, n, strict]) => window.yitu.live.seen[c] !== undefined || (!strict && window.yitu.live.batches > n)",
            arg=[code, n, strict],
            timeout=timeout_s * 1000,
        )
    elapsed = time.monotonic() - t
    return elapsed, sum(bool(p.evaluate(SEEN_JS, code)) for p in pages)


def _wait_for_load(below: float, most_s: float) -> None:
    """Wait (at most ``most_s``) until the 1-minute load average is under ``below``: on a shared
    machine, run when the other work is at a lull rather than in the middle of a burst."""
    deadline = time.monotonic() + most_s
    while below > 0 and os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(5)


def one_run(
    args: argparse.Namespace, label: str, factory: str, rnd: int, template: str, browser: Browser | None
) -> Run:
    stack = EmbeddedStack(Settings())
    redis_url = stack.redis_url().rsplit("/", 1)[0] + f"/{args.redis_db}"
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    load_at_start = _load()
    dsn = clone_database(template, "yitu_bench_rate")
    tmp = Path(tempfile.mkdtemp(prefix="bench_intake_rate_"))
    proc = None
    contexts: list[Any] = []
    try:
        with psycopg.connect(dsn) as conn:
            token = create_token(conn, name="bench-rate", role="dispatcher", area=None)[1]
        points = _points(dsn, 8000)
        proc, url = _serve(factory, dsn, redis_url, args.workers, tmp / "server.log")
        pages = _open_screens(browser, url, dsn, args.screens, args.animate) if browser is not None else []
        contexts = [p.context for p in pages]
        first_probe, _ = _probe(url, token, points[0], pages, 60, strict=True)
        tag = uuid.uuid4().hex[:8]
        _in_thread(_open_loop(url, args.rate, args.warmup, _reports(url, token, points, f"w{tag}"), 201, "warm-up"))
        started, load = time.strftime("%H:%M:%S", time.gmtime()), _load()
        baseline = _in_thread(
            _open_loop(url, args.rate, args.baseline_seconds, _healthz(url), 200, "GET /healthz (baseline)")
        )
        with psycopg.connect(dsn) as conn:
            id_before = conn.execute("SELECT max(id) FROM cases").fetchone()[0]  # type: ignore[index]
        events_before = r.xlen(STREAM)
        reloads0 = [p.evaluate(RELOADS_JS) for p in pages]
        ticks, t_run, cpu0, busy0 = cpu_ticks(), time.monotonic(), _self_cpu(), _busy_ticks()
        intake = _in_thread(
            _open_loop(url, args.rate, args.seconds, _reports(url, token, points, f"m{tag}"), 201, "POST /api/v1/cases")
        )
        cpu = _cpu_share(
            ticks,
            cpu_ticks(),
            time.monotonic() - t_run,
            proc.pid,
            _postmaster(stack),
            int(redis_url.rsplit(":", 1)[1].split("/")[0]),
            _self_cpu() - cpu0,
            _busy_ticks() - busy0,
        )
        run_s = time.monotonic() - t_run
        reloads = [(p.evaluate(RELOADS_JS) - n) / run_s for p, n in zip(pages, reloads0, strict=True)]
        last_probe, last_saw = _probe(url, token, points[1], pages, 120, strict=False)
        with psycopg.connect(dsn) as conn:
            written = conn.execute("SELECT count(*) FROM cases WHERE id > %s", (id_before,)).fetchone()[0]  # type: ignore[index]
        published = r.xlen(STREAM) - events_before
        run = Run(label, rnd, started, load_at_start, load, baseline, intake)
        resyncs = sum(p.evaluate("() => window.yitu.live.resyncs") for p in pages)
        batches = [p.evaluate("() => window.yitu.live.batches") for p in pages]
        run.notes.append(f"CPU during the reports (% of one core, {os.cpu_count()} cores): {cpu}")
        if pages:
            run.notes.append(
                f"screens: {len(pages)} connected, each saw the probe before the warm-up (all in {first_probe:.1f} s);"
                f" after the run a live batch reached every screen {last_probe:.1f} s after the probe ({last_saw} with"
                f" the probe's event); live batches per screen {min(batches)}–{max(batches)}, resyncs {resyncs}; case"
                f" layer reloads per screen during the reports {min(reloads):.1f}–{max(reloads):.1f}/s"
            )
        run.notes.append(f"cases written {written} (the last probe included), case events published {published}")
        log = [ln for ln in (tmp / "server.log").read_text(errors="replace").splitlines() if ln.strip()]
        if log:
            run.notes.append(f"server log: {len(log)} lines, e.g. {log[0][:200]}")
        return run
    finally:
        for c in contexts:
            c.close()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        r.flushdb()
        r.close()
        drop_database(dsn)


def _apps(values: list[str] | None) -> list[tuple[str, str]]:
    if not values:
        return [("app", "cli.asgi:app")]
    out = []
    for v in values:
        label, sep, factory = v.partition("=")
        if not sep or ":" not in factory:
            raise SystemExit(f"--app wants LABEL=module:factory, got {v!r}")
        out.append((label, factory))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--app", action="append", help="LABEL=module:factory to serve (repeatable; default cli.asgi:app)")
    ap.add_argument("--rate", type=float, default=100, help="reports per second (default 100)")
    ap.add_argument("--seconds", type=float, default=60, help="length of the measured run (default 60)")
    ap.add_argument("--warmup", type=float, default=10, help="untimed reports at the rate first (default 10 s)")
    ap.add_argument("--baseline-seconds", type=float, default=20, help="GET /healthz at the rate (default 20 s)")
    ap.add_argument("--screens", type=int, default=10, help="wall screens open on / (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every app, order alternating (default 3)")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1, as yitu serve)")
    ap.add_argument(
        "--max-load", type=float, default=0, help="before each run wait until the 1-minute load is under this"
    )
    ap.add_argument("--max-wait", type=float, default=900, help="…but at most this many seconds (default 900)")
    ap.add_argument("--animate", action="store_true", help="let the screens run their CSS animations")
    ap.add_argument("--scale", choices=("banner", "city"), default="banner")
    ap.add_argument("--redis-db", type=int, default=12, help="the Redis database the bench flushes and uses")
    args = ap.parse_args()
    apps = _apps(args.app)
    template = _database(args.scale)
    with psycopg.connect(template) as conn:
        n_cases = conn.execute("SELECT count(*) FROM cases").fetchone()[0]  # type: ignore[index]
    print(
        f"# bench_intake_rate — {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; {args.scale} scale ({n_cases:,} cases), "
        f"{args.screens} screens, {args.rate:g} reports/s for {args.seconds:g} s after {args.warmup:g} s warm-up, "
        f"baseline GET /healthz at the same rate for {args.baseline_seconds:g} s; uvicorn --workers {args.workers}"
        f"{'' if args.animate else '; screens without CSS animations'}",
        flush=True,
    )
    runs: list[Run] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS) if args.screens else None
        for rnd in range(1, args.rounds + 1):
            for label, factory in apps if rnd % 2 else list(reversed(apps)):
                _wait_for_load(args.max_load, args.max_wait)
                run = one_run(args, label, factory, rnd, template, browser)
                runs.append(run)
                print(
                    f"round {rnd}  {label} ({factory})  {run.started} UTC  load average {run.load_at_start} before"
                    f" the server started, {run.load} before the baseline"
                )
                for stats in (run.intake, run.baseline):
                    print("  " + stats.line())
                for note in run.notes:
                    print("  " + note)
                sys.stdout.flush()
        if browser is not None:
            browser.close()
    print(
        f"\n{'app':<12}{'round':>6}{'load 1m':>9}{'intake p50':>12}{'p95':>8}{'p99':>8}{'max':>8}{'errors':>8}"
        f"{'healthz p50':>13}{'p95':>8}"
    )
    for run in runs:
        i, b = run.intake, run.baseline
        print(
            f"{run.label:<12}{run.round:>6}{run.load.split()[0]:>9}{statistics.median(i.lat_ms):>12.1f}"
            f"{i.pct(0.95):>8.1f}{i.pct(0.99):>8.1f}{max(i.lat_ms):>8.0f}{i.errors:>8}"
            f"{statistics.median(b.lat_ms):>13.1f}{b.pct(0.95):>8.1f}"
        )
    for label, _ in apps:
        p95s = [r.intake.pct(0.95) for r in runs if r.label == label]
        worst = max(p95s)
        verdict = "met" if statistics.median(p95s) < TARGET_P95_MS else "NOT met"
        print(
            f"{label}: intake p95 median over {len(p95s)} rounds {statistics.median(p95s):.1f} ms (worst {worst:.1f}) "
            f"— target p95 < {TARGET_P95_MS:g} ms at {args.rate:g}/s with {args.screens} screens: {verdict}"
        )


if __name__ == "__main__":
    main()

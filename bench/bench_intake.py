"""Sustained case intake (grid assignment + audit + outbox) and cases-in-area, on the city scale.

Run (wrk is the load client: ``apt-get install wrk``; without it, ``--client httpx``)::

    .venv/bin/python bench/bench_intake.py [--seconds 20] [--workers 2] [--connections 32]

The city-scale database ``yitu_bench`` (``yitu seed demo --scale city --seed 1``, seeded here
when missing, as bench/bench_spatial.py does) is never written to: it is cloned
(CREATE DATABASE … TEMPLATE) into a scratch database, migrated, used and dropped.
Two measurements in the same run, printed side by side:

* raw SQL: ``geodata.cases.intake_many`` (the intake statement as its own transaction, as the
  API's lanes run it) called from threads on pooled connections, one report per statement and
  16 per statement: what the database does without HTTP; and ``cases_in_area`` for areas of
  every level;
* HTTP: ``uvicorn --factory cli.asgi:app --workers N --loop uvloop --http httptools`` on
  loopback. Intake is driven by ``wrk`` (one thread in C, so the load client takes a small share
  of the machine's CPU) with a Lua script POSTing varied points, types and descriptions with the
  bearer token; every answer must be 201, and the cases written and events published (by the
  outbox relay, after the commit) are counted in PostGIS and Redis, not taken from the client.
  Cases-in-area is one request at a time over every area of levels 1–3 and 200 cells (latency,
  not throughput).

The load average before and after the HTTP run is printed: on a shared machine, say what else ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from psycopg_pool import ConnectionPool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Ticks, clone_database, cpu_line, cpu_spent, cpu_ticks, descendants, drop_database, wait_healthy
from cli.stack import EmbeddedStack
from geodata import cases as store
from geodata.migrate import migrate
from geodata.queries import cases_in_area
from services.deadlines import deadline_rules
from services.events import STREAM
from services.identity import create_token
from services.settings import Settings

SOURCE_DB = "yitu_bench"
TYPES = ["neighbour", "marriage_family", "grassland", "private_lending", "land_transfer", "labour", "contract"]
N_BODIES = 4000  # distinct request bodies the load client cycles through


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _fmt(name: str, count: int, rate: float, median: float, p95: float, p99: float) -> str:
    return f"{name:<44} n={count:>7}  {rate:>7.0f}/s  median {median:6.2f} ms  p95 {p95:6.2f} ms  p99 {p99:6.2f} ms"


def _line(name: str, lat_ms: list[float], count: int, seconds: float) -> str:
    return _fmt(name, count, count / seconds, statistics.median(lat_ms), _pct(lat_ms, 0.95), _pct(lat_ms, 0.99))


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _connections_per_worker(port: int) -> str:
    """How the load client's keep-alive connections fell on the workers (``ss``; '' without it).

    The workers accept from one shared socket: connections opened all at once can land
    unevenly (say 13/3), and then one worker is saturated while the other idles.
    """
    if not shutil.which("ss"):
        return ""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=False,  # no answer from ss only leaves the split unreported
    ).stdout
    per_pid: dict[str, int] = {}
    for line in out.splitlines():
        for pid in set(re.findall(r"pid=(\d+)", line)):
            per_pid[pid] = per_pid.get(pid, 0) + 1
    return "/".join(str(n) for n in sorted(per_pid.values(), reverse=True))


def _client_cpu() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


_PG_SERVER = ("postgres: walwriter", "postgres: checkpointer", "postgres: background writer")


def _cpu_share(
    before: Ticks, after: Ticks, seconds: float, server_pid: int, scratch: str, client_seconds: float
) -> str:
    """Where the machine's CPU went during a run, in % of one core (2 cores = 200%).

    ``client_seconds``: the load client's CPU (wrk has exited by now: it is counted from this
    process's rusage of its children, and the httpx client is this process itself)."""
    app = descendants(after, {server_pid})  # the uvicorn workers are children (and grandchildren) of the server

    def group_of(pid: int, args: str) -> str:
        if pid in app:
            return "app workers"
        if scratch in args or args.startswith(_PG_SERVER):  # the bench database's backends, WAL, checkpoints
            return "PostgreSQL"
        return "Redis" if "redis-server" in args else "other processes"

    groups: dict[str, float] = {"app workers": 0, "PostgreSQL": 0, "Redis": 0, "load client": 0, "other processes": 0}
    cpu_spent(before, after, groups, group_of)
    groups["load client"] = client_seconds * os.sysconf("SC_CLK_TCK")
    return cpu_line(groups, seconds)


def _ensure_source(server: str) -> None:
    """Seed the city scale into ``yitu_bench`` unless it is there (a few minutes)."""
    admin = psycopg.conninfo.make_conninfo(server, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        present = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (SOURCE_DB,)).fetchone()
    if present:
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_spatial import _ensure_database

    _ensure_database(server, SOURCE_DB, reseed=False)


def _points(dsn: str, n: int) -> list[tuple[float, float]]:
    """Points inside the city's grid cells (plus ~0.5% outside the territory)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT (ST_Dump(ST_GeneratePoints(geom, 3))).geom AS p "
            "FROM areas WHERE level = 4) s"
        ).fetchall()
    pts = [(float(x), float(y)) for x, y in rows]
    rng = random.Random(1)
    return [rng.choice(pts) if rng.random() > 0.005 else (100.0, 30.0) for _ in range(n)]


def _body(pt: tuple[float, float], i: int) -> dict[str, Any]:
    return {
        "type": TYPES[i % len(TYPES)],
        "description": f"压测案件 {i}: 邻里因通行发生争议",
        "lon": pt[0],
        "lat": pt[1],
        "channel": "grid_app",
        "parties": [{"name": "张三", "phone": "13800000000"}, {"name": "李四"}],
    }


# --- raw SQL -------------------------------------------------------------------------------------


def bench_sql_intake(dsn: str, points: list[tuple[float, float]], seconds: float, threads: int, batch: int = 1) -> str:
    """The intake statement straight through psycopg from ``threads`` threads, ``batch`` reports
    per statement in autocommit (1: a report alone; more: as the API's lanes write under load).
    Latency is per statement; the rate counts cases."""
    rules = deadline_rules(Settings(_env_file=None))
    actor = store.Actor("bench-sql", "dispatcher", 0)
    lat_ms: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))

    with ConnectionPool(dsn, min_size=threads, max_size=threads, kwargs={"autocommit": True}) as pool:

        def run() -> None:
            mine = []
            while time.monotonic() < stop:
                reqs = []
                for _ in range(batch):
                    i = next(counter)
                    b = _body(points[i % len(points)], i)
                    reqs.append(
                        store.IntakeRequest(
                            store.NewCase(b["type"], b["description"], b["lon"], b["lat"], b["channel"], b["parties"]),
                            actor,
                        )
                    )
                t = time.perf_counter()
                with pool.connection() as conn:
                    store.intake_many(conn, reqs, rules, datetime.now(UTC))
                mine.append((time.perf_counter() - t) * 1000)
            with lock:
                lat_ms.extend(mine)

        started = time.monotonic()
        workers = [threading.Thread(target=run) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.monotonic() - started
    name = f"SQL intake ({threads} connections, {batch} per statement)"
    return _fmt(
        name,
        len(lat_ms) * batch,
        len(lat_ms) * batch / elapsed,
        statistics.median(lat_ms),
        _pct(lat_ms, 0.95),
        _pct(lat_ms, 0.99),
    )


def bench_sql_area(dsn: str, codes: list[str]) -> str:
    lat_ms = []
    with psycopg.connect(dsn) as conn:
        for _ in range(3):
            for code in codes:
                t = time.perf_counter()
                cases_in_area(conn, code, limit=50)
                lat_ms.append((time.perf_counter() - t) * 1000)
    return _line("SQL cases_in_area (limit 50)", lat_ms, len(lat_ms), sum(lat_ms) / 1000)


# --- HTTP: wrk -----------------------------------------------------------------------------------

_WRK_SCRIPT = r"""
-- POST /api/v1/cases with varied bodies (generated by bench/bench_intake.py), each request with an
-- Idempotency-Key of its own (run tag, thread, sequence): a report without one is refused (428).
local token = %(token)s
local tag = %(tag)s
local bodies = %(bodies)s
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
local i = 0

local next_id = 0
function setup(thread) thread:set("id", next_id); next_id = next_id + 1 end
function init(args) i = (id or 0) * 997 end
function request()
  i = i + 1
  headers["Idempotency-Key"] = tag .. "-" .. (id or 0) .. "-" .. i
  return wrk.format("POST", "/api/v1/cases", headers, bodies[(i %% #bodies) + 1])
end
function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    "WRK {\"requests\": %%d, \"duration_us\": %%d, \"status_errors\": %%d, \"socket_errors\": %%d, " ..
    "\"p50_us\": %%d, \"p95_us\": %%d, \"p99_us\": %%d, \"max_us\": %%d}\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def _lua_string(s: str) -> str:
    level = "=" * 3
    assert f"]{level}]" not in s
    return f"[{level}[{s}]{level}]"


def _wrk_script(token: str, points: list[tuple[float, float]], path: Path) -> None:
    bodies = [json.dumps(_body(points[i % len(points)], i), ensure_ascii=False) for i in range(N_BODIES)]
    text = _WRK_SCRIPT % {
        "token": _lua_string(token),
        "tag": _lua_string(f"wrk-{uuid.uuid4().hex[:12]}"),
        "bodies": "{" + ",\n".join(map(_lua_string, bodies)) + "}",
    }
    path.write_text(text, encoding="utf-8")


def http_intake_wrk(url: str, script: Path, seconds: float, connections: int, threads: int) -> dict[str, Any]:
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:.0f}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK "))
    res = json.loads(line[4:])
    return {
        "n": res["requests"],
        "seconds": res["duration_us"] / 1e6,
        "errors": res["status_errors"] + res["socket_errors"],
        "median": res["p50_us"] / 1000,
        "p95": res["p95_us"] / 1000,
        "p99": res["p99_us"] / 1000,
        "max": res["max_us"] / 1000,
    }


# --- HTTP: httpx (a Python client; it takes a core of its own) -----------------------------------


async def _httpx_intake(
    url: str, token: str, points: list[tuple[float, float]], seconds: float, clients: int
) -> dict[str, Any]:
    lat_ms: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    tag = f"httpx-{uuid.uuid4().hex[:12]}"  # each report its own Idempotency-Key (required)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:

        async def one(k: int) -> None:
            nonlocal errors
            i = k
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = await client.post(
                    "/api/v1/cases", json=_body(points[i % len(points)], i), headers={"Idempotency-Key": f"{tag}-{i}"}
                )
                lat_ms.append((time.perf_counter() - t) * 1000)
                errors += r.status_code != 201
                i += clients

        started = time.monotonic()
        await asyncio.gather(*(one(k) for k in range(clients)))
        elapsed = time.monotonic() - started
    return {
        "n": len(lat_ms),
        "seconds": elapsed,
        "errors": errors,
        "median": statistics.median(lat_ms),
        "p95": _pct(lat_ms, 0.95),
        "p99": _pct(lat_ms, 0.99),
        "max": max(lat_ms),
    }


async def _http_area(url: str, token: str, codes: list[str]) -> list[float]:
    lat_ms = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for _ in range(3):
            for code in codes:
                t = time.perf_counter()
                r = await client.get(f"/api/v1/areas/{code}/cases", params={"limit": 50})
                r.raise_for_status()
                lat_ms.append((time.perf_counter() - t) * 1000)
    return lat_ms


def _serve(dsn: str, redis_url: str, port: int, workers: int, pool_max: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "YITU_DATABASE_URL": dsn,
        "YITU_REDIS_URL": redis_url,
        "YITU_SCHEDULER_INTERVAL": "0",
        "YITU_LOG_LEVEL": "WARNING",
        "YITU_DB_POOL_MAX": str(pool_max),
    }
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "cli.asgi:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_healthy(proc, f"http://127.0.0.1:{port}", 120, log)
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20, help="length of each timed run")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument(
        "--connections", "--clients", type=int, default=32, help="concurrent keep-alive connections of the load client"
    )
    ap.add_argument(
        "--client",
        choices=("wrk", "httpx"),
        default="wrk" if shutil.which("wrk") else "httpx",
        help="the intake load client (default wrk when installed)",
    )
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--pool-max", type=int, default=10, help="YITU_DB_POOL_MAX of each worker")
    ap.add_argument("--sql-threads", type=int, default=8)
    ap.add_argument("--port", type=int, default=18050)
    ap.add_argument(
        "--keep-server",
        action="store_true",
        help="after the runs, leave uvicorn and the scratch database up until Enter (to profile)",
    )
    args = ap.parse_args()

    stack = EmbeddedStack(Settings())
    server = stack.database_url()
    _ensure_source(server)
    redis_url = stack.redis_url().rsplit("/", 1)[0] + "/14"
    t = time.monotonic()
    dsn = clone_database(psycopg.conninfo.make_conninfo(server, dbname=SOURCE_DB), "yitu_bench_intake")
    scratch = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    proc = None
    tmp = Path(tempfile.mkdtemp(prefix="bench_intake_"))
    try:
        migrate(dsn)
        with psycopg.connect(dsn) as conn:
            n_cases = conn.execute("SELECT count(*) FROM cases").fetchone()[0]
            n_cells = conn.execute("SELECT count(*) FROM areas WHERE level = 4").fetchone()[0]
            codes = [
                r[0]
                for r in conn.execute(
                    "(SELECT code FROM areas WHERE level < 4) UNION ALL "
                    "(SELECT code FROM areas WHERE level = 4 ORDER BY random() LIMIT 200)"
                )
            ]
            conn.execute("ANALYZE cases")
            _, token = create_token(conn, name="bench", role="dispatcher", area=None)
        print(
            f"city scale: {n_cases:,} cases, {n_cells:,} grid cells; scratch clone {scratch} "
            f"({time.monotonic() - t:.0f} s); {os.cpu_count()} CPUs; {args.seconds:.0f} s per run; {_load()}"
        )
        points = _points(dsn, 50_000)
        print(bench_sql_intake(dsn, points, args.seconds, args.sql_threads))
        print(bench_sql_intake(dsn, points, args.seconds, args.sql_threads, batch=16))
        print(bench_sql_area(dsn, codes))

        r = redis.Redis.from_url(redis_url)
        r.delete(STREAM)
        proc = _serve(dsn, redis_url, args.port, args.workers, args.pool_max, tmp / "uvicorn.log")
        url = f"http://127.0.0.1:{args.port}"
        script = tmp / "intake.lua"
        _wrk_script(token, points, script)

        def run(seconds: float) -> dict[str, Any]:
            if args.client == "wrk":
                return http_intake_wrk(url, script, seconds, args.connections, args.wrk_threads)
            return asyncio.run(_httpx_intake(url, token, points, seconds, args.connections))

        run(3)  # warm-up: prepared statements, pools, the token cache
        with psycopg.connect(dsn) as conn:
            # Start counting once the warm-up's last requests are done (a case commits before
            # its event is added: counting in between would pair one run's case with the other's event).
            id_before, events_before = -1, -1
            while True:
                time.sleep(0.5)
                now = (conn.execute("SELECT max(id) FROM cases").fetchone()[0], r.xlen(STREAM))
                conn.commit()
                if now == (id_before, events_before):
                    break
                id_before, events_before = now
        load_before = _load()
        ticks_before, t_run, client_before = cpu_ticks(), time.monotonic(), _client_cpu()
        split: list[str] = []
        sampler = threading.Timer(min(3.0, args.seconds / 3), lambda: split.append(_connections_per_worker(args.port)))
        sampler.start()
        res = run(args.seconds)
        sampler.join()
        cpu = _cpu_share(
            ticks_before, cpu_ticks(), time.monotonic() - t_run, proc.pid, scratch, _client_cpu() - client_before
        )
        # The requests in flight when the client stopped finish on their own (a case is
        # committed before its event is added, and a slow XADD is retried): count when every
        # case written has its event, or after 15 s, when the difference is what was lost.
        settle = time.monotonic() + 15
        while True:
            time.sleep(0.5)
            with psycopg.connect(dsn) as conn:
                written = conn.execute("SELECT count(*) FROM cases WHERE id > %s", (id_before,)).fetchone()[0]
            published = r.xlen(STREAM) - events_before
            if written == published or time.monotonic() > settle:
                break
        missing: list[str] = []
        if written != published:  # name the cases whose event is missing
            with psycopg.connect(dsn) as conn:
                made = {c for (c,) in conn.execute("SELECT code FROM cases WHERE id > %s", (id_before,))}
            missing = sorted(made - {json.loads(f[b"event"])["code"] for _, f in r.xrange(STREAM)})
        name = f"HTTP POST /api/v1/cases ({args.workers} workers, {args.connections} conns, {args.client})"
        print(
            _fmt(name, res["n"], res["n"] / res["seconds"], res["median"], res["p95"], res["p99"])
            + f"  max {res['max']:.0f} ms  errors {res['errors']}  cases written {written}"
            + f"  events published {published}"
        )
        print(f"  {load_before} before the HTTP intake run, {_load()} after")
        print(f"  CPU during it (% of one core, {os.cpu_count()} cores = {100 * (os.cpu_count() or 1)}%): {cpu}")
        if missing:
            print(f"  cases without an event in the stream: {len(missing)}, e.g. {', '.join(missing[:3])}")
        if split and split[0]:
            print(f"  connections per worker: {split[0]} (one shared listening socket: the kernel hands them out)")
        area_ms = asyncio.run(_http_area(url, token, codes))
        print(
            _line("HTTP GET /api/v1/areas/{code}/cases", area_ms, len(area_ms), sum(area_ms) / 1000)
            + f"  max {max(area_ms):.1f} ms over {len(codes)} areas of every level"
        )
        warnings = [ln for ln in (tmp / "uvicorn.log").read_text(errors="replace").splitlines() if ln.strip()]
        if warnings:
            print(f"  server log: {len(warnings)} lines, e.g. {warnings[0][:160]}")
        if args.keep_server:
            input(f"uvicorn (pid {proc.pid}) on {url}, token {token}, wrk script {script}; Enter to stop ")
        r.delete(STREAM)
        r.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        drop_database(dsn)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

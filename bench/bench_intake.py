"""Sustained case intake (grid assignment + audit + publish) and cases-in-area, on the city scale.

Run: ``.venv/bin/python bench/bench_intake.py [--seconds 20] [--workers 2] [--clients 32]``.

The city-scale database ``yitu_bench`` (``yitu seed demo --scale city``) is never written to: it
is cloned (CREATE DATABASE … TEMPLATE) into a scratch database, migrated, used and dropped.
Two measurements in the same run, printed side by side:

* raw SQL: ``geodata.cases.intake`` called from threads on pooled connections (what one request
  does in the database, without HTTP), and ``cases_in_area`` for areas of every level;
* HTTP: ``uvicorn --factory api.asgi:app --workers N`` on loopback, driven by an asyncio httpx
  client with keep-alive connections: POST /api/v1/cases with a bearer token, then
  GET /api/v1/areas/{code}/cases.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from psycopg import sql
from psycopg_pool import ConnectionPool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.auth import create_token  # noqa: E402
from api.events import STREAM  # noqa: E402
from api.scheduler import deadline_rules  # noqa: E402
from dashboard.settings import Settings  # noqa: E402
from dashboard.stack import EmbeddedStack  # noqa: E402
from geodata import cases as store  # noqa: E402
from geodata.migrate import migrate  # noqa: E402
from geodata.queries import cases_in_area  # noqa: E402

SOURCE_DB = "yitu_bench"
TYPES = ["neighbour", "marriage_family", "grassland", "private_lending", "land_transfer", "labour", "contract"]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _line(name: str, lat_ms: list[float], count: int, seconds: float) -> str:
    return (f"{name:<34} n={count:>7}  {count / seconds:>8.0f}/s  median {statistics.median(lat_ms):6.2f} ms  "
            f"p95 {_pct(lat_ms, 0.95):6.2f} ms  p99 {_pct(lat_ms, 0.99):6.2f} ms")


def _points(dsn: str, n: int) -> list[tuple[float, float]]:
    """Points inside the city's grid cells (plus ~0.5% outside the territory)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT (ST_Dump(ST_GeneratePoints(geom, 3))).geom AS p "
            "FROM areas WHERE level = 4) s").fetchall()
    pts = [(float(x), float(y)) for x, y in rows]
    rng = random.Random(1)
    return [rng.choice(pts) if rng.random() > 0.005 else (100.0, 30.0) for _ in range(n)]


def _body(pt: tuple[float, float], i: int) -> dict[str, Any]:
    return {"type": TYPES[i % len(TYPES)], "description": f"压测案件 {i}: 邻里因通行发生争议",
            "lon": pt[0], "lat": pt[1], "channel": "grid_app",
            "parties": [{"name": "张三", "phone": "13800000000"}, {"name": "李四"}]}


def bench_sql_intake(dsn: str, points: list[tuple[float, float]], seconds: float, threads: int) -> str:
    rules = deadline_rules(Settings(_env_file=None))
    actor = store.Actor("bench-sql", "dispatcher", 0)
    lat_ms: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))

    with ConnectionPool(dsn, min_size=threads, max_size=threads) as pool:
        def run() -> None:
            mine = []
            while time.monotonic() < stop:
                i = next(counter)
                b = _body(points[i % len(points)], i)
                new = store.NewCase(b["type"], b["description"], b["lon"], b["lat"], b["channel"], b["parties"])
                t = time.perf_counter()
                with pool.connection() as conn:
                    store.intake(conn, new, actor, rules, datetime.now(timezone.utc))
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
    return _line(f"SQL intake ({threads} connections)", lat_ms, len(lat_ms), elapsed)


def bench_sql_area(dsn: str, codes: list[str]) -> str:
    lat_ms = []
    with psycopg.connect(dsn) as conn:
        for _ in range(3):
            for code in codes:
                t = time.perf_counter()
                cases_in_area(conn, code, limit=50)
                lat_ms.append((time.perf_counter() - t) * 1000)
    return _line("SQL cases_in_area (limit 50)", lat_ms, len(lat_ms), sum(lat_ms) / 1000)


async def _http_intake(url: str, token: str, points: list[tuple[float, float]], seconds: float,
                       clients: int) -> tuple[list[float], int, float]:
    lat_ms: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        async def one(k: int) -> None:
            nonlocal errors
            i = k
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = await client.post("/api/v1/cases", json=_body(points[i % len(points)], i))
                lat_ms.append((time.perf_counter() - t) * 1000)
                errors += r.status_code != 201
                i += clients

        started = time.monotonic()
        await asyncio.gather(*(one(k) for k in range(clients)))
        return lat_ms, errors, time.monotonic() - started


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


def _serve(dsn: str, redis_url: str, port: int, workers: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "YITU_DATABASE_URL": dsn, "YITU_REDIS_URL": redis_url, "YITU_SCHEDULER_INTERVAL": "0",
           "YITU_LOG_LEVEL": "WARNING", "YITU_DB_POOL_MAX": "20"}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.asgi:app", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"uvicorn exited: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit("uvicorn did not become healthy in 120 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--clients", type=int, default=32, help="concurrent keep-alive connections of the load client")
    ap.add_argument("--sql-threads", type=int, default=8)
    ap.add_argument("--port", type=int, default=18050)
    args = ap.parse_args()

    stack = EmbeddedStack(Settings())
    server = stack.database_url()
    admin = psycopg.conninfo.make_conninfo(server, dbname="postgres")
    scratch = f"yitu_bench_intake_{uuid.uuid4().hex[:8]}"
    redis_url = stack.redis_url().rsplit("/", 1)[0] + "/14"
    t = time.monotonic()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(scratch), sql.Identifier(SOURCE_DB)))
    dsn = psycopg.conninfo.make_conninfo(server, dbname=scratch)
    proc = None
    try:
        migrate(dsn)
        with psycopg.connect(dsn) as conn:
            n_cases = conn.execute("SELECT count(*) FROM cases").fetchone()[0]
            n_cells = conn.execute("SELECT count(*) FROM areas WHERE level = 4").fetchone()[0]
            codes = [r[0] for r in conn.execute(
                "(SELECT code FROM areas WHERE level < 4) UNION ALL "
                "(SELECT code FROM areas WHERE level = 4 ORDER BY random() LIMIT 200)")]
            conn.execute("ANALYZE cases")
            _, token = create_token(conn, name="bench", role="dispatcher", area=None)
        print(f"city scale: {n_cases:,} cases, {n_cells:,} grid cells; scratch clone {scratch} "
              f"({time.monotonic() - t:.0f} s); {os.cpu_count()} CPUs; {args.seconds:.0f} s per run")
        points = _points(dsn, 50_000)
        print(bench_sql_intake(dsn, points, args.seconds, args.sql_threads))
        print(bench_sql_area(dsn, codes))

        r = redis.Redis.from_url(redis_url)
        r.delete(STREAM)
        log = Path("/tmp") / f"{scratch}.log"
        proc = _serve(dsn, redis_url, args.port, args.workers, log)
        url = f"http://127.0.0.1:{args.port}"
        asyncio.run(_http_intake(url, token, points, 2, args.clients))  # warm-up: prepared statements, pools
        before = r.xlen(STREAM)
        lat_ms, errors, elapsed = asyncio.run(_http_intake(url, token, points, args.seconds, args.clients))
        published = r.xlen(STREAM) - before
        print(_line(f"HTTP POST /api/v1/cases ({args.workers} workers, {args.clients} conns)", lat_ms, len(lat_ms),
                    elapsed) + f"  errors {errors}  events published {published}")
        area_ms = asyncio.run(_http_area(url, token, codes))
        print(_line("HTTP GET /api/v1/areas/{code}/cases", area_ms, len(area_ms), sum(area_ms) / 1000)
              + f"  max {max(area_ms):.1f} ms over {len(codes)} areas of every level")
        r.delete(STREAM)
        r.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))


if __name__ == "__main__":
    main()

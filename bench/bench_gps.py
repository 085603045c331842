"""Benchmark GPS ingest through the HTTP API against a raw-SQL baseline, in the same run.

    .venv/bin/python bench/bench_gps.py [--positions 100000] [--batch 500] [--vans 50] [--clients 1,4]

Makes its own database on the configured server (``yitu_bench_gps``, migrated, ``--vans`` vans, an
admin token), starts ``yitu serve`` on a free loopback port against it (Redis: the configured one,
database index 13), and posts the same generated rows — every van driving at ~50 km/h, one ping a
second, in time order — as batches to ``POST /api/v1/vans/positions`` from 1 and then N concurrent
clients (keep-alive httpx). Then, with the history emptied each time, it loads the very same
batches straight into PostGIS:

  raw COPY     COPY (text format) into van_positions (the floor: no duplicate check, no latest fix)
  raw INSERT   the API's own statement (unnest, ON CONFLICT DO NOTHING), no locking, no vans update

and prints, per way, median and p95 batch latency in milliseconds and positions per second.
Results go into docs/performance.md by hand.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, wait_healthy
from cli.stack import EmbeddedStack
from geodata.migrate import migrate
from geodata.queries import query
from services.identity import create_token
from services.settings import Settings

Row = tuple[str, datetime, float, float, float, float]


def _fresh_database(server_dsn: str, name: str, vans: int) -> str:
    admin = psycopg.conninfo.make_conninfo(server_dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(server_dsn, dbname=name)
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        conn.cursor().executemany(
            "INSERT INTO vans (id, name) VALUES (%s, %s)", [(f"B{i:03d}", f"bench van {i}") for i in range(vans)]
        )
    return dsn


def _rows(n: int, vans: int, start: datetime) -> list[Row]:
    """n pings: each van one a second, ~50 km/h eastwards from its own start, interleaved by time."""
    out: list[Row] = []
    for k in range(n):
        v, step = k % vans, k // vans
        out.append((f"B{v:03d}", start + timedelta(seconds=step), 107.0 + 0.0002 * step, 38.0 + 0.01 * v, 50.0, 90.0))
    return out


def _body(batch: list[Row]) -> bytes:
    import json

    return json.dumps(
        {
            "positions": [
                {"van": r[0], "time": r[1].isoformat(), "lon": r[2], "lat": r[3], "speed": r[4], "heading": r[5]}
                for r in batch
            ]
        }
    ).encode()


def _stats(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def _reset(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE van_positions")
        conn.execute(
            "UPDATE vans SET geom = NULL, last_seen_at = NULL, odometer_km = 0, heading = NULL, speed_kmh = NULL"
        )


def _api(url: str, token: str, bodies: list[bytes], clients: int) -> tuple[list[float], float]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    local = [httpx.Client(base_url=url, headers=headers, timeout=60) for _ in range(clients)]

    def post(i: int) -> float:
        t0 = time.perf_counter()
        r = local[i % clients].post("/api/v1/vans/positions", content=bodies[i])
        if r.status_code != 200:
            raise SystemExit(f"batch {i}: {r.status_code} {r.text[:300]}")
        return time.perf_counter() - t0

    post(0)  # warm: partitions, prepared statements, connections
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        lat = list(ex.map(post, range(1, len(bodies))))
    wall = time.perf_counter() - t0
    for c in local:
        c.close()
    return lat, wall


def _raw(dsn: str, batches: list[list[Row]], how: str) -> tuple[list[float], float]:
    lat: list[float] = []
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "SELECT yitu_ensure_month_partitions('van_positions'::regclass, %s, %s)",
            (batches[0][0][1].date() - timedelta(days=1), batches[-1][-1][1].date() + timedelta(days=1)),
        )
        conn.commit()
        t_all = time.perf_counter()
        for i, batch in enumerate(batches):
            t0 = time.perf_counter()
            if how == "copy":
                with conn.cursor().copy(
                    "COPY van_positions (van_id, recorded_at, geom, speed_kmh, heading) FROM STDIN"
                ) as cp:
                    for r in batch:
                        cp.write_row((r[0], r[1], f"SRID=4326;POINT({r[2]} {r[3]})", r[4], r[5]))
            else:
                cols = list(zip(*batch))
                conn.execute(
                    query("van_positions_insert"),
                    {
                        "van": list(cols[0]),
                        "time": list(cols[1]),
                        "lon": list(cols[2]),
                        "lat": list(cols[3]),
                        "speed": list(cols[4]),
                        "heading": list(cols[5]),
                    },
                    prepare=True,
                ).fetchall()
            conn.commit()
            if i:  # the first batch warms, as for the API
                lat.append(time.perf_counter() - t0)
            else:
                t_all = time.perf_counter()
        wall = time.perf_counter() - t_all
    return lat, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--positions", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--vans", type=int, default=50)
    ap.add_argument("--clients", default="1,4", help="comma-separated concurrent client counts")
    ap.add_argument("--database", default="yitu_bench_gps")
    args = ap.parse_args()

    stack = EmbeddedStack(Settings())
    stack.up()
    dsn = _fresh_database(stack.database_url(), args.database, args.vans)
    with psycopg.connect(dsn) as conn:
        _, token = create_token(conn, name="bench", role="admin", area=None)
    redis_url = stack.redis_url().rsplit("/", 1)[0] + "/13"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    rows = _rows(args.positions, args.vans, start)
    batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
    bodies = [_body(b) for b in batches]
    n_timed = sum(len(b) for b in batches[1:])

    port = free_port()
    # The server writes its log here; kept (delete=False) for a look when it does not come up.
    with tempfile.NamedTemporaryFile(prefix="bench-gps-serve-", suffix=".log", delete=False) as log:
        env = {
            **os.environ,
            "YITU_DATABASE_URL": dsn,
            "YITU_REDIS_URL": redis_url,
            "YITU_PORT": str(port),
            "YITU_HOST": "127.0.0.1",
            "YITU_SCHEDULER_INTERVAL": "0",
            "YITU_LOG_LEVEL": "WARNING",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        results: list[tuple[str, list[float], float]] = []
        try:
            wait_healthy(server, url, 60, Path(log.name))
            for clients in (int(c) for c in args.clients.split(",")):
                _reset(dsn)
                lat, wall = _api(url, token, bodies, clients)
                results.append((f"API, {clients} client{'s' if clients > 1 else ''}", lat, wall))
                with psycopg.connect(dsn) as conn:
                    stored = conn.execute("SELECT count(*) FROM van_positions").fetchone()[0]  # type: ignore[index]
                    odo = conn.execute("SELECT sum(odometer_km) FROM vans").fetchone()[0]  # type: ignore[index]
                assert stored == len(rows), (stored, len(rows))
        finally:
            server.terminate()
            server.wait(timeout=20)
    for how in ("copy", "insert"):
        _reset(dsn)
        lat, wall = _raw(dsn, batches, how)
        results.append((f"raw {how.upper()}", lat, wall))

    print(
        f"GPS ingest: {len(rows):,} positions, {args.vans} vans, batches of {args.batch} "
        f"({len(batches) - 1} timed after one warm-up); {platform.node()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print(f"fleet odometer after the API run: {odo:,.1f} km")
    print(f"{'way':<22}{'median ms':>11}{'p95 ms':>9}{'positions/s':>13}")
    for name, lat, wall in results:
        med, p95 = _stats(lat)
        print(f"{name:<22}{med * 1000:>11.1f}{p95 * 1000:>9.1f}{n_timed / wall:>13,.0f}")
    import redis

    r = redis.Redis.from_url(redis_url)
    r.flushdb()  # the bench's own index: its stream and live state
    r.close()
    admin = psycopg.conninfo.make_conninfo(stack.database_url(), dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.database)))


if __name__ == "__main__":
    main()

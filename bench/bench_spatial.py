"""Benchmark the spatial queries on the city-scale territory.

    .venv/bin/python bench/bench_spatial.py [--runs 200] [--database yitu_bench] [--reseed]

Seeds the city scale (``yitu seed demo --scale city``) into its own database on the configured
server the first time (several minutes), then times, for each query, three ways in the same run:

  api    the yitu function (geodata.queries), as the API and the dashboard call it
  raw    the same SQL text sent straight through psycopg (the baseline: the database's own cost)
  naive  for context, the obvious alternative a careful engineer would avoid (polygon tests
         over every case for cases-in-area; a geography cast per row for cameras-near)

and prints median and p95 in milliseconds. Results go into docs/performance.md by hand.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.stack import EmbeddedStack
from geodata import queries
from geodata.migrate import migrate
from services.settings import Settings

NAIVE_CASES = """SELECT c.id, c.code FROM cases c JOIN areas a ON ST_Intersects(a.geom, c.geom)
                 WHERE a.code = %(code)s ORDER BY c.reported_at DESC, c.id DESC LIMIT %(limit)s"""
NAIVE_CAMERAS = """SELECT id FROM cameras WHERE ST_DWithin(geom::geography,
                   ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography, %(radius)s)"""


def _stats(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]


def _newest_cases(code: str) -> dict[str, object]:
    """The parameters of ``cases_in_area.sql`` for an area's 100 newest cases, any step and type."""
    return {"code": code, "step": None, "type": None, "since": None, "until": None, "limit": 100, "offset": 0}


def _compare(items: list, *fns: Callable[[object], object]) -> list[tuple[float, float]]:
    """Time each function on the same items, alternating per item so that caches favour none.

    One untimed pass over all items first warms the buffers and the prepared plans.
    """
    for item in items:
        for fn in fns:
            fn(item)
    times: list[list[float]] = [[] for _ in fns]
    for item in items:
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn(item)
            times[k].append((time.perf_counter() - t0) * 1000)
    return [_stats(t) for t in times]


def _ensure_database(server_dsn: str, name: str, reseed: bool) -> str:
    admin = psycopg.conninfo.make_conninfo(server_dsn, dbname="postgres")
    dsn = psycopg.conninfo.make_conninfo(server_dsn, dbname=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        cells = conn.execute("SELECT count(*) FROM areas WHERE level = 4").fetchone()[0]  # type: ignore[index]
    if reseed or cells < 1000:
        from geodata.demo.seed import seed_demo

        print(f"seeding the city scale into {name} (a few minutes)…", file=sys.stderr)
        t0 = time.perf_counter()
        counts = seed_demo(dsn, "city", seed=1, replace=True, progress=True)
        print(f"seeded in {time.perf_counter() - t0:.0f} s: {counts}", file=sys.stderr)
    return dsn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200, help="timed runs per query (default 200)")
    ap.add_argument("--database", default="yitu_bench", help="database for the city-scale data (default yitu_bench)")
    ap.add_argument("--reseed", action="store_true", help="seed the city scale again even if present")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive comparisons (slow at the banner level)")
    args = ap.parse_args()

    stack = EmbeddedStack(Settings())
    dsn = _ensure_database(stack.database_url(), args.database, args.reseed)
    rng = np.random.default_rng(42)
    rows: list[tuple[str, str, tuple[float, float], tuple[float, float], tuple[float, float] | None]] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM areas WHERE level = 4), (SELECT count(*) FROM cameras),"
            " (SELECT count(*) FROM cases)"
        ).fetchone()
        banner_code, bounds = conn.execute(
            "SELECT code, ARRAY[ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom)] FROM areas WHERE level = 1"
        ).fetchone()  # type: ignore[misc]
        pts = []
        while len(pts) < args.runs:
            x, y = rng.uniform(bounds[0], bounds[2]), rng.uniform(bounds[1], bounds[3])
            if conn.execute(
                "SELECT ST_Intersects(geom, ST_SetSRID(ST_MakePoint(%s, %s), 4326)) FROM areas WHERE level = 1", (x, y)
            ).fetchone()[0]:  # type: ignore[index]
                pts.append((float(x), float(y)))
        chain_sql = queries.query("grid_chain")
        api, raw = _compare(
            pts,
            lambda p: queries.grid_chain(conn, *p),
            lambda p: conn.execute(chain_sql, {"lon": p[0], "lat": p[1]}).fetchall(),
        )
        rows.append(("point → grid chain", "-", api, raw, None))
        for level in (4, 3, 2, 1):
            codes = [r[0] for r in conn.execute("SELECT code FROM areas WHERE level = %s ORDER BY code", (level,))]
            sample = [str(c) for c in rng.choice(codes, size=args.runs, replace=True)]
            stmt = sql.SQL(queries.query("cases_in_area")).format(
                column=sql.Identifier("c", queries.CHAIN_COLUMN[level])
            )
            api, raw = _compare(
                sample,
                lambda code: queries.cases_in_area(conn, code, limit=100),
                lambda code, stmt=stmt: conn.execute(stmt, _newest_cases(code)).fetchall(),
            )
            naive = None
            if not args.no_naive:
                few = sample[: max(5, args.runs // (20 if level <= 2 else 4))]
                naive = _compare(few, lambda code: conn.execute(NAIVE_CASES, {"code": code, "limit": 100}).fetchall())[
                    0
                ]
            rows.append(("cases in area (100 newest)", f"level {level}", api, raw, naive))
        cam_sql = queries.query("cameras_near")
        cam = lambda p: {"lon": p[0], "lat": p[1], "radius": 500.0, "scope": None}  # noqa: E731
        api, raw = _compare(
            pts,
            lambda p: queries.cameras_near(conn, p[0], p[1], 500.0, scope=None),
            lambda p: conn.execute(cam_sql, cam(p)).fetchall(),
        )
        naive = (
            None
            if args.no_naive
            else _compare(pts[: max(5, args.runs // 10)], lambda p: conn.execute(NAIVE_CAMERAS, cam(p)).fetchall())[0]
        )
        rows.append(("cameras within 500 m", "-", api, raw, naive))
    print(
        f"# bench_spatial — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print(
        f"# city scale: {counts[0]} level-4 cells, {counts[1]} cameras, {counts[2]} cases; banner {banner_code}; "
        f"{args.runs} runs each"
    )
    print(
        f"{'query':30} {'area':8} {'api med':>8} {'api p95':>8} {'raw med':>8} {'raw p95':>8} "
        f"{'naive med':>10} {'naive p95':>10}"
    )
    for name, area, api, raw, naive in rows:
        nv = f"{naive[0]:10.2f} {naive[1]:10.2f}" if naive else f"{'-':>10} {'-':>10}"
        print(f"{name:30} {area:8} {api[0]:8.2f} {api[1]:8.2f} {raw[0]:8.2f} {raw[1]:8.2f} {nv}")


if __name__ == "__main__":
    main()

"""The figures around the map, read from the KPI counters, beside the scan of the cases they replace.

    .venv/bin/python bench/bench_kpi.py --scale banner   # the demo territory (6,320 cases)
    .venv/bin/python bench/bench_kpi.py --scale city     # Dalad-sized, a million cases
    .venv/bin/python bench/bench_kpi.py --scale league   # all of Ordos, five million cases over three years

Seeds the scale into its own database on the configured server the first time (``yitu seed demo
--scale …``: the counters fill from the bulk COPY through their triggers). Each figure — the KPI
tiles, the town ranking, the choropleth at town and cell level, the area panel — is timed cold:
a new connection each time (no plan cache, no Redis cache of figures; PostgreSQL's buffers stay as
the previous query left them) for the league's root (level 0) where there is one, the first
banner, and a sample of towns and of villages, once from the
counters (what the screens run) and once from the ``*_scan`` SQL over the cases (the baseline).
Prints the median and p95 in milliseconds, and checks both give the same figures.

``--hot`` measures instead what the counters cost the intake at its worst: THREADS connections
each report cases one by one (a transaction each), all of the same type at the same point on the
same day, so every intake adds to the same counter rows (banner, town, village, cell). Three
variants on a scratch copy of the scale's database: the counters' triggers off (the baseline), on
with one shard (``yitu.counter_shards = 1``: every intake waits for the previous one's row locks),
and on with the default eight shards; interleaved in ``--rounds`` rounds, so a change in the
machine's load falls on the three alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import clone_database, drop_database, p95, seeded_database
from geodata import areas_stats, kpi
from geodata.clock import CST
from geodata.queries import chain_column, level_of, query
from layers import grids
from services.settings import Settings

DATABASES = {"banner": "yitu_bench_kpi_banner", "city": "yitu_bench_kpi_city", "league": "yitu_bench_league"}


def _database(scale: str, name: str | None = None) -> str:
    return seeded_database(scale, name or DATABASES[scale])


def _scan(conn: psycopg.Connection, name: str, code: str, **params: Any) -> list[dict[str, Any]]:
    stmt = sql.SQL(query(name)).format(column=chain_column(level_of(code)))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(stmt, {"code": code, **params}).fetchall()


def _ranking_scan(conn: psycopg.Connection, parent: str, start: datetime, end: datetime, now: datetime) -> Any:
    level = level_of(parent) + 1
    stmt = sql.SQL(query("ranking_scan")).format(
        column=chain_column(level, "c"), parent=chain_column(level_of(parent), "c")
    )
    with conn.cursor(row_factory=dict_row) as cur:
        params = {"level": level, "parent_code": parent, "start": start, "end": end, "now": now}
        return cur.execute(stmt, params).fetchall()


def _grids_scan(conn: psycopg.Connection, level: int) -> Any:
    stmt = sql.SQL(query("area_stats_by_level_scan")).format(column=chain_column(level))
    return {
        code: {"open": o, "overdue": late, "rate": round(res / rep, 4) if rep else None}
        for code, o, late, rep, res in conn.execute(stmt, {"scope": None})
    }


Figure = Callable[[psycopg.Connection, str], Any]


def _figures(now: datetime) -> dict[str, tuple[Figure, Figure, bool]]:
    """name → (from the counters, from the cases, per area?)."""
    start, end = areas_stats.period_bounds("quarter", now.astimezone(CST).date())
    return {
        "KPI tiles": (kpi.tiles, lambda c, a: _scan(c, "kpi_area_scan", a, start=None, end=None)[0], True),
        "steps + top types + trend": (
            lambda c, a: (kpi.steps(c, a), kpi.top_types(c, a), kpi.trend(c, a)),
            lambda c, a: (
                {r["step"]: r["n"] for r in _scan(c, "kpi_steps_scan", a)},
                _scan(c, "kpi_top_types_scan", a, first=start.date(), after=now.astimezone(CST).date() + timedelta(1)),
                _scan(c, "kpi_trend_scan", a, days=30),
            ),
            True,
        ),
        "ranking of the children": (
            lambda c, a: areas_stats.ranking(c, level_of(a) + 1, a, start, end, now),
            lambda c, a: _ranking_scan(c, a, start, end, now),
            True,
        ),
        "area panel": (
            lambda c, a: areas_stats.area_stats(c, a, now),
            lambda c, a: areas_stats.area_stats(c, a, now, scan=True),
            True,
        ),
        "choropleth, towns": (lambda c, a: grids.stats(c, 2), lambda c, a: _grids_scan(c, 2), False),
        "choropleth, cells": (lambda c, a: grids.stats(c, 4), lambda c, a: _grids_scan(c, 4), False),
    }


def _time(dsn: str, fn: Figure, area: str) -> tuple[float, Any]:
    with psycopg.connect(dsn) as conn:  # cold: a connection of its own, no prepared plan
        t0 = time.perf_counter()
        out = fn(conn, area)
        return (time.perf_counter() - t0) * 1000, out


def _intakes(dsn: str, shards: int, n: int, at: tuple[float, float], rules: Any, times: list[float], lock: Any) -> None:
    """``n`` single intakes at ``at``, one transaction each, timed into ``times``."""
    from geodata import cases
    from geodata.cases import Actor, NewCase

    mine: list[float] = []
    with psycopg.connect(dsn, options=f"-c yitu.counter_shards={shards}") as conn:
        for _ in range(n):
            now = datetime.now(UTC)
            new = NewCase("grassland", "草场边界争议", at[0], at[1], "grid_app", [], now)
            t0 = time.perf_counter()
            cases.intake_committed(conn, new, Actor("bench", "dispatcher", 0), rules, now)
            mine.append((time.perf_counter() - t0) * 1000)
    with lock:
        times.extend(mine)


def _hot(dsn: str, threads: int, per_thread: int, rounds: int) -> None:
    import threading

    from services.deadlines import deadline_rules

    scratch = clone_database(dsn, "yitu_bench_kpi_hot")
    try:
        rules = deadline_rules(Settings())
        with psycopg.connect(scratch) as conn:
            lon, lat = conn.execute(  # type: ignore[misc]
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM areas WHERE level = 4 "
                "ORDER BY code LIMIT 1) s"
            ).fetchone()
        print(
            f"# hot counter rows: {threads} connections × {per_thread} single intakes, same type, place and day; "
            f"the three variants interleaved in {rounds} rounds (the machine's load drifts)"
        )
        print(f"{'counters':22s} {'intakes/s':>10s} {'median ms':>10s} {'p95 ms':>8s}")
        variants = (("off (baseline)", 8, False), ("on, 1 shard", 1, True), ("on, 8 shards", 8, True))
        times: dict[str, list[float]] = {label: [] for label, _, _ in variants}
        walls = dict.fromkeys(times, 0.0)
        lock = threading.Lock()
        for _ in range(rounds):
            for label, shards, on in variants:
                with psycopg.connect(scratch, autocommit=True) as conn:
                    verb = "ENABLE" if on else "DISABLE"
                    for trig in ("yitu_counters_insert", "yitu_counters_update", "yitu_counters_delete"):
                        conn.execute(
                            sql.SQL("ALTER TABLE cases {} TRIGGER {}").format(sql.SQL(verb), sql.Identifier(trig))
                        )
                n = max(1, per_thread // rounds)
                pool = [
                    threading.Thread(target=_intakes, args=(scratch, shards, n, (lon, lat), rules, times[label], lock))
                    for _ in range(threads)
                ]
                t0 = time.perf_counter()
                for t in pool:
                    t.start()
                for t in pool:
                    t.join()
                walls[label] += time.perf_counter() - t0
        for label, got in times.items():
            print(f"{label:22s} {len(got) / walls[label]:10.0f} {statistics.median(got):10.1f} {p95(got):8.1f}")
        with psycopg.connect(scratch, autocommit=True) as conn:
            for trig in ("yitu_counters_insert", "yitu_counters_update", "yitu_counters_delete"):
                conn.execute(sql.SQL("ALTER TABLE cases ENABLE TRIGGER {}").format(sql.Identifier(trig)))
            conn.execute(query("counters_rebuild"))
    finally:
        drop_database(scratch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(DATABASES), default="banner")
    ap.add_argument("--towns", type=int, default=10, help="towns sampled beside the banner")
    ap.add_argument("--villages", type=int, default=3, help="villages sampled beside the towns")
    ap.add_argument("--runs", type=int, default=5, help="rounds over the areas")
    ap.add_argument("--hot", action="store_true", help="measure the intake on one hot counter row instead")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--per-thread", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5, help="--hot: rounds the variants are interleaved in")
    ap.add_argument("--database", help="the scale's database by another name (seeded there when empty)")
    args = ap.parse_args()
    dsn = _database(args.scale, args.database)
    if args.hot:
        _hot(dsn, args.threads, args.per_thread, args.rounds)
        return
    with psycopg.connect(dsn) as conn:
        conn.execute("ANALYZE case_counters")
        banner = conn.execute("SELECT code FROM areas WHERE level = 1 ORDER BY code LIMIT 1").fetchone()[0]  # type: ignore[index]
        towns = [
            r[0] for r in conn.execute("SELECT code FROM areas WHERE level = 2 ORDER BY code LIMIT %s", (args.towns,))
        ]
        villages = [
            r[0]
            for r in conn.execute("SELECT code FROM areas WHERE level = 3 ORDER BY code LIMIT %s", (args.villages,))
        ]
        root = [r[0] for r in conn.execute("SELECT code FROM areas WHERE level = 0")]
        n_cases = conn.execute("SELECT count(*) FROM cases").fetchone()[0]  # type: ignore[index]
        n_rows = conn.execute(  # type: ignore[index]
            "SELECT (SELECT count(*) FROM case_counters) || ' daily, ' || (SELECT count(*) FROM case_counters_month)"
            " || ' monthly, ' || (SELECT count(*) FROM case_counters_open) || ' open, '"
            " || (SELECT count(*) FROM case_counters_area_month) || ' per area and month, '"
            " || (SELECT count(*) FROM case_counters_area_day) || ' per area and day'"
        ).fetchone()[0]
    now = datetime.now(UTC)
    print(
        f"# bench_kpi — {now:%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, scale {args.scale}: "
        f"{n_cases} cases, counter rows {n_rows}; cold = a new connection per query, ms"
    )
    print(f"{'figure':28s} {'areas':>12s} {'counters med':>13s} {'p95':>8s} {'scan med':>10s} {'p95':>8s}")
    for name, (counted, scanned, per_area) in _figures(now).items():
        levels = [("root", root)] if root else []
        levels += [("banner", [banner]), (f"{len(towns)} towns", towns), (f"{len(villages)} villages", villages)]
        for label, areas in levels if per_area else [("all", [banner])]:
            fast: list[float] = []
            slow: list[float] = []
            for _ in range(args.runs):
                for area in areas:
                    t_fast, a = _time(dsn, counted, area)
                    t_slow, b = _time(dsn, scanned, area)
                    if isinstance(a, dict) and isinstance(b, dict) and set(b) < set(a):
                        a = {k: a[k] for k in b}  # the tiles add rates and shares to the counts
                    if a != b:
                        raise SystemExit(f"{name} of {area}: the counters and the scan disagree")
                    fast.append(t_fast)
                    slow.append(t_slow)
            print(
                f"{name:28s} {label:>12s} {statistics.median(fast):13.1f} {p95(fast):8.1f}"
                f" {statistics.median(slow):10.1f} {p95(slow):8.1f}"
            )


if __name__ == "__main__":
    main()

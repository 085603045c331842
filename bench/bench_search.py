"""Benchmark the search (issue 14, item 4) on the million-case city: p95 under 100 ms is the target.

    .venv/bin/python bench/bench_search.py [--runs 200] [--database yitu_bench] [--reseed] [--naive 20]

Reuses the city scale of bench/bench_spatial.py (``yitu seed demo --scale city``, seeded into its own
database the first time, several minutes; migrating an existing city to 024_search.sql builds its
indexes, about ten minutes on two busy cores). Then, for a mix of queries drawn from the data itself
(seeded random), times in the same run:

  search   geodata.search.search as the API and the search box call it: every group (code prefix,
           parties, description, areas) for the reader, one transaction
  lookup   the baseline: one case by its whole code (the unique index), the cheapest query there is
  naive    for context, on the first --naive queries of each kind: the obvious SQL without the gram
           indexes (ILIKE '%q%' over the description and the parties' JSON, newest first)

for an unscoped admin, a town-scoped dispatcher and an unscoped viewer (no party search), and prints
median and p95 in milliseconds. The figures go into docs/performance.md by hand.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_spatial import _ensure_database

from cli.stack import EmbeddedStack
from geodata.search import Reader, search
from services.settings import Settings

NAIVE = """SELECT code FROM cases WHERE (description ILIKE %(p)s OR parties::text ILIKE %(p)s)
           ORDER BY reported_at DESC LIMIT 10"""
LOOKUP = "SELECT code, type, step, description, parties FROM cases WHERE code = %s"


def _stats(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]


def _time(items: list[str], fn: Callable[[str], object]) -> tuple[float, float]:
    for item in items[: max(5, len(items) // 10)]:  # warm the buffers and the plans
        fn(item)
    times = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - t0) * 1000)
    return _stats(times)


def _substring(rng: np.random.Generator, text: str, lengths: tuple[int, ...]) -> str | None:
    n = int(rng.choice(lengths))
    starts = [i for i in range(len(text) - n + 1) if "\x01" not in text[i : i + n] and text[i : i + n].strip()]
    return text[(s := int(rng.choice(starts))) : s + n] if starts else None


def _queries(conn: psycopg.Connection, rng: np.random.Generator, runs: int) -> dict[str, list[str]]:
    """Queries of each kind, drawn from random cases and areas of the city."""
    rows = conn.execute(
        "SELECT code, parties, search_description FROM cases TABLESAMPLE SYSTEM (1) REPEATABLE (7) LIMIT %s",
        (runs * 3,),
    ).fetchall()
    areas = [r[0] for r in conn.execute("SELECT name FROM areas ORDER BY code")]
    pick = [rows[int(i)] for i in rng.choice(len(rows), size=runs, replace=False)]
    out: dict[str, list[str]] = {"code prefix": [], "party name": [], "phone fragment": [], "description 2-4": []}
    for k, (code, parties, description) in enumerate(pick):
        out["code prefix"].append(code[: (15, 18, 20, len(code))[k % 4]])
        person = parties[k % len(parties)]
        name = str(person["name"])
        out["party name"].append(name if k % 2 else name[:2])
        phone = str(person["phone"])
        n = int(rng.integers(4, 8))
        start = int(rng.integers(0, len(phone) - n + 1))
        out["phone fragment"].append(phone[start : start + n])
        words = _substring(rng, description, (2, 3, 4))
        if words:
            out["description 2-4"].append(words)
    out["area name"] = [
        name if k % 2 else (_substring(rng, name, (2,)) or name)
        for k, name in enumerate(areas[int(i)] for i in rng.choice(len(areas), size=runs))
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200, help="queries of each kind (default 200)")
    ap.add_argument("--database", default="yitu_bench", help="database of the city scale (default yitu_bench)")
    ap.add_argument("--reseed", action="store_true", help="seed the city scale again even if present")
    ap.add_argument("--naive", type=int, default=20, help="queries of each kind timed naively (0: none)")
    args = ap.parse_args()

    stack = EmbeddedStack(Settings())
    dsn = _ensure_database(stack.database_url(), args.database, args.reseed)
    rng = np.random.default_rng(42)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE cases")
        n_cases = conn.execute("SELECT count(*) FROM cases").fetchone()[0]  # type: ignore[index]
        town = conn.execute("SELECT code FROM areas WHERE level = 2 ORDER BY code LIMIT 1").fetchone()[0]  # type: ignore[index]
        queries = _queries(conn, rng, args.runs)
        codes = [r[0] for r in conn.execute("SELECT code FROM cases TABLESAMPLE SYSTEM (1) LIMIT %s", (args.runs,))]
        readers = {"admin": Reader("admin", None), f"dispatcher@{town}": Reader("dispatcher", town)}
        readers["viewer"] = Reader("viewer", None)
        lookup = _time(codes, lambda c: conn.execute(LOOKUP, (c,)).fetchall())
        print(
            f"# search on {n_cases:,} cases — {platform.node()} {platform.machine()}, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {args.runs} queries of each kind"
        )
        print(f"{'kind':18} {'reader':22} {'median':>8} {'p95':>8}   naive median/p95   (ms)")
        print(f"{'lookup by code':18} {'(baseline)':22} {lookup[0]:8.1f} {lookup[1]:8.1f}")
        every: list[float] = []
        for kind, items in queries.items():
            naive = None
            if args.naive:
                naive = _time(
                    items[: args.naive],
                    lambda q: conn.execute(NAIVE, {"p": "%" + q.replace("%", r"\%").replace("_", r"\_") + "%"}),
                )
            for label, reader in readers.items():
                samples: list[float] = []
                for q in items[: max(5, len(items) // 10)]:
                    search(conn, q, reader)
                for q in items:
                    t0 = time.perf_counter()
                    search(conn, q, reader)
                    samples.append((time.perf_counter() - t0) * 1000)
                every.extend(samples)
                med, p95 = _stats(samples)
                extra = f"   {naive[0]:8.1f} / {naive[1]:8.1f}" if naive and label == "admin" else ""
                print(f"{kind:18} {label:22} {med:8.1f} {p95:8.1f}{extra}")
        med, p95 = _stats(every)
        print(f"{'all kinds':18} {'all readers':22} {med:8.1f} {p95:8.1f}")


if __name__ == "__main__":
    main()

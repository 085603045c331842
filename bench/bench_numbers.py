"""A round of the wall's numbers made from the database: how long, in this checkout and at another commit.

    .venv/bin/python bench/bench_numbers.py                     # this checkout
    .venv/bin/python bench/bench_numbers.py --against 619eaeb   # beside the same at another commit
    .venv/bin/python bench/bench_numbers.py --busy 0,3 --rounds 60

A round is what the live push makes when a screen's numbers are due after a case event (callbacks/
wall.py ``numbers``: the tiles, the types, the trend, the area panel, the crumbs, the ranking, the van
board, drawn and serialized): the figure cache dropped first, as the live hub drops it at such an
event, so every figure is read from PostgreSQL. On the scale's bench database (``--scale banner``:
bench_mix's ``yitu_bench_demo``, seeded when missing), this checkout's embedded stack (``yitu db up``),
Redis database ``--redis-db`` (flushed).

Each variant runs in a process of its own — this checkout, and with ``--against REV`` a temporary
``git worktree`` of REV run by the same interpreter —, the variants' rounds taken in turns. ``--busy``:
the numbers of threads that meanwhile run plain Python in the same process, as an app process's other
requests do under a centre's load (bench_mix): every wait on the network gives the GIL away, and
getting it back takes a switch interval (5 ms) while they run. They spin only while their process's
round runs (the other variants' rounds run on a machine as quiet as it is). Prints per variant and busy count the
median, p95 and max of a round, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKAGES = ("callbacks", "dashboard", "geodata", "layers", "services")  # what a round loads

# The child: made once per variant and busy count; reads "go" lines on stdin, answers a time per round.
CHILD = r"""
import json, sys, threading, time
from callbacks import wall
from dashboard.app import _open_services
from geodata import kpi
from services.identity import Principal, acting_as
from services.layer_answers import LayerAnswers
from services.settings import Settings

dsn, redis_url, banner, busy = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
svc = _open_services(Settings(database_url=dsn, redis_url=redis_url, _env_file=None))
running = threading.Event()  # the busy threads spin only while a round runs: other variants' rounds run alone

def spin() -> None:
    n = 0
    while running.wait():
        while running.is_set():
            n += 1

for _ in range(busy):
    threading.Thread(target=spin, daemon=True).start()
period = wall.period_of("year")
with acting_as(Principal(1, "bench", "screen", None, kind="screen")):
    wall.numbers(svc, banner, "zh-CN", period, None)  # once unmeasured: the pool opened, the rows made
    for line in sys.stdin:
        svc.redis.delete(kpi.CACHE_KEY)  # as the live hub at a case event
        svc.layer_answers = LayerAnswers()  # no screen's shared answer either
        running.set()
        t0 = time.perf_counter()
        wall.numbers(svc, banner, "zh-CN", period, None)
        spent = time.perf_counter() - t0
        running.clear()
        print(json.dumps(spent * 1000), flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=40, help="rounds per variant and busy count (default 40)")
    ap.add_argument("--against", metavar="REV", help="also time a round at this commit (a temporary git worktree)")
    ap.add_argument("--busy", default="0,2", help="busy threads beside the rounds, a comma list (default 0,2)")
    ap.add_argument("--scale", choices=("banner", "city"), default="banner", help="the bench database (default banner)")
    ap.add_argument("--redis-db", type=int, default=14, help="the Redis database used and flushed (default 14)")
    args = ap.parse_args()
    if not 1 <= args.rounds <= 10_000:
        ap.error("--rounds: give 1 to 10000")
    try:
        busy_counts = [int(b) for b in args.busy.split(",")]
    except ValueError:
        ap.error("--busy: a comma list of whole numbers, as 0,2")
    if not busy_counts or any(not 0 <= b <= 16 for b in busy_counts):
        ap.error("--busy: each 0 to 16")
    if len(set(busy_counts)) != len(busy_counts):
        ap.error("--busy: each count once")
    if not 0 <= args.redis_db <= 15:
        ap.error("--redis-db: 0 to 15")

    from bench.common import p95, seeded_database, worktree
    from cli.stack import EmbeddedStack
    from services.settings import Settings

    name = {"banner": "yitu_bench_demo", "city": "yitu_bench"}[args.scale]
    dsn = seeded_database(args.scale, name)
    stack_redis = urlsplit(EmbeddedStack(Settings()).redis_url())
    redis_url = urlunsplit(stack_redis._replace(path=f"/{args.redis_db}"))
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    import psycopg

    with psycopg.connect(dsn) as conn:
        banner = conn.execute("SELECT code FROM areas WHERE level = 1 ORDER BY code LIMIT 1").fetchone()
        cases = conn.execute("SELECT count(*) FROM cases").fetchone()
    if banner is None or cases is None:
        raise SystemExit(f"{name}: no banner (seed it again)")

    home = Path(tempfile.mkdtemp(prefix="yitu-bench-numbers-"))
    variants: dict[str, Path] = {"this checkout": ROOT}
    trees = ExitStack()
    children: dict[tuple[str, int], subprocess.Popen[str]] = {}
    try:
        if args.against:
            try:
                variants[args.against] = trees.enter_context(worktree(args.against, PACKAGES, home / "against"))
            except ValueError as exc:
                ap.error(str(exc))
        for label, cwd in variants.items():
            for busy in busy_counts:
                env = {**os.environ, "PYTHONPATH": str(cwd), "YITU_HOME": str(home / "home")}
                children[(label, busy)] = subprocess.Popen(
                    [sys.executable, "-c", CHILD, dsn, redis_url, banner[0], str(busy)],
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
        times: dict[tuple[str, int], list[float]] = {key: [] for key in children}
        for i in range(args.rounds):
            for key, child in children.items():  # in turns: a slow moment of the machine falls on all
                assert child.stdin is not None
                assert child.stdout is not None
                child.stdin.write("go\n")
                child.stdin.flush()
                line = child.stdout.readline()
                if not line:
                    raise SystemExit(f"{key[0]} (busy {key[1]}): the round's process ended (its error above)")
                times[key].append(json.loads(line))
            print(f"\r{i + 1}/{args.rounds} rounds", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    finally:
        for child in children.values():
            if child.stdin is not None:
                child.stdin.close()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        trees.close()
        shutil.rmtree(home, ignore_errors=True)

    now = datetime.now(UTC)
    print(
        f"# bench_numbers — {now:%Y-%m-%d %H:%M} UTC, {platform.node() or 'host'}, {os.cpu_count()} cores, "
        f"scale {args.scale} ({cases[0]:,} cases), area {banner[0]}, {args.rounds} rounds each, ms a round"
    )
    print(f"{'variant':<24} {'busy threads':>12} {'p50':>8} {'p95':>8} {'max':>8}")
    for (label, busy), values in times.items():
        print(f"{label:<24} {busy:>12} {median(values):>8.1f} {p95(values):>8.1f} {max(values):>8.1f}")


if __name__ == "__main__":
    main()

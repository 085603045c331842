"""What a ``yitu`` process costs before it serves: loading the app and building it, in CPU and wall time.

    .venv/bin/python bench/bench_startup.py                    # this checkout, beside a bare interpreter
    .venv/bin/python bench/bench_startup.py --against 2cc0c9d  # and the same at another commit

Each round starts, one after the other, a bare ``python -c pass`` (the baseline: the interpreter's own
start), then a process that loads what ``yitu serve`` loads and builds the app (``create_app``; no
connection is made, so no stack is needed) — in this checkout and, with ``--against REV``, in a
temporary ``git worktree`` of REV run by the same interpreter. Every ``yitu`` process pays this: each
worker of ``yitu serve --workers N``, a restarted one, each CLI command, each server a test starts.
Prints the median and p95 of the CPU seconds (user + system, from the child's rusage) and of the wall
seconds, per variant.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import p95, worktree

PACKAGES = ("api", "callbacks", "cli", "dashboard", "geodata", "layers", "services")  # what the app loads
LOAD = (
    "from cli.main import main\n"
    "from cli import asgi\n"
    "from dashboard.app import create_app\n"
    "from services.settings import Settings\n"
    "create_app(Settings(_env_file=None))\n"
)


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9, help="rounds, each variant once per round (default 9)")
    ap.add_argument("--against", metavar="REV", help="also time the app at this commit (a temporary git worktree)")
    args = ap.parse_args()
    if not 1 <= args.rounds <= 1000:
        ap.error("--rounds: give 1 to 1000")
    home = Path(tempfile.mkdtemp(prefix="yitu-bench-startup-"))
    env = {**os.environ, "YITU_HOME": str(home / "home")}
    variants: dict[str, tuple[list[str], Path]] = {
        "python -c pass (baseline)": ([sys.executable, "-c", "pass"], ROOT),
        "this checkout: load + create_app": ([sys.executable, "-c", LOAD], ROOT),
    }
    trees = ExitStack()
    try:
        if args.against:
            try:
                tree = trees.enter_context(worktree(args.against, PACKAGES, home / "against"))
            except ValueError as exc:
                ap.error(str(exc))
            variants[f"{args.against}: load + create_app"] = ([sys.executable, "-c", LOAD], tree)
        for argv, cwd in variants.values():  # once each unmeasured: the bytecode caches written
            _timed(argv, cwd, {**env, "PYTHONPATH": str(cwd)})
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for i in range(args.rounds):
            for name, (argv, cwd) in variants.items():
                results[name].append(_timed(argv, cwd, {**env, "PYTHONPATH": str(cwd)}))
            print(f"[startup] round {i + 1}/{args.rounds}", file=sys.stderr, flush=True)
    finally:
        trees.close()
        shutil.rmtree(home, ignore_errors=True)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# bench_startup — {now}, {platform.node()}, {os.cpu_count()} cores, {args.rounds} rounds, seconds")
    print(f"{'variant':<40} {'CPU p50':>8} {'CPU p95':>8} {'wall p50':>9} {'wall p95':>9}")
    for name, runs in results.items():
        cpu, wall = [r[0] for r in runs], [r[1] for r in runs]
        print(
            f"{name:<40} {statistics.median(cpu):8.2f} {p95(cpu):8.2f} {statistics.median(wall):9.2f} {p95(wall):9.2f}"
        )


if __name__ == "__main__":
    main()

"""bench/bench_mix.py runs (issue 17, item 4): a few seconds of the mix at tiny rates, 2 app processes
behind the real nginx, on this test's own copy of the demo, and every path it reports was driven and
answered without an error.

This checks that the harness works end to end (screens paired and live, every path driven and timed),
not the figures: those belong to docs/scaling.md, measured on the quiet machine at the issue's rates.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.bench_mix import Figures

from .conftest import ROOT


def test_the_mix_drives_every_path_without_an_error(demo_db: str, redis_url: str) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_mix.py"), "--database", demo_db, "--redis-url", redis_url]
        + ["--processes", "2", "--screens", "2", "--warmup", "2", "--seconds", "6", "--json"]
        + ["--rate", "3", "--gps", "40", "--gps-batch", "10", "--vans", "8", "--trails", "2"]
        + ["--transitions", "2", "--searches", "1", "--areas", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    rows = {r["path"]: r for r in out["rows"]}
    assert list(rows) == [name for _, name, _ in Figures.ORDER]  # every path, in the table's order
    for name, row in rows.items():
        assert row["n"] > 0, f"{name} was not measured: {row}"
        assert row["errors"] == 0, f"{name}: {row['error_kinds']}"
        assert row["p50"] <= row["p95"] <= row["p99"] <= row["max"], row
    assert out["errors"] == 0
    assert out["processes"] == 2 and out["screens"]["count"] == 2
    assert out["screens"]["batches"] > 0 and out["screens"]["reconnects"] == []
    # the screens keep what they show, as the page: a pushed round carries the parts that changed, not all 8
    rounds, parts = out["screens"]["numbers_rounds"], out["screens"]["numbers_parts"]
    assert rounds > 0 and parts < 8 * rounds, (rounds, parts)
    cpu = out["cpu_percent_of_one_core"]
    assert {"app process 1", "app process 2", "nginx", "PostgreSQL primary"} <= set(cpu)
    assert cpu["app process 1"] > 0 and cpu["app process 2"] > 0  # both processes served
    # The progress line went to stderr, the figures alone to stdout.
    assert "sent: reports" in run.stderr


def test_the_help_names_every_option() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_mix.py"), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for option in ("--processes", "--replica", "--seconds", "--screens", "--rate", "--gps", "--fault", "--json"):
        assert option in run.stdout
    for fault in ("kill-app", "stop-replica", "redis-failover"):
        assert fault in run.stdout

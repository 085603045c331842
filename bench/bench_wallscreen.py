"""Benchmark the wall screen's first view in headless Chromium.

    .venv/bin/python bench/bench_wallscreen.py --scale banner   # the demo territory
    .venv/bin/python bench/bench_wallscreen.py --scale city     # Dalad-sized (seeded by bench_spatial.py)

Starts ``yitu serve`` on the scale's database, then five times opens ``/`` in a fresh browser
context (empty cache) and measures the time from navigation until the map has settled — every
layer has drawn features and the KPI tiles are filled — and the bytes transferred (compressed,
as on the wire) for that first view. Beside it, measured in the same run, the baseline: the
same layer URLs fetched straight over HTTP without a browser. Targets (the wall-screen issue):
banner < 2.5 s and < 1.5 MB, city < 4 s and < 4 MB.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from playwright.sync_api import sync_playwright
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, pair, wait_healthy
from cli.stack import EmbeddedStack
from geodata.migrate import migrate
from services.identity import create_token
from services.settings import Settings
from tests.browser import CHROMIUM_ARGS, SETTLED, chromium_path

DATABASES = {"banner": "yitu_bench_demo", "city": "yitu_bench"}


def _database(scale: str) -> str:
    server = EmbeddedStack(Settings()).database_url()
    name = DATABASES[scale]
    with psycopg.connect(make_conninfo(server, dbname="postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(server, dbname=name)
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        empty = conn.execute("SELECT count(*) = 0 FROM areas").fetchone()[0]  # type: ignore[index]
    if empty:
        from geodata.demo.seed import seed_demo

        print(f"seeding {scale} scale into {name}…", file=sys.stderr)
        seed_demo(dsn, scale, seed=1, progress=True)
    return dsn


def _serve(dsn: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "YITU_DATABASE_URL": dsn, "YITU_PORT": str(port), "YITU_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(proc, url, 60)
    return proc, url


def _first_view(browser, url: str, dsn: str) -> tuple[float, int, list[str]]:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    pair(context, url, dsn)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    sizes: dict[str, int] = {}
    urls: dict[str, str] = {}
    cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))
    cdp.on("Network.loadingFinished", lambda e: sizes.__setitem__(e["requestId"], int(e["encodedDataLength"])))
    t0 = time.perf_counter()
    page.goto(url + "/", wait_until="commit")
    page.wait_for_function(SETTLED, timeout=60_000)
    page.wait_for_selector("#kpi-in_progress", timeout=60_000)
    elapsed = time.perf_counter() - t0
    page.wait_for_timeout(1000)  # let trailing responses of the first view finish before counting bytes
    total = sum(sizes.values())
    layer_urls = sorted({u.removeprefix(url) for u in urls.values() if "/api/v1/layers/" in u})
    context.close()
    return elapsed, total, layer_urls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(DATABASES), default="banner")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    dsn = _database(args.scale)
    proc, url = _serve(dsn)
    try:
        times: list[float] = []
        sizes: list[int] = []
        layer_urls: list[str] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            # the very first view also fills the server's short KPI cache (as the first of many screens would)
            cold = _first_view(browser, url, dsn)[0]
            for _ in range(args.runs):
                t, b, layer_urls = _first_view(browser, url, dsn)
                times.append(t)
                sizes.append(b)
            browser.close()
        base: list[float] = []
        with psycopg.connect(dsn) as conn:  # the baseline reads as a viewer (a screen's reads, without a browser)
            token = create_token(conn, name="bench-wallscreen", role="viewer", area=None)[1]
        headers = {"Accept-Encoding": "gzip", "Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers) as client:
            for _ in range(args.runs):
                t0 = time.perf_counter()
                for u in layer_urls:
                    client.get(u).raise_for_status()
                base.append(time.perf_counter() - t0)
        with psycopg.connect(dsn) as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM areas WHERE level = 4), (SELECT count(*) FROM cameras),"
                " (SELECT count(*) FROM cases)"
            ).fetchone()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    p95 = sorted(times)[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(
        f"# bench_wallscreen — {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores, Chromium headless 1920×1080, scale {args.scale}: "
        f"{counts[0]} cells, {counts[1]} cameras, {counts[2]} cases"
    )  # type: ignore[index]
    print(f"first view settled   median {statistics.median(times):.2f} s   p95 {p95:.2f} s   runs {args.runs}")
    print(f"cold first view (empty server caches)   {cold:.2f} s")
    print(f"bytes transferred    median {statistics.median(sizes) / 1e6:.2f} MB   max {max(sizes) / 1e6:.2f} MB")
    print(f"baseline: the {len(layer_urls)} layer requests over plain HTTP   median {statistics.median(base):.2f} s")


if __name__ == "__main__":
    main()

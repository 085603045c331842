"""Benchmark the wall screen's first view in headless Chromium.

    .venv/bin/python bench/bench_wallscreen.py --scale banner   # the demo territory
    .venv/bin/python bench/bench_wallscreen.py --scale city     # Dalad-sized (seeded by bench_spatial.py)
    .venv/bin/python bench/bench_wallscreen.py --scale league   # all of Ordos, five million cases

Starts ``yitu serve`` on the scale's database, then five times opens ``/`` in a fresh browser
context (empty cache) and measures the time from navigation until the map has settled — every
layer has drawn features and the KPI tiles are filled — and the bytes transferred (compressed,
as on the wire) for that first view. Beside it, measured in the same run, the baseline: the
same layer URLs fetched straight over HTTP without a browser. Targets (the wall-screen issue):
banner < 2.5 s and < 1.5 MB, city < 4 s and < 4 MB; league (issue 16): cold < 3 s, warm < 2 s, < 4 MB.

Then the drill-down, ``--drill`` times (a fresh context each): from the settled first view, a click
on the ranking's row of a banner (the league's root ranks its banners), then on a town's polygon on
the map, then on a village's (the polygon's click event: pins and labels cover any point a mouse
would press at this density), each timed from the click until the wall has settled on the area —
its crumbs name it, drawn by the one callback that also fills the KPI tiles, the ranking, the trend,
the top types and the area panel — and, beside it, the same area's wall opened by URL
(``/?area=CODE``, a first view of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from playwright.sync_api import Request, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, pair, seeded_database, wait_healthy
from services.identity import create_token
from tests.browser import CHROMIUM_ARGS, SETTLED, chromium_path

DATABASES = {"banner": "yitu_bench_demo", "city": "yitu_bench", "league": "yitu_bench_league"}


def _database(scale: str, name: str | None = None) -> str:
    return seeded_database(scale, name or DATABASES[scale])


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


CRUMBS = "() => [...document.querySelectorAll('#wall-crumbs .yitu-crumb')].map(e => e.innerText.trim()).join('|')"
# A click on an area's polygon, as Leaflet raises it on the polygon's layer (and on to the GeoJSON
# layer whose clickData the wall reads): at the league's density pins, cameras and labels lie over
# any point a mouse would press, and would take the click instead.
ON_MAP = """code => { let hit = false; window.yitu.maps[window.yitu.maps.length - 1].eachLayer(
    l => { if (l.feature && l.feature.properties && l.feature.properties.code === code) hit = true; }); return hit; }"""
CLICK_AREA = """([code, lat, lon]) => { const m = window.yitu.maps[window.yitu.maps.length - 1]; let hit = null;
    m.eachLayer(l => { if (l.feature && l.feature.properties && l.feature.properties.code === code) hit = l; });
    if (!hit) return false; hit.fire('click', {latlng: L.latLng(lat, lon)}, true); return true; }"""


def _chain(dsn: str) -> list[tuple[str, str, float, float]]:
    """A banner, one of its towns and one of that town's villages (code, name, a point inside), the
    first of each in code order below the root; with the root's name first when there is a root."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """WITH RECURSIVE down(code, name, level, geom) AS (
                   (SELECT code, name, level, geom FROM areas WHERE level = 1 ORDER BY code LIMIT 1)
                   UNION ALL
                   SELECT a.code, a.name, a.level, a.geom FROM down d
                   CROSS JOIN LATERAL (SELECT * FROM areas a WHERE a.parent_code = d.code ORDER BY code LIMIT 1) a
                   WHERE d.level < 3)
               SELECT code, name, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom))
               FROM down ORDER BY level"""
        ).fetchall()
    return [(str(c), str(n), float(x), float(y)) for c, n, x, y in rows]


def _drill(browser, url: str, dsn: str, chain: list[tuple[str, str, float, float]]) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    """Seconds from each click until the wall's numbers are the area's (crumbs, tiles, ranking and
    panel come in one answer), and until the map has settled as well (the last response of the
    layers and tiles its flight to the area reloads): a banner from the ranking, a town and a
    village from the map, each clicked once the page is idle."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    pair(context, url, dsn)
    page = context.new_page()
    inflight: set[object] = set()
    last = [0.0]  # when the latest response ended

    def sent(r: Request) -> None:  # the map's and the numbers' requests (not the live socket's, never done)
        if any(k in r.url for k in ("/api/v1/layers/", "/api/v1/basemap/", "/_dash-update-component")):
            inflight.add(r)

    def done(r: Request) -> None:
        inflight.discard(r)
        last[0] = time.perf_counter()

    page.on("request", sent)
    page.on("requestfinished", done)
    page.on("requestfailed", done)

    def idle() -> None:
        quiet, deadline = 0, time.monotonic() + 30
        while quiet < 6 and time.monotonic() < deadline:  # 6 × 50 ms without a request in flight
            quiet = quiet + 1 if not inflight else 0
            page.wait_for_timeout(50)

    page.goto(url + "/", wait_until="commit")
    page.wait_for_function(SETTLED, timeout=60_000)
    page.wait_for_selector("#kpi-in_progress", timeout=60_000)
    top = page.evaluate(CRUMBS)
    out: list[float] = []
    for i, (code, _, lon, lat) in enumerate(chain):
        want = "|".join([top, *(c[1] for c in chain[: i + 1])])  # the root's name, then the chain
        if i == 0:
            row = f'#wall-ranking tr[data-href="/?area={code}"]'
            page.wait_for_selector(row, timeout=30_000)
            idle()
            t0 = time.perf_counter()
            page.click(row)
        else:  # the map shows the level of the area to click at this zoom (layers/base.py level_for_zoom)
            zoom = 9 if i == 1 else 10
            _still(page)  # the wall's own flight to the area selected before has ended
            page.evaluate(
                "([lat, lon, z]) => { window.yitu.maps[window.yitu.maps.length - 1]"
                ".setView([lat, lon], z, {animate: false}); }",
                [lat, lon, zoom],
            )
            page.wait_for_function(ON_MAP, arg=code, timeout=30_000)  # its polygon drawn
            idle()
            t0 = time.perf_counter()
            if not page.evaluate(CLICK_AREA, [code, lat, lon]):
                raise SystemExit(f"{code} is not on the map")
        page.wait_for_function(f"w => ({CRUMBS})() === w", arg=want, timeout=30_000)
        numbers = time.perf_counter() - t0
        _still(page)
        idle()
        out.append((numbers, max(numbers, last[0] - t0)))  # the map: its last response after the click
    context.close()
    return out


def _still(page) -> None:  # type: ignore[no-untyped-def]
    """Return once the map has not moved for half a second."""
    view = "() => { const m = window.yitu.maps[window.yitu.maps.length - 1]; return [m.getCenter(), m.getZoom()]; }"
    before = None
    while (now := json.dumps(page.evaluate(view))) != before:
        before = now
        page.wait_for_timeout(500)


def _by_url(browser, url: str, dsn: str, code: str) -> float:  # type: ignore[no-untyped-def]
    """Seconds until the wall opened at ``/?area=CODE`` has settled (as the first view)."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    pair(context, url, dsn)
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(f"{url}/?area={code}", wait_until="commit")
    page.wait_for_function(SETTLED, timeout=60_000)
    page.wait_for_selector("#kpi-in_progress", timeout=60_000)
    elapsed = time.perf_counter() - t0
    context.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(DATABASES), default="banner")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--drill", type=int, default=3, help="drill-downs root → banner → town → village")
    ap.add_argument("--database", help="the scale's database by another name (seeded there when empty)")
    args = ap.parse_args()
    dsn = _database(args.scale, args.database)
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
            chain = _chain(dsn) if args.scale == "league" else []  # a drill-down from the league's root
            drills = [_drill(browser, url, dsn, chain) for _ in range(args.drill)] if chain else []
            opened = [[_by_url(browser, url, dsn, c[0]) for c in chain] for _ in range(args.drill)]
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
    for i, (code, name, _, _) in enumerate(chain):
        clicks = [d[i][0] for d in drills]
        still = [d[i][1] for d in drills]
        urls = [o[i] for o in opened]
        how = "ranking row" if i == 0 else "map click"
        print(
            f"drill-down to level {i + 1} {code} {name} ({how})   numbers median {statistics.median(clicks):.2f} s"
            f" max {max(clicks):.2f} s   map still median {statistics.median(still):.2f} s max {max(still):.2f} s"
            f"   runs {len(clicks)}   |   opened by /?area= median {statistics.median(urls):.2f} s"
        )


if __name__ == "__main__":
    main()

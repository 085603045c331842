"""The command centre's mix, measured (issue 17, items 4 and 5): everything a league's centre does at
once, for a fixed time, against N app processes behind nginx, with or without the read replica.

    .venv/bin/python bench/bench_mix.py --processes 2 --replica            # 60 s at city scale
    .venv/bin/python bench/bench_mix.py --processes 2 --replica --fault kill-app
    .venv/bin/python bench/bench_mix.py --processes 1 --seconds 30 --screens 4 --rate 10 --gps 100

What runs, all on loopback (the ports: free ones the OS gives; the database server, its standby and
Redis: this checkout's embedded stack, `yitu db up`, on the ports of its .env):

- the data: a scratch copy (``CREATE DATABASE … TEMPLATE``, file copy) of the scale's bench database
  (``--scale city``: ``yitu_bench``, 1,000,000 cases, the largest seed there is — the league demo of
  the deployment issue does not exist yet; ``banner``: ``yitu_bench_demo``), seeded by
  bench_wallscreen.py's helper when missing, dropped at the end; or ``--database DSN`` as it is;
- ``--replica``: the embedded streaming standby (``yitu db replica up``; started if it is not
  running, and stopped again at the end only then), named to the apps as YITU_DATABASE_READ_URL;
- ``--processes`` N × ``yitu serve``, each a process of its own on its own port, and the real nginx
  (Debian's) with deploy/nginx.conf in front of them (one ``server`` line each; TLS on loopback, as
  tests/nginx.py renders it). Every request and every screen goes through nginx;
- ``--screens`` headless wall screens. A screen does on the wire what the wall page does: it pairs
  (``/pair/<code>``: a cookie), asks for the wall's layout (Dash's ``page.children`` callback), opens
  the live WebSocket (``/_dash-ws-callback``), starts the persistent live callback and answers its
  ``get_props`` for the cursor as the page's store would; on each live batch it reloads the point
  layers the batch touches (their URL from the layout with the batch's ``rev``, as yitu_map.js's
  ``layerUrls`` does: cases on case events, vans on dispatch events; each layer at most once a
  second, a busy spell's batches as one trailing reload; van moves alone move the markers from the
  events, the vans layer reloading for its trails every ``--trails`` s). The wall's numbers and
  warnings come by the push, as the page gets them: once the screen is open it runs their callbacks
  once (``/_dash-update-component``, as the page does when it opens), then answers the push's
  ``get_props`` for its numbers view (the area, the period, the language and the digests of what it
  shows) and keeps what each pushed round sends, timed from the moment the round was due (the push
  stamps it) to its arrival. A screen whose socket drops reconnects after a second (Dash's own first
  retry delay) with its cursor;
- the load, open loop (request *i* is sent at ``start + i / rate`` whatever became of the earlier
  ones, and timed from then, so a stalled server shows in the figures instead of slowing the sender):
  reports ``--rate``/s (``POST /api/v1/cases``, each with its Idempotency-Key), GPS ``--gps`` fixes/s
  in batches of ``--gps-batch`` (``POST /api/v1/vans/positions``, ``--vans`` vans driving at 40 km/h,
  turning at junctions now and then, their fixes a metre off as a phone's: until 2026-12-07 each fix
  jumped up to 30 m anywhere, a trail no simplification could thin), case
  transitions ``--transitions``/s on the cases reported in the run (accept, escalate, dispatch to a
  mediator, start, attempt, close), searches ``--searches``/s (``GET /api/v1/search``) and area views
  ``--areas``/s (``GET /api/v1/areas/{code}/stats`` and ``…/cases``, towns and villages).

Beside them, in the same run, the baseline: ``GET /healthz`` at ``--baseline``/s (nginx, the app's
front, one query and a Redis ping): on a machine shared with other work it shows what the moment's
contention costs any request, whatever it does.

Printed: a progress line every 5 s; then per path n, p50/p95/p99/max in ms and errors, the push
latency to the screens (from the moment the harness had a report's 201 — the write committed — to
the moment its ``case.created`` event reached each screen), the screens' reconnections, the CPU per
process (% of one core: each app process, nginx, PostgreSQL primary and replica, Redis, this client,
everything else on the machine) and the load average; the targets of the issue beside the rows they
concern. The first ``--warmup`` seconds are driven but not counted.

Faults (``--fault``, one a run, ``--fault-at`` seconds into the counted part): ``kill-app`` SIGKILLs
app process 1 (its screens must come back through nginx to another within 10 s), ``stop-replica``
stops the standby (reads move to the primary; no error), ``redis-failover`` runs Redis as a primary,
a replica and three Sentinels (tests/test_sentinel.py's set) with YITU_REDIS_URL naming the Sentinels,
and has them fail the master over (screens must catch up). The fault's own figures follow the table.

``--json``: the figures as one JSON object on stdout (progress and notes on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
import functools
import gzip
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_intake_rate import _busy_ticks, _postmaster
from bench.bench_wallscreen import _database
from bench.common import cpu_ticks, descendants, drop_database, free_port, wait_healthy
from callbacks.live import aligned
from cli.stack import EmbeddedStack
from services.identity import PAIR_PATH, create_screen, create_token
from services.settings import Settings
from tests import nginx as test_nginx
from tests.nginx import NAME, Nginx
from tests.test_sentinel import MASTER, PASSWORD, SentinelSet

# --- what the issue asks (this 2-core machine, 2 processes + replica) ------------------------------
TARGETS_MS = {"push": 150.0, "intake": 50.0, "layer": 100.0, "kpi": 100.0}
RECONNECT_TARGET_S = 10.0

MAIN = test_nginx.MAIN.replace("worker_processes 1;", "worker_processes auto;").replace(
    "worker_connections 256;", "worker_connections 768;"
)

# The wall page's ids (dashboard/pages/wall.py, callbacks/live.py, callbacks/wall.py).
POINT = "wall-point-layer"
LIVE_EVENTS, LIVE_CURSOR = "live-events", "live-cursor"
SHOWN = "wall-numbers-shown"  # what a screen shows of the numbers: sent back, as the page's store is
LIVE_VIEW, LIVE_NUMBERS = "live-numbers-view", "live-numbers"  # the numbers the push sends (callbacks/live.py)
PLAN: list[tuple[str, dict[str, Any]]] = [  # bench/chaos.py's mediator plan
    ("accept", {}),
    ("escalate", {}),
    ("dispatch", {"assignee": {"kind": "mediator", "id": "m-mix", "name": "调解员"}}),
    ("start", {}),
    ("attempt", {"result": "success"}),
    ("close", {"outcome": "mediated"}),
]
SEARCH_TERMS = ("张三", "李四", "纠纷", "邻里", "草场", "138000", "王")
now = time.perf_counter


def _say(msg: str, to_stderr: bool = False) -> None:
    print(msg, file=sys.stderr if to_stderr else sys.stdout, flush=True)


# --- figures ----------------------------------------------------------------------------------------


@dataclass
class Series:
    """One path's samples (ms) and errors, counted only inside the measured window."""

    name: str
    target: str | None = None  # key of TARGETS_MS this row is held to
    lat_ms: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    sent: int = 0

    def pct(self, q: float) -> float:
        s = sorted(self.lat_ms)
        return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")

    def row(self) -> dict[str, Any]:
        return {
            "path": self.name,
            "n": len(self.lat_ms),
            "p50": statistics.median(self.lat_ms) if self.lat_ms else None,
            "p95": self.pct(0.95) if self.lat_ms else None,
            "p99": self.pct(0.99) if self.lat_ms else None,
            "max": max(self.lat_ms) if self.lat_ms else None,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "target_ms": TARGETS_MS.get(self.target or ""),
        }


class Figures:
    """Every path's series; a sample counts when the request was due inside [start, end)."""

    ORDER = (
        ("baseline", "baseline: GET /healthz", None),
        ("intake", "POST /api/v1/cases", "intake"),
        ("gps", "POST /api/v1/vans/positions", None),
        ("transition", "POST /api/v1/cases/{code}/transitions", None),
        ("search", "GET /api/v1/search", None),
        ("area_stats", "GET /api/v1/areas/{code}/stats", "kpi"),
        ("area_cases", "GET /api/v1/areas/{code}/cases", None),
        ("layer_cases", "screen: GET /api/v1/layers/cases", "layer"),
        ("layer_vans", "screen: GET /api/v1/layers/vans", "layer"),
        ("numbers", "screen: wall numbers pushed (KPIs), due → on screen", "kpi"),
        ("push", "push: report answered → event on screen", "push"),
    )

    def __init__(self) -> None:
        self.series = {key: Series(name, target) for key, name, target in self.ORDER}
        self.start = float("inf")
        self.end = float("inf")

    def counted(self, due: float) -> bool:
        return self.start <= due < self.end

    def ok(self, key: str, due: float, done: float) -> None:
        if self.counted(due):
            self.series[key].lat_ms.append((done - due) * 1000)

    def error(self, key: str, due: float, kind: str) -> None:
        if self.counted(due):
            self.series[key].errors[kind] += 1


# --- a lean HTTPS/1.1 client ------------------------------------------------------------------------


class Https:
    """Keep-alive HTTP/1.1 over TLS to nginx: a new connection whenever none is free.

    As bench_intake_rate.py's client (httpx costs a quarter of a core at 100 requests/s, and a load
    client starved of CPU is late, which an open-loop timing rightly counts against the server), with
    TLS, chunked answers and the answer's body returned."""

    found_closed = 0  # free connections nginx had closed when taken (every client; in the summary)

    def __init__(self, port: int, tls: ssl.SSLContext, cookie: str | None = None) -> None:
        self.port, self.tls, self.cookie = port, tls, cookie
        self.host = f"{NAME}:{port}"
        # connections free for the next request, with when each was given back (time.monotonic())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", "Accept-Encoding: gzip"]
        if self.cookie:
            head.append(f"Cookie: {self.cookie}")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
        reader, writer = await self._connection()
        try:
            writer.write(raw)
            status, data, close = await self._answer(reader)
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self.idle.append((reader, writer, time.monotonic()))
        return status, data

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A free connection nginx has not closed, else a new one. As a browser's: one idle past
        nginx's ``keepalive_timeout`` (75 s) is not reused — the request would race nginx's close
        (until 2026-12-07 runs over a minute counted a few such races as the server's errors)."""
        while self.idle:
            reader, writer, since = self.idle.pop()
            if not reader.at_eof() and time.monotonic() - since < KEEPALIVE_S:
                return reader, writer
            if reader.at_eof():  # nginx closed it idle: at its timeout, or short of worker_connections
                Https.found_closed += 1
            writer.close()
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=self.tls, server_hostname=NAME)

    @staticmethod
    async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, close = None, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            return status, b"".join(p[:-2] for p in parts), close
        if length is None:
            return status, b"" if status in (204, 304) else await reader.read(), True
        return status, await reader.readexactly(length), close

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


KEEPALIVE_S = 60.0  # a free connection is reused this long: under nginx's keepalive_timeout (75 s)
ERRORS = (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ssl.SSLError)


# --- the headless wall screen ------------------------------------------------------------------------


@dataclass
class WallLayout:
    """What a screen needs of the wall page's layout: the live point layers and the numbers' inputs."""

    layers: dict[str, tuple[str, tuple[str, ...]]]  # layer id → (url, event types that reload it)
    numbers_body: dict[str, Any]
    warnings_body: dict[str, Any]
    numbers_output: str


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        if isinstance(node.get("props"), dict):
            yield node["props"]
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def wall_layout(page: dict[str, Any], deps: list[dict[str, Any]]) -> WallLayout:
    """The wall's layer URLs and the bodies of its numbers and warnings callbacks, from the layout the
    page callback answered and Dash's dependency list, as the renderer builds them."""
    props: dict[str, dict[str, Any]] = {}
    layers: dict[str, tuple[str, tuple[str, ...]]] = {}
    for p in _walk(page):
        pid = p.get("id")
        if isinstance(pid, dict) and pid.get("type") == POINT and isinstance(p.get("url"), str):
            layers[str(pid["layer"]).removeprefix("layer-")] = (
                p["url"],
                tuple((p.get("hideout") or {}).get("live") or ()),
            )
        elif isinstance(pid, str):
            props[pid] = p
    numbers = next(d for d in deps if d["output"].startswith("..wall-kpis.children"))
    warnings = next(d for d in deps if d["output"] == "wall-warnings.children")

    def value(dep: dict[str, Any]) -> Any:
        if dep["id"] == "lang":
            return "zh-CN"
        return props.get(dep["id"], {}).get(dep["property"])

    def entry(dep: dict[str, Any]) -> dict[str, Any]:
        ident: Any = json.loads(dep["id"]) if dep["id"].startswith("{") else dep["id"]
        return {"id": ident, "property": dep["property"], "value": value(dep)}

    numbers_body = {  # as the page asks when it opens: every input is new
        "output": numbers["output"],
        "outputs": _outputs(numbers["output"]),
        "inputs": [entry(d) for d in numbers["inputs"]],
        "state": [entry(d) for d in numbers["state"]],
        "changedPropIds": [f"{d['id']}.{d['property']}" for d in numbers["inputs"]],
    }
    warnings_body = {
        "output": warnings["output"],
        "outputs": {"id": "wall-warnings", "property": "children"},
        "inputs": [entry(d) for d in warnings["inputs"]],
        "state": [entry(d) for d in warnings["state"]],
        "changedPropIds": [f"{d['id']}.{d['property']}" for d in warnings["inputs"]],
    }
    return WallLayout(layers, numbers_body, warnings_body, numbers["output"])


def _outputs(spec: str) -> list[dict[str, str]]:
    """A multi-output callback's outputs from its dependency key (``..a.children...b.data..``)."""
    return [{"id": ident, "property": prop} for ident, prop in (o.rsplit(".", 1) for o in spec.strip(".").split("..."))]


LAG_TICK_S = 0.01  # the client's own loop-lag tick (Mix._watch_loop)
NUMBERS_LOST_S = 5.0  # a pushed round of the numbers not come this long after it was due is counted lost
RELOAD_S = 1.0  # a layer reloads at most once a second on a busy screen (yitu_map.js RELOAD_MS)


class Screen:
    """One headless wall screen (see the module): its socket, its reloads, its reconnections."""

    def __init__(self, index: int, mix: Mix, cookie: str, layout: WallLayout, live_output: str) -> None:
        self.index, self.mix, self.layout, self.live_output = index, mix, layout, live_output
        self.numbers_body = copy.deepcopy(layout.numbers_body)  # its own: it carries what this screen shows
        self.http = Https(mix.port, mix.tls, cookie)
        self.cookie = cookie
        self.cursor: str | None = None
        self.connected = False
        self.connects = 0
        self.batches = 0
        self.resyncs = 0
        self.lost_at: float | None = None
        self.reconnects: list[tuple[float, float]] = []  # (lost at, first batch after it)
        self.busy: dict[str, bool] = {}
        self.again: dict[str, bool] = {}
        self.want: dict[str, Callable[[], Awaitable[int]]] = {}
        self.reloaded: dict[str, float] = {}  # layer → when its URL was last set (yitu_map.js reload)
        self.trailing: dict[str, asyncio.TimerHandle] = {}
        self.opened = False  # the numbers asked for once, as the page does when it opens
        self.numbers_due: float | None = None  # a pushed round due and not come yet: since when
        self.shown: list[str | None] | None = None  # the page's SHOWN store: a digest per numbers part
        self.rounds = self.parts = 0  # pushed rounds of the numbers, and the parts they carried
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        mix = self.mix
        while not mix.stopping:
            try:
                async with connect(
                    f"wss://{NAME}:{mix.port}/_dash-ws-callback",
                    ssl=mix.tls,
                    host="127.0.0.1",
                    port=mix.port,
                    server_hostname=NAME,
                    proxy=None,
                    additional_headers={"Origin": f"https://{NAME}:{mix.port}", "Cookie": self.cookie},
                    open_timeout=10,
                    max_size=None,
                    ping_interval=20,
                ) as ws:
                    self.connects += 1
                    await ws.send(
                        orjson.dumps(
                            {
                                "type": "callback_request",
                                "rendererId": f"mix-{self.index}",
                                "requestId": f"mix-{self.index}-{self.connects}",
                                "payload": {
                                    "output": self.live_output,
                                    "outputs": [],
                                    "inputs": [],
                                    "state": [],
                                    "changedPropIds": [],
                                },
                            }
                        ).decode()
                    )
                    await self._listen(ws)
            except (WebSocketException, *ERRORS):
                pass
            if self.connected or self.lost_at is None:
                self.lost_at = self.lost_at if self.lost_at is not None else now()
            self.connected = False
            if not mix.stopping:
                await asyncio.sleep(1.0)  # Dash's first reconnect delay

    async def _listen(self, ws: ClientConnection) -> None:
        heartbeat = now() + 30
        while not self.mix.stopping:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=1.0)
            except TimeoutError:
                if now() > heartbeat:  # the SharedWorker's heartbeat
                    heartbeat = now() + 30
                    await ws.send('{"type": "heartbeat"}')
                continue
            at = now()
            msg = orjson.loads(raw)
            for m in msg if isinstance(msg, list) else [msg]:
                await self._message(ws, m, at)

    async def _message(self, ws: ClientConnection, m: dict[str, Any], at: float) -> None:
        kind = m.get("type")
        if kind == "get_props_request":  # the live callback reads the cursor store, or the numbers' view
            prop = m["payload"]["properties"][0]
            value = self.view() if m["payload"]["componentId"] == LIVE_VIEW else self.cursor
            await ws.send(
                orjson.dumps(
                    {
                        "type": "get_props_response",
                        "rendererId": m.get("rendererId"),
                        "requestId": m.get("requestId"),
                        "payload": {prop: value},
                    }
                ).decode()
            )
        elif kind == "set_props":
            comp, props = m["payload"]["componentId"], m["payload"]["props"]
            if comp == LIVE_CURSOR:
                self.cursor = props.get("data")
            elif comp == LIVE_EVENTS and isinstance(props.get("data"), dict):
                self._batch(props["data"], at)
            elif comp == LIVE_NUMBERS and isinstance(props.get("data"), dict):
                self._numbers(props["data"], at)

    def _inputs(self) -> dict[str, Any]:
        return {f"{d['id']}.{d['property']}": d["value"] for d in self.numbers_body["inputs"]}

    def view(self) -> dict[str, Any]:
        """The page's numbers view (yitu_map.js ``numbersView``): what it shows, for the push."""
        inputs = self._inputs()
        selected = next((v for k, v in inputs.items() if k.endswith("selected.data")), None) or {}
        period = next((v for k, v in inputs.items() if k.endswith("period.value")), None)
        start = next((v for k, v in inputs.items() if k.endswith(".start_date")), None)
        end = next((v for k, v in inputs.items() if k.endswith(".end_date")), None)
        return {"key": [selected.get("code"), period, start, end, "zh-CN"], "shown": self.shown}

    def _numbers(self, push: dict[str, Any], at: float) -> None:
        """A pushed round of the numbers (yitu_map.js ``numbers``): kept when it is of the view shown;
        timed from when the push says it was due (the same host's clock) to its arrival."""
        late_s = max(0.0, time.time() - float(push.get("at") or 0))
        self.mix.figures.ok("numbers", at - late_s, at)
        self.numbers_due = None
        self.rounds += 1
        self.parts += sum(p is not None for p in push.get("parts") or [])
        view, parts, digests = self.view(), push.get("parts") or [], push.get("shown") or []
        if push.get("key") != view["key"] or len(parts) != len(digests):
            return
        old = self.shown if isinstance(self.shown, list) and len(self.shown) == len(digests) else [None] * len(digests)
        self.shown = [d if parts[i] is not None else old[i] for i, d in enumerate(digests)]

    def _batch(self, batch: dict[str, Any], at: float) -> None:
        mix = self.mix
        self.batches += 1
        if not self.connected:
            self.connected = True
            if self.lost_at is not None:
                self.reconnects.append((self.lost_at, at))
                self.lost_at = None
        if batch.get("resync"):
            self.resyncs += 1
            mix.resync_at.append(at)
        events = batch.get("events") or []
        for e in events:
            if e.get("type") == "case.created" and e.get("code") in mix.answered:
                mix.push(mix.answered[e["code"]], at)
        mix.last_batch[self.index] = at
        if events:
            mix.event_batch[self.index] = at
        # as yitu_map.js's layerUrls: the outbox id of the batch's newest event (the server shares one
        # answer among the screens asking after it, services/layer_answers.py); a resync names no event
        outbox = batch.get("outbox")
        if outbox and not batch.get("resync"):
            rev = str(outbox)
        else:
            rev = f"r{round(float(batch.get('at', time.time())) * 1000) % 1_000_000_000}"
        for layer, (url, live) in self.layout.layers.items():
            mine = [e for e in events if live and str(e.get("type", "")).startswith(live)]
            if batch.get("resync") or mine:
                sep = "&" if "?" in url else "?"
                # as yitu_map.js's moveVans: van moves alone move the markers from the events, and
                # the vans layer reloads for its trails every TRAIL_S only
                moves = not batch.get("resync") and all(e.get("type") == "van.moved" for e in mine)
                trails = layer.endswith("vans") and moves
                every = self.mix.args.trails if trails else RELOAD_S
                do = functools.partial(self._get, f"{url}{sep}rev={rev}")
                self._reload(layer, do, bool(batch.get("resync")), every, trailing=trails)
        if (batch.get("numbers") or batch.get("resync")) and self.opened:
            # a round is due now (the push makes it after this batch): one that never came is an error
            if self.numbers_due is not None and at - self.numbers_due > NUMBERS_LOST_S:
                self.mix.figures.error("numbers", self.numbers_due, "no round")
            if self.numbers_due is None or at - self.numbers_due > NUMBERS_LOST_S:
                self.numbers_due = at
        if not self.opened:  # the page opened: it asks for its numbers and warnings once, then they are pushed
            self.opened = True

            async def ask() -> None:
                for body in (self.numbers_body, self.layout.warnings_body):
                    due = now()
                    try:
                        status = await asyncio.wait_for(self._callback(body), 30)
                    except ERRORS as exc:
                        self.mix.figures.error("numbers", due, type(exc).__name__)
                    else:
                        if status != 200:
                            self.mix.figures.error("numbers", due, str(status))

            task = asyncio.create_task(ask())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _reload(
        self, layer: str, do: Callable[[], Awaitable[int]], at_once: bool, every: float, trailing: bool = False
    ) -> None:
        """As yitu_map.js's ``yitu.live.reload``: a layer's URL is set at most once every ``every``
        seconds, the first batch after a quiet spell at once, a busy spell's batches as one trailing
        reload with the newest rev; a resync at once."""
        key, t = f"layer_{layer}", time.monotonic()
        last = self.reloaded.get(layer, -every)
        if trailing and t - last > every:  # the vans' trails: only after a whole gap, never at once
            last = self.reloaded[layer] = t
        if at_once or (not trailing and t - last >= every):
            if layer in self.trailing:
                self.trailing.pop(layer).cancel()
            self.reloaded[layer] = t
            self._fetch(key, do)
            return
        self.want[key] = do  # the newest wins
        pending = self.trailing.get(layer)
        if pending is not None and pending.when() > asyncio.get_running_loop().time() + (last + every - t) + every:
            self.trailing.pop(layer).cancel()  # due sooner now
        if layer not in self.trailing:

            def fire() -> None:
                self.trailing.pop(layer, None)
                self.reloaded[layer] = time.monotonic()
                if not self.mix.stopping:
                    self._fetch(key, self.want[key])

            delay = aligned(last + every, every) - t  # on the wall clock's boundaries, as the page
            self.trailing[layer] = asyncio.get_running_loop().call_later(delay, fire)

    def _fetch(self, key: str, do: Callable[[], Awaitable[int]]) -> None:
        """One request per layer (or callback) in flight, as the page has: a newer want while one is
        out is fetched once that one is back."""
        if key not in self.mix.figures.series:
            return  # a point layer the table does not follow (none reload on the mix's events)
        self.want[key] = do  # the newest URL (its rev) is the one fetched next
        if self.busy.get(key):
            self.again[key] = True
            return

        async def go() -> None:
            self.busy[key] = True
            try:
                while True:
                    self.again[key] = False
                    due = now()
                    try:
                        status = await asyncio.wait_for(self.want[key](), 30)
                    except ERRORS as exc:
                        self.mix.figures.error(key, due, type(exc).__name__)
                    else:
                        if status == 200:
                            self.mix.figures.ok(key, due, now())
                        else:
                            self.mix.figures.error(key, due, str(status))
                    if not self.again.get(key) or self.mix.stopping:
                        break
            finally:
                self.busy[key] = False

        task = asyncio.create_task(go())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _get(self, url: str) -> int:
        status, _ = await self.http.request("GET", url)
        return status

    async def _callback(self, body: dict[str, Any]) -> int:
        origin = {"Origin": f"https://{NAME}:{self.mix.port}"}
        status, data = await self.http.request("POST", "/_dash-update-component", orjson.dumps(body), origin)
        if status == 200:  # the screen now shows what it was sent, and its SHOWN store says so (the page's)
            data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            got = orjson.loads(data).get("response", {}).get(SHOWN)
            if got is not None:
                self.shown = got["data"]
        return 200 if status == 204 else status  # 204: nothing changed, nothing sent (callbacks/wall.py)


# --- the mix ----------------------------------------------------------------------------------------


@dataclass
class World:
    """What the load is made of, read from the database before the clock starts."""

    dispatcher: str
    admin: str
    points: list[tuple[float, float]]
    areas: list[str]
    vans: list[str]
    types: list[str]


class Mix:
    """The load and the screens on one asyncio loop, and what they measured."""

    def __init__(self, args: argparse.Namespace, port: int, tls: ssl.SSLContext, world: World) -> None:
        self.args, self.port, self.tls, self.world = args, port, tls, world
        self.figures = Figures()
        self.stopping = False
        self.answered: dict[str, float] = {}  # report code → when its 201 was read
        self.push_samples: list[tuple[float, float]] = []  # (answered at, ms)
        self.loop_lag_ms: list[float] = []  # how late this client's own ticks woke (measured window)
        self.resync_at: list[float] = []
        self.last_batch: dict[int, float] = {}
        self.event_batch: dict[int, float] = {}
        self.screens: list[Screen] = []
        self.ready: collections.deque[tuple[str, int]] = collections.deque()  # (code, next step)
        self.tag = uuid.uuid4().hex[:8]
        self.rng = random.Random(args.seed)
        self.van_at = {v: world.points[i % len(world.points)] for i, v in enumerate(world.vans)}
        self.heading = {v: self.rng.choice((0.0, 90.0, 180.0, 270.0)) for v in world.vans}
        self.van_time = datetime.now(UTC) - timedelta(minutes=5)
        self.negative_push = 0
        self.fault_at: float | None = None
        self.fault_notes: list[str] = []
        self.sent: collections.Counter[str] = collections.Counter()
        self.cpu = CpuWindow()
        self.groups: dict[str, set[int]] = {}

    def push(self, answered: float, at: float) -> None:
        ms = (at - answered) * 1000
        if ms < 0:  # the event outran the answer to the client: it was on the screen at once
            self.negative_push += 1
            ms = 0.0
        if self.figures.counted(answered):
            self.figures.series["push"].lat_ms.append(ms)
        self.push_samples.append((answered, ms))

    # --- the open-loop senders --------------------------------------------------------------------
    async def open_loop(self, key: str, rate: float, http: Https, make: Callable[[int], Any]) -> None:
        if rate <= 0:
            return
        t0, i = now(), 0
        tasks: set[asyncio.Task[None]] = set()
        while not self.stopping:
            due = t0 + i / rate
            wait = due - now()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.stopping:
                break
            request = make(i)
            i += 1
            if request is None:
                continue  # nothing to do now (no case waiting for its next step)
            self.sent[key] += 1
            task = asyncio.create_task(self._one(key, http, due, *request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=35)

    async def _one(
        self,
        key: str,
        http: Https,
        due: float,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        expect: int,
        done: Callable[[bytes, float], None] | None = None,
        failed: Callable[[], None] | None = None,
    ) -> None:
        try:
            status, data = await asyncio.wait_for(http.request(method, path, body, headers), 30)
        except ERRORS as exc:
            self.figures.error(key, due, type(exc).__name__)
            if failed:
                failed()
            return
        t = now()
        if status != expect:
            self.figures.error(key, due, f"{status} {data[:80].decode(errors='replace')}")
            if failed:
                failed()
            return
        self.figures.ok(key, due, t)
        if done:
            done(data, t)

    def report(self, i: int) -> Any:
        lon, lat = self.world.points[i % len(self.world.points)]
        body = orjson.dumps(
            {
                "type": self.world.types[i % len(self.world.types)],
                "description": f"指挥中心混合压测 {i}: 邻里因通行发生争议",
                "lon": lon,
                "lat": lat,
                "channel": "grid_app",
                "parties": [{"name": "张三", "phone": "13800000000"}, {"name": "李四"}],
            }
        )
        headers = {"Authorization": f"Bearer {self.world.dispatcher}", "Idempotency-Key": f"mix-{self.tag}-{i}"}

        def done(data: bytes, t: float) -> None:
            code = orjson.loads(data)["code"]
            self.answered[code] = t
            self.ready.append((code, 0))

        return ("POST", "/api/v1/cases", body, headers, 201, done)

    def gps(self, i: int) -> Any:
        fixes = []
        self.van_time = max(datetime.now(UTC), self.van_time + timedelta(milliseconds=1))
        for k in range(self.args.gps_batch):
            van = self.world.vans[(i * self.args.gps_batch + k) % len(self.world.vans)]
            lon, lat, heading = *self.van_at[van], self.heading[van]
            if self.rng.random() < TURN_CHANCE:  # a junction now and then: the road turns
                heading = self.heading[van] = (heading + self.rng.choice((-90.0, 90.0))) % 360
            lon, lat = _drive(lon, lat, heading, VAN_KMH / 3.6 * len(self.world.vans) / self.args.gps)
            self.van_at[van] = (lon, lat)
            jitter = self.rng.uniform(-GPS_JITTER, GPS_JITTER), self.rng.uniform(-GPS_JITTER, GPS_JITTER)
            lon, lat = lon + jitter[0], lat + jitter[1]
            fixes.append(
                {
                    "van": van,
                    "lon": round(lon, 6),
                    "lat": round(lat, 6),
                    "time": (self.van_time + timedelta(microseconds=k)).isoformat(),
                    "speed": VAN_KMH,
                    "heading": heading,
                }
            )
        body = orjson.dumps({"positions": fixes})
        return ("POST", "/api/v1/vans/positions", body, {"Authorization": f"Bearer {self.world.admin}"}, 200)

    def transition(self, i: int) -> Any:
        if not self.ready:
            return None
        code, step = self.ready.popleft()
        action, params = PLAN[step]
        body = orjson.dumps({"action": action, **params})
        headers = {"Authorization": f"Bearer {self.world.dispatcher}", "Idempotency-Key": f"mix-{self.tag}-t{i}"}

        def done(_data: bytes, _t: float) -> None:
            if step + 1 < len(PLAN):
                self.ready.append((code, step + 1))

        return ("POST", f"/api/v1/cases/{code}/transitions", body, headers, 200, done)

    def search(self, i: int) -> Any:
        q = SEARCH_TERMS[i % len(SEARCH_TERMS)]
        path = f"/api/v1/search?q={quote(q)}"
        return ("GET", path, None, {"Authorization": f"Bearer {self.world.dispatcher}"}, 200)

    def area(self, i: int, what: str) -> Any:
        code = self.world.areas[(i * 7919) % len(self.world.areas)]
        return ("GET", f"/api/v1/areas/{code}/{what}", None, {"Authorization": f"Bearer {self.world.dispatcher}"}, 200)

    # --- the run ----------------------------------------------------------------------------------
    async def run(
        self,
        cookies: list[str],
        layout: WallLayout,
        live_output: str,
        fault: Fault | None,
        pids: Callable[[], dict[str, set[int]]],
    ) -> None:
        args = self.args
        self.screens = [Screen(i, self, c, layout, live_output) for i, c in enumerate(cookies)]
        screen_tasks = [asyncio.create_task(s.run()) for s in self.screens]
        deadline = now() + 60
        while sum(s.connected for s in self.screens) < len(self.screens):
            if now() > deadline:
                raise SystemExit(f"only {sum(s.connected for s in self.screens)} of {len(self.screens)} screens live")
            await asyncio.sleep(0.1)
        clients = {k: Https(self.port, self.tls) for k in ("intake", "gps", "transition", "search", "area", "base")}
        t0 = now()
        self.figures.start = t0 + args.warmup
        self.figures.end = self.figures.start + args.seconds
        senders = [
            asyncio.create_task(
                self.open_loop("baseline", args.baseline, clients["base"], lambda i: ("GET", "/healthz", None, {}, 200))
            ),
            asyncio.create_task(self.open_loop("intake", args.rate, clients["intake"], self.report)),
            asyncio.create_task(
                self.open_loop("gps", args.gps / args.gps_batch, clients["gps"], self.gps) if args.gps > 0 else _noop()
            ),
            asyncio.create_task(self.open_loop("transition", args.transitions, clients["transition"], self.transition)),
            asyncio.create_task(self.open_loop("search", args.searches, clients["search"], self.search)),
            asyncio.create_task(
                self.open_loop("area_stats", args.areas, clients["area"], lambda i: self.area(i, "stats"))
            ),
            asyncio.create_task(
                self.open_loop("area_cases", args.areas, Https(self.port, self.tls), lambda i: self.area(i, "cases"))
            ),
        ]
        lag_task = asyncio.create_task(self._watch_loop())
        cpu = self.cpu
        fault_task: asyncio.Task[None] | None = None
        next_progress = t0 + 5
        while now() < self.figures.end:
            await asyncio.sleep(0.2)
            if cpu.before is None and now() >= self.figures.start:
                self.groups = pids()  # the processes now; those started later are added at the end
                cpu.open()
            if fault is not None and fault_task is None and now() >= self.figures.start + args.fault_at:
                self.fault_at = now()
                fault_task = asyncio.create_task(fault.strike(self))
            if now() >= next_progress:
                next_progress += 5
                self.progress(t0)
        cpu.close()
        for name, found in pids().items():
            self.groups[name] = self.groups.get(name, set()) | found
        if fault_task is not None:
            await fault_task
        self.stopping = True
        await lag_task
        await asyncio.gather(*senders)
        await asyncio.gather(*screen_tasks, return_exceptions=True)
        for s in self.screens:
            for t in list(s.tasks):
                t.cancel()
            s.http.close()
        for c in clients.values():
            c.close()

    async def _watch_loop(self) -> None:
        """This client's own lateness: a tick every LAG_TICK_S, and how much later than asked it woke.
        Every figure above is timed by this one event loop, so a late loop shows in all of them; this row
        says how much of a tail is the measuring client's rather than the server's."""
        while not self.stopping:
            asked = now()
            await asyncio.sleep(LAG_TICK_S)
            woke = now()
            if self.figures.counted(asked):
                self.loop_lag_ms.append((woke - asked - LAG_TICK_S) * 1000)

    def progress(self, t0: float) -> None:
        f = self.figures
        recent = [ms for at, ms in self.push_samples if at > now() - 5]
        live = sum(s.connected for s in self.screens)
        errors = sum(sum(s.errors.values()) for s in f.series.values())
        phase = "warm-up" if now() < f.start else "measured"
        _say(
            f"  {now() - t0:5.0f} s ({phase})  sent: reports {self.sent['intake']}, GPS batches {self.sent['gps']},"
            f" transitions {self.sent['transition']}, searches {self.sent['search']},"
            f" area views {self.sent['area_stats']}  errors {errors}  screens live {live}/{len(self.screens)}"
            f"  push p95 last 5 s {_p95(recent):.0f} ms  load {os.getloadavg()[0]:.2f}",
            self.args.json,
        )


async def _noop() -> None:
    return None


async def _poll(done: Callable[[], bool], deadline: float, every: float = 0.2) -> bool:
    """Wait until ``done()`` (checked every ``every`` s) or the ``deadline`` (perf_counter); whether done."""
    while True:
        if done():
            return True
        if now() >= deadline:
            return False
        await asyncio.sleep(every)


def _p95(values: list[float]) -> float:
    return _pct(values, 0.95)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


# --- CPU per process --------------------------------------------------------------------------------


class CpuWindow:
    """Clock ticks of every process between open() and close(), grouped by what it is."""

    def __init__(self) -> None:
        self.before: dict[int, tuple[int, int, str]] | None = None
        self.after: dict[int, tuple[int, int, str]] = {}
        self.t0 = self.t1 = 0.0
        self.busy0 = self.busy1 = 0
        self.self0 = self.self1 = 0.0
        self.last_seen: dict[int, tuple[int, int, str]] = {}  # ticks of processes about to be killed

    def open(self) -> None:
        self.before, self.t0, self.busy0, self.self0 = cpu_ticks(), time.monotonic(), _busy_ticks(), _self_cpu()

    def close(self) -> None:
        self.after, self.t1, self.busy1, self.self1 = cpu_ticks(), time.monotonic(), _busy_ticks(), _self_cpu()

    def shares(self, groups: dict[str, set[int]]) -> dict[str, float]:
        """% of one core per group (2 cores = 200 %); 'this client' and 'everything else' added."""
        hz = os.sysconf("SC_CLK_TCK")
        seconds = max(1e-6, self.t1 - self.t0)
        before = self.before or {}
        out: dict[str, float] = {}
        counted = 0.0
        for name, pids in groups.items():
            after = {**self.last_seen, **self.after}
            spent = sum(max(0, after[p][0] - before.get(p, (0, 0, ""))[0]) for p in pids if p in after)
            out[name] = spent / hz / seconds * 100
            counted += spent
        mine = (self.self1 - self.self0) * hz
        out["this client (bench_mix)"] = mine / hz / seconds * 100
        out["everything else on the machine"] = max(0.0, self.busy1 - self.busy0 - counted - mine) / hz / seconds * 100
        return out


def _self_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


# --- faults -----------------------------------------------------------------------------------------


class Fault:
    """One fault, struck while the mix runs; its notes go under the table."""

    def __init__(self, kind: str, site: Site) -> None:
        self.kind, self.site = kind, site

    async def strike(self, mix: Mix) -> None:
        if self.kind == "kill-app":
            await self._kill_app(mix)
        elif self.kind == "stop-replica":
            await self._stop_replica(mix)
        else:
            await self._redis_failover(mix)

    async def _kill_app(self, mix: Mix) -> None:
        victim = self.site.apps[0]
        mix.cpu.last_seen = cpu_ticks()  # what the victim spent until now still counts as its own
        t = now()
        os.kill(victim.pid, signal.SIGKILL)
        await asyncio.to_thread(victim.wait, 10)
        mix.fault_notes.append(
            f"kill-app: SIGKILL of app process 1 (pid {victim.pid}) at {t - mix.figures.start:.1f} s of the measured"
            f" run; nginx now sends everything to the other {len(self.site.apps) - 1}"
        )
        await self._screens_back(mix, t, "after the kill")

    async def _screens_back(self, mix: Mix, t: float, when: str) -> None:
        await _poll(lambda: all(s.lost_at is None and s.connected for s in mix.screens), t + 30)
        lost = [(s.index, back - gone) for s in mix.screens for gone, back in s.reconnects if gone >= t - 1]
        still = [s.index for s in mix.screens if not s.connected]
        times = [d for _, d in lost]
        mix.fault_notes.append(
            f"screens that lost their socket {when}: {len(lost)}; back through nginx (first live batch on the new"
            f" socket) in {', '.join(f'{d:.1f}' for d in sorted(times)) or '-'} s (max {max(times, default=0):.1f} s,"
            f" target < {RECONNECT_TARGET_S:g} s); still without a socket after 30 s: {len(still)}"
        )
        await self._caught_up(mix, t)

    async def _caught_up(self, mix: Mix, t: float) -> None:
        """Each screen caught up: it got the event of a report answered after the fault (or a resync)."""
        deadline = t + 40
        caught: dict[int, float] = {}
        while now() < deadline and len(caught) < len(mix.screens):
            after = [a for a in mix.answered.values() if a > t]
            if after:
                first = min(after)
                for s in mix.screens:
                    got = mix.event_batch.get(s.index, 0.0)
                    if s.index not in caught and got > first:
                        caught[s.index] = got - t
            await asyncio.sleep(0.2)
        late = sorted(caught.values())
        after_ms = [ms for a, ms in mix.push_samples if a > t]
        mix.fault_notes.append(
            f"screens caught up (an event of a report answered after the fault on screen): {len(caught)} of"
            f" {len(mix.screens)}, the last {max(late, default=float('nan')):.1f} s after the fault; push after the"
            f" fault p95 {_p95(after_ms):.0f} ms, max {max(after_ms, default=float('nan')):.0f} ms;"
            f" resync batches by then {sum(1 for r in mix.resync_at if r > t)}"
        )

    async def _stop_replica(self, mix: Mix) -> None:
        mix.cpu.last_seen = cpu_ticks()  # what the standby spent until now still counts as its own
        t = now()
        await asyncio.to_thread(self.site.stack.stop_replica)
        mix.fault_notes.append(
            f"stop-replica: the standby stopped (pg_ctl stop, fast) at {t - mix.figures.start:.1f} s of the measured"
            f" run, {now() - t:.1f} s to stop"
        )
        state = await asyncio.to_thread(self.site.replica_state, 15)
        mix.fault_notes.append(f"/healthz of each process after it: {state}")

    async def _redis_failover(self, mix: Mix) -> None:
        sentinels = self.site.sentinels
        assert sentinels is not None
        t = now()
        await asyncio.to_thread(sentinels.sentinel().execute_command, "SENTINEL", "FAILOVER", MASTER)
        await _poll(lambda: sentinels.master_port() == sentinels.ports[1], t + 30)
        mix.fault_notes.append(
            f"redis-failover: SENTINEL FAILOVER at {t - mix.figures.start:.1f} s of the measured run; the replica"
            f" (port {sentinels.ports[1]}) was master {now() - t:.1f} s later"
        )
        await self._caught_up(mix, t)


# --- the site: stack, database, apps, nginx ---------------------------------------------------------


class Site:
    """Everything the bench starts, and how to stop it again."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stack = EmbeddedStack(Settings())
        self.tmp = Path(tempfile.mkdtemp(prefix="bench_mix_"))
        self.dsn = ""
        self.scratch = False
        self.started_replica = False
        self.replica_was_running = False
        self.apps: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self.nginx: Nginx | None = None
        self.sentinels: SentinelSet | None = None
        self.redis_url = ""
        self.admin = ""
        self.keep = False  # leave the app and nginx logs in self.tmp

    # --- up -----------------------------------------------------------------------------------------
    def up(self) -> None:
        args = self.args
        self.stack.up()
        if args.replica:
            self.replica_was_running = self.stack.replica_running()
            if not self.replica_was_running:
                _say("starting the streaming standby (yitu db replica up)…", args.json)
                self.started_replica = self.stack.start_replica()
        if args.database:
            self.dsn = args.database
        else:
            self.dsn = _clone(_database(args.scale), "yitu_bench_mix")
            self.scratch = True
        if args.replica:
            try:
                _wait(lambda: _answers(self._replica_dsn()), 120, "the scratch database on the standby")
            except SystemExit as gave_up:  # say where the standby stands (replaying a long backlog?)
                raise SystemExit(f"{gave_up}; postgresql-replica: {self.stack.replica_status()}") from None
        self._redis()
        env = {
            **os.environ,
            "YITU_DATABASE_URL": self.dsn,
            "YITU_REDIS_URL": self.redis_url,
            "YITU_HOST": "127.0.0.1",
            "YITU_LOG_LEVEL": "WARNING",
        }
        if args.replica:
            env["YITU_DATABASE_READ_URL"] = self._replica_dsn()
        for i in range(args.processes):
            port = free_port()
            log = (self.tmp / f"app{i + 1}.log").open("wb")
            self.apps.append(
                subprocess.Popen(
                    [sys.executable, "-m", "cli.main", "serve"],
                    cwd=ROOT,
                    env={**env, "YITU_PORT": str(port)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a session of its own, as a service (bench_intake_rate.py)
                )
            )
            self.ports.append(port)
        for proc, port, i in zip(self.apps, self.ports, range(len(self.apps)), strict=True):
            wait_healthy(proc, f"http://127.0.0.1:{port}", 180, self.tmp / f"app{i + 1}.log")
        upstream = ";\n    server ".join(f"127.0.0.1:{p}" for p in self.ports)
        # Debian's own nginx.conf around deploy/nginx.conf: a worker per core, 768 connections each (the
        # test's 256 run out under an open-loop client whose requests pile up while the server is slow).
        self.nginx = Nginx(self.tmp / "nginx", upstream, MAIN)

    def _replica_dsn(self) -> str:
        return make_conninfo(self.dsn, port=str(self.stack.settings.replica_port))

    def _redis(self) -> None:
        if self.args.fault == "redis-failover":
            # Free ports (YITU_REDIS_PORT + 20 is the next checkout's Redis on a shared machine).
            self.sentinels = SentinelSet(self.tmp, _free_ports(5))
            self.sentinels.start()
            hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels.ports[2:])
            self.redis_url = f"redis+sentinel://:{PASSWORD}@{hosts}/{MASTER}/0"
            return
        self.redis_url = self.args.redis_url or self.stack.redis_url().rsplit("/", 1)[0] + f"/{self.args.redis_db}"
        client = redis.Redis.from_url(self.redis_url)
        client.flushdb()
        client.close()

    # --- reading the state ----------------------------------------------------------------------------
    def replica_state(self, seconds: float) -> str:
        """What each live process's /healthz says of the replica, once all have left it (or ``seconds``)."""
        deadline = time.monotonic() + seconds
        states: list[str] = []
        while time.monotonic() < deadline:
            states = []
            for proc, port in zip(self.apps, self.ports, strict=True):
                if proc.poll() is not None:
                    continue
                try:
                    body = httpx.get(
                        f"http://127.0.0.1:{port}/healthz", headers={"Authorization": f"Bearer {self.admin}"}, timeout=5
                    ).json()
                    rep = body.get("replica") or {}
                    states.append(f"reads {rep.get('reads')} ({rep.get('reason')})")
                except httpx.HTTPError as exc:
                    states.append(type(exc).__name__)
            if states and all("primary" in s for s in states):
                break
            time.sleep(0.5)
        return "; ".join(states)

    def pids(self) -> dict[str, set[int]]:
        """The processes per group, for the CPU table."""
        ticks = cpu_ticks()
        groups: dict[str, set[int]] = {}
        for i, proc in enumerate(self.apps):
            groups[f"app process {i + 1}"] = descendants(ticks, {proc.pid})
        if self.nginx is not None:
            groups["nginx"] = descendants(ticks, {self.nginx.proc.pid})
        master = _postmaster(self.stack)
        groups["PostgreSQL primary"] = descendants(ticks, {master}) if master else set()
        if self.args.replica:
            try:
                rep = int((self.stack.replica_data / "postmaster.pid").read_text().split()[0])
                groups["PostgreSQL replica"] = descendants(ticks, {rep})
            except (OSError, ValueError, IndexError):
                groups["PostgreSQL replica"] = set()
        ports = self.sentinels.ports if self.sentinels else [int(self.redis_url.rsplit(":", 1)[1].split("/")[0])]
        groups["Redis" + (" + Sentinels" if self.sentinels else "")] = {
            pid
            for pid, (_, _, cmd) in ticks.items()
            if "redis-server" in cmd and any(f":{p}" in cmd or f"/{p}.conf" in cmd for p in ports)
        }
        return groups

    # --- down ---------------------------------------------------------------------------------------
    def down(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for proc in self.apps:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.apps:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self.sentinels is not None:
            self.sentinels.stop()
        elif self.redis_url:
            client = redis.Redis.from_url(self.redis_url)
            client.flushdb()
            client.close()
        if self.scratch and self.dsn:
            drop_database(self.dsn)
        if self.args.replica:
            if self.started_replica:
                self.stack.stop_replica()
            elif self.replica_was_running and not self.stack.replica_running():
                self.stack.start_replica()  # the fault stopped it: as it was found
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _clone(template_dsn: str, prefix: str) -> str:
    """A scratch copy of ``template_dsn``'s database by file copy: PostgreSQL 15's default (WAL_LOG)
    would write the whole million-case database into the WAL, and a standby would replay it all."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    template = str(conninfo_to_dict(template_dsn)["dbname"])
    with psycopg.connect(make_conninfo(template_dsn, dbname="postgres"), autocommit=True) as conn:
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        if conn.info.server_version >= 150000:
            create += sql.SQL(" STRATEGY FILE_COPY")
        conn.execute(create)
    return make_conninfo(template_dsn, dbname=name)


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        if (p := free_port()) not in ports:
            ports.append(p)
    return ports


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1 FROM cases LIMIT 1")
        return True
    except psycopg.Error:
        return False


def _wait(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what} after {seconds:.0f} s")
        time.sleep(0.5)


VAN_KMH = 40.0  # the vans drive at 40 km/h ...
TURN_CHANCE = 0.01  # ... turning at a junction every hundred fixes or so ...
GPS_JITTER = 1e-5  # ... their fixes off by up to a metre or so, as a phone's GPS


def _drive(lon: float, lat: float, heading: float, metres: float) -> tuple[float, float]:
    """Where a van at (lon, lat) is after ``metres`` on ``heading`` (degrees from north)."""
    rad = math.radians(heading)
    dlat = metres * math.cos(rad) / 111_320
    dlon = metres * math.sin(rad) / (111_320 * math.cos(math.radians(lat)))
    return lon + dlon, lat + dlat


def prepare_world(dsn: str, n_vans: int, seed: int) -> World:
    """Tokens, points inside the grid cells, towns and villages to view, and the vans to drive
    (the seeded ones, topped up with bench vans ``MIX…`` when there are fewer than ``n_vans``)."""
    with psycopg.connect(dsn) as conn:
        dispatcher = create_token(conn, name=f"mix-{uuid.uuid4().hex[:6]}", role="dispatcher", area=None)[1]
        admin = create_token(conn, name=f"mix-admin-{uuid.uuid4().hex[:6]}", role="admin", area=None)[1]
        rows = conn.execute(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT (ST_Dump(ST_GeneratePoints(geom, 2, %s))).geom AS p"
            " FROM areas WHERE level = 4) s",
            (seed,),
        ).fetchall()
        areas = [r[0] for r in conn.execute("SELECT code FROM areas WHERE level IN (2, 3) ORDER BY code").fetchall()]
        vans = [r[0] for r in conn.execute("SELECT id FROM vans ORDER BY id").fetchall()]
        types = [r[0] for r in conn.execute("SELECT code FROM case_types WHERE active ORDER BY sort_order").fetchall()]
        missing = max(0, n_vans - len(vans))
        if missing:
            conn.cursor().executemany(
                "INSERT INTO vans (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(f"MIX{i:03d}", f"压测车 {i}") for i in range(missing)],
            )
            vans += [f"MIX{i:03d}" for i in range(missing)]
    points = [(float(x), float(y)) for x, y in rows]
    random.Random(seed).shuffle(points)
    if not points or not areas:
        raise SystemExit(f"{dsn}: no grid cells or areas (seed it: yitu seed demo)")
    return World(dispatcher, admin, points, areas, vans[:n_vans], types)


def open_screens(site: Site, n: int) -> tuple[list[str], WallLayout, str]:
    """Pair ``n`` screens through nginx (a cookie each) and read the wall's layout once."""
    assert site.nginx is not None
    cookies = []
    with psycopg.connect(site.dsn) as conn:
        codes = [create_screen(conn, f"mix-{uuid.uuid4().hex[:8]}")[1] for _ in range(max(1, n))]
    with site.nginx.client() as client:
        for code in codes:
            r = client.get(site.nginx.base + PAIR_PATH + code, follow_redirects=False)
            if r.status_code != 303 or "yitu_session" not in r.cookies:
                raise SystemExit(f"pairing a screen failed: {r.status_code} {r.text[:200]}")
            cookies.append(f"yitu_session={r.cookies['yitu_session']}")
        head = {"Cookie": cookies[0], "Origin": site.nginx.base}
        deps = client.get(site.nginx.base + "/_dash-dependencies", headers=head).json()
        page = client.post(
            site.nginx.base + "/_dash-update-component",
            headers=head,
            json={
                "output": "page.children",
                "outputs": {"id": "page", "property": "children"},
                "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
                "state": [{"id": "url", "property": "search", "value": ""}],
                "changedPropIds": ["url.pathname"],
            },
        )
        if page.status_code != 200:
            raise SystemExit(f"the wall's layout: {page.status_code} {page.text[:300]}")
    live = next(d["output"] for d in deps if d.get("persistent") and d.get("websocket"))
    layout = wall_layout(page.json(), deps)
    if "cases" not in layout.layers:
        raise SystemExit(f"the wall's layout has no live case layer: {sorted(layout.layers)}")
    return cookies[:n], layout, live


# --- the report -------------------------------------------------------------------------------------


def report(args: argparse.Namespace, mix: Mix, site: Site, meta: dict[str, Any]) -> dict[str, Any]:
    rows = [s.row() for s in mix.figures.series.values()]
    cpu = mix.cpu.shares(mix.groups)
    reconnects = [
        {"screen": s.index, "lost_at_s": gone - mix.figures.start, "back_after_s": back - gone}
        for s in mix.screens
        for gone, back in s.reconnects
    ]
    verdicts = {}
    for _key, name, target in Figures.ORDER:
        if target is None:
            continue
        row = next(r for r in rows if r["path"] == name)
        verdicts[name] = row["p95"] is not None and row["p95"] < TARGETS_MS[target] and row["errors"] == 0
    if mix.fault_at is not None:  # the push around the fault, over the rest of the run
        t = mix.fault_at
        after = [(a - t, ms) for a, ms in mix.push_samples if t <= a < mix.figures.end]
        before = [ms for a, ms in mix.push_samples if mix.figures.start <= a < t]
        slow = [dt for dt, ms in after if ms > 1000]
        mix.fault_notes.append(
            f"push before the fault p50 {_pct(before, 0.5):.0f} / p95 {_pct(before, 0.95):.0f} ms; of the reports"
            f" answered after it p50 {_pct([ms for _, ms in after], 0.5):.0f} / p95"
            f" {_pct([ms for _, ms in after], 0.95):.0f} / max {max((ms for _, ms in after), default=float('nan')):.0f}"
            f" ms; the last whose event took over 1 s was answered"
            f" {f'{max(slow):.1f} s' if slow else '(none)'} after the fault"
        )
    return {
        **meta,
        "rows": rows,
        "errors": sum(r["errors"] for r in rows),
        "cpu_percent_of_one_core": cpu,
        "screens": {
            "count": len(mix.screens),
            "batches": sum(s.batches for s in mix.screens),
            "resyncs": sum(s.resyncs for s in mix.screens),
            "numbers_rounds": sum(s.rounds for s in mix.screens),  # pushed rounds of the numbers
            "numbers_parts": sum(s.parts for s in mix.screens),  # of their 8 parts, how many were sent
            "connects": sum(s.connects for s in mix.screens),
            "reconnects": reconnects,
        },
        "sent": dict(mix.sent),
        "push_before_answer": mix.negative_push,
        "free_connections_found_closed": Https.found_closed,
        "fault": args.fault,
        "fault_notes": mix.fault_notes,
        "targets_met": verdicts,
        "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "client_loop_lag_ms": {
            "p50": _pct(mix.loop_lag_ms, 0.5),
            "p95": _pct(mix.loop_lag_ms, 0.95),
            "p99": _pct(mix.loop_lag_ms, 0.99),
            "max": max(mix.loop_lag_ms, default=float("nan")),
        },
    }


def print_table(out: dict[str, Any]) -> None:
    _say(
        f"\n# bench_mix — {out['started']} UTC, {out['machine']}; {out['data']}; {out['processes']} app process(es)"
        f" behind nginx, replica {'on' if out['replica'] else 'off'}, fault {out['fault'] or 'none'};"
        f" {out['screens']['count']} screens; {out['load']}; measured {out['seconds']:g} s after {out['warmup']:g} s"
    )
    _say(f"{'path':<44}{'n':>7}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'errors':>8}  target")
    for r in out["rows"]:

        def ms(v: float | None) -> str:
            return f"{v:8.1f}" if v is not None else f"{'-':>8}"

        target = ""
        if r["target_ms"] is not None:
            met = r["p95"] is not None and r["p95"] < r["target_ms"] and r["errors"] == 0
            target = f"p95 < {r['target_ms']:g}: {'met' if met else 'NOT met'}"
        _say(
            f"{r['path']:<44}{r['n']:>7}{ms(r['p50'])}{ms(r['p95'])}{ms(r['p99'])}{ms(r['max'])}"
            f"{r['errors']:>8}  {target}"
        )
        if r["errors"]:
            _say(f"{'':<44}errors: {r['error_kinds']}")
    sc = out["screens"]
    _say(
        f"screens: {sc['count']}, live batches {sc['batches']}, resyncs {sc['resyncs']},"
        f" sockets opened {sc['connects']}, reconnections {len(sc['reconnects'])};"
        f" pushed rounds of the numbers {sc['numbers_rounds']} carrying {sc['numbers_parts']} parts;"
        f" sent {out['sent']};"
        f" events on screen before the harness read the answer {out['push_before_answer']};"
        f" free connections found closed by nginx {out['free_connections_found_closed']}"
    )
    _say(
        "CPU, % of one core (2 cores = 200 %): "
        + ", ".join(f"{k} {v:.0f}" for k, v in out["cpu_percent_of_one_core"].items())
    )
    lag = out["client_loop_lag_ms"]
    _say(
        f"this client's event loop, late by (ms; every row above is timed by it): p50 {lag['p50']:.1f},"
        f" p95 {lag['p95']:.1f}, p99 {lag['p99']:.1f}, max {lag['max']:.1f}"
    )
    for note in out["fault_notes"]:
        _say("fault: " + note)
    for note in out["app_exits"]:
        _say("NOTE: " + note)
    if out.get("logs_kept"):
        _say(f"the app and nginx logs of this run are kept in {out['logs_kept']}")
    _say(f"errors {out['errors']}; load average after: {out['load_after']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=2, help="app processes behind nginx (default 2)")
    ap.add_argument("--replica", action="store_true", help="read-heavy paths from the streaming standby")
    ap.add_argument("--seconds", type=float, default=60, help="length of the measured run (default 60)")
    ap.add_argument("--warmup", type=float, default=10, help="driven first, not counted (default 10 s)")
    ap.add_argument("--screens", type=int, default=10, help="headless wall screens (default 10)")
    ap.add_argument("--rate", type=float, default=50, help="reports per second (default 50)")
    ap.add_argument("--gps", type=float, default=1000, help="GPS fixes per second (default 1000)")
    ap.add_argument("--gps-batch", type=int, default=50, help="fixes per GPS request (default 50: 20 requests/s)")
    ap.add_argument(
        "--trails",
        type=float,
        default=30.0,
        help="seconds between a screen's vans-layer reloads for the trails while the vans only move (default 30,"
        " yitu_map.js TRAIL_MS: the markers move from the events)",
    )
    ap.add_argument("--vans", type=int, default=200, help="vans driving (default 200)")
    ap.add_argument("--transitions", type=float, default=10, help="case transitions per second (default 10)")
    ap.add_argument("--searches", type=float, default=5, help="searches per second (default 5)")
    ap.add_argument("--areas", type=float, default=5, help="area views per second, stats + cases each (default 5)")
    ap.add_argument(
        "--baseline", type=float, default=5, help="GET /healthz per second, the baseline of the run (default 5)"
    )
    ap.add_argument(
        "--fault",
        choices=("kill-app", "stop-replica", "redis-failover"),
        help="strike one fault during the run (see above)",
    )
    ap.add_argument("--fault-at", type=float, default=None, help="seconds into the measured run (default a third)")
    ap.add_argument("--scale", choices=("banner", "city"), default="city", help="the data (default city)")
    ap.add_argument("--database", help="run on this database as it is (written to) instead of a scratch copy")
    ap.add_argument("--redis-url", help="Redis to use (flushed!); default this checkout's, database --redis-db")
    ap.add_argument("--redis-db", type=int, default=11, help="the Redis database flushed and used (default 11)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="the figures as JSON on stdout, progress on stderr")
    args = ap.parse_args(argv)
    if args.fault == "stop-replica" and not args.replica:
        ap.error("--fault stop-replica needs --replica")
    if args.fault == "kill-app" and args.processes < 2:
        ap.error("--fault kill-app needs --processes 2 or more (the others keep serving)")
    if args.fault_at is None:
        args.fault_at = args.seconds / 3
    load = "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + " before the start"
    site = Site(args)
    try:
        _say(f"bench_mix: starting (data: {args.database or args.scale}; {args.processes} process(es))…", args.json)
        site.up()
        world = prepare_world(site.dsn, args.vans, args.seed)
        site.admin = world.admin
        with psycopg.connect(site.dsn) as conn:
            n_cases = conn.execute("SELECT count(*) FROM cases").fetchone()[0]  # type: ignore[index]
        cookies, layout, live = open_screens(site, args.screens)
        assert site.nginx is not None
        mix = Mix(args, site.nginx.https_port, site.nginx.tls(), world)
        fault = Fault(args.fault, site) if args.fault else None
        started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        _say(f"bench_mix: {len(cookies)} screens paired; the mix runs {args.warmup:g} + {args.seconds:g} s", args.json)
        asyncio.run(mix.run(cookies, layout, live, fault, site.pids))
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        meta = {
            "started": started,
            "machine": f"{platform.node()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}",
            "data": f"{'given database' if args.database else args.scale + ' scale'} ({n_cases:,} cases at the start)",
            "processes": args.processes,
            "replica": args.replica,
            "load": load,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "rates": {
                "reports": args.rate,
                "gps_fixes": args.gps,
                "transitions": args.transitions,
                "searches": args.searches,
                "area_views": args.areas,
            },
        }
        out = report(args, mix, site, meta)
        victim = 0 if args.fault == "kill-app" else None
        out["app_exits"] = [
            f"app process {i + 1} exited with status {p.returncode} during the run"
            for i, p in enumerate(site.apps)
            if p.poll() is not None and i != victim
        ]
        site.keep = bool(out["errors"] or out["app_exits"])  # the servers' logs, to see why
    finally:
        site.down()
    if site.keep:
        out["logs_kept"] = str(site.tmp)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        print_table(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

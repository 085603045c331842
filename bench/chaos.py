"""The fault harness: drive yitu through its HTTP API while killing what it runs on, then check
that nothing acknowledged was lost, nothing was done twice, and every screen caught up.

    .venv/bin/python bench/chaos.py --seconds 60              # what `make test` runs
    .venv/bin/python bench/chaos.py --seconds 600 --kills 10   # the run of docs/reliability.md

What it does, in order:

1. a private embedded stack (PostgreSQL + PostGIS and Redis on free ports, under a temporary home;
   ``--home`` to keep it somewhere), migrated and seeded with the demo territory (``--seed``);
   ``yitu serve`` on a free port as its own process, with the overdue/reconciler sweep every
   ``--reconcile`` seconds; a dispatcher and an admin token made for the run;
2. ``--screens`` wall screens (paired screens, 1920x1080) in headless Chromium (/usr/bin/chromium,
   through Playwright), open for the whole run;
3. ``--clients`` client threads play the closed loop for ``--seconds``: reports (POST
   /api/v1/cases), transitions (accept, escalate, dispatch to a mediator, start, attempt, close,
   reject), vans sent to cases (POST /api/v1/dispatches) driven there by GPS batches (POST
   /api/v1/vans/positions) and the visit ended (POST /api/v1/dispatches/{id}/end), or a case closed
   while its van is still on the way (the van must be freed). Client i < 4 owns van V0(i+1).
   Every write carries a fresh Idempotency-Key and is retried with the same key and body while its
   answer says so: 503 (outcome_unknown, service_unavailable), 429, other 5xx, a refused or reset
   connection or a timeout, after Retry-After or a back-off. 2xx is acknowledged; any other 4xx is a
   refusal, recorded, not retried (the case's plan stops there);
4. meanwhile a chaos thread SIGKILLs the app ``--kills`` times (default: one per 20 s, at most 10)
   and starts it again at once, restarts PostgreSQL once (pg_ctl stop -m fast + start) and stops
   Redis for ``--redis-outage`` seconds (20, less for short runs), spread over the run; a reader
   follows the stream ``yitu:events`` throughout (across the Redis outage: Redis keeps no copy,
   so the harness is the one that remembers what was published) and a progress line is printed
   every few seconds;
5. after the run: every write still in doubt is retried until it gets an answer, then the harness
   waits (with deadlines, never a fixed sleep) for the outbox to drain and the reconciler to run,
   and checks, one line each:

   acknowledged = stored   every acknowledged write is in PostgreSQL, and every write of the harness
                           found there was acknowledged (none refused, given up or unanswered);
   duplicates 0            no two cases for one report key, no case action (accept, escalate,
                           dispatch, start, attempt, close, reject) written twice for one case, no
                           two dispatches of one case, no GPS fix stored twice;
   lost 0                  no acknowledged write missing, and each answer matches what was stored;
   stream exactly once     every entry of yitu:events carries an ``outbox_id``; the ids are unique
                           and consecutive; with an ``outbox`` table, every row of it was published;
                           every stored change of the harness (case created, each action, dispatch
                           created/ended) is in the stream exactly once;
   no van stuck            no van en route / on site whose dispatch's case is closed, rejected or
                           escalated (or without an active dispatch), after the reconciler's interval;
   screens caught up       each screen shows what PostGIS holds: its KPI tiles (new today, in
                           progress, resolved, overdue), its van board and its number of case pins
                           (pins plus cluster counts on the map) equal the database's.

Exit status 1 if any line says FAIL, 2 if the harness itself could not run. ``--keep`` leaves the
stack running and prints where it is.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, pair
from cli.stack import EmbeddedStack
from services.settings import Settings

STREAM = "yitu:events"  # services/events.py (the fixed interface of issue 13)
TYPES = ("neighbour", "marriage_family", "grassland", "private_lending", "land_transfer", "labour", "contract")
VANS = ("V01", "V02", "V03", "V04")  # the demo's vans (geodata/demo)
PROGRESS_SECONDS = 5.0
MAX_RETRY_WAIT = 5.0
BACKOFF = (0.2, 0.5, 1.0, 2.0)


def _say(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``predicate`` until truthy; raise TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            got = predicate()
            if got:
                return got
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{what} not reached within {timeout:.0f} s" + (f" (last error: {last!r})" if last else "")
            )
        time.sleep(every)


# --- the stack and the app ---------------------------------------------------------------------------


class App:
    """``yitu serve`` as its own process on the harness's stack; killed and started again by the chaos."""

    def __init__(self, stack: EmbeddedStack, port: int, log_path: Path, reconcile: float) -> None:
        self.stack = stack
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        s = stack.settings
        self.env = {
            **os.environ,
            "YITU_HOME": str(s.home),
            "YITU_PG_PORT": str(s.pg_port),
            "YITU_REDIS_PORT": str(s.redis_port),
            "YITU_HOST": "127.0.0.1",
            "YITU_PORT": str(port),
            "YITU_SCHEDULER_INTERVAL": str(reconcile),
        }
        for name in ("YITU_DATABASE_URL", "YITU_DATABASE_OWNER_URL", "YITU_REDIS_URL", "YITU_DATABASE_READ_URL"):
            self.env.pop(name, None)  # the harness's own stack, never a configured server
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self) -> None:
        with open(self.log_path, "ab") as log:  # the process keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    def listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"yitu serve exited with {self.proc.returncode}; see {self.log_path}")
        try:
            httpx.get(self.url + "/login", timeout=2)
        except httpx.HTTPError:
            return False
        return True

    def healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, whatever was between COMMIT and its answer is cut."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def prepare_stack(home: Path, seed: int) -> EmbeddedStack:
    """A private stack on free ports, a fresh database migrated and seeded with the demo."""
    from psycopg import sql

    from geodata.demo.seed import seed_demo
    from geodata.migrate import migrate
    from services.settings import EMBEDDED_DB_NAME

    settings = Settings(home=home, pg_port=free_port(), redis_port=free_port(), _env_file=None)
    stack = EmbeddedStack(settings)
    stack.up()
    admin = stack.database_url().rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:  # a kept --home starts over too
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(EMBEDDED_DB_NAME)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(EMBEDDED_DB_NAME)))
    r = redis.Redis.from_url(stack.redis_url())
    r.flushall()
    r.close()
    migrate(stack.database_url())
    seed_demo(stack.database_url(), "banner", seed=seed, as_of=datetime.now(UTC))
    return stack


# --- what the clients do ---------------------------------------------------------------------------------


@dataclass
class Op:
    """One write as the client saw it: its key, its request, and how it ended."""

    kind: str  # report, transition, dispatch, end, gps
    key: str
    path: str
    body: dict[str, Any]
    code: str | None = None  # the case it is about (a report: once answered)
    action: str | None = None  # a transition's action
    state: str = "pending"  # acked, refused, unresolved
    status: int | None = None
    answer: dict[str, Any] = field(default_factory=dict)
    tries: int = 0
    why: Counter[str] = field(default_factory=Counter)  # what made it retry


class Ledger:
    """Every write of every client, and the figures of the progress line."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: list[Op] = []
        self.retries: Counter[str] = Counter()

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(op.state for op in self.ops)


@dataclass
class Run:
    """What every thread shares: the server, the tokens, the clocks."""

    url: str
    tag: str
    dispatcher: str
    admin: str
    points: list[tuple[float, float]]
    bases: dict[str, tuple[float, float]]
    ends_at: float  # no new plan after this
    gives_up_at: float  # a write still unanswered then is unresolved
    ledger: Ledger = field(default_factory=Ledger)
    stop: threading.Event = field(default_factory=threading.Event)


class Client(threading.Thread):
    """One client: plays whole case plans one after another; client i < 4 owns one van."""

    def __init__(self, run: Run, index: int, seed: int) -> None:
        super().__init__(name=f"client-{index}", daemon=True)
        self.run_ = run
        self.index = index
        self.rng = random.Random(seed * 1000 + index)
        self.van = VANS[index] if index < len(VANS) else None
        self.van_at = run.bases.get(self.van or "", (0.0, 0.0))
        self.van_time = datetime.now(UTC)
        self.open_dispatch: int | None = None  # a visit a stopped plan left behind
        self.serial = itertools.count(1)
        self.http = httpx.Client(base_url=run.url, timeout=httpx.Timeout(15.0, connect=3.0))
        self.plans = 0

    # --- one write, retried as its answer says -------------------------------------------------------
    def write(self, kind: str, path: str, body: dict[str, Any], token: str, **meta: Any) -> Op:
        key = f"{self.run_.tag}-c{self.index}-{next(self.serial)}"
        if kind == "report":
            body = {**body, "description": f"chaos {key}"}  # the key in the record: how the check finds it
        op = Op(kind, key, path, body, **meta)
        self.run_.ledger.add(op)
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        failures = 0
        while True:
            op.tries += 1
            wait: float | None = None
            try:
                r = self.http.post(path, json=body, headers=headers)
            except httpx.TransportError as exc:
                op.why[type(exc).__name__] += 1
            else:
                if 200 <= r.status_code < 300:
                    op.state, op.status, op.answer = "acked", r.status_code, _json(r)
                    return op
                if r.status_code == 429 or r.status_code >= 500:
                    answer = _json(r)
                    op.why[f"{r.status_code} {answer.get('error', '')}".strip()] += 1
                    wait = _retry_after(r)
                else:
                    op.state, op.status, op.answer = "refused", r.status_code, _json(r)
                    return op
            if time.monotonic() > self.run_.gives_up_at:
                op.state = "unresolved"
                return op
            failures += 1
            pause = wait if wait is not None else BACKOFF[min(failures, len(BACKOFF)) - 1]
            time.sleep(min(pause, MAX_RETRY_WAIT))  # a client's back-off, not a synchronisation

    # --- the plans -------------------------------------------------------------------------------------
    def report(self) -> Op:
        lon, lat = self.rng.choice(self.run_.points)
        body = {
            "type": self.rng.choice(TYPES),
            "lon": lon,
            "lat": lat,
            "channel": "grid_app",
            "parties": [{"name": "张三", "phone": "13800000000"}, {"name": "李四"}],
        }
        op = self.write("report", "/api/v1/cases", body, self.run_.dispatcher)
        if op.state == "acked":
            op.code = op.answer.get("code")
        return op

    def move(self, code: str, action: str, **params: Any) -> Op:
        return self.write(
            "transition",
            f"/api/v1/cases/{code}/transitions",
            {"action": action, **params},
            self.run_.dispatcher,
            code=code,
            action=action,
        )

    def gps(self, to: tuple[float, float], steps: int) -> Op:
        """A batch of ``steps`` fixes from where the van is to ``to``, each newer than the last."""
        assert self.van is not None
        (x0, y0), (x1, y1) = self.van_at, to
        fixes = []
        for i in range(1, steps + 1):
            self.van_time = max(datetime.now(UTC), self.van_time + timedelta(milliseconds=1))
            f = i / steps
            fixes.append(
                {
                    "van": self.van,
                    "lon": round(x0 + (x1 - x0) * f, 6),
                    "lat": round(y0 + (y1 - y0) * f, 6),
                    "time": self.van_time.isoformat(),
                    "speed": 40.0,
                }
            )
        self.van_at = to
        return self.write("gps", "/api/v1/vans/positions", {"positions": fixes}, self.run_.admin)

    def end(self, dispatch_id: int, code: str | None, **body: Any) -> Op:
        return self.write("end", f"/api/v1/dispatches/{dispatch_id}/end", body, self.run_.dispatcher, code=code)

    def plan_mediator(self, code: str) -> None:
        steps: list[tuple[str, dict[str, Any]]] = [
            ("accept", {}),
            ("escalate", {}),
            ("dispatch", {"assignee": {"kind": "mediator", "id": f"m{self.index}", "name": "调解员"}}),
            ("start", {}),
            ("attempt", {"result": "success"}),
            ("close", {"outcome": "mediated"}),
        ]
        for action, params in steps:
            if self.move(code, action, **params).state != "acked":
                return

    def plan_van(self, code: str, recall: bool) -> None:
        # a stopped plan's van first comes back
        if self.open_dispatch is not None and self.end(self.open_dispatch, None).state in ("acked", "refused"):
            self.open_dispatch = None
        if self.gps(self.van_at, 1).state != "acked":  # the van says it is alive (never shown offline)
            return
        if self.move(code, "accept").state != "acked":
            return
        sent = self.write(
            "dispatch", "/api/v1/dispatches", {"case": code, "van": self.van}, self.run_.dispatcher, code=code
        )
        if sent.state != "acked":
            return
        did = int(sent.answer["id"])
        self.open_dispatch = did
        case_at = self.case_point(code)
        half = ((self.van_at[0] + case_at[0]) / 2, (self.van_at[1] + case_at[1]) / 2)
        if self.gps(half, 3).state != "acked":
            return
        if recall:  # closed while the van is on its way: whoever closes it must free the van
            if self.move(code, "close", outcome="withdrawn").state == "acked":
                self.open_dispatch = None
            return
        if self.gps(case_at, 3).state != "acked":  # arrives: the case is being handled on site
            return
        if self.end(did, code, result="success", outcome="mediated").state == "acked":
            self.open_dispatch = None

    def case_point(self, code: str) -> tuple[float, float]:
        for op in self.run_.ledger.ops:  # this client's own report of it
            if op.kind == "report" and op.code == code:
                return (float(op.body["lon"]), float(op.body["lat"]))
        raise KeyError(code)

    def run(self) -> None:
        try:
            while time.monotonic() < self.run_.ends_at and not self.run_.stop.is_set():
                kinds = ["mediator", "mediator", "reject"] + (["van", "van", "recall"] if self.van else [])
                kind = self.rng.choice(kinds)
                op = self.report()
                self.plans += 1
                if op.state != "acked" or not op.code:
                    continue
                if kind == "reject":
                    self.move(op.code, "reject", reason="not_dispute")
                elif kind == "mediator":
                    self.plan_mediator(op.code)
                else:
                    self.plan_van(op.code, recall=kind == "recall")
        finally:
            self.http.close()


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError:
        return {"text": r.text[:200]}
    return data if isinstance(data, dict) else {"items": data}


def _retry_after(r: httpx.Response) -> float | None:
    try:
        return max(0.0, float(r.headers.get("Retry-After", "")))
    except ValueError:
        return None


# --- the stream, as a reader that never forgets ----------------------------------------------------------


@dataclass
class Entry:
    id: str
    type: str
    event: dict[str, Any]
    outbox_id: int | None


class Follower(threading.Thread):
    """Reads ``yitu:events`` from the start, all run long. Redis keeps no copy across its outage
    (no snapshots: live state only), so this log is the record of what was published."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(name="stream-follower", daemon=True)
        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.entries: list[Entry] = []
        self.last = "0-0"
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors = 0

    def poll(self) -> int:
        """Read what is new (non-blocking); the number of entries read."""
        with self.lock:
            got = self.client.xread({STREAM: self.last}, count=5000)
            n = 0
            for _stream, items in got or []:
                for sid, fields in items:
                    f = {k.decode(): v.decode() for k, v in fields.items()}
                    oid = f.get("outbox_id")
                    try:
                        event = json.loads(f.get("event", "{}"))
                    except ValueError:
                        event = {"unparsed": f.get("event")}
                    self.entries.append(
                        Entry(sid.decode(), f.get("type", ""), event, int(oid) if oid and oid.isdigit() else None)
                    )
                    self.last = sid.decode()
                    n += 1
            return n

    def drain(self) -> None:
        while self.poll():
            pass

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if self.poll():
                    continue
            except redis.RedisError:
                self.errors += 1  # Redis away (the outage): read again when it is back
                self.stop.wait(0.5)
                continue
            self.stop.wait(0.05)


# --- the chaos ------------------------------------------------------------------------------------------


@dataclass
class Fault:
    at: float  # seconds into the run
    kind: str  # kill, pg, redis


def schedule(seconds: float, kills: int, redis_outage: float) -> list[Fault]:
    """Kills evenly through the run, PostgreSQL's restart at a third, Redis's outage at 60 %."""
    faults = [Fault(seconds * (i + 1) / (kills + 1) - 2.5, "kill") for i in range(kills)]
    faults.append(Fault(seconds * 0.35, "pg"))
    faults.append(Fault(min(seconds * 0.6, max(0.0, seconds - redis_outage - 3)), "redis"))
    return sorted(faults, key=lambda f: f.at)


class Chaos(threading.Thread):
    def __init__(
        self, app: App, stack: EmbeddedStack, follower: Follower, faults: list[Fault], t0: float, outage: float
    ) -> None:
        super().__init__(name="chaos", daemon=True)
        self.app, self.stack, self.follower = app, stack, follower
        self.faults, self.t0, self.outage = faults, t0, outage
        self.stop = threading.Event()
        self.done: list[str] = []
        self.now_doing = ""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for fault in self.faults:
                if self.stop.wait(max(0.0, self.t0 + fault.at - time.monotonic())):
                    return
                getattr(self, f"_{fault.kind}")()
            self.now_doing = ""
        except BaseException as exc:  # reported by the main thread, which fails the run
            self.error = exc

    def _note(self, what: str) -> None:
        self.done.append(f"{time.monotonic() - self.t0:5.1f}s {what}")
        _say(what)

    def _kill(self) -> None:
        self.now_doing = "app killed"
        self.app.kill()
        self._note(f"SIGKILL app (kill {self.app.kills}); starting it again")
        self.app.start()
        wait_until(self.app.listening, 90, "the restarted app listening")
        self.now_doing = ""

    def _pg(self) -> None:
        self.now_doing = "PostgreSQL restarting"
        self._note("PostgreSQL: stop -m fast")
        self.stack.stop_pg()
        self.stack.start_pg()
        self._note("PostgreSQL: started again")
        self.now_doing = ""

    def _redis(self) -> None:
        self.now_doing = "Redis down"
        client = redis.Redis.from_url(self.stack.redis_url(), socket_timeout=5)
        try:
            # Hold every write while the reader takes what is there, so nothing is published that
            # no reader saw before the stop: a screen could have missed it, but this log must not.
            client.client_pause(15_000, all=False)
            self.follower.drain()
        finally:
            client.close()
        self.stack.stop_redis()
        self._note(f"Redis stopped for {self.outage:.0f} s")
        self.stop.wait(self.outage)  # the outage's length itself
        self.stack.start_redis()
        self._note("Redis started again (empty: it keeps no snapshot)")
        self.now_doing = ""


# --- the screens -----------------------------------------------------------------------------------------

SCREEN_STATE_JS = """() => {
  const y = window.yitu || {};
  const kpi = {};
  document.querySelectorAll('.yitu-kpi').forEach(d => {
    const v = d.querySelector('.yitu-kpi-value'); if (d.id && v) { kpi[d.id.replace('kpi-', '')] = v.textContent; }
  });
  const vans = {};
  document.querySelectorAll('.yitu-van-row').forEach(r => {
    const id = r.querySelector('.yitu-van-id');
    const cls = Array.from(r.classList).find(c => c.startsWith('yitu-van-') && c !== 'yitu-van-row');
    if (id && cls) { vans[id.textContent] = cls.replace('yitu-van-', ''); }
  });
  let pins = 0;
  const m = (y.maps || [])[(y.maps || []).length - 1];
  if (m) {
    m.eachLayer(l => {
      const o = l.options && l.options.icon && l.options.icon.options;
      const c = (o && o.className) || '';
      if (/(^| )yitu-pin( |$)/.test(c)) { pins += 1; }
      else if (/yitu-cluster-case/.test(c) && l.feature) { pins += l.feature.properties.point_count; }
    });
  }
  const live = y.live || {};
  return {kpi: kpi, vans: vans, pins: pins, batches: live.batches || 0, resyncs: live.resyncs || 0,
          url: location.pathname};
}"""


class Screens:
    """Wall screens in headless Chromium, each a paired screen in a context of its own."""

    def __init__(self, n: int, url: str, dsn: str) -> None:
        self.n, self.url, self.dsn = n, url, dsn
        self._pw: Any = None
        self.browser: Any = None
        self.pages: list[Any] = []
        self.errors: list[list[str]] = []

    def open(self) -> None:
        if not self.n:
            return
        from playwright.sync_api import sync_playwright

        from tests.browser import CHROMIUM_ARGS, SETTLED, chromium_path

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        for i in range(self.n):
            ctx = self.browser.new_context(viewport={"width": 1920, "height": 1080}, reduced_motion="reduce")
            pair(ctx, self.url, self.dsn, f"chaos-screen-{i + 1}")  # a paired wall screen, as in a room
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e, errs=errors: errs.append(str(e)))
            page.goto(f"{self.url}/", wait_until="commit")
            self.pages.append(page)
            self.errors.append(errors)
        for page in self.pages:
            page.wait_for_function(SETTLED, timeout=180_000)

    def state(self, i: int) -> dict[str, Any]:
        try:
            return dict(self.pages[i].evaluate(SCREEN_STATE_JS))
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {str(exc)[:120]}"}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.browser is not None:
                self.browser.close()
        with contextlib.suppress(Exception):
            if self._pw is not None:
                self._pw.stop()


# --- the checks ------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    name: str
    ok: bool
    figures: str
    detail: list[str] = field(default_factory=list)
    numbers: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name:<24} {self.figures}"


@dataclass
class Stored:
    """What PostgreSQL holds of the harness's writes (read once, after recovery)."""

    cases_by_key: dict[str, list[str]]  # report key -> codes of cases with that key's description
    actions: dict[tuple[str, str], int]  # (case code, action) -> case_events rows (not the system's)
    dispatches: dict[int, dict[str, Any]]
    dispatches_per_case: dict[str, int]
    fixes: dict[tuple[str, str], int]  # (van, time iso) -> rows


def read_stored(dsn: str, tag: str, ops: list[Op]) -> Stored:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT code, description FROM cases WHERE description LIKE %s", (f"chaos {tag}-%",)
        ).fetchall()
        cases_by_key: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            cases_by_key[r["description"].removeprefix("chaos ")].append(r["code"])
        codes = [r["code"] for r in rows]
        actions: dict[tuple[str, str], int] = {}
        for r in cur.execute(
            """SELECT c.code, e.action, count(*) AS n FROM case_events e JOIN cases c ON c.id = e.case_id
               WHERE c.code = ANY(%s) AND e.action <> 'report' AND coalesce(e.actor_kind, '') <> 'system'
               GROUP BY 1, 2""",
            (codes,),
        ):
            actions[(r["code"], r["action"])] = int(r["n"])
        dispatches = {
            int(r["id"]): r
            for r in cur.execute(
                "SELECT id, case_code, van_id, status FROM dispatches WHERE case_code = ANY(%s)", (codes,)
            )
        }
        per_case: dict[str, int] = Counter(d["case_code"] for d in dispatches.values())
        times = [
            (p["van"], datetime.fromisoformat(p["time"]))
            for op in ops
            if op.kind == "gps"
            for p in op.body["positions"]
        ]
        fixes: dict[tuple[str, str], int] = {}
        if times:
            for r in cur.execute(
                """SELECT v.van_id, v.recorded_at, count(*) AS n FROM van_positions v
                   JOIN unnest(%s::text[], %s::timestamptz[]) AS w(van, t) ON v.van_id = w.van AND v.recorded_at = w.t
                   GROUP BY 1, 2""",
                ([t[0] for t in times], [t[1] for t in times]),
            ):
                fixes[(r["van_id"], r["recorded_at"].isoformat())] = int(r["n"])
    return Stored(dict(cases_by_key), actions, dispatches, dict(per_case), fixes)


def _fix_key(p: dict[str, Any]) -> tuple[str, str]:
    return (p["van"], datetime.fromisoformat(p["time"]).astimezone(UTC).isoformat())


def effects(op: Op, st: Stored) -> tuple[bool, bool]:
    """(is the write in PostgreSQL, does what is stored match its answer) for one write."""
    if op.kind == "report":
        codes = st.cases_by_key.get(op.key, [])
        return bool(codes), op.state != "acked" or op.answer.get("code") in codes
    if op.kind == "transition":
        return st.actions.get((op.code or "", op.action or ""), 0) > 0, True
    if op.kind == "dispatch":
        ids = [i for i, d in st.dispatches.items() if d["case_code"] == op.code]
        return bool(ids), op.state != "acked" or op.answer.get("id") in ids
    if op.kind == "end":
        did = int(op.path.split("/")[-2])
        d = st.dispatches.get(did)
        return d is not None and d["status"] == "ended", True
    if op.kind == "gps":
        keys = [_fix_key(p) for p in op.body["positions"]]
        return all(st.fixes.get(k, 0) > 0 for k in keys), True
    raise ValueError(op.kind)


def check_writes(ops: list[Op], st: Stored) -> tuple[Verdict, Verdict]:
    """acknowledged = stored, and lost 0."""
    acked = [op for op in ops if op.state == "acked"]
    by_kind: Counter[str] = Counter(op.kind for op in acked)
    missing, mismatched, phantom, unresolved = [], [], [], []
    for op in ops:
        stored, matches = effects(op, st)
        if op.state == "acked" and not stored:
            missing.append(op)
        elif op.state == "acked" and not matches:
            mismatched.append(op)
        elif op.state != "acked" and stored and op.kind != "end":  # an end refused as already ended is no write
            phantom.append(op)
        if op.state == "unresolved":
            unresolved.append(op)
    kinds = ", ".join(f"{k} {by_kind[k]}" for k in ("report", "transition", "dispatch", "end", "gps"))
    refused = Counter(_refusal(op) for op in ops if op.state == "refused")
    eq = Verdict(
        "acknowledged = stored",
        not missing and not phantom and not unresolved,
        f"acknowledged {len(acked)} ({kinds}), stored {len(acked) - len(missing)}; stored but answered otherwise"
        f" {len(phantom)}; unanswered {len(unresolved)}; refusals {sum(refused.values())}"
        + (f" ({', '.join(f'{k} x{v}' for k, v in refused.most_common())})" if refused else ""),
        [f"refused ({k}), e.g. {v}" for k, v in _examples(ops).items()]
        + [f"stored but not acknowledged: {_op(op)}" for op in phantom[:10]]
        + [f"never answered: {_op(op)}" for op in unresolved[:10]],
        {"acked": len(acked), "missing": len(missing), "phantom": len(phantom), "unresolved": len(unresolved)},
    )
    lost = Verdict(
        "lost 0",
        not missing and not mismatched,
        f"lost {len(missing)} of {len(acked)} acknowledged; answered one thing, stored another {len(mismatched)}",
        [f"lost: {_op(op)}" for op in missing[:10]] + [f"mismatch: {_op(op)}" for op in mismatched[:10]],
        {"lost": len(missing), "mismatched": len(mismatched)},
    )
    return eq, lost


def _refusal(op: Op) -> str:
    return f"{op.kind}{'/' + op.action if op.action else ''} {op.status}{' after a retry' if op.tries > 1 else ''}"


def _examples(ops: list[Op]) -> dict[str, str]:
    """One refusal's message per kind of refusal (what the server said)."""
    out: dict[str, str] = {}
    for op in ops:
        if op.state == "refused":
            out.setdefault(_refusal(op), f"{op.answer.get('error', '')}: {str(op.answer.get('message', ''))[:140]}")
    return out


def _op(op: Op) -> str:
    return f"{op.kind} {op.key} {op.path} {op.state} {op.status} tries={op.tries} {dict(op.why)}"


def check_duplicates(st: Stored) -> Verdict:
    keys = {k: v for k, v in st.cases_by_key.items() if len(v) > 1}
    actions = {k: n for k, n in st.actions.items() if n > 1}
    dispatches = {k: n for k, n in st.dispatches_per_case.items() if n > 1}
    fixes = {k: n for k, n in st.fixes.items() if n > 1}
    n = len(keys) + len(actions) + len(dispatches) + len(fixes)
    return Verdict(
        "duplicates 0",
        n == 0,
        f"cases per report key >1: {len(keys)}; case actions written twice: {len(actions)}"
        f" ({', '.join(sorted({a for _, a in actions}))}); dispatches per case >1: {len(dispatches)};"
        f" GPS fixes twice: {len(fixes)}",
        [f"report key {k}: cases {v}" for k, v in list(keys.items())[:10]]
        + [f"case {c} action {a} x{n}" for (c, a), n in list(actions.items())[:10]]
        + [f"case {c}: {n} dispatches" for c, n in list(dispatches.items())[:10]],
        {"keys": len(keys), "actions": len(actions), "dispatches": len(dispatches), "fixes": len(fixes)},
    )


def outbox_rows(dsn: str) -> int | None:
    """How many rows the outbox table holds (None: no outbox in this schema)."""
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('public.outbox')").fetchone()[0] is None:  # type: ignore[index]
            return None
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])  # type: ignore[index]


def expected_events(ops: list[Op], st: Stored) -> Counter[tuple[str, str, str]]:
    """The stream entries the harness's stored changes must have made: (type, case code, action)."""
    want: Counter[tuple[str, str, str]] = Counter()
    for codes in st.cases_by_key.values():
        for code in codes:
            want[("case.created", code, "")] += 1
    for (code, action), _n in st.actions.items():
        want[("case.changed", code, action)] += 1  # once per action: a second row is a duplicate already
    for d in st.dispatches.values():
        want[("dispatch.created", d["case_code"], "")] += 1
        if d["status"] == "ended":
            want[("dispatch.ended", d["case_code"], "")] += 1
    return want


def seen_events(entries: list[Entry], codes: set[str]) -> Counter[tuple[str, str, str]]:
    seen: Counter[tuple[str, str, str]] = Counter()
    for e in entries:
        code = str(e.event.get("code") or e.event.get("case") or e.event.get("case_code") or "")
        if code not in codes:
            continue
        action = str(e.event.get("action") or "") if e.type == "case.changed" else ""
        seen[(e.type, code, action)] += 1
    return seen


def check_stream(entries: list[Entry], ops: list[Op], st: Stored, rows: int | None) -> Verdict:
    ids = [e.outbox_id for e in entries]
    without = sum(1 for i in ids if i is None)
    have = [i for i in ids if i is not None]
    dup_ids = sum(n - 1 for n in Counter(have).values() if n > 1)
    gaps = 0
    uniq = sorted(set(have))
    if uniq:
        gaps = (uniq[-1] - uniq[0] + 1) - len(uniq) + (uniq[0] - 1)  # ids start at 1 on a fresh database
    unpublished = None if rows is None else max(0, rows - len(uniq))
    codes = {c for v in st.cases_by_key.values() for c in v}
    want, seen = expected_events(ops, st), seen_events(entries, codes)
    missing = sum(max(0, n - seen.get(k, 0)) for k, n in want.items())
    twice = sum(max(0, n - want.get(k, 0)) for k, n in seen.items() if k in want)
    ok = without == 0 and dup_ids == 0 and gaps == 0 and missing == 0 and twice == 0 and unpublished in (0, None)
    ok = ok and rows is not None
    return Verdict(
        "stream exactly once",
        ok,
        f"entries {len(entries)}; without outbox_id {without}; outbox ids repeated {dup_ids}, missing in"
        f" the sequence {gaps}; outbox rows "
        + ("— (no outbox table)" if rows is None else f"{rows}, never published {unpublished}")
        + f"; harness changes {sum(want.values())}: not in the stream {missing}, in it twice {twice}",
        [f"not in the stream: {k}" for k, n in want.items() if seen.get(k, 0) < n][:10]
        + [f"twice in the stream: {k}" for k, n in seen.items() if k in want and n > want[k]][:10],
        {"without": without, "dup_ids": dup_ids, "gaps": gaps, "missing": missing, "twice": twice},
    )


STUCK_SQL = """
SELECT v.id AS van, v.status AS van_status, d.id AS dispatch, d.status, c.code, c.step,
       EXISTS (SELECT 1 FROM case_events e WHERE e.case_id = d.case_id AND e.action = 'escalate'
               AND e.occurred_at >= d.created_at) AS escalated
FROM vans v
LEFT JOIN dispatches d ON d.van_id = v.id AND d.status IN ('en_route', 'on_site')
LEFT JOIN cases c ON c.id = d.case_id
WHERE (d.id IS NOT NULL AND (c.step IN ('closed', 'evaluated', 'rejected') OR EXISTS (
          SELECT 1 FROM case_events e WHERE e.case_id = d.case_id AND e.action IN ('escalate', 'close', 'reject')
          AND e.occurred_at >= d.created_at)))
   OR (d.id IS NULL AND v.status IN ('en_route', 'on_site'))
ORDER BY v.id
"""


def stuck_vans(dsn: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(STUCK_SQL).fetchall()


def check_vans(dsn: str, reconcile: float, deadline: float) -> Verdict:
    """No van stuck, once the reconciler had its interval (waited for, up to ``deadline`` s)."""
    began = time.monotonic()
    rows = stuck_vans(dsn)
    while rows and time.monotonic() - began < deadline:
        time.sleep(0.5)
        rows = stuck_vans(dsn)
    with psycopg.connect(dsn) as conn:
        busy = conn.execute("SELECT count(*) FROM dispatches WHERE status IN ('en_route', 'on_site')").fetchone()[0]  # type: ignore[index]
    return Verdict(
        "no van stuck",
        not rows,
        f"stuck {len(rows)} (checked until {time.monotonic() - began:.0f} s after recovery, reconciler every"
        f" {reconcile:g} s); vans still on a visit of an open case {busy}",
        [str(r) for r in rows],
        {"stuck": len(rows)},
    )


def truth(dsn: str, offline_seconds: float) -> dict[str, Any]:
    """What PostGIS holds, as a wall screen of the whole banner shows it."""
    from geodata import kpi
    from layers.vans import board

    with psycopg.connect(dsn) as conn:
        banner = conn.execute("SELECT code FROM areas WHERE level = 1 ORDER BY code LIMIT 1").fetchone()[0]  # type: ignore[index]
        k = kpi.tiles(conn, banner)
        pins = conn.execute("SELECT count(*) FROM cases WHERE yitu_step_open(step) AND geom IS NOT NULL").fetchone()[0]  # type: ignore[index]
        vans = {r["id"]: r["status"] for r in board(conn, offline_seconds)}
    return {
        "kpi": {
            "new_today": str(k["new_today"]),
            "in_progress": str(k["in_progress"]),
            "resolved": str(k["resolved_ytd"]),
            "overdue": str(sum(k["overdue"].values())),
        },
        "vans": vans,
        "pins": int(pins),
    }


def _differences(shown: dict[str, Any], want: dict[str, Any]) -> list[str]:
    if "error" in shown:
        return [str(shown["error"])]
    out = []
    for k, v in want["kpi"].items():
        if shown.get("kpi", {}).get(k) != v:
            out.append(f"{k} {shown.get('kpi', {}).get(k)} (PostGIS {v})")
    if shown.get("vans") != want["vans"]:
        out.append(f"vans {shown.get('vans')} (PostGIS {want['vans']})")
    if shown.get("pins") != want["pins"]:
        out.append(f"case pins {shown.get('pins')} (PostGIS {want['pins']})")
    return out


def check_screens(screens: Screens, dsn: str, offline_seconds: float, deadline: float) -> Verdict:
    if not screens.pages:
        return Verdict("screens caught up", True, "no screens (--screens 0)")
    began = time.monotonic()
    behind: dict[int, list[str]] = {}
    while True:
        want = truth(dsn, offline_seconds)
        behind = {i: d for i in range(len(screens.pages)) if (d := _differences(screens.state(i), want))}
        if not behind or time.monotonic() - began > deadline:
            break
        time.sleep(1.0)
    states = [screens.state(i) for i in range(len(screens.pages))]
    return Verdict(
        "screens caught up",
        not behind,
        f"{len(screens.pages) - len(behind)} of {len(screens.pages)} screens show PostGIS's figures (in"
        f" progress {want['kpi']['in_progress']}, pins {want['pins']}) within {time.monotonic() - began:.0f} s;"
        f" live batches per screen {[s.get('batches') for s in states]}, resyncs {[s.get('resyncs') for s in states]}",
        [f"screen {i + 1}: {'; '.join(d)}" for i, d in behind.items()]
        + [f"screen {i + 1} page errors: {e[:3]}" for i, e in enumerate(screens.errors) if e],
        {"behind": len(behind)},
    )


# --- the run ---------------------------------------------------------------------------------------------


def _points(dsn: str, seed: int) -> list[tuple[float, float]]:
    """Points inside the grid cells (reports anywhere in the territory), the same for one seed."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT (ST_Dump(ST_GeneratePoints(geom, 2, %s))).geom AS p"
            " FROM areas WHERE level = 4 ORDER BY code) s",
            (seed + 1,),
        ).fetchall()
    return [(round(float(x), 6), round(float(y), 6)) for x, y in rows]


def _bases(dsn: str) -> dict[str, tuple[float, float]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id, ST_X(geom), ST_Y(geom) FROM vans ORDER BY id").fetchall()
    return {r[0]: (float(r[1]), float(r[2])) for r in rows}


def _tokens(dsn: str) -> tuple[str, str]:
    from services.identity import create_token

    with psycopg.connect(dsn) as conn:
        dispatcher = create_token(conn, name="chaos-dispatcher", role="dispatcher", area=None)[1]
        admin = create_token(conn, name="chaos-admin", role="admin", area=None)[1]
    return dispatcher, admin


def outbox_pending(url: str, admin: str) -> int | None:
    """``/healthz``'s outbox pending count for an admin (None: not reported, or no answer)."""
    try:
        r = httpx.get(url + "/healthz", headers={"Authorization": f"Bearer {admin}"}, timeout=10)
        part = r.json().get("outbox")
    except (httpx.HTTPError, ValueError):
        return None
    return int(part["pending"]) if isinstance(part, dict) and "pending" in part else None


def progress(t0: float, run: Run, app: App, chaos: Chaos, follower: Follower, screens: Screens, dsn: str) -> str:
    c = run.ledger.counts()
    retrying = sum(1 for op in run.ledger.ops if op.state == "pending" and op.tries > 1)
    shown = ""
    if screens.pages:
        try:
            with psycopg.connect(dsn, connect_timeout=2) as conn:
                open_now: Any = conn.execute("SELECT count(*) FROM cases WHERE yitu_step_open(step)").fetchone()[0]  # type: ignore[index]
        except psycopg.Error:
            open_now = "?"  # PostgreSQL restarting
        states = [screens.state(i) for i in range(len(screens.pages))]
        pins, batches = [s.get("pins") for s in states], [s.get("batches") for s in states]
        shown = f" | screens: pins {pins} of {open_now} open, live batches {batches}"
    return (
        f"t={time.monotonic() - t0:5.0f}s  writes acked {c['acked']} refused {c['refused']} in flight"
        f" {c['pending']} (retrying {retrying}) unresolved {c['unresolved']} | kills {app.kills}"
        f"{' | ' + chaos.now_doing if chaos.now_doing else ''} | stream read {len(follower.entries)}{shown}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="length of the run under faults (default 60)")
    ap.add_argument("--clients", type=int, default=4, help="client threads (default 4; the first 4 drive a van each)")
    ap.add_argument("--screens", type=int, default=2, help="wall screens held open in Chromium (default 2)")
    ap.add_argument("--kills", type=int, default=None, help="SIGKILLs of the app (default: one per 20 s, 1 to 10)")
    ap.add_argument("--seed", type=int, default=7, help="random seed of the demo data and the clients' plans")
    ap.add_argument(
        "--redis-outage",
        type=float,
        default=None,
        help="seconds Redis stays stopped (default 20, a quarter of a short run)",
    )
    ap.add_argument("--reconcile", type=float, default=5, help="the app's scheduler/reconciler interval (default 5 s)")
    ap.add_argument(
        "--recovery", type=float, default=120, help="seconds recovery may take before a check fails (default 120)"
    )
    ap.add_argument("--home", type=Path, default=None, help="the stack's home (default: a temporary folder, removed)")
    ap.add_argument("--keep", action="store_true", help="leave the stack and the app running at the end")
    args = ap.parse_args(argv)
    kills = args.kills if args.kills is not None else max(1, min(10, int(args.seconds // 20)))
    outage = args.redis_outage if args.redis_outage is not None else min(20.0, args.seconds / 4)
    home = args.home or Path(tempfile.mkdtemp(prefix="yitu-chaos-"))
    tag = uuid.uuid4().hex[:8]
    _say(
        f"run {tag}: {args.seconds:g} s, {args.clients} clients, {args.screens} screens, {kills} kills, PostgreSQL"
        f" restarted once, Redis down {outage:g} s; seed {args.seed}; home {home}"
    )
    stack: EmbeddedStack | None = None
    app: App | None = None
    screens: Screens | None = None
    follower: Follower | None = None
    try:
        stack = prepare_stack(home, args.seed)
        dsn = stack.database_url()
        app = App(stack, free_port(), home / "serve.log", args.reconcile)
        app.start()
        wait_until(app.healthy, 120, "the app's /healthz")
        dispatcher, admin = _tokens(dsn)
        follower = Follower(stack.redis_url())
        follower.start()
        screens = Screens(args.screens, app.url, dsn)
        screens.open()
        _say(f"stack up (PostgreSQL {stack.settings.pg_port}, Redis {stack.settings.redis_port}), app {app.url}")
        t0 = time.monotonic()
        run = Run(
            app.url,
            tag,
            dispatcher,
            admin,
            _points(dsn, args.seed),
            _bases(dsn),
            ends_at=t0 + args.seconds,
            gives_up_at=t0 + args.seconds + args.recovery,
        )
        clients = [Client(run, i, args.seed) for i in range(args.clients)]
        chaos = Chaos(app, stack, follower, schedule(args.seconds, kills, outage), t0, outage)
        chaos.start()
        for c in clients:
            c.start()
        while any(c.is_alive() for c in clients) or chaos.is_alive():
            for c in clients:
                c.join(timeout=PROGRESS_SECONDS / max(1, len(clients)))
            _say(progress(t0, run, app, chaos, follower, screens, dsn))
            if chaos.error is not None:
                raise chaos.error
        if chaos.error is not None:
            raise chaos.error
        _say("run over; recovery: waiting for the app, the outbox and the reconciler")
        wait_until(app.healthy, args.recovery, "the app's /healthz after the run")
        wait_until(lambda: outbox_pending(app.url, admin) in (0, None), args.recovery, "the outbox to drain")
        follower.drain()
        wait_until(lambda: follower.poll() == 0, 30, "the stream reader at the tail")
        ops = list(run.ledger.ops)
        stored = read_stored(dsn, tag, ops)
        eq, lost = check_writes(ops, stored)
        verdicts = [
            eq,
            check_duplicates(stored),
            lost,
            check_stream(follower.entries, ops, stored, outbox_rows(dsn)),
            check_vans(dsn, args.reconcile, args.reconcile * 2 + 10),
            check_screens(screens, dsn, stack.settings.van_offline_seconds, args.recovery),
        ]
    except (TimeoutError, RuntimeError, OSError, psycopg.Error, redis.RedisError) as exc:
        _say(f"the harness could not run: {type(exc).__name__}: {exc}")
        if app is not None:
            _say(f"app log: {app.log_path}")
        return 2
    finally:
        if follower is not None:
            follower.stop.set()
        if screens is not None:
            screens.close()
        if not args.keep:
            if app is not None:
                app.stop()
            if stack is not None:
                stack.purge()
            if args.home is None:
                shutil.rmtree(home, ignore_errors=True)
    chaos_log = "; ".join(chaos.done)
    print(f"\nfaults: {chaos_log}")
    print(f"plans played {sum(c.plans for c in clients)}; writes {len(ops)}, tries {sum(op.tries for op in ops)}")
    retried = Counter[str]()
    for op in ops:
        retried.update(op.why)
    if retried:
        print("retried because: " + ", ".join(f"{k} x{v}" for k, v in retried.most_common()))
    for v in verdicts:
        print(v.line())
        for d in v.detail:
            print(f"      {d}")
    if args.keep and app is not None:
        print(f"kept: app {app.url} (pid {app.proc.pid if app.proc else '-'}), home {home}")
    return 0 if all(v.ok for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())

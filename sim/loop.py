"""The simulator's loop: the clock, the simulated actors and what they do each turn.

* **The clock** (:class:`SimClock`): simulated time runs ``speedup`` times faster than real time
  for durations and movement; every timestamp sent is wall-clock (the API refuses the future).
* **The vans** (:class:`VanSim`): each drives the road network at its road kind's speed and posts
  its GPS in one batch per turn with its own ``van`` token. The *server* decides arrival (200 m): the
  van drives to the exact case point and waits there, ends its visit after a mediation, drives home.
* **The cases** (:class:`CaseRun`) follow the plan's decisions through the API.

Deadlines are the server's and run in real time, so a case the plan leaves "overdue" is held open
until the server's real deadline has passed; every other case closes long before it.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from geodata.clock import CST
from sim.client import Answer, Api, issue_tokens, revoke_tokens
from sim.plan import Report, SimulationError, Territory, VanSpec, plan_reports
from sim.roads import DEFAULT_SPEEDS_KMH, GEOD, Route, route_between

log = logging.getLogger("yitu.sim")
TICK_S = 1.0  # real seconds between two turns of the loop
TURN_BUDGET_S = 3.0  # real seconds a turn may spend on due actions before the vans get their turn
MOVING_PING_SIM_S = 10.0  # a moving van's terminal reports every few simulated seconds (Traccar: 10 s) …
MIN_PING_REAL_S = 0.2  # … but not more often than this in real time (at high speedups)
IDLE_PING_SIM_S = 60.0  # a standing van reports once a simulated minute, clamped in real time to
IDLE_PING_REAL_S = (5.0, 30.0)  # stay well inside the server's 300 s offline limit
OUTBOX_MAX = 2000  # pings a terminal keeps while the server is away
ARRIVAL_POLL_REAL_S = 1.0
ARRIVAL_WAIT_REAL_S = 120.0  # at the case point this long without the server seeing it: give up
STATUS_EVERY_REAL_S = 300.0
AT_BASE_M = 300.0


# --- the clock -------------------------------------------------------------------------------------


class SimClock:
    """Simulated seconds since the start, ``speedup`` per real second; wall-clock times for the API."""

    def __init__(self, speedup: float, start: datetime) -> None:
        self.speedup = speedup
        self.start = start
        self._t0 = time.monotonic()
        self._wall0 = datetime.now(UTC)

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speedup

    def wall(self, sim_s: float) -> datetime:
        """The real time at which the simulation reached ``sim_s`` (never later than now)."""
        return min(self._wall0 + timedelta(seconds=sim_s / self.speedup), datetime.now(UTC))

    def local(self, sim_s: float) -> datetime:
        return (self.start + timedelta(seconds=sim_s)).astimezone(CST)


# --- the simulated actors --------------------------------------------------------------------------


@dataclass
class VanSim:
    """One van: where it is, what it does (parked, driving, at_case, on_site, returning), its
    route, its visit and its terminal's outbox of pings not yet accepted by the server."""

    spec: VanSpec
    token: str
    rng: random.Random
    speeds: Mapping[str, float]
    lon: float
    lat: float
    heading: float = 0.0
    speed_kmh: float = 0.0
    state: str = "parked"
    route: Route | None = None
    s: float = 0.0
    t: float = 0.0
    jitter: float = 1.0
    dispatch_id: int | None = None
    case_code: str | None = None
    next_ping: float = 0.0
    outbox: list[dict[str, Any]] = field(default_factory=list)
    waiting_since: float = 0.0  # monotonic, at the case point
    last_check: float = 0.0
    visit_due: float = 0.0
    driven_m: float = 0.0

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def free(self) -> bool:
        return self.state in ("parked", "returning")

    @property
    def moving(self) -> bool:
        return self.state in ("driving", "returning") and self.route is not None and self.s < self.route.length_m

    def go(self, route: Route, state: str, now: float) -> None:
        self.route, self.s, self.t, self.state = route, 0.0, now, state
        self.jitter = self.rng.uniform(0.85, 1.05)
        self.next_ping = min(self.next_ping, now)

    def move_to(self, t: float) -> None:
        """Drive on until simulated time ``t`` at each road's speed; stop at the route's end."""
        dt, self.t = t - self.t, max(self.t, t)
        route = self.route
        if route is None or dt <= 0 or not route.kinds:
            self.speed_kmh = 0.0
            return
        kmh = 0.0
        while dt > 1e-9 and self.s < route.length_m:
            i = route.segment(self.s)
            kmh = self.speeds.get(route.kinds[i], DEFAULT_SPEEDS_KMH["offroad"]) * self.jitter
            v = kmh / 3.6
            room = route.cum[i + 1] - self.s
            step = min(room, v * dt)
            self.s += step
            self.driven_m += step
            dt -= step / v
            if step >= room:
                self.s = route.cum[i + 1]
        self.lon, self.lat, self.heading = route.at(self.s)
        self.speed_kmh = kmh if self.s < route.length_m else 0.0

    def fix(self, at: datetime) -> dict[str, Any]:
        heading = round(self.heading, 1)
        return {
            "van": self.id,
            "lon": round(self.lon, 6),
            "lat": round(self.lat, 6),
            "time": at.isoformat(),
            "speed": round(self.speed_kmh, 1),
            "heading": 0.0 if heading >= 360 else heading,
        }


@dataclass
class CaseRun:
    """A case the simulator reported, as the server last described it, and how far its plan got."""

    report: Report
    code: str
    step: str = "reported"
    level: str = "grid"
    attempts: int = 0
    deadline: datetime | None = None
    grid: list[str | None] = field(default_factory=list)
    lon: float = 0.0
    lat: float = 0.0
    assignee_kind: str | None = None
    allowed: list[str] = field(default_factory=list)
    failed: int = 0
    escalated: bool = False
    van_tried: bool = False
    van_active: bool = False
    stalled: bool = False
    handled: int = 0
    conflicts: int = 0
    gen: int = 0

    def update(self, case: Mapping[str, Any]) -> None:
        self.step = case.get("step", self.step)
        self.level = case.get("level", self.level)
        self.attempts = int(case.get("attempts") or 0)
        deadline = case.get("deadline")
        self.deadline = datetime.fromisoformat(deadline) if deadline else None
        self.grid = list(case.get("grid") or [])
        lon, lat = case.get("lon"), case.get("lat")
        self.lon = float(lon) if lon is not None else self.report.lon
        self.lat = float(lat) if lat is not None else self.report.lat
        self.assignee_kind = (case.get("assignee") or {}).get("kind")
        self.allowed = list(case.get("allowed_actions") or [])

    def area(self, level: int) -> str | None:
        """The case's area of a level (4 cell … 1 banner) from its grid chain, if any."""
        i = 4 - level
        return self.grid[i] if i < len(self.grid) else None


# --- the loop --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimConfig:
    url: str
    rate: float = 30.0
    speedup: float = 10.0
    seed: int = 1
    vans: int | None = None  # None: every van in the database
    duration: float | None = None  # real seconds; None: until stopped
    start: datetime = field(default_factory=lambda: datetime.now(CST))
    speeds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SPEEDS_KMH))


@dataclass
class Summary:
    counts: Counter[str]
    real_s: float
    sim_s: float
    config: SimConfig
    km: float

    def text(self) -> str:
        c = self.counts
        return (
            f"simulated {self.sim_s / 3600:.1f} h in {self.real_s:.0f} s (×{self.config.speedup:g}, "
            f"seed {self.config.seed}): {c['reported']} cases reported, {c['accept']} accepted, "
            f"{c['reject']} rejected, {c['dispatch']} dispatched to mediators and units, "
            f"{c['van_dispatches']} van dispatches ({c['arrivals']} arrived, {c['visits_ended']} visits ended), "
            f"{c['attempt']} failed attempts, {c['escalate']} escalated, {c['close']} closed in the office, "
            f"{c['closed_on_site']} closed on site, {c['evaluate']} evaluated; vans drove {self.km:.0f} km "
            f"and sent {c['pings_stored']} pings; {c['races']} dispatch races, {c['refused']} refusals, "
            f"{c['http_4xx']} 4xx answers, {c['http_failures']} failed requests, {c['outages']} outages"
        )


class Simulator:
    """The cast: reporters, a dispatcher, the van crews; one thread, one turn a second."""

    def __init__(self, config: SimConfig, territory: Territory, dsn: str) -> None:
        self.config = config
        self.territory = territory
        self.dsn = dsn
        self.counts: Counter[str] = Counter()
        self.run_id = uuid.uuid4().hex[:12]  # idempotency keys are per run; the plan is per seed
        n = len(territory.vans) if config.vans is None else config.vans
        if n > len(territory.vans):
            raise SimulationError(f"--vans {n}: the database has only {len(territory.vans)} van(s)")
        self.van_specs = territory.vans[:n]
        self.cases: dict[str, CaseRun] = {}
        self.vans: dict[str, VanSim] = {}
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._db: psycopg.Connection | None = None
        self._last_code: str | None = None

    # -- running

    def run(self, stop: threading.Event) -> Summary:
        """Run until ``stop`` is set or the duration is over; tokens are revoked on the way out."""
        cfg = self.config
        tokens = issue_tokens(self.dsn, [v.id for v in self.van_specs])
        self.tokens = tokens
        self.api = Api(cfg.url, self.counts, stop)
        self.clock = SimClock(cfg.speedup, cfg.start)
        log.info(
            "simulating url=%s seed=%d rate=%g/h speedup=%g vans=%s start=%s",
            cfg.url,
            cfg.seed,
            cfg.rate,
            cfg.speedup,
            ",".join(v.id for v in self.van_specs) or "none",
            cfg.start.astimezone(CST).strftime("%H:%M"),
        )
        began = time.monotonic()
        try:
            self._place_vans()
            self._later(0.0, self._startup)
            self._loop(stop, began)
            self._shutdown()
        finally:
            self.api.close()
            if self._db is not None:
                self._db.close()
            revoke_tokens(self.dsn, tokens.ids)
        return Summary(
            self.counts,
            time.monotonic() - began,
            self.clock.now(),
            cfg,
            sum(v.driven_m for v in self.vans.values()) / 1000,
        )

    def _loop(self, stop: threading.Event, began: float) -> None:
        plan = plan_reports(self.config.seed, self.territory, self.config.rate, self.config.start)
        upcoming = next(plan)
        last_status = time.monotonic()
        end = None if self.config.duration is None else began + self.config.duration
        while not stop.is_set():
            turn = time.monotonic()
            now = self.clock.now()
            while upcoming.at_s <= now and not stop.is_set() and time.monotonic() - turn < TURN_BUDGET_S:
                self._report(upcoming)
                upcoming = next(plan)
            self._act_due(now, stop, turn)
            for van in self.vans.values():
                self._van_turn(van, self.clock.now())
            if time.monotonic() - last_status >= STATUS_EVERY_REAL_S:
                last_status = time.monotonic()
                self._status()
            if end is not None and time.monotonic() >= end:
                break
            stop.wait(max(0.0, TICK_S - (time.monotonic() - turn)))

    def _later(self, delay_sim: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (self.clock.now() + max(0.0, delay_sim), next(self._seq), fn))

    def _act_due(self, now: float, stop: threading.Event, turn: float) -> None:
        while self._heap and self._heap[0][0] <= now and not stop.is_set():
            if time.monotonic() - turn >= TURN_BUDGET_S:
                return
            _, _, fn = heapq.heappop(self._heap)
            fn()

    def _backoff_sim(self) -> float:
        return max(TICK_S, self.api.retry_in()) * self.config.speedup

    def _status(self) -> None:
        vans = " ".join(f"{v.id}:{v.state}" for v in self.vans.values())
        log.info(
            "status sim_time=%s open_cases=%d vans=%s",
            self.clock.local(self.clock.now()).strftime("%m-%d %H:%M"),
            len(self.cases),
            vans or "-",
        )

    def _shutdown(self) -> None:
        """End our vans' visits, so no van is left en route or on site with nobody driving it."""
        for van in self.vans.values():
            if van.dispatch_id is None:
                continue
            a = self.api.call(
                "POST",
                f"/api/v1/dispatches/{van.dispatch_id}/end",
                self.tokens.dispatcher,
                {"note": "模拟器停止，结束出车"},
                timeout=3.0,
            )
            if a is not None and a.ok:
                log.info("%s: visit %s ended as the simulator stops", van.id, van.dispatch_id)
            else:
                log.info(
                    "%s: visit %s left open (%s); the next run ends it",
                    van.id,
                    van.dispatch_id,
                    a.why if a else "server away",
                )

    def _startup(self) -> None:
        """End visits our vans were left on by an earlier run (killed mid-visit), so they can go again."""
        a = self.api.call("GET", "/api/v1/dispatches", self.tokens.dispatcher, params={"active": "true", "limit": 500})
        if a is None:
            self._later(self._backoff_sim(), self._startup)
            return
        for d in a.body.get("dispatches", []) if a.ok else []:
            if d.get("van") in self.vans:
                end = self.api.call(
                    "POST",
                    f"/api/v1/dispatches/{d['id']}/end",
                    self.tokens.dispatcher,
                    {"note": "模拟器重启：结束上次未完成的出车"},
                )
                log.info(
                    "%s: ended dispatch %s left from an earlier run (%s)",
                    d["van"],
                    d["id"],
                    end.status if end else "server away",
                )

    # -- reports and the case loop

    def _report(self, r: Report) -> None:
        a = self.api.call("POST", "/api/v1/cases", self.tokens.dispatcher, r.body(), key=f"sim-{self.run_id}-{r.seq}")
        if a is None:
            self._later(self._backoff_sim(), lambda: self._report(r))
            return
        if not a.ok:
            self.counts["refused"] += 1
            log.warning("report %d refused (%s)", r.seq, a.why)
            return
        run = CaseRun(r, a.body["code"])
        run.update(a.body)
        self.cases[run.code] = run
        self.counts["reported"] += 1
        due = run.deadline.astimezone(CST).strftime("%m-%d %H:%M") if run.deadline else "-"
        log.info(
            "case reported %s %s at %s via %s (%s level, due %s)",
            run.code,
            r.type,
            self._where(run),
            r.channel,
            run.level,
            due,
        )
        self._plan_next(run)
        self._last_code = run.code

    def _key(self, *parts: Any) -> str:
        """The Idempotency-Key of one logical write of this run: the same parts, the same key (a
        write tried again later after an outage is the same request); the body among the parts,
        so a request that changed meanwhile is a new one (the server would refuse the key: 422)."""
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:24]
        return f"sim-{self.run_id}-{digest}"

    def _where(self, run: CaseRun) -> str:
        names = self.territory.names
        village, town = run.area(3), run.area(2)
        if village and town:
            return f"{names.get(village, village)}, {names.get(town, town)}"
        return run.report.place.label + (" (outside the grid)" if not run.grid else "")

    def _plan_next(self, run: CaseRun) -> None:
        move = self._next_move(run)
        if move is None:
            if run.step in ("evaluated", "rejected"):
                self.cases.pop(run.code, None)
            return
        action, delay = move
        run.gen += 1
        gen = run.gen
        self._later(delay, lambda: self._act(run, gen, action))

    def _next_move(self, run: CaseRun) -> tuple[str, float] | None:
        d = run.report.decisions
        if run.van_active:
            return None  # the van drives and mediates; the end of its visit moves the case on
        if run.step == "reported":
            return ("reject" if d.reject else "accept"), d.verify_s
        if run.step == "accepted":
            return "dispatch", d.dispatch_s
        if run.step == "dispatched":  # a van that left without a result: send someone else
            return ("dispatch", d.dispatch_s) if run.assignee_kind == "van" else ("start", d.start_s)
        if run.step == "handling":
            return self._handling_move(run)
        if run.step == "closed":
            return "evaluate", d.evaluate_s
        return None

    def _handling_move(self, run: CaseRun) -> tuple[str, float]:
        d = run.report.decisions
        gap = d.gaps_s[min(run.handled, len(d.gaps_s) - 1)] * (3.0 if run.escalated else 1.0)
        if d.overdue and not run.stalled and run.deadline is not None:
            run.stalled = True  # hold it until the server's (real-time) deadline has passed
            left = (run.deadline - datetime.now(UTC)).total_seconds()
            gap = max(gap, left * self.config.speedup + d.overdue_by_s)
        if run.failed < d.failures and not run.escalated and "attempt" in run.allowed:
            return "attempt", gap
        if d.escalate and not run.escalated and "escalate" in run.allowed:
            return "escalate", gap
        return "close", gap

    def _act(self, run: CaseRun, gen: int, action: str) -> None:
        if run.gen != gen or self.cases.get(run.code) is not run:
            return  # re-planned meanwhile
        if action == "dispatch" and self._try_van(run):
            return
        body = self._body(run, action)
        # One key per planned move (gen), kept when the move is tried again after an outage: a
        # move the server did before its answer was lost is answered again, not done twice.
        key = self._key("act", run.code, gen, action, body)
        a = self.api.call("POST", f"/api/v1/cases/{run.code}/transitions", self.tokens.dispatcher, body, key=key)
        if a is None:
            self._later(self._backoff_sim(), lambda: self._act(run, gen, action))
            return
        if not a.ok:
            self._refused(run, action, a)
            return
        before = run.level
        run.update(a.body)
        run.handled += action in ("attempt", "escalate")
        run.failed += action == "attempt"
        run.escalated |= action == "escalate"
        self.counts[action] += 1
        log.info("%s %s", run.code, self._did(run, action, body, before))
        self._plan_next(run)

    def _did(self, run: CaseRun, action: str, body: Mapping[str, Any], level_before: str) -> str:
        if action == "reject":
            return f"rejected ({body['reason']})"
        if action == "dispatch":
            who = body["assignee"]
            return f"dispatched to {who['name']} ({who['kind']} {who['id']})"
        if action == "attempt":
            return f"mediation attempt {run.attempts} failed"
        if action == "escalate":
            return f"escalated {level_before} → {run.level}"
        if action == "close":
            return f"closed: {body['outcome']}"
        if action == "evaluate":
            return f"evaluated: satisfaction {body['satisfaction']}/5"
        return {"accept": "accepted", "start": "handling started"}.get(action, action)

    def _body(self, run: CaseRun, action: str) -> dict[str, Any]:
        d = run.report.decisions
        if action == "reject":
            dup = self._last_code if d.reject == "duplicate" and self._last_code != run.code else None
            return (
                {"action": "reject", "reason": "duplicate", "duplicate_of": dup}
                if dup
                else {"action": "reject", "reason": "not_dispute", "note": "核实后不属于矛盾纠纷"}
            )
        if action == "dispatch":
            return {"action": "dispatch", "assignee": self._assignee(run)}
        if action == "attempt":
            return {"action": "attempt", "result": "failed", "note": f"第{run.failed + 1}次调解未果"}
        if action == "escalate":
            return {"action": "escalate", "note": "多次调解未果，提请上级调处"}
        if action == "close":
            return {"action": "close", "outcome": d.outcome, "note": "调解结案"}
        if action == "evaluate":
            note = "回访：当事人对调解结果表示认可" if d.satisfaction >= 4 else "回访：当事人仍有意见"
            return {"action": "evaluate", "satisfaction": d.satisfaction, "followup_note": note}
        return {"action": action, "note": "核实属实，予以立案"} if action == "accept" else {"action": action}

    def _assignee(self, run: CaseRun) -> dict[str, str]:
        """The grid worker or a mediator of the village room at grid level; the centre above it."""
        d = run.report.decisions
        names, centres = self.territory.names, self.territory.centres
        if run.level == "grid":
            cell, village = run.area(4), run.area(3)
            if d.route == "grid" and cell:
                return {"kind": "mediator", "id": f"gw-{cell}", "name": f"{names.get(cell, cell)}网格员"}
            room = centres.get(village or "", (f"MC{village or 'grid'}", ""))[0]
            return {"kind": "mediator", "id": f"{room}-m{d.mediator_no}", "name": d.mediator}
        level = {"village": 3, "town": 2, "banner": 1}.get(run.level, 1)
        area = run.area(level) or (run.grid[-1] if run.grid else None) or ""
        code, name = centres.get(area, (area or "banner", f"{names.get(area, area)}调解中心"))
        return {"kind": "unit", "id": code[:64], "name": name[:100]}

    def _refused(self, run: CaseRun, action: str, a: Answer) -> None:
        """A refusal (someone else moved the case, or a rule we did not foresee): read it again."""
        self.counts["refused"] += 1
        run.conflicts += 1
        log.info("%s: %s refused (%s)", run.code, action, a.why)
        if a.status in (403, 404) or run.conflicts > 3:
            log.info("%s left to the dispatchers", run.code)
            self.cases.pop(run.code, None)
            return
        self._refresh(run)

    def _refresh(self, run: CaseRun) -> None:
        a = self.api.call("GET", f"/api/v1/cases/{run.code}", self.tokens.dispatcher)
        if a is None:
            self._later(self._backoff_sim(), lambda: self._refresh(run))
            return
        if not a.ok:
            self.cases.pop(run.code, None)
            return
        run.update(a.body)
        self._plan_next(run)

    # -- vans

    def _place_vans(self) -> None:
        for spec in self.van_specs:
            lon = spec.lon if spec.lon is not None else spec.base_lon
            lat = spec.lat if spec.lat is not None else spec.base_lat
            van = VanSim(
                spec,
                self.tokens.vans[spec.id],
                random.Random(f"yitu-sim/{self.config.seed}/van/{spec.id}"),
                self.config.speeds,
                lon,
                lat,
            )
            self.vans[spec.id] = van
            _, _, away = GEOD.inv(lon, lat, spec.base_lon, spec.base_lat)
            if away > AT_BASE_M:
                self._go_home(van)

    def _route(self, a: tuple[float, float], b: tuple[float, float]) -> Route:
        """The road network's path, or straight across when the database cannot answer."""
        try:
            if self._db is None or self._db.closed:
                self._db = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
            return route_between(self._db, a, b)
        except psycopg.Error as exc:
            log.warning("no road route (%s): driving straight", " ".join(str(exc).split())[:200])
            if self._db is not None:
                self._db.close()
            self._db = None
            return Route.through([a, b], ["offroad"])

    def _go_home(self, van: VanSim) -> None:
        van.dispatch_id = van.case_code = None
        van.go(self._route((van.lon, van.lat), (van.spec.base_lon, van.spec.base_lat)), "returning", self.clock.now())

    def _try_van(self, run: CaseRun) -> bool:
        """Send a van if the plan says so and one of ours can go; False: dispatch by hand instead."""
        if run.report.decisions.route != "van" or run.van_tried or run.level != "grid" or not self.vans:
            return False
        a = self.api.call("GET", f"/api/v1/cases/{run.code}/van-candidates", self.tokens.dispatcher)
        if a is None:  # the server is away: the same dispatch, later
            gen = run.gen
            self._later(self._backoff_sim(), functools.partial(self._act, run, gen, "dispatch"))
            return True
        run.van_tried = True
        if not a.ok:
            log.info("%s: no van candidates (%s), dispatching a mediator", run.code, a.why)
            return False
        for cand in a.body.get("candidates", []):
            van = self.vans.get(cand.get("id", ""))
            if van is None or not cand.get("dispatchable") or not van.free:
                continue
            send = {"case": run.code, "van": van.id, "note": "模拟调度：派车上门调解"}
            d = self.api.call(
                "POST",
                "/api/v1/dispatches",
                self.tokens.dispatcher,
                send,
                key=self._key("send", run.code, run.gen, send),
            )
            if d is None:
                run.van_tried = False
                gen = run.gen
                self._later(self._backoff_sim(), functools.partial(self._act, run, gen, "dispatch"))
                return True
            if d.status == 201:
                self._van_sent(run, van, d.body)
                return True
            if d.status == 409 and d.body.get("field") == "van":
                self.counts["races"] += 1
                log.info("%s was taken meanwhile (%s); trying the next van", van.id, d.why)
                continue
            self._refused(run, "dispatch", d)
            return True
        log.info("%s: no van free, dispatching a mediator", run.code)
        return False

    def _van_sent(self, run: CaseRun, van: VanSim, dispatch: Mapping[str, Any]) -> None:
        van.dispatch_id, van.case_code = int(dispatch["id"]), run.code
        van.go(self._route((van.lon, van.lat), (run.lon, run.lat)), "driving", self.clock.now())
        run.van_active, run.step, run.assignee_kind = True, "dispatched", "van"
        self.counts["van_dispatches"] += 1
        km = (dispatch.get("distance_m") or 0) / 1000
        eta = (dispatch.get("eta_s") or 0) / 60
        log.info(
            "%s dispatched to %s at %s: %.1f km by %s, ETA %.0f min (dispatch %s)",
            van.id,
            run.code,
            self._where(run),
            km,
            dispatch.get("method") or "road",
            eta,
            dispatch["id"],
        )

    def _van_turn(self, van: VanSim, now: float) -> None:
        self._drive(van, now)
        self._post_positions(van)
        if van.state == "driving" and not van.moving:
            van.state, van.waiting_since = "at_case", time.monotonic()
        elif van.state == "returning" and not van.moving:
            van.state, van.route = "parked", None
            log.info("%s back at base", van.id)
        if van.state == "at_case":
            self._check_arrival(van, now)
        elif van.state == "on_site" and now >= van.visit_due:
            self._end_visit(van)

    def _ping_interval(self, van: VanSim) -> float:
        x = self.config.speedup
        if van.moving:
            return max(MOVING_PING_SIM_S, MIN_PING_REAL_S * x)
        lo, hi = IDLE_PING_REAL_S
        return min(max(IDLE_PING_SIM_S / x, lo), hi) * x

    def _drive(self, van: VanSim, now: float) -> None:
        """Advance the van to ``now``, one fix per ping interval, each stamped with its real time."""
        while van.next_ping <= now:
            van.move_to(van.next_ping)
            van.outbox.append(van.fix(self.clock.wall(van.next_ping)))
            van.next_ping += self._ping_interval(van)
        van.move_to(now)
        if len(van.outbox) > OUTBOX_MAX:
            self.counts["pings_dropped"] += len(van.outbox) - OUTBOX_MAX
            del van.outbox[:-OUTBOX_MAX]

    def _post_positions(self, van: VanSim) -> None:
        if not van.outbox:
            return
        a = self.api.call("POST", "/api/v1/vans/positions", van.token, {"positions": van.outbox})
        if a is None:
            return  # kept: a terminal resends its buffer
        if a.ok:
            self.counts["pings_stored"] += int(a.body.get("stored", 0))
        else:
            self.counts["pings_dropped"] += len(van.outbox)
            log.warning("%s: %d positions refused (%s)", van.id, len(van.outbox), a.why)
        van.outbox = []

    def _check_arrival(self, van: VanSim, now: float) -> None:
        """The server decides arrival: ask it whether the visit is on site yet."""
        if time.monotonic() - van.last_check < ARRIVAL_POLL_REAL_S:
            return
        van.last_check = time.monotonic()
        a = self.api.call("GET", f"/api/v1/dispatches/{van.dispatch_id}", self.tokens.dispatcher)
        if a is None:
            return
        run = self.cases.get(van.case_code or "")
        status = a.body.get("status") if a.ok else "gone"
        if status == "on_site":
            visit = run.report.decisions.visit_s if run else 1800.0
            van.state, van.visit_due = "on_site", now + visit
            self.counts["arrivals"] += 1
            if run:
                run.step = a.body.get("case_step") or run.step
            log.info(
                "%s on site at %s (arrived %s); mediating about %.0f min",
                van.id,
                van.case_code,
                (a.body.get("arrived_at") or "")[11:19],
                visit / 60,
            )
        elif status != "en_route":
            log.info("%s: dispatch %s is %s (not by the simulator); driving home", van.id, van.dispatch_id, status)
            self._van_done(van, run)
        elif time.monotonic() - van.waiting_since > ARRIVAL_WAIT_REAL_S:
            log.warning("%s: the server has not seen it arrive at %s; ending the visit", van.id, van.case_code)
            self.api.call(
                "POST",
                f"/api/v1/dispatches/{van.dispatch_id}/end",
                self.tokens.dispatcher,
                {"note": "到达未确认，结束出车"},
            )
            self._van_done(van, run)

    def _end_visit(self, van: VanSim) -> None:
        """The crew ends its visit with its own token: a failed attempt, or the case closed."""
        run = self.cases.get(van.case_code or "")
        if run is not None and run.failed < run.report.decisions.failures:
            body: dict[str, Any] = {"result": "failed", "note": "现场调解未果，双方分歧较大"}
        elif run is not None:
            body = {"result": "success", "outcome": run.report.decisions.outcome, "note": "现场调解，双方达成一致"}
        else:
            body = {"note": "出车结束"}
        path = f"/api/v1/dispatches/{van.dispatch_id}/end"
        a = self.api.call("POST", path, van.token, body, key=self._key("end", van.dispatch_id, body))
        if a is None:
            van.visit_due = self.clock.now() + self._backoff_sim()
            return
        if a.status == 409 and body.get("result"):
            log.info("%s: ending with %s refused (%s); ending the visit only", van.id, body["result"], a.why)
            a = self.api.call("POST", path, van.token, {"note": "出车结束"})
            body = {}
        if a is not None and a.ok:
            self.counts["visits_ended"] += 1
            if run is not None and body.get("result") == "failed":
                run.failed += 1
                run.handled += 1
            self.counts["closed_on_site"] += bool(body.get("outcome"))
            what = (
                f"closed: {body['outcome']}"
                if body.get("outcome")
                else ("mediation failed, the case stays open" if body.get("result") else "no result recorded")
            )
            log.info("%s visit at %s ended: %s", van.id, van.case_code, what)
        self._van_done(van, run)

    def _van_done(self, van: VanSim, run: CaseRun | None) -> None:
        if run is not None:
            run.van_active = False
            self._refresh(run)
        self._go_home(van)

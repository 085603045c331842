"""The simulator's plan: the reports (simulated offset, place, type, channel, parties) and the
decisions that will be taken on each (accept or reject, grid worker, mediator or van, failed attempts,
escalation, outcome, follow-up, left to run overdue).

It is a pure function of the seed, the territory, the rate and the simulated start, so a test can
make it twice and compare; the type and channel mix, outcomes and names are the demo generator's
(geodata/demo/cases.py). The territory is read once from PostGIS.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import shapely
from psycopg.rows import dict_row

from geodata.clock import CST
from geodata.demo.cases import (
    CHANNELS,
    ESCALATION_PROPENSITY,
    GIVEN,
    HOUR_W,
    OUTCOMES,
    SURNAMES,
    TEMPLATES,
    TYPE_WEIGHTS,
)
from geodata.queries import query

# Where reports come from: town seats weigh most, communities more than herding gacha, whose
# disputes (grassland, boundaries) lie farther out from the seat.
PLACE_WEIGHT = {"town": 6.0, "community": 3.0, "village": 1.0}
PLACE_SIGMA_M = {"town": 1500.0, "community": 500.0, "village": 2500.0}
# Disputes a van is sent to more often (on the spot, far out: 上门服务、就地能调).
VAN_TYPES = frozenset({"grassland", "herder_enterprise", "land_transfer", "neighbour"})
SATISFACTION = (1, 2, 3, 4, 5)
SATISFACTION_W = (0.01, 0.02, 0.07, 0.30, 0.60)  # as the demo's follow-up visits
FAILURES_W = (0.62, 0.24, 0.09, 0.05)  # failed attempts before the end (3: 三个三, escalate)
# Triage at intake: how often a grid worker judges a report simple … major (most settle in the cell),
# how many people a dispute involves (a 群体性 one now and then), and which types are about money.
SEVERITY_W = {"simple": 0.62, "ordinary": 0.27, "complex": 0.09, "major": 0.02}
GROUP_SHARE = 0.05
MONEY_TYPES = frozenset({"private_lending", "labour", "contract", "business", "damages", "land_transfer", "consumer"})


class SimulationError(RuntimeError):
    """The simulator cannot start as asked (no territory, no such vans)."""


# --- the territory, read once from PostGIS --------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """A settlement cases are reported around: a town seat or a village/community seat."""

    code: str
    name: str
    town: str
    kind: str  # town, community, village
    lon: float
    lat: float

    @property
    def label(self) -> str:
        return self.name if self.kind == "town" else f"{self.name}, {self.town}"


@dataclass(frozen=True)
class VanSpec:
    id: str
    name: str
    lon: float | None
    lat: float | None
    base_lon: float
    base_lat: float


@dataclass
class Territory:
    places: tuple[Place, ...]
    outline: shapely.Geometry
    names: dict[str, str]
    centres: dict[str, tuple[str, str]]  # area code → (mediation centre code, name)
    types: tuple[str, ...]
    vans: tuple[VanSpec, ...]


def load_territory(conn: psycopg.Connection) -> Territory:
    """Everything the plan and the vans need from the database (read only)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query("sim_places")).fetchall()
        van_rows = cur.execute(query("sim_vans")).fetchall()
    outline_row = conn.execute("SELECT ST_AsBinary(ST_Union(geom)) FROM areas WHERE level = 1").fetchone()
    if not rows or outline_row is None or outline_row[0] is None:
        raise SimulationError("the database holds no territory: run `yitu seed demo` (or `yitu import grids`)")
    outline = shapely.from_wkb(bytes(outline_row[0]))
    shapely.prepare(outline)
    places = tuple(
        Place(
            r["code"],
            r["name"],
            r["town_name"] or r["name"],
            "town" if r["level"] == 2 else ("community" if r["kind"] == "community" else "village"),
            float(r["lon"]),
            float(r["lat"]),
        )
        for r in rows
    )
    names = {str(c): str(n) for c, n in conn.execute("SELECT code, name FROM areas").fetchall()}
    centres: dict[str, tuple[str, str]] = {}
    for area, code, name in conn.execute("SELECT area_code, code, name FROM mediation_centers ORDER BY level, code"):
        centres.setdefault(area, (code, name))
    types = tuple(r[0] for r in conn.execute("SELECT code FROM case_types WHERE active ORDER BY code"))
    seat = places[0]
    vans = tuple(
        VanSpec(
            r["id"],
            r["name"],
            r["lon"],
            r["lat"],
            r["base_lon"] if r["base_lon"] is not None else seat.lon,
            r["base_lat"] if r["base_lat"] is not None else seat.lat,
        )
        for r in van_rows
    )
    return Territory(places, outline, names, centres, types, vans)


# --- the plan: a pure function of (seed, territory, rate, start) ----------------------------------


@dataclass(frozen=True)
class Party:
    name: str
    phone: str
    role: str


@dataclass(frozen=True)
class Decisions:
    """What the simulated people will do with a report, decided when it is planned."""

    verify_s: float  # report → accept or reject (simulated seconds)
    reject: str | None  # None, not_dispute, duplicate
    route: str  # van, mediator (a people's mediator of the village room), grid (the grid worker)
    mediator: str
    mediator_no: int
    dispatch_s: float
    start_s: float
    visit_s: float  # a van's time on site
    failures: int  # failed attempts before the end
    escalate: bool
    gaps_s: tuple[float, ...]  # between the handling actions
    outcome: str
    satisfaction: int
    evaluate_s: float
    overdue: bool  # held open past the server's deadline
    overdue_by_s: float


@dataclass(frozen=True)
class Report:
    seq: int
    at_s: float  # simulated seconds after the start
    place: Place
    lon: float
    lat: float
    type: str
    channel: str
    parties: tuple[Party, ...]
    description: str
    decisions: Decisions
    severity: str | None = None
    people_involved: int | None = None
    amount_yuan: float | None = None

    def body(self) -> dict[str, Any]:
        """The POST /api/v1/cases body (the triage fields when the plan has them)."""
        triage = {"severity": self.severity, "people_involved": self.people_involved, "amount_yuan": self.amount_yuan}
        return {
            "type": self.type,
            "description": self.description,
            "lon": self.lon,
            "lat": self.lat,
            "channel": self.channel,
            "parties": [{"name": p.name, "phone": p.phone, "role": p.role} for p in self.parties],
            **{k: v for k, v in triage.items() if v is not None},
        }


def _hour_factors() -> list[float]:
    """The demo's hour-of-day weights scaled to a mean of 1: few reports at night."""
    w = [float(x) for x in HOUR_W]
    total = sum(w)
    return [x * 24 / total for x in w]


def plan_reports(seed: int, territory: Territory, rate_per_hour: float, start: datetime) -> Iterator[Report]:
    """The reports, in order, without end: Poisson arrivals at ``rate_per_hour`` averaged over a
    simulated day with the daily rhythm (thinning against the busiest hour), each with its place,
    parties and decisions drawn from its own stream (so one report never shifts another)."""
    if rate_per_hour <= 0:
        raise ValueError(f"rate_per_hour must be > 0, not {rate_per_hour}")
    arrivals = random.Random(f"yitu-sim/{seed}/arrivals")
    factors = _hour_factors()
    peak = max(factors)
    lam = rate_per_hour * peak / 3600.0
    weights = [PLACE_WEIGHT[p.kind] for p in territory.places]
    types = [(t, w) for t, w in TYPE_WEIGHTS.items() if t in territory.types] or [(t, 1.0) for t in territory.types]
    t = 0.0
    for seq in itertools.count(1):
        while True:
            t += arrivals.expovariate(lam)
            hour = (start + timedelta(seconds=t)).astimezone(CST).hour
            if arrivals.random() * peak < factors[hour]:
                break
        yield _report(seq, t, random.Random(f"yitu-sim/{seed}/report/{seq}"), territory, weights, types)


def _report(
    seq: int,
    at_s: float,
    rng: random.Random,
    territory: Territory,
    weights: list[float],
    types: list[tuple[str, float]],
) -> Report:
    place = rng.choices(territory.places, weights=weights)[0]
    lon, lat = _point_near(rng, place, territory.outline)
    ctype = rng.choices([t for t, _ in types], weights=[w for _, w in types])[0]
    channel = rng.choices(list(CHANNELS), weights=list(CHANNELS.values()))[0]
    parties = (_person(rng, "申请人"), _person(rng, "被申请人"))
    desc = TEMPLATES.get(ctype, "{v}{a}与{b}发生纠纷，申请调解").format(
        v=place.name, a=parties[0].name, b=parties[1].name
    )
    decisions = _decisions(rng, ctype)
    # drawn after everything else, so the plan's earlier draws (places, decisions) stay as they were
    severity = rng.choices(list(SEVERITY_W), weights=list(SEVERITY_W.values()))[0]
    people = rng.randint(5, 40) if rng.random() < GROUP_SHARE else rng.choice((2, 2, 2, 3, 4))
    amount = round(rng.lognormvariate(9.0, 1.3), 2) if ctype in MONEY_TYPES or rng.random() < 0.2 else None
    return Report(
        seq, round(at_s, 3), place, lon, lat, ctype, channel, parties, desc, decisions, severity, people, amount
    )


def _point_near(rng: random.Random, place: Place, outline: shapely.Geometry) -> tuple[float, float]:
    """A point scattered around the settlement, inside the territory (the seat itself if unlucky)."""
    sigma = PLACE_SIGMA_M[place.kind]
    m_per_deg_lat = 111_320.0
    m_per_deg_lon = m_per_deg_lat * max(0.1, math.cos(math.radians(place.lat)))
    for _ in range(20):
        lon = place.lon + rng.gauss(0, sigma) / m_per_deg_lon
        lat = place.lat + rng.gauss(0, sigma) / m_per_deg_lat
        if shapely.contains_xy(outline, lon, lat):
            return round(lon, 6), round(lat, 6)
    return round(place.lon, 6), round(place.lat, 6)


def _person(rng: random.Random, role: str) -> Party:
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
    phone = "1" + rng.choice("35789") + f"{rng.randrange(10**9):09d}"
    return Party(name, phone, role)


def _decisions(rng: random.Random, ctype: str) -> Decisions:
    reject = None
    if rng.random() < 0.04:
        reject = "duplicate" if rng.random() < 0.3 else "not_dispute"
    van_share = 0.25 + (0.15 if ctype in VAN_TYPES else 0.0)
    u = rng.random()
    route = "van" if u < van_share else ("mediator" if u < van_share + 0.3 else "grid")
    failures = rng.choices(range(4), weights=FAILURES_W)[0]
    escalate = failures == 3 or rng.random() < 0.06 * ESCALATION_PROPENSITY.get(ctype, 1.0)
    return Decisions(
        verify_s=rng.uniform(3, 45) * 60,
        reject=reject,
        route=route,
        mediator=rng.choice(SURNAMES) + "调解员",
        mediator_no=rng.randint(1, 6),
        dispatch_s=rng.uniform(2, 30) * 60,
        start_s=rng.uniform(10, 120) * 60,
        visit_s=rng.uniform(20, 90) * 60,
        failures=failures,
        escalate=escalate,
        gaps_s=tuple(rng.uniform(0.3, 4.0) * 3600 for _ in range(6)),
        outcome=rng.choices(list(OUTCOMES), weights=list(OUTCOMES.values()))[0],
        satisfaction=rng.choices(SATISFACTION, weights=SATISFACTION_W)[0],
        evaluate_s=rng.uniform(2, 48) * 3600,
        overdue=rng.random() < 0.05,
        overdue_by_s=rng.uniform(0.5, 6) * 3600,
    )

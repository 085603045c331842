"""Van dispatch (派车) in PostGIS: which van can reach a case soonest, sending it, its arrival,
the end of the visit.

Distances come from pgRouting in the same database (``van_candidates.sql``: both ends snapped
onto their nearest road, one ``pgr_dijkstra`` call for every van), never from a graph search in
Python. Every write is one transaction on the caller's connection (the caller writes the returned
events to the outbox in it, then commits): the van row is locked first (``SELECT … FOR UPDATE``), then the
dispatch, then the case (``geodata.cases.transition``), always in that order, so a van cannot be
booked twice and concurrent writers cannot deadlock. Partial unique indexes on ``dispatches``
(one active visit per van, one per case) make the database refuse double booking even if this
code were wrong.

The case moves through the workflow's own actions: ``dispatch`` (assignee the van), ``start``
when the van arrives, ``attempt`` / ``close`` when the visit ends with a result or an outcome.
Cancelling a van on its way has no workflow action: the case stays ``dispatched`` (so it can be
dispatched again at once), its assignee is cleared, and the audit trail gets a
``cancel_dispatch`` row saying who cancelled which visit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
import psycopg
from psycopg.rows import dict_row

from geodata import cases as store
from geodata import workflow
from geodata.cases import Actor, CaseNotFound
from geodata.errors import Conflict, NotFound
from geodata.queries import query
from geodata.workflow import Rules, WorkflowError

ACTIVE = ("en_route", "on_site")
DEFAULT_ARRIVAL_RADIUS_M = 200.0

Authorize = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class Routing:
    """How travel is estimated (the ``dispatch_*`` settings)."""

    snap_max_m: float = 2000.0
    detour: float = 1.3
    trunk_kmh: float = 80.0
    county_kmh: float = 60.0
    village_kmh: float = 40.0
    offroad_kmh: float = 30.0
    offline_seconds: float = 300.0

    def params(self) -> dict[str, float]:
        return {
            "snap_max": self.snap_max_m,
            "detour": self.detour,
            "trunk_kmh": self.trunk_kmh,
            "county_kmh": self.county_kmh,
            "village_kmh": self.village_kmh,
            "offroad_kmh": self.offroad_kmh,
            "offline_seconds": self.offline_seconds,
        }


class DispatchError(WorkflowError):
    """A dispatch request that cannot be carried out; ``field`` names the input at fault."""


class UnknownVan(DispatchError, NotFound):
    """No van with that id."""


class UnknownDispatch(DispatchError, NotFound):
    """No dispatch with that id."""


class VanBusy(DispatchError, Conflict):
    """The van is not free: on another visit, not available, or offline."""


class CaseBusy(DispatchError, Conflict):
    """The case already has a van on its way or on site."""


class NotActive(DispatchError, Conflict):
    """The visit is over (ended or cancelled), or cannot be cancelled any more (on site)."""


class FixLike(Protocol):
    """A van's position at a time (geodata.tracking.Ping is one; read-only, as a frozen dataclass's)."""

    @property
    def van(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def lon(self) -> float: ...
    @property
    def lat(self) -> float: ...


@dataclass(frozen=True)
class Written:
    """What a dispatch write did: the dispatch row, and the events for the outbox (same transaction)."""

    dispatch: dict[str, Any]
    events: list[dict[str, Any]]


# --- reading -------------------------------------------------------------------------------------


def candidates(
    conn: psycopg.Connection,
    code: str,
    routing: Routing,
    at: datetime,
    van: str | None = None,
    scope: str | None = None,
) -> list[dict[str, Any]]:
    """Every van (or one) with its road distance and ETA to the case, dispatchable ones first; of
    the vans a dispatcher scoped to ``scope`` may send (its banner's and the league's: a banner's
    dispatcher is never offered another banner's van; 039_van_banner.sql)."""
    params = {"code": code, "van": van, "at": at, "scope": scope, **routing.params()}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("van_candidates"), params).fetchall()


def route_to_case(
    conn: psycopg.Connection, code: str, van: str, case_at: tuple[float, float], routing: Routing, at: datetime
) -> dict[str, Any] | None:
    """The way from ``van``'s latest fix to case ``code`` as a crew's phone draws it: the method,
    distance and ETA of the dispatch ranking (:func:`candidates` for this van, so the figures are
    the ones a dispatcher read) and the line itself: for a road route the pgRouting path between
    the two snapped ends (``sim_route.sql``, the same cheapest pair of ends) with the straight
    off-road legs at both ends; else the straight line. None when the van has no position."""
    rows = candidates(conn, code, routing, at, van=van)
    if not rows or rows[0]["method"] is None:
        return None
    r = rows[0]
    start = (float(r["lon"]), float(r["lat"]))
    line = [start, case_at]
    if r["method"] == "road":
        params = {"from_lon": start[0], "from_lat": start[1], "to_lon": case_at[0], "to_lat": case_at[1]}
        road = [(float(p[0]), float(p[1])) for p in conn.execute(query("sim_route"), params).fetchall()]
        line = [start, *road, case_at]
    return {"method": r["method"], "distance_m": r["distance_m"], "eta_s": r["eta_s"], "line": line}


def not_dispatchable_because(row: Mapping[str, Any]) -> str | None:
    """Why a candidate cannot be sent now (None if it can): what a dispatcher needs to read."""
    if row["dispatchable"]:
        return None
    if row["status"] == "offline":
        return "offline"
    if row["active_dispatch"] is not None:
        return "on_dispatch"
    if row["status"] != "available":
        return str(row["status"])
    return "no_position"


def dispatches(
    conn: psycopg.Connection,
    *,
    active: bool = False,
    van: str | None = None,
    case: str | None = None,
    area: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    params = {"id": None, "active": active, "van": van, "case": case, "area": area, "limit": limit, "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("dispatch_list"), params).fetchall()


def stranded(conn: psycopg.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Active visits whose case was closed, rejected or escalated since the van was sent, with that
    action as ``action`` (``dispatch_stranded.sql``): what :func:`release` should have ended."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("dispatch_stranded"), {"limit": limit}).fetchall()


def get(conn: psycopg.Connection, dispatch_id: int) -> dict[str, Any] | None:
    params = {"id": dispatch_id, "active": False, "van": None, "case": None, "area": None, "limit": 1, "offset": 0}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("dispatch_list"), params).fetchone()


# --- sending a van -------------------------------------------------------------------------------


def _lock_van(
    conn: psycopg.Connection, van: str, routing: Routing, at: datetime, scope: str | None = None
) -> dict[str, Any]:
    """The van, locked; UnknownVan (404, ``van``) when there is none, or none the caller scoped to
    ``scope`` may send: another banner's van is not confirmed to exist, as in every read."""
    params = {"van": van, "offline_seconds": routing.offline_seconds, "at": at, "scope": scope}
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query("dispatch_van_lock"), params).fetchone()
    if row is None:
        raise UnknownVan(f"no van with id {van!r}", field="van")
    return row


def _require_free(van: Mapping[str, Any]) -> None:
    if van["active"] is not None:
        raise VanBusy(f"van {van['id']} is already on dispatch {van['active']}", field="van")
    if van["shown"] == "offline":
        seen = van["last_seen_at"].isoformat() if van["last_seen_at"] else "never"
        raise VanBusy(f"van {van['id']} is offline (last report: {seen})", field="van")
    if van["status"] != "available":
        raise VanBusy(f"van {van['id']} is {van['status']}, not available", field="van")


def _case_free(conn: psycopg.Connection, case_id: int, code: str) -> None:
    row = conn.execute(
        "SELECT id, van_id FROM dispatches WHERE case_id = %s AND status = ANY(%s)", (case_id, list(ACTIVE))
    ).fetchone()
    if row is not None:
        raise CaseBusy(
            f"case {code} already has van {row[1]} on dispatch {row[0]}; end or cancel it first", field="case"
        )


def create(
    conn: psycopg.Connection,
    code: str,
    van: str,
    note: str | None,
    actor: Actor,
    rules: Rules,
    routing: Routing,
    now: datetime,
    authorize: Authorize | None = None,
    scope: str | None = None,
) -> Written:
    """Send ``van`` to case ``code``: van locked and checked, case ``dispatch``ed, visit recorded.

    ``scope``: the dispatcher's area; a van outside it (another banner's) is an :class:`UnknownVan`
    before anything is locked or written.
    Raises :class:`UnknownVan`, :class:`VanBusy`, :class:`CaseBusy`, ``CaseNotFound`` (field
    ``case``) or the workflow's ``IllegalTransition``; nothing is written then (the caller's
    transaction rolls back).
    """
    vrow = _lock_van(conn, van, routing, now, scope)
    _require_free(vrow)
    assignee = {"kind": "van", "id": vrow["id"], "name": vrow["name"]}
    params = {"assignee": assignee, **({"note": note} if note else {})}
    try:
        case, change = store.transition(conn, code, "dispatch", params, actor, rules, now, authorize=authorize)
    except CaseNotFound as exc:
        raise CaseNotFound(exc.message, field="case") from None
    _case_free(conn, case["id"], code)
    route = candidates(conn, code, routing, now, van=van)[0]
    try:
        with conn.cursor() as cur:
            row = cur.execute(
                query("dispatch_insert"),
                {
                    "case_id": case["id"],
                    "case": code,
                    "van": van,
                    "now": now,
                    "actor": actor.name,
                    "note": note,
                    "distance_m": route["distance_m"],
                    "eta_s": route["eta_s"],
                    "method": route["method"],
                },
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:  # a backstop: the van lock makes this unreachable
        raise VanBusy(f"van {van} or case {code} already has an active dispatch", field="van") from exc
    assert row is not None
    dispatch = get(conn, int(row[0]))
    assert dispatch is not None
    events = [
        store.event_of("case.changed", case, now, action="dispatch", from_step=change.from_step),
        dispatch_event("dispatch.created", dispatch, now),
    ]
    return Written(dispatch, events)


def dispatch_event(kind: str, d: Mapping[str, Any], at: datetime, **extra: Any) -> dict[str, Any]:
    """A ``dispatch.*`` event for the live stream: ids, status, route, the case's location and grid
    chain (a scoped screen gets the event only inside its area: services/live.py)."""
    return {
        "type": kind,
        "id": d["id"],
        "case": d["case_code"],
        "van": d["van_id"],
        "status": d["status"],
        "distance_m": _round(d["distance_m"]),
        "eta_s": _round(d["eta_s"]),
        "method": d["method"],
        "lon": d["case_lon"],
        "lat": d["case_lat"],
        "grid": [d.get("grid_code"), d.get("village_code"), d.get("town_code"), d.get("banner_code")],
        "at": at.isoformat(),
        **extra,
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


# --- arrival (called by geodata.tracking inside the ingest transaction) ---------------------------


def arrive(
    conn: psycopg.Connection, fixes: Sequence[FixLike], radius_m: float, rules: Rules, now: datetime
) -> list[dict[str, Any]]:
    """Put on site the en_route visits whose van's newest fix (``fixes``: objects with van,
    time, lon, lat) is within ``radius_m`` of the case, and start those cases; the events for the
    outbox, in the same transaction. One statement finds and records every arrival of the batch; only the
    (rare) arrivals then cost a workflow transition each.

    A case that is no longer ``dispatched`` (closed or escalated meanwhile) is not started: the
    visit still records the arrival, and the event says ``case_started: false``.
    """
    if not fixes:
        return []
    # one JSON text in the GPS batch's shape (tracking.py _batch: the same keys, read by the same kind of statement)
    fix_rows = [{"van": f.van, "time": f.time, "lon": f.lon, "lat": f.lat} for f in fixes]
    params = {"fixes": orjson.dumps(fix_rows).decode(), "radius": radius_m}
    with conn.cursor(row_factory=dict_row) as cur:
        arrived = cur.execute(query("dispatch_arrive"), params, prepare=True).fetchall()
    events: list[dict[str, Any]] = []
    for a in arrived:
        events += _start_case(conn, a, rules, now)
    return events


def _start_case(conn: psycopg.Connection, a: Mapping[str, Any], rules: Rules, now: datetime) -> list[dict[str, Any]]:
    actor = Actor(a["van_id"], "van", kind="system")  # the server saw the van arrive (its GPS fix)
    out: list[dict[str, Any]] = []
    try:
        case, change = store.transition(conn, a["case_code"], "start", {}, actor, rules, now)
        out.append(store.event_of("case.changed", case, now, action="start", from_step=change.from_step))
        started = True
    except workflow.IllegalTransition:
        started = False
    d = get(conn, int(a["id"]))
    assert d is not None
    out.insert(
        0,
        dispatch_event(
            "dispatch.arrived",
            d,
            now,
            arrived_at=a["arrived_at"].isoformat(),
            van_lon=a["lon"],
            van_lat=a["lat"],
            case_started=started,
        ),
    )
    return out


# --- the end of a visit --------------------------------------------------------------------------


def _lock_dispatch(conn: psycopg.Connection, dispatch_id: int, routing: Routing, now: datetime) -> dict[str, Any]:
    """The dispatch, after its van's lock (van → dispatch → case, the one lock order)."""
    row = conn.execute("SELECT van_id FROM dispatches WHERE id = %s", (dispatch_id,)).fetchone()
    if row is None:
        raise UnknownDispatch(f"no dispatch with id {dispatch_id}", field="id")
    _lock_van(conn, row[0], routing, now)
    conn.execute("SELECT 1 FROM dispatches WHERE id = %s FOR UPDATE", (dispatch_id,))
    d = get(conn, dispatch_id)
    assert d is not None
    return d


def _finish(
    conn: psycopg.Connection,
    d: Mapping[str, Any],
    status: str,
    actor: Actor,
    now: datetime,
    note: str | None,
    result: str | None = None,
    outcome: str | None = None,
) -> dict[str, Any]:
    conn.execute(
        query("dispatch_finish"),
        {
            "id": d["id"],
            "status": status,
            "now": now,
            "actor": actor.name,
            "note": note,
            "result": result,
            "outcome": outcome,
            "was_on_site": d["status"] == "on_site",
        },
    )
    fresh = get(conn, int(d["id"]))
    assert fresh is not None
    return fresh


def end(
    conn: psycopg.Connection,
    dispatch_id: int,
    actor: Actor,
    rules: Rules,
    routing: Routing,
    now: datetime,
    *,
    note: str | None = None,
    result: str | None = None,
    outcome: str | None = None,
    authorize: Callable[[Mapping[str, Any]], None] | None = None,
) -> Written:
    """End a visit: van available again (+1 case mediated if it was on site); with ``result`` the
    workflow records an ``attempt``, with ``outcome`` it then ``close``s the case.

    A visit that never arrived ends like a cancel for its case (the van's name comes off it, the
    case stays ``dispatched`` for the next van): a case must not keep a van that went home.
    """
    d = _lock_dispatch(conn, dispatch_id, routing, now)
    if authorize:
        authorize(d)
    if d["status"] not in ACTIVE:
        raise NotActive(f"dispatch {dispatch_id} is already {d['status']}", field="id")
    events: list[dict[str, Any]] = []
    for action, params in (("attempt", {"result": result}), ("close", {"outcome": outcome})):
        if next(iter(params.values())) is None:
            continue
        case, change = store.transition(
            conn, d["case_code"], action, {**params, **({"note": note} if note else {})}, actor, rules, now
        )
        extra = {"proposal": change.propose} if change.propose else {}
        events.append(store.event_of("case.changed", case, now, action=action, from_step=change.from_step, **extra))
    if d["status"] == "en_route":
        events += _uncase(conn, d, actor, now, note)
    fresh = _finish(conn, d, "ended", actor, now, note, result, outcome)
    events.insert(
        0,
        dispatch_event(
            "dispatch.ended", fresh, now, was_on_site=d["status"] == "on_site", result=result, outcome=outcome
        ),
    )
    return Written(fresh, events)


# The case actions after which a van on its way or on site has nothing more to do there.
RELEASING_ACTIONS = frozenset({"close", "reject", "escalate"})


def release(
    conn: psycopg.Connection, code: str, action: str, actor: Actor, routing: Routing, now: datetime
) -> Written | None:
    """Free the van of a case that was just closed, rejected or escalated through the loop.

    Called after that change committed, in a transaction of its own, so the one lock order
    (van → dispatch → case) holds; the visit ends with a note saying why, the van is available,
    and a visit that was on site counts as mediated. None when there was no active visit.
    """
    if action not in RELEASING_ACTIONS:
        return None
    row = conn.execute(
        "SELECT d.id FROM dispatches d JOIN cases c ON c.id = d.case_id WHERE c.code = %s AND d.status = ANY(%s)",
        (code, list(ACTIVE)),
    ).fetchone()
    if row is None:
        return None
    d = _lock_dispatch(conn, int(row[0]), routing, now)
    if d["status"] not in ACTIVE:  # ended meanwhile by the crew
        return None
    note = f"case {action}: visit over"
    fresh = _finish(conn, d, "ended", actor, now, note)
    return Written(
        fresh,
        [
            dispatch_event(
                "dispatch.ended",
                fresh,
                now,
                was_on_site=d["status"] == "on_site",
                result=None,
                outcome=None,
                reason=action,
            )
        ],
    )


def cancel(
    conn: psycopg.Connection,
    dispatch_id: int,
    actor: Actor,
    routing: Routing,
    now: datetime,
    *,
    note: str | None = None,
    authorize: Callable[[Mapping[str, Any]], None] | None = None,
) -> Written:
    """Call back a van that is on its way: the van is available again, the case stays
    ``dispatched`` with no assignee (ready to be dispatched again), audited as ``cancel_dispatch``."""
    d = _lock_dispatch(conn, dispatch_id, routing, now)
    if authorize:
        authorize(d)
    if d["status"] != "en_route":
        hint = "; end the visit instead" if d["status"] == "on_site" else ""
        raise NotActive(
            f"dispatch {dispatch_id} is {d['status']}: only a van on its way can be cancelled{hint}", field="id"
        )
    events = _uncase(conn, d, actor, now, note)
    fresh = _finish(conn, d, "cancelled", actor, now, note)
    events.insert(0, dispatch_event("dispatch.cancelled", fresh, now))
    return Written(fresh, events)


def _uncase(
    conn: psycopg.Connection, d: Mapping[str, Any], actor: Actor, now: datetime, note: str | None
) -> list[dict[str, Any]]:
    """Clear the case's assignee if it is still this van, with its audit row (see the module doc)."""
    case = store.get_case(conn, d["case_code"], lock=True)
    assert case is not None  # dispatches.case_id is a foreign key
    assignee = case["assignee"] or {}
    if case["step"] != "dispatched" or assignee.get("kind") != "van" or assignee.get("id") != d["van_id"]:
        return []
    change = workflow.Change(
        "cancel_dispatch",
        "dispatched",
        "dispatched",
        case["level"],
        {"assignee": None},
        {"dispatch": d["id"], "van": d["van_id"]},
    )
    fresh = store._write(conn, case, change, actor, now, note)  # the audited write path of every change
    return [store.event_of("case.changed", fresh, now, action="cancel_dispatch", from_step="dispatched")]

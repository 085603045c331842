"""Dispatching (派车) as the API and the dispatch page both do it: who may send and end, sending a
van in one transaction with its case's step, freeing a van when its case moves on, and the shapes
of a dispatch and a candidate that both show.

The rules of a dispatch itself (busy vans, arrival, lock order) are geodata/dispatch.py's; this
module adds the caller (a principal with an area), the settings and the live stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from geodata import cases as store
from geodata import dispatch
from geodata.errors import Forbidden
from services import events
from services.identity import Principal
from services.runtime import Services
from services.scheduler import CasesRuntime
from services.settings import Settings

DISPATCHERS = frozenset({"admin", "dispatcher"})


def routing(settings: Settings) -> dispatch.Routing:
    """Travel estimation from the ``dispatch_*`` settings."""
    return dispatch.Routing(
        snap_max_m=settings.dispatch_snap_max_m,
        detour=settings.dispatch_detour_factor,
        trunk_kmh=settings.dispatch_speed_trunk_kmh,
        county_kmh=settings.dispatch_speed_county_kmh,
        village_kmh=settings.dispatch_speed_village_kmh,
        offroad_kmh=settings.dispatch_speed_offroad_kmh,
        offline_seconds=settings.van_offline_seconds,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


def scoped(who: Principal, field: str) -> Callable[[Mapping[str, Any]], None]:
    """A check for geodata's ``authorize`` hooks: the case must lie in the token's area."""

    def check(row: Mapping[str, Any]) -> None:
        if not who.sees_case(row):
            raise Forbidden(
                f"case {row.get('code') or row.get('case_code')} is outside your area {who.area}", field=field
            )

    return check


def require_dispatcher(who: Principal) -> None:
    if who.role not in DISPATCHERS:
        raise Forbidden(f"a {who.role} token cannot dispatch vans (admin or dispatcher only)", field="Authorization")


def may_end(who: Principal) -> Callable[[Mapping[str, Any]], None]:
    """Dispatchers (within their area), or the crew of that very van (a ``van`` token named so)."""
    scope = scoped(who, "id")

    def check(d: Mapping[str, Any]) -> None:
        if who.role == "van":
            if who.name != d["van_id"]:
                raise Forbidden(f"this van token is for {who.name}, not {d['van_id']}", field="Authorization")
            return
        require_dispatcher(who)
        scope(d)

    return check


def candidate_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "plate": row["plate"],
        "status": row["status"],
        "lon": row["lon"],
        "lat": row["lat"],
        "last_seen_at": _iso(row["last_seen_at"]),
        "distance_m": _r(row["distance_m"]),
        "eta_s": _r(row["eta_s"], 0),
        "method": row["method"],
        "dispatchable": row["dispatchable"],
        "reason": dispatch.not_dispatchable_because(row),
        "active_dispatch": row["active_dispatch"],
    }


def dispatch_out(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": d["id"],
        "case": d["case_code"],
        "van": d["van_id"],
        "van_name": d["van_name"],
        "status": d["status"],
        "distance_m": _r(d["distance_m"]),
        "eta_s": _r(d["eta_s"], 0),
        "method": d["method"],
        "created_at": _iso(d["created_at"]),
        "created_by": d["created_by"],
        "note": d["note"],
        "arrived_at": _iso(d["arrived_at"]),
        "ended_at": _iso(d["ended_at"]),
        "ended_by": d["ended_by"],
        "end_note": d["end_note"],
        "result": d["result"],
        "outcome": d["outcome"],
        "case_step": d["case_step"],
        "case_lon": d["case_lon"],
        "case_lat": d["case_lat"],
    }


def send_van(
    svc: Services,
    rt: CasesRuntime,
    who: Principal,
    case: str,
    van: str,
    note: str | None,
    *,
    accept_first: bool = False,
) -> dict[str, Any]:
    """Send ``van`` to ``case`` for ``who``: the API's POST and the dispatch page's button both call this.

    ``accept_first`` (the page's 核实并派车 on a case still ``reported``): the dispatcher verifies
    the report and sends the van in one transaction, two audit rows; a refusal undoes both.
    """
    require_dispatcher(who)
    now = _now()
    published: list[dict[str, Any]] = []
    with svc.pool.connection() as conn:
        if accept_first:
            row = store.get_case(conn, case)
            if row is not None and row["step"] == "reported":
                accepted, change = store.transition(
                    conn, case, "accept", {}, who.actor, rt.rules, now, authorize=scoped(who, "case")
                )
                published.append(
                    store.event_of("case.changed", accepted, now, action="accept", from_step=change.from_step)
                )
        out = dispatch.create(
            conn, case, van, note, who.actor, rt.rules, routing(svc.settings), now, authorize=scoped(who, "case")
        )
    events.publish_many(rt.stream, [*published, *out.events])  # committed: now the screens may hear of it
    return dispatch_out(out.dispatch)


def release_van(svc: Services, rt: CasesRuntime, who: Principal, code: str, action: str, now: datetime) -> None:
    """A case closed, rejected or escalated with a van on its way or on site: the visit is over.

    Its own transaction after the case's commit, so the lock order of the dispatch code (van →
    dispatch → case) holds; should it fail, the case change stands and the van is ended by hand.
    """
    if action not in dispatch.RELEASING_ACTIONS:
        return
    with svc.pool.connection() as conn:
        out = dispatch.release(conn, code, action, who.actor, routing(svc.settings), now)
    if out is not None:
        events.publish_many(rt.stream, out.events)

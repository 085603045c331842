"""Dispatching (派车) as the API and the dispatch page both do it: who may send and end, sending a
van in one transaction with its case's step, freeing a van when its case moves on, and the shapes
of a dispatch and a candidate that both show.

The rules of a dispatch itself (busy vans, arrival, lock order) are geodata/dispatch.py's; this
module adds the caller (a principal with an area), the settings and the events: each write puts
its events in the outbox in its own transaction (geodata/outbox.py), for the relay to publish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from psycopg_pool import PoolTimeout

from geodata import cases as store
from geodata import dispatch, idempotency, outbox
from geodata.db import writing
from geodata.errors import Forbidden, OutcomeUnknown
from geodata.queries import iso, pick, rounded
from geodata.workflow import Rules
from services.identity import Principal
from services.runtime import Services
from services.settings import Settings

log = logging.getLogger("yitu.dispatch")

DISPATCHERS = frozenset({"admin", "dispatcher"})


class CasesRuntime(Protocol):
    """What dispatching needs of the case runtime (services/scheduler.py, which runs this module's
    reconciler and so sits above it): the deadline rules."""

    @property
    def rules(self) -> Rules: ...


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


def scoped(who: Principal, field: str) -> Callable[[Mapping[str, Any]], None]:
    """A check for geodata's ``authorize`` hooks: the case must lie in the caller's area (404 if not)."""

    def check(row: Mapping[str, Any]) -> None:
        if not who.sees_case(row):  # as one that does not exist (Principal.require_case)
            if field == "id":  # a dispatch of a case outside the area: the unknown id's answer
                raise dispatch.UnknownDispatch(f"no dispatch with id {row.get('id')}", field=field)
            raise store.CaseNotFound(f"no case with code {row.get('code') or row.get('case_code')}", field=field)

    return check


def require_dispatcher(who: Principal) -> None:
    if who.role not in DISPATCHERS:
        raise Forbidden(f"a {who.role} token cannot dispatch vans (admin or dispatcher only)", field="Authorization")


def may_end(who: Principal) -> Callable[[Mapping[str, Any]], None]:
    """Dispatchers (within their area), or the crew of that very van (a ``van`` token named so, or
    a signed-in crew member of that van)."""
    scope = scoped(who, "id")

    def check(d: Mapping[str, Any]) -> None:
        if who.role == "van":
            if who.van != d["van_id"]:
                raise Forbidden(f"this van crew is {who.van}'s, not {d['van_id']}'s", field="Authorization")
            return
        require_dispatcher(who)
        scope(d)

    return check


def candidate_out(row: Mapping[str, Any]) -> dict[str, Any]:
    plain = ("id", "name", "plate", "status", "lon", "lat", "method", "dispatchable", "active_dispatch")
    return {
        **pick(row, plain),
        "last_seen_at": iso(row["last_seen_at"]),
        "distance_m": rounded(row["distance_m"]),
        "eta_s": rounded(row["eta_s"], 0),
        "reason": dispatch.not_dispatchable_because(row),
    }


_DISPATCH_PLAIN = ("id", "status", "method", "created_by", "note", "ended_by", "end_note", "result", "outcome")
_DISPATCH_RENAMED = {
    "case": "case_code",
    "van": "van_id",
    "van_name": "van_name",
    "case_step": "case_step",
    "case_lon": "case_lon",
    "case_lat": "case_lat",
}


def dispatch_out(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **pick(d, _DISPATCH_PLAIN),
        **{out: d[col] for out, col in _DISPATCH_RENAMED.items()},
        "distance_m": rounded(d["distance_m"]),
        "eta_s": rounded(d["eta_s"], 0),
        **{k: iso(d[k]) for k in ("created_at", "arrived_at", "ended_at")},
    }


def _once(
    svc: Services,
    who: Principal,
    key: str | None,
    operation: str,
    request: Mapping[str, Any],
    status: int,
    write: Callable[[psycopg.Connection], dispatch.Written],
) -> tuple[dict[str, Any], bool]:
    """A dispatch write with ``key`` (geodata/idempotency.py): its events to the outbox in its
    transaction, the dispatch as answered; a retry of one done gets the first answer again."""
    idem = idempotency.Key.of(who.actor.key_scope, key, operation, request)

    def act(conn: psycopg.Connection) -> dict[str, Any]:
        out = write(conn)
        outbox.append(conn, out.events)  # with the change: out once it commits
        return dispatch_out(out.dispatch)

    with writing(svc.pool) as conn:  # the COMMIT's connection lost: OutcomeUnknown (geodata/db.py)
        return idempotency.once(conn, idem, status, lambda: act(conn))


def send_van(
    svc: Services,
    rt: CasesRuntime,
    who: Principal,
    case: str,
    van: str,
    note: str | None,
    *,
    accept_first: bool = False,
    key: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Send ``van`` to ``case`` for ``who``: the API's POST and the dispatch page's button both call this.
    Returns the dispatch as answered and whether that is a replay.

    A dispatcher scoped to an area sends only vans it sees (its banner's and the league's): another
    banner's van is refused as unknown (404, field ``van``) and nothing is written.
    ``accept_first`` (the page's 核实并派车 on a case still ``reported``): the dispatcher verifies
    the report and sends the van in one transaction, two audit rows; a refusal undoes both.
    ``key`` (an Idempotency-Key, the page's or the API client's): a send that was done is answered
    again from the store (geodata/idempotency.py), so a double click or a retry sends one van.
    """
    require_dispatcher(who)
    now = _now()
    request = {"case": case, "van": van, "note": note, **({"accept_first": True} if accept_first else {})}

    def write(conn: psycopg.Connection) -> dispatch.Written:
        published: list[dict[str, Any]] = []
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
            conn,
            case,
            van,
            note,
            who.actor,
            rt.rules,
            routing(svc.settings),
            now,
            authorize=scoped(who, "case"),
            scope=who.area,  # another banner's van: 404 naming ``van``, nothing written
        )
        return dispatch.Written(out.dispatch, [*published, *out.events])

    return _once(svc, who, key, "POST /api/v1/dispatches", request, 201, write)


def end_visit(
    svc: Services,
    rt: CasesRuntime,
    who: Principal,
    dispatch_id: int,
    *,
    note: str | None = None,
    result: str | None = None,
    outcome: str | None = None,
    key: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """End a visit (the van is free again; optionally record an attempt or close the case): the
    API's ``POST /dispatches/{id}/end`` and the dispatch page's 结束走访 both call this. Returns the
    dispatch as answered and whether that is a replay of ``key``'s first answer."""
    if who.role not in DISPATCHERS | {"van"}:
        raise Forbidden(f"a {who.role} cannot end a dispatch", field="Authorization")
    body = {"note": note, "result": result, "outcome": outcome}

    def write(conn: psycopg.Connection) -> dispatch.Written:
        return dispatch.end(
            conn,
            dispatch_id,
            who.actor,
            rt.rules,
            routing(svc.settings),
            _now(),
            note=note,
            result=result,
            outcome=outcome,
            authorize=may_end(who),
        )

    return _once(svc, who, key, f"POST /api/v1/dispatches/{dispatch_id}/end", body, 200, write)


def cancel_van(
    svc: Services, who: Principal, dispatch_id: int, *, note: str | None = None, key: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Call back a van on its way (the case stays dispatched, to send another): the API's
    ``POST /dispatches/{id}/cancel`` and the dispatch page's 撤回 both call this. Returns the
    dispatch as answered and whether that is a replay of ``key``'s first answer."""
    require_dispatcher(who)

    def write(conn: psycopg.Connection) -> dispatch.Written:
        return dispatch.cancel(
            conn, dispatch_id, who.actor, routing(svc.settings), _now(), note=note, authorize=scoped(who, "id")
        )

    return _once(svc, who, key, f"POST /api/v1/dispatches/{dispatch_id}/cancel", {"note": note}, 200, write)


def release_van(svc: Services, rt: CasesRuntime, who: Principal, code: str, action: str, now: datetime) -> None:
    """A case closed, rejected or escalated with a van on its way or on site: the visit is over.

    Its own transaction after the case's commit, so the lock order of the dispatch code (van →
    dispatch → case) holds; should it fail, the case change stands and the van is ended by hand.
    """
    if action not in dispatch.RELEASING_ACTIONS:
        return
    try:
        with svc.pool.connection() as conn:
            out = dispatch.release(conn, code, action, who.actor, routing(svc.settings), now)
            if out is not None:
                outbox.append(conn, out.events)
    except (psycopg.Error, PoolTimeout, OutcomeUnknown) as exc:
        # The case's change is committed and answered as such (a 503 here would say "nothing was
        # written" of a change that was): the reconciler frees the van at its next run.
        log.warning("van not released after case=%s action=%s; left to the reconciler error=%s", code, action, exc)


RECONCILER = store.Actor("reconciler", "system")


def reconcile(svc: Services, now: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Free the vans whose visit's case was closed, rejected or escalated by a path that did not
    free them (the scheduler's auto-escalation, a process that died between the case's commit and
    the release). Each visit in its own transaction; returns the visits it ended, each logged."""
    now = now or datetime.now(UTC)
    with svc.pool.connection() as conn:
        found = dispatch.stranded(conn, limit)
    freed = []
    for row in found:
        with svc.pool.connection() as conn:
            out = dispatch.release(conn, row["case_code"], row["action"], RECONCILER, routing(svc.settings), now)
            if out is not None:
                outbox.append(conn, out.events)
        if out is None:  # ended meanwhile
            continue
        log.warning(
            "reconciler freed a stranded van van=%s case=%s dispatch=%s reason=%s",
            row["van_id"],
            row["case_code"],
            row["id"],
            row["action"],
        )
        freed.append(row)
    return freed

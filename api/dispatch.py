"""Van dispatch (派车): candidates for a case, sending a van, the end of its visit; cameras near a case.

``GET /api/v1/cases/{code}/van-candidates`` ranks the vans by road distance (pgRouting, see
geodata/dispatch.py); ``POST /api/v1/dispatches`` sends one (admin or dispatcher) in one
transaction with the case's ``dispatch`` action; the van's own GPS marks its arrival
(geodata/tracking.py); ``POST /api/v1/dispatches/{id}/end`` (or ``/cancel``) frees the van. Every
change writes its live events to the outbox in its own transaction, and the relay publishes them
once it commits (``dispatch.created``,
``dispatch.arrived``, ``dispatch.ended``, ``dispatch.cancelled``, and the ``case.changed`` of each
workflow step). A refusal is a 409 naming the ``field`` at fault (``van``, ``case``, ``id``, or
``action`` with the ``allowed`` actions when the case is not at a step that permits it). A
dispatcher scoped to an area is offered and may send only the vans of its banner and the league's
(039_van_banner.sql): another banner's van is a 404 naming ``van``, and nothing is written.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api import errors
from api.auth import Principal, principal
from api.cases import CODE, require_json
from api.deps import role_in, runtime, services
from api.idempotency import OptionalKey, answered, keyed
from api.openapi import READ, WRITE, answers
from api.params import Text
from geodata import cases as store
from geodata import dispatch, masking
from geodata.queries import cameras_near, rounded
from services.dispatching import DISPATCHERS, cancel_van, candidate_out, dispatch_out, end_visit, routing, send_van
from services.runtime import Services
from services.scheduler import CasesRuntime

router = APIRouter(prefix="/api/v1", tags=["dispatch"], responses=answers(*READ))

VAN_ID = r"^[A-Za-z0-9_-]{1,32}$"

Svc = Annotated[Services, Depends(services)]
Rt = Annotated[CasesRuntime, Depends(runtime)]
Who = Annotated[Principal, Depends(principal)]
DispatchId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The dispatch's id.")]


class DispatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    case: str = Field(pattern=CODE, description="The case's code (一案一码).")
    van: str = Field(pattern=VAN_ID, description="The van's id, e.g. V01.")
    note: Text | None = Field(default=None, max_length=2000, description="Goes into the case's audit row.")


class EndIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    note: Text | None = Field(default=None, max_length=2000)
    result: Literal["success", "failed"] | None = Field(
        default=None, description="Record the mediation attempt (workflow action attempt)."
    )
    outcome: Literal["mediated", "judicial_confirmation", "litigation", "arbitration", "withdrawn"] | None = Field(
        default=None, description="Close the case with this outcome (workflow action close)."
    )


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    note: Text | None = Field(default=None, max_length=2000)


async def json_if_any(request: Request) -> None:
    """The body is optional here; when there is one it must be JSON (415 otherwise)."""
    if request.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in request.headers:
        checked = require_json(request)
        if inspect.isawaitable(checked):  # require_json may be a coroutine function
            await checked


def _now() -> datetime:
    return datetime.now(UTC)


def _case_in_scope(svc: Services, who: Principal, code: str) -> dict[str, Any]:
    """The case (404 if unknown or outside the caller's area), as GET /api/v1/cases/{code} does."""
    with svc.pool.connection() as conn:
        row = store.get_case(conn, code)
    if row is None:
        raise errors.NotFound(f"no case with code {code}", field="code")
    who.require_case(row)
    return row


# --- around a case -------------------------------------------------------------------------------


@router.get(
    "/cases/{code}/van-candidates",
    summary="The vans that could go to a case, by road distance (pgRouting); dispatchable first",
)
def van_candidates(code: Annotated[str, Path(pattern=CODE)], svc: Svc, who: Who) -> dict[str, Any]:
    case = _case_in_scope(svc, who, code)
    now = _now()
    route = routing(svc.settings)
    with svc.pool.connection() as conn:
        rows = dispatch.candidates(conn, code, route, now, scope=who.area)  # its banner's vans and the league's
    return {
        "case": code,
        "lon": case["lon"],
        "lat": case["lat"],
        "step": case["step"],
        "as_of": now.isoformat(),
        "routing": {
            "snap_max_m": route.snap_max_m,
            "detour_factor": route.detour,
            "speeds_kmh": {
                "trunk": route.trunk_kmh,
                "county": route.county_kmh,
                "village": route.village_kmh,
                "offroad": route.offroad_kmh,
            },
        },
        "candidates": [candidate_out(r) for r in rows],
    }


@router.get("/cases/{code}/cameras", summary="Cameras within radius metres of a case, nearest first")
def case_cameras(
    code: Annotated[str, Path(pattern=CODE)],
    svc: Svc,
    who: Who,
    radius: Annotated[float, Query(ge=1, le=5000, allow_inf_nan=False, description="Metres, 1 to 5000.")] = 500,
) -> dict[str, Any]:
    case = _case_in_scope(svc, who, code)
    rows: list[dict[str, Any]] = []
    if case["lon"] is not None:
        with svc.pool.connection() as conn:
            rows = cameras_near(conn, case["lon"], case["lat"], radius, scope=who.area)
    return {
        "case": code,
        "lon": case["lon"],
        "lat": case["lat"],
        "radius_m": radius,
        "cameras": [
            {
                "code": r["device_code"],
                "name": r["name"],
                "type": r["kind"],
                "status": r["status"],
                "stream_url": masking.stream_url_for(who.role, r["stream_url"]),  # admin, dispatcher; no credentials
                "lon": r["lon"],
                "lat": r["lat"],
                "distance_m": rounded(r["distance_m"]),
            }
            for r in rows
        ],
    }


# --- dispatches ----------------------------------------------------------------------------------


@router.post(
    "/dispatches",
    status_code=201,
    dependencies=[Depends(role_in(DISPATCHERS, "dispatch vans (admin or dispatcher only)")), Depends(require_json)],
    summary="Send a van to a case (admin, dispatcher); 409 if the van or the case is not free",
    description="409: van busy / offline / not available, case busy, or the case's step does not allow "
    "dispatch (`allowed` lists what does).",
    responses=answers(*WRITE, ok=keyed(201, "The dispatch (with an Idempotency-Key sent again: the first one's)")),
)
def create_dispatch(
    body: DispatchIn, response: Response, svc: Svc, rt: Rt, who: Who, idempotency_key: OptionalKey = None
) -> dict[str, Any]:
    out, replayed = send_van(svc, rt, who, body.case, body.van, body.note, key=idempotency_key)
    return answered(response, out, replayed, 201)


@router.get("/dispatches", summary="Dispatches, newest first (active=true: vans on their way or on site)")
def list_dispatches(
    svc: Svc,
    who: Who,
    active: bool = False,
    van: Annotated[str | None, Query(pattern=VAN_ID)] = None,
    case: Annotated[str | None, Query(pattern=CODE)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    if who.role == "van":  # a van's crew reads its own van's visit now, never another van's nor past ones
        if who.van is None or (van is not None and van != who.van):
            return {"active": active, "limit": limit, "offset": offset, "dispatches": []}
        van, active = who.van, True
    area = None if who.role == "van" else who.area  # a van roams its whole banner: its van is its scope
    with svc.pool.connection() as conn:
        rows = dispatch.dispatches(conn, active=active, van=van, case=case, area=area, limit=limit, offset=offset)
    return {"active": active, "limit": limit, "offset": offset, "dispatches": [_shown(who, r) for r in rows]}


def _shown(who: Principal, row: dict[str, Any]) -> dict[str, Any]:
    """A dispatch as ``who`` may see it: its notes masked for a reader who does not see the parties
    (their names found in the text by the case's parties), the parties themselves never shown."""
    out = masking.case_for(who.role, {**dispatch_out(row), "parties": row["parties"] or []})
    del out["parties"]
    return out


@router.get("/dispatches/{dispatch_id}", summary="One dispatch")
def get_dispatch(dispatch_id: DispatchId, svc: Svc, who: Who) -> dict[str, Any]:
    with svc.pool.connection() as conn:
        row = dispatch.get(conn, dispatch_id)
    if row is None or not who.sees_dispatch(row):
        raise errors.NotFound(f"no dispatch with id {dispatch_id}", field="id")
    return _shown(who, row)


@router.post(
    "/dispatches/{dispatch_id}/end",
    dependencies=[Depends(role_in(DISPATCHERS | {"van"}, "end a dispatch")), Depends(json_if_any)],
    summary="End a visit (admin, dispatcher, or that van): van available; optionally attempt / close",
    description="409: already ended or cancelled, or the case's step refuses the action. With an "
    "Idempotency-Key a retry gets the first answer again (an attempt counts once).",
    responses=answers(*WRITE, ok=keyed(200, "The dispatch, ended")),
)
def end_dispatch(
    dispatch_id: DispatchId,
    response: Response,
    svc: Svc,
    rt: Rt,
    who: Who,
    body: EndIn | None = None,
    idempotency_key: OptionalKey = None,
) -> dict[str, Any]:
    body = body or EndIn()
    out, replayed = end_visit(
        svc, rt, who, dispatch_id, note=body.note, result=body.result, outcome=body.outcome, key=idempotency_key
    )
    return answered(response, out, replayed)


@router.post(
    "/dispatches/{dispatch_id}/cancel",
    dependencies=[Depends(role_in(DISPATCHERS, "dispatch vans (admin or dispatcher only)")), Depends(json_if_any)],
    summary="Call back a van on its way (admin, dispatcher): van available, case left dispatched",
    description="409: not en route (on site: end it; or already over). With an Idempotency-Key a retry "
    "gets the first answer again.",
    responses=answers(*WRITE, ok=keyed(200, "The dispatch, cancelled")),
)
def cancel_dispatch(
    dispatch_id: DispatchId,
    response: Response,
    svc: Svc,
    rt: Rt,
    who: Who,
    body: CancelIn | None = None,
    idempotency_key: OptionalKey = None,
) -> dict[str, Any]:
    body = body or CancelIn()
    out, replayed = cancel_van(svc, who, dispatch_id, note=body.note, key=idempotency_key)
    return answered(response, out, replayed)

"""``/api/v1/cases``: intake, reading, searching and the closed loop's transitions.

Every write needs a bearer token (api/auth.py) and is one transaction (geodata/cases.py) that
carries its live events in the outbox (geodata/outbox.py; the relay, services/relay.py, publishes
them once it commits). Readers without a need for
personal data (viewers) get names and phone numbers masked (geodata/masking.py, one policy per role).

Intake is the hot path (a thousand reports a second at peak), so it runs on the event loop end
to end: the reports waiting at one moment are written in one statement by the intake lanes
(api/intake.py) on an asyncio connection pool of their own (autocommit: the statement is its own
transaction, one round trip, and writes the cases' events to the outbox itself); pool and lanes
are opened and closed with the app (this router's lifespan; at
most ``intake.LANES`` connections of its own, besides the main pool's). No thread-pool hop: a
request that hands its I/O to a thread waits for that thread to get the GIL back from the busy
event loop, several times per request. The dependencies here are ``async`` too: a plain ``def``
dependency costs a thread-pool round trip of its own on every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from api import errors
from api.auth import Principal, principal
from api.deps import role_in, runtime, services
from api.idempotency import REPLAYED, OptionalKey, RequiredKey, answered, key_of, keyed
from api.intake import LANES, IntakeLanes
from api.openapi import READ, WRITE, answers
from api.params import Day, Instant, People, Satisfaction, SomeText, Text, Version
from geodata import cases as store
from geodata import masking, workflow
from geodata.clock import day_start
from geodata.db import INTAKE_MARGIN, checkout_timeout, stirred
from geodata.gcj02 import CHINA_LAT, CHINA_LON
from geodata.workflow import Rules
from services import audit, casework
from services.runtime import Services
from services.scheduler import CasesRuntime


async def _check_quietly(conn: psycopg.AsyncConnection) -> None:
    """The pool's check on checkout, without a round trip while the connection is quiet
    (geodata/db.py ``stirred``)."""
    if stirred(conn):
        await AsyncConnectionPool.check_connection(conn)


@dataclass
class IntakeRuntime:
    """The intake route's asyncio pool (autocommit connections) and lanes."""

    pool: AsyncConnectionPool
    lanes: IntakeLanes

    async def close(self) -> None:
        await self.pool.close()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's lifespan (FastAPI nests an included router's), after the services open."""
    svc: Services = app.state.services
    settings = svc.settings
    main_kwargs = svc.pool.kwargs() if callable(svc.pool.kwargs) else svc.pool.kwargs
    pool = AsyncConnectionPool(
        svc.pool.conninfo,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        name="yitu-intake",
        timeout=checkout_timeout(settings.db_connect_timeout, margin=INTAKE_MARGIN),
        kwargs={**(main_kwargs or {}), "autocommit": True},
        check=_check_quietly,
        open=False,
    )
    await pool.open(wait=False)  # like the main pool: the app starts while the database is down
    lanes = IntakeLanes(pool, app.state.cases_runtime.rules, lanes=min(LANES, settings.db_pool_max))
    app.state.intake = IntakeRuntime(pool, lanes)
    try:
        yield
    finally:
        await app.state.intake.close()


router = APIRouter(prefix="/api/v1/cases", tags=["cases"], lifespan=_lifespan)

CODE = r"^[0-9]{6}-[0-9]{8}-[0-9]{6,9}$"
AREA = r"^([0-9]{4}|[0-9]{6}([0-9]{3}){0,3})$"  # 4 digits: the league/city root above several banners
TYPE = r"^[a-z][a-z0-9_]{1,40}$"
STEP = "^(" + "|".join(workflow.STEPS) + ")$"
MAX_FUTURE = timedelta(minutes=5)  # phones' clocks drift; more than this is a wrong date
OLDEST = datetime(2000, 1, 1, tzinfo=UTC)  # older is a wrong date (and 0001-01-01 overflows)


def _number(v: object) -> object:
    """A sum is a JSON number: the text "12.5" is refused as it would be in any other number field."""
    if isinstance(v, str | bool):
        raise ValueError("amount_yuan is a number of yuan (at most 2 decimals), not text")
    return v


# A sum of money in yuan, to the fen. The schema says what the validation does (pydantic's own for a
# Decimal leaves out the two decimals and lets text in), so a client made from it sends what is accepted.
Amount = Annotated[
    Decimal,
    BeforeValidator(_number),
    Field(ge=0, le=Decimal("1e12"), max_digits=15, decimal_places=2, allow_inf_nan=False),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1e12, "multipleOf": 0.01}),
]


class Party(BaseModel):
    """A party to the dispute: personal data, masked for viewers."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: SomeText = Field(min_length=1, max_length=50)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 \-]{3,18}[0-9]$")
    role: Text | None = Field(default=None, max_length=20, description="e.g. 申请人 (applicant), 被申请人 (respondent)")


class CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    type: str = Field(pattern=TYPE, description="An active code of case_types, e.g. grassland, neighbour.")
    description: SomeText = Field(min_length=1, max_length=4000)
    lon: float = Field(
        ge=CHINA_LON[0],
        le=CHINA_LON[1],
        strict=True,
        allow_inf_nan=False,
        description=f"WGS-84 longitude, in China ({CHINA_LON[0]}–{CHINA_LON[1]}; outside: 422 naming lon)",
    )
    lat: float = Field(
        ge=CHINA_LAT[0],
        le=CHINA_LAT[1],
        strict=True,
        allow_inf_nan=False,
        description=f"WGS-84 latitude, in China ({CHINA_LAT[0]}–{CHINA_LAT[1]}; outside: 422 naming lat)",
    )
    channel: Literal["grid_app", "hotline_12345", "window", "visit", "petition"]
    parties: list[Party] = Field(default_factory=list, max_length=10)
    reported_at: Instant | None = Field(
        default=None, description="When it was reported (default: now): since 2000, at most 5 minutes ahead."
    )
    severity: Literal["simple", "ordinary", "complex", "major"] | None = Field(
        default=None,
        description="Triage (研判): sets the level the case starts at (YITU_SEVERITY_LEVELS; simple → grid, "
        "ordinary → village, complex → town, major → banner by default) and so its first deadline. None: grid.",
    )
    people_involved: People | None = Field(
        default=None,
        description="People involved; from YITU_GROUP_DISPUTE_PEOPLE (5) up the case is 群体性 (flag group).",
    )
    amount_yuan: Amount | None = Field(
        default=None, description="The sum at stake in yuan: a number, 0 to 10^12, at most 2 decimals."
    )

    @field_validator("reported_at")
    @classmethod
    def _not_in_future(cls, v: datetime | None) -> datetime | None:
        if v is not None and v > datetime.now(UTC) + MAX_FUTURE:
            raise ValueError("reported_at is in the future")
        if v is not None and v < OLDEST:
            raise ValueError("reported_at is before 2000: a wrong date")
        return v


class Assignee(BaseModel):
    """Who a case is dispatched to. Vans are dispatched through the dispatch API (a later issue),
    which will add ``kind: "van"`` here and reuse the ``dispatch`` action."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    kind: Literal["unit", "mediator"]
    id: SomeText = Field(min_length=1, max_length=64)
    name: Text | None = Field(default=None, max_length=100)


class TransitionIn(BaseModel):
    """One step of the closed loop. What each action needs besides ``action`` (422 naming the field
    when it is missing): reject a ``reason`` (and ``duplicate_of`` for a duplicate), dispatch an
    ``assignee``, attempt a ``result``, close an ``outcome`` (``withdrawn`` unless the case is being
    handled), evaluate a ``satisfaction``. An action the case's step does not allow is a 409."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    action: Literal["accept", "reject", "dispatch", "start", "attempt", "escalate", "close", "evaluate", "reopen"]
    note: Text | None = Field(default=None, max_length=2000)
    version: Version | None = Field(default=None, description="Refuse (409) if the case changed since this version.")
    reason: Literal["not_dispute", "duplicate"] | None = Field(default=None, description="reject")
    duplicate_of: str | None = Field(default=None, pattern=CODE, description="reject as duplicate")
    assignee: Assignee | None = Field(default=None, description="dispatch")
    result: Literal["success", "failed"] | None = Field(default=None, description="attempt")
    outcome: Literal["mediated", "judicial_confirmation", "litigation", "arbitration", "withdrawn"] | None = Field(
        default=None, description="close"
    )
    agreement_no: Text | None = Field(
        default=None, max_length=64, description="close: the mediation agreement's number (调解协议书编号)"
    )
    satisfaction: Satisfaction | None = Field(default=None, description="evaluate")
    followup_note: Text | None = Field(default=None, max_length=2000, description="evaluate (回访)")


async def require_json(request: Request) -> None:
    """A JSON body or nothing: a form or text body gets 415, not a confusing 422."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise errors.UnsupportedMediaType(
            f"send the body as application/json (got {ctype or 'no content type'})", field="Content-Type"
        )


def case_out(row: Mapping[str, Any], who: Principal, rules: Rules, now: datetime) -> dict[str, Any]:
    """The API shape of a case (masked for readers without a need for personal data)."""
    return casework.case_out(row, who.role, rules, now)


def _now() -> datetime:
    return datetime.now(UTC)


async def _services(request: Request) -> Services:
    return services(request)


async def _runtime(request: Request) -> CasesRuntime:
    return runtime(request)


Svc = Annotated[Services, Depends(_services)]
Rt = Annotated[CasesRuntime, Depends(_runtime)]
Who = Annotated[Principal, Depends(principal)]


async def report(app: Any, body: CaseIn, who: Principal, idempotency_key: str | None) -> tuple[int, dict[str, Any]]:
    """Intake of one validated report by ``who``: (201 or 200 for a retry, the case as answered).

    The implementation behind ``POST /api/v1/cases``. Raises the API's errors for refusals (428
    without a key: the route's header is required, this is for callers that bypass it).
    """
    who.require_reporter()
    if idempotency_key is None:
        raise errors.PreconditionRequired(
            "send an Idempotency-Key header with every report (a new one per report, the same one on its retries)",
            field="Idempotency-Key",
        )
    now = _now()
    new = store.NewCase(
        body.type,
        body.description,
        body.lon,
        body.lat,
        body.channel,
        [p.model_dump(exclude_none=True) for p in body.parties],
        body.reported_at,
        body.severity,
        body.people_involved,
        body.amount_yuan,
    )
    rt: CasesRuntime = app.state.cases_runtime
    intake: IntakeRuntime = app.state.intake
    # Written with whatever other reports are waiting (api/intake.py): one statement, with its
    # events, that commits as it returns; a point outside a scoped reporter's area writes nothing.
    result = await intake.lanes.submit(store.IntakeRequest(new, who.actor, idempotency_key, who.area, now))
    row, created = store.unwrap(result)
    who.require_case(row)  # a retry's case (made by this token, so inside its area)
    return (201 if created else 200), case_out(row, who, rt.rules, now)


async def _reporter(who: Who) -> None:
    """The role's 403 before the body is read (the same answer as the intake front's)."""
    who.require_reporter()


@router.post(
    "",
    status_code=201,
    dependencies=[Depends(_reporter), Depends(require_json)],  # who asks and may they, before the body
    summary="Report a case: grid chain, level and deadline found at intake",
    description="Idempotency-Key is required (428 without it): a phone retries a report blindly. A retry with "
    "the same key and body gets the case the first one created (200, `Idempotency-Replayed: true`; the case as "
    "it is now, which is what a phone that lost the first answer needs); the same key with another body is a 422.",
    responses=answers(
        *WRITE, 428, ok=keyed(200, "A retry with the same Idempotency-Key: the case it created, as it is now")
    ),
)
async def create_case(
    body: CaseIn, request: Request, response: Response, who: Who, idempotency_key: RequiredKey
) -> dict[str, Any]:
    response.status_code, out = await report(request.app, body, who, idempotency_key)
    if response.status_code == 200:  # the case this key created before: nothing was written now
        response.headers[REPLAYED] = "true"
    return out


def client_address(request: Request) -> str | None:
    """Where a request came from, for the audit (the peer; behind nginx, uvicorn's proxy headers)."""
    return request.client.host if request.client else None


@router.get("/{code}", summary="One case with its timeline (the audit trail)", responses=answers(*READ))
def get_case(code: Annotated[str, Path(pattern=CODE)], request: Request, svc: Svc, rt: Rt, who: Who) -> dict[str, Any]:
    now = _now()
    with svc.pool.connection() as conn:
        row = store.get_case(conn, code)
        if row is None:
            raise errors.NotFound(f"no case with code {code}", field="code")
        who.require_case(row)
        events_ = store.timeline(conn, row["id"])
        audit.personal_data_read(conn, who, [code], "GET /api/v1/cases/{code}", client_address(request))
    out = case_out(row, who, rt.rules, now)
    timeline = [{**e, "occurred_at": e["occurred_at"].isoformat()} for e in events_]
    out["timeline"] = masking.case_for(who.role, {"parties": row["parties"], "timeline": timeline})["timeline"]
    out["time_in"] = workflow.time_in(events_, now, closed=row["step"] not in workflow.OPEN_STEPS)
    return out


@dataclass
class CaseFilters:
    """The search's query parameters, the same for every list of cases (a dependency: ``Depends()``)."""

    step: Annotated[str | None, Query(pattern=STEP)] = None
    type: Annotated[str | None, Query(pattern=TYPE)] = None
    overdue: bool | None = None
    since: Annotated[Day | None, Query(description="First day (China time), YYYY-MM-DD")] = None
    until: Annotated[Day | None, Query(description="Last day (China time), YYYY-MM-DD; not before since")] = None
    limit: Annotated[int, Query(ge=1, le=500)] = 50
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0

    def page(
        self,
        conn: psycopg.Connection,
        area: str | None,
        who: Principal,
        rules: Rules,
        now: datetime,
        *,
        route: str,
        address: str | None,
        log: psycopg.Connection | None = None,
    ) -> dict[str, Any]:
        """One page of the matching cases in ``area`` (None: everywhere), each as ``who`` may see it.

        A page with unmasked parties is logged as a read of personal data (``route``, ``address``)
        on ``log`` (a primary connection when ``conn`` is the replica's), else on ``conn``, in the
        same transaction.
        """
        rows = store.search(
            conn,
            area=area,
            step=self.step,
            type=self.type,
            since=day_start(self.since),
            until=day_start(self.until, end=True),
            overdue=self.overdue,
            now=now,
            limit=self.limit,
            offset=self.offset,
        )
        audit.personal_data_read(log or conn, who, [r["code"] for r in rows], route, address)
        return {"limit": self.limit, "offset": self.offset, "cases": [case_out(r, who, rules, now) for r in rows]}


@router.get(
    "",
    summary="Search cases (area of any level, step, type, overdue, reported between since and until)",
    responses=answers(*READ),
)
def list_cases(
    request: Request,
    svc: Svc,
    rt: Rt,
    who: Who,
    filters: Annotated[CaseFilters, Depends()],
    area: Annotated[str | None, Query(pattern=AREA)] = None,
) -> dict[str, Any]:
    if filters.since and filters.until and filters.until < filters.since:
        raise errors.Invalid("until is before since", field="until")
    area = area or who.area
    if area:
        who.require_area(area)
    now = _now()
    with svc.pool.connection() as conn:
        page = filters.page(conn, area, who, rt.rules, now, route="GET /api/v1/cases", address=client_address(request))
        return {"area": area, **page}


@router.post(
    "/{code}/transitions",
    dependencies=[
        Depends(role_in({r for r, acts in workflow.ROLE_ACTIONS.items() if acts}, "move cases")),
        Depends(require_json),
    ],
    summary="Move a case through the loop; 409 lists the actions allowed instead",
    description="With an Idempotency-Key a retry gets the first answer again and the case moves once "
    "(an escalation climbs one level, an attempt counts once).",
    responses=answers(*WRITE, ok=keyed(200, "The case after the action")),
)
def transition(
    code: Annotated[str, Path(pattern=CODE)],
    body: TransitionIn,
    request: Request,
    response: Response,
    svc: Svc,
    rt: Rt,
    who: Who,
    idempotency_key: OptionalKey = None,
) -> dict[str, Any]:
    key = key_of(who, idempotency_key, f"POST /api/v1/cases/{code}/transitions", body.model_dump(mode="json"))
    params = body.model_dump(exclude={"action", "version"}, exclude_none=True)
    out, replayed = casework.move(
        svc, rt, who, code, body.action, params, version=body.version, key=key, address=client_address(request)
    )
    return answered(response, out, replayed)


class CellIn(BaseModel):
    """Confirm a case's cell or put it in another: ``cell`` null confirms the one intake found for a
    case flagged ``near_boundary``; a grid cell's code (one within 3 km of the case) moves it there
    (a case flagged ``outside_territory`` gets its cell so). Both flags go; the audit records it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    cell: str | None = Field(pattern=r"^[0-9]{15}$", description="A grid cell's code, or null to confirm")
    version: Version | None = Field(default=None, description="Refuse (409) if the case changed since this version.")


@router.post(
    "/{code}/cell",
    dependencies=[Depends(role_in({"admin", "dispatcher"}, "change a case's cell")), Depends(require_json)],
    summary="Confirm a case's grid cell, or move it to the right one (audited)",
    responses=answers(*WRITE, ok=keyed(200, "The case after the change")),
)
def place_case(
    code: Annotated[str, Path(pattern=CODE)],
    body: CellIn,
    request: Request,
    response: Response,
    svc: Svc,
    rt: Rt,
    who: Who,
    idempotency_key: OptionalKey = None,
) -> dict[str, Any]:
    key = key_of(who, idempotency_key, f"POST /api/v1/cases/{code}/cell", body.model_dump(mode="json"))
    out, replayed = casework.place(
        svc, rt, who, code, body.cell, version=body.version, key=key, address=client_address(request)
    )
    return answered(response, out, replayed)

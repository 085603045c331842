"""``/api/v1/mediators`` and ``/api/v1/units``: the roster a case is dispatched to.

Anyone signed in reads the roster of their area (and the areas above it, whose units serve it too:
the scope is applied in the SQL, geodata/sql/roster_*.sql); each mediator comes with the count of
their open cases that the caller sees (one above the caller's area also works other areas' cases:
those are neither counted nor listed). Phones are shown to the roles that see personal data and masked for the others
(geodata/masking.py: ``****5678``). Only an admin adds or changes a row (POST, PATCH), each change
with its admin_events row (services/roster.py) and, with an Idempotency-Key, done once however often
it is sent; ``"active": false`` deactivates — rows are never deleted, an old case's timeline names them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api.auth import Principal, principal
from api.cases import require_json
from api.deps import role_in, services
from api.guard import client_address
from api.idempotency import OptionalKey, answered, key_of, keyed
from api.openapi import READ, WRITE, answers
from api.params import _whole_number
from geodata import idempotency, masking, roster
from geodata.db import writing
from geodata.queries import iso
from services import roster as changes
from services.roster import Table
from services.runtime import Services

router = APIRouter(prefix="/api/v1", tags=["roster"])
Svc = Annotated[Services, Depends(services)]
Who = Annotated[Principal, Depends(principal)]
ADMINS = frozenset({"admin"})

AREA = r"^[0-9]{6}([0-9]{3}){0,3}$"
PHONE = r"^\+?[0-9][0-9 \-]{3,18}[0-9]$"
TYPE = r"^[a-z][a-z0-9_]{1,40}$"
# A name: no control characters, and not a spreadsheet formula (= + - @ first); as the forms refuse.
NAME = r"^[^\x00-\x20\x7f-\xa0\u2028\u2029\ufeff=+\-@][^\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]*$"
Level = Literal["banner", "town", "village", "grid"]
Kind = Literal[
    "committee", "professional", "justice_office", "police_station", "court", "petition", "hotline", "department"
]
RULES = (
    "422 names the field when a rule the schema cannot say is broken: the area code must be an area in the "
    "database, the level (default: the area code's) must be the area's, specialties must be active case types; "
    "a mediator's unit, centre (code), van and user must exist. 409: the same unit (area and name), the same "
    "mediator (area, name and phone), or a user who is already another mediator."
)


def _phone(who: Principal, phone: str | None) -> str | None:
    if phone is None or masking.sees_personal_data(who.role):
        return phone
    return masking.mask_number(phone)


def mediator_out(row: Mapping[str, Any], who: Principal) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "name": row["name"],
        "phone": _phone(who, row["phone"]),
        "level": row["level"],
        "area_code": row["area_code"],
        "area_name": row["area_name"],
        "specialties": list(row["specialties"]),
        "active": row["active"],
        "unit": {"id": row["unit_id"], "name": row["unit_name"]} if row["unit_id"] is not None else None,
        "centre": {"code": row["centre_code"], "name": row["centre_name"]} if row["center_id"] is not None else None,
        "van": row["van_id"],
        "user": row["user_name"],
        "open_cases": row["open_cases"],
        "updated_at": iso(row["updated_at"]),
    }
    if "cases" in row:
        out["cases"] = [{**c, "deadline": iso(c["deadline"])} for c in row["cases"]]
    return out


def unit_out(row: Mapping[str, Any], who: Principal) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "level": row["level"],
        "area_code": row["area_code"],
        "area_name": row["area_name"],
        "phone": _phone(who, row["phone"]),
        "specialties": list(row["specialties"]),
        "active": row["active"],
        "mediators": row["mediators"],
        "open_cases": row["open_cases"],
        "updated_at": iso(row["updated_at"]),
    }


# --- reads ------------------------------------------------------------------------------------------

AreaQ = Annotated[str | None, Query(pattern=AREA, description="Only the roster inside this area.")]
LevelQ = Annotated[Level | None, Query(description="Only this level.")]
ActiveQ = Annotated[bool | None, Query(description="true (default): the active ones; false: the deactivated.")]
LimitQ = Annotated[int, Query(ge=1, le=2000)]
OffsetQ = Annotated[int, Query(ge=0, le=1_000_000)]


@router.get(
    "/mediators",
    summary="The mediators of the caller's area (and above it), each with their open cases' count",
    responses=answers(*READ),
)
def list_mediators(
    svc: Svc,
    who: Who,
    area: AreaQ = None,
    level: LevelQ = None,
    specialty: Annotated[str | None, Query(pattern=TYPE, description="A case type code they take.")] = None,
    active: ActiveQ = True,
    limit: LimitQ = 500,
    offset: OffsetQ = 0,
) -> dict[str, Any]:
    flt = roster.MediatorFilter(area, level, specialty, active, limit, offset)
    with svc.pool.connection() as conn:
        rows = roster.list_mediators(conn, who.area, flt)
    return {"mediators": [mediator_out(r, who) for r in rows]}


@router.get(
    "/mediators/{mediator_id}",
    summary="One mediator with their open cases (soonest deadline first); 404 outside the caller's area",
    responses=answers(*READ),
)
def get_mediator(svc: Svc, who: Who, mediator_id: Annotated[int, Path(ge=1, le=2**62)]) -> dict[str, Any]:
    with svc.pool.connection() as conn:
        return mediator_out(roster.get_mediator(conn, who.area, mediator_id), who)


@router.get(
    "/units",
    summary="The units of the caller's area (and above it), with their mediators' and open cases' counts",
    responses=answers(*READ),
)
def list_units(
    svc: Svc,
    who: Who,
    area: AreaQ = None,
    kind: Annotated[Kind | None, Query(description="Only this kind.")] = None,
    level: LevelQ = None,
    active: ActiveQ = True,
    limit: LimitQ = 500,
    offset: OffsetQ = 0,
) -> dict[str, Any]:
    flt = roster.UnitFilter(area, kind, level, active, limit, offset)
    with svc.pool.connection() as conn:
        rows = roster.list_units(conn, who.area, flt)
    return {"units": [unit_out(r, who) for r in rows]}


@router.get("/units/{unit_id}", summary="One unit; 404 outside the caller's area", responses=answers(*READ))
def get_unit(svc: Svc, who: Who, unit_id: Annotated[int, Path(ge=1, le=2**62)]) -> dict[str, Any]:
    with svc.pool.connection() as conn:
        return unit_out(roster.get_unit(conn, who.area, unit_id), who)


# --- writes (admin) -----------------------------------------------------------------------------------


# JSON's types as the schema says them: a unit's id a whole number (4.0 is 4; "4" and true are not),
# active true or false (not "yes", not 1).
UnitId = Annotated[Annotated[int, Field(ge=1, le=2**62)], BeforeValidator(_whole_number)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: str | None = Field(default=None, pattern=PHONE)
    level: Level | None = Field(default=None, description="Default: the area code's level.")
    specialties: list[Annotated[str, Field(pattern=TYPE)]] | None = Field(default=None, max_length=20)
    active: bool | None = Field(default=None, strict=True)


class UnitIn(_Body):
    name: str = Field(min_length=1, max_length=100, pattern=NAME)
    kind: Kind
    area_code: str = Field(pattern=AREA)


class UnitPatch(_Body):
    name: str | None = Field(default=None, min_length=1, max_length=100, pattern=NAME)
    kind: Kind | None = None
    area_code: str | None = Field(default=None, pattern=AREA)


class _MediatorRefs(BaseModel):
    unit: UnitId | None = Field(default=None, description="The unit's id.")
    centre: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    van: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    user: str | None = Field(default=None, min_length=1, max_length=100, pattern=NAME, description="A user name.")


class MediatorIn(_Body, _MediatorRefs):
    name: str = Field(min_length=1, max_length=50, pattern=NAME)
    area_code: str = Field(pattern=AREA)


class MediatorPatch(_Body, _MediatorRefs):
    name: str | None = Field(default=None, min_length=1, max_length=50, pattern=NAME)
    area_code: str | None = Field(default=None, pattern=AREA)


def _fields(body: BaseModel, patch: bool) -> dict[str, Any]:
    """The body as the roster's fields: a PATCH's only those sent (null clears a link)."""
    given = body.model_dump(exclude_unset=patch)
    if not patch:
        given = {k: v for k, v in given.items() if v is not None}
    if "unit" in given and given["unit"] is not None:
        given["unit"] = str(given["unit"])
    if patch:  # null clears what may be empty (phone, level, unit, centre, van, user), and nothing else
        given = {k: v for k, v in given.items() if v is not None or k in _CLEARABLE}
    return given


_CLEARABLE = frozenset({"phone", "level", "unit", "centre", "van", "user"})


_ADMIN = [Depends(role_in(ADMINS, "change the roster (admin only)")), Depends(require_json)]


_TABLES: dict[
    str, tuple[Callable[..., Mapping[str, Any]], Callable[[Mapping[str, Any], Principal], dict[str, Any]]]
] = {"units": (roster.get_unit, unit_out), "mediators": (roster.get_mediator, mediator_out)}


def _save(
    svc: Services,
    who: Principal,
    request: Request,
    response: Response,
    key: str | None,
    body: BaseModel,
    table: Table,
    ident: int | None = None,
) -> dict[str, Any]:
    """Add a row of ``table`` (``ident`` None: 201) or change row ``ident`` (200), with its
    Idempotency-Key: a retry of a done request gets the first answer again."""
    get, shown = _TABLES[table]
    status = 201 if ident is None else 200
    operation = f"{request.method} {request.url.path}"
    idem = key_of(who, key, operation, body.model_dump(mode="json", exclude_unset=True))

    def write(conn: psycopg.Connection[Any]) -> dict[str, Any]:
        address = client_address(request.scope)
        if ident is None:
            row_id = changes.create(conn, who, address, table, _fields(body, False))
        else:
            row_id = ident
            changes.update(conn, who, address, table, ident, _fields(body, True))
        return shown(get(conn, None, row_id), who)

    with writing(svc.pool) as conn:
        out, replayed = idempotency.once(conn, idem, status, lambda: write(conn))
    return answered(response, out, replayed, status)


@router.post(
    "/units",
    status_code=201,
    dependencies=_ADMIN,
    summary="Add a unit (admin)",
    description=RULES,
    responses=answers(*WRITE, ok=keyed(201, "The unit")),
)
def create_unit(
    svc: Svc, who: Who, body: UnitIn, request: Request, response: Response, idempotency_key: OptionalKey = None
) -> dict[str, Any]:
    return _save(svc, who, request, response, idempotency_key, body, "units")


@router.patch(
    "/units/{unit_id}",
    dependencies=_ADMIN,
    summary="Change a unit (admin); active false deactivates it",
    description=RULES,
    responses=answers(*WRITE, ok=keyed(200, "The unit")),
)
def update_unit(
    svc: Svc,
    who: Who,
    unit_id: Annotated[int, Path(ge=1, le=2**62)],
    body: UnitPatch,
    request: Request,
    response: Response,
    idempotency_key: OptionalKey = None,
) -> dict[str, Any]:
    return _save(svc, who, request, response, idempotency_key, body, "units", unit_id)


@router.post(
    "/mediators",
    status_code=201,
    dependencies=_ADMIN,
    summary="Add a mediator (admin)",
    description=RULES,
    responses=answers(*WRITE, ok=keyed(201, "The mediator")),
)
def create_mediator(
    svc: Svc, who: Who, body: MediatorIn, request: Request, response: Response, idempotency_key: OptionalKey = None
) -> dict[str, Any]:
    return _save(svc, who, request, response, idempotency_key, body, "mediators")


@router.patch(
    "/mediators/{mediator_id}",
    dependencies=_ADMIN,
    summary="Change a mediator (admin); active false deactivates them, null clears a unit, centre, van or user",
    description=RULES,
    responses=answers(*WRITE, ok=keyed(200, "The mediator")),
)
def update_mediator(
    svc: Svc,
    who: Who,
    mediator_id: Annotated[int, Path(ge=1, le=2**62)],
    body: MediatorPatch,
    request: Request,
    response: Response,
    idempotency_key: OptionalKey = None,
) -> dict[str, Any]:
    return _save(svc, who, request, response, idempotency_key, body, "mediators", mediator_id)

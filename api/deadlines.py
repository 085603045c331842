"""``/api/v1/deadlines``: deadlines per banner or for the whole league (issue 16 item 2).

GET: anyone signed in reads the effective rules (hours per level, max attempts) of the league and of
the banners inside their area, each value with where it comes from (``settings``, ``league``,
``banner``). PUT: an admin sets (or, with ``null``, clears) what one area's row sets — an admin
scoped to a banner that banner's only, an unscoped (or root-scoped) admin the league's or any
banner's — with its admin_events row in the same transaction (services/deadlines.py, as ``yitu
deadlines`` does). The process answering reloads its rules at once; the others within seconds.
New deadlines apply to cases as they reach a level from then on; a case keeps the deadline it has.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, principal
from api.cases import require_json
from api.deps import role_in, runtime, services
from api.guard import client_address
from api.idempotency import OptionalKey, answered, key_of, keyed
from api.openapi import READ, WRITE, answers
from geodata import deadlines, idempotency
from geodata.db import writing
from geodata.deadlines import MAX_ATTEMPTS, MAX_HOURS
from geodata.errors import Invalid
from geodata.queries import iso
from services import deadlines as rules
from services.runtime import Services
from services.scheduler import CasesRuntime

router = APIRouter(prefix="/api/v1", tags=["deadlines"])
Svc = Annotated[Services, Depends(services)]
Rt = Annotated[CasesRuntime, Depends(runtime)]
Who = Annotated[Principal, Depends(principal)]
ADMINS = frozenset({"admin"})
AREA = r"^([0-9]{4}|[0-9]{6})$"
Level = Literal["grid", "village", "town", "banner"]
RULES = (
    "422 names the field when a rule the schema cannot say is broken: the area must be the league's or a "
    "banner in the database; level and hours go together (hours null: the level's own hours cleared); the "
    "grid's hours are at most 720; something must change. 403: not an admin, or an admin scoped to another "
    "banner (the league's rules need an unscoped admin)."
)


def _shown(area: dict[str, Any]) -> dict[str, Any]:
    return {**area, "updated_at": iso(area["updated_at"])}


@router.get(
    "/deadlines",
    summary="The deadline rules of the league and the banners in the caller's area, and where each comes from",
    responses=answers(*READ),
)
def list_deadlines(svc: Svc, rt: Rt, who: Who) -> dict[str, Any]:
    with svc.pool.connection() as conn:
        out = rules.listing(conn, rt.rules.defaults, who.area)
    return {**out, "areas": [_shown(a) for a in out["areas"]]}


class DeadlineIn(BaseModel):
    """One area's change: ``hours`` for ``level`` (null: back to the level above), and/or
    ``max_attempts`` (null: back to the level above)."""

    model_config = ConfigDict(extra="forbid")
    area: str = Field(pattern=AREA, description="A banner's code (6 digits), or the league's (4 digits).")
    level: Level | None = Field(default=None, description="The level whose hours are set (with hours).")
    hours: float | None = Field(
        default=None, ge=0, le=MAX_HOURS["banner"], description="Hours at that level (grid: at most 720); 0: that day."
    )
    max_attempts: int | None = Field(
        default=None, ge=1, le=MAX_ATTEMPTS, description="Mediation attempts per level before escalation is proposed."
    )


def _change(body: DeadlineIn) -> deadlines.Change:
    """The body as a change: what it sets, and what it clears (a field sent as null)."""
    sent = body.model_fields_set
    if "hours" in sent and body.level is None:
        raise Invalid("hours need a level: grid, village, town or banner", field="level")
    if body.level is not None and "hours" not in sent:
        raise Invalid(f"give the hours for the {body.level} level (null: back to the level above)", field="hours")
    level = deadlines.check_level(body.level) if body.level is not None else None
    hours = {level: body.hours} if level and body.hours is not None else {}
    clear = {
        *([level] if level and body.hours is None else []),
        *(["max_attempts"] if "max_attempts" in sent and body.max_attempts is None else []),
    }
    return deadlines.Change(body.area, hours, body.max_attempts, frozenset(clear))


@router.put(
    "/deadlines",
    dependencies=[Depends(role_in(ADMINS, "change deadlines (admin only)")), Depends(require_json)],
    summary="Set or clear the league's or a banner's deadlines (admin, within their area)",
    description=RULES,
    responses=answers(*WRITE, ok=keyed(200, "The area's effective rules afterwards")),
)
def put_deadlines(
    svc: Svc,
    rt: Rt,
    who: Who,
    body: DeadlineIn,
    request: Request,
    response: Response,
    idempotency_key: OptionalKey = None,
) -> dict[str, Any]:
    wanted = _change(body)
    idem = key_of(who, idempotency_key, f"PUT {request.url.path}", body.model_dump(mode="json", exclude_unset=True))

    def write(conn: psycopg.Connection[Any]) -> dict[str, Any]:
        return _shown(rules.change(conn, who, client_address(request.scope), wanted, rt.rules.defaults))

    with writing(svc.pool) as conn:
        out, replayed = idempotency.once(conn, idem, 200, lambda: write(conn))
    rt.rules.refresh()  # this process at once; the others at their next look (services/deadlines.py)
    return answered(response, out, replayed)

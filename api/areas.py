"""``/api/v1/areas/{code}``: one area of the four-level grid, its children, stats and cases.

Aggregates carry no personal data, but a scoped token (a grid worker's) still sees only the
areas inside its own. The stats are one GROUPING SETS pass over the area's grid-chain column.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from api import errors
from api.auth import Principal, principal
from api.cases import AREA, CaseFilters, client_address
from api.deps import runtime, services
from api.openapi import READ, answers
from api.params import Day
from geodata import areas_stats, queries
from geodata.clock import day_start
from services.runtime import Services
from services.scheduler import CasesRuntime

router = APIRouter(prefix="/api/v1/areas", tags=["areas"], responses=answers(*READ))

Svc = Annotated[Services, Depends(services)]
Who = Annotated[Principal, Depends(principal)]
Code = Annotated[str, Path(pattern=AREA)]


def _area(conn: Any, code: str, who: Principal) -> dict[str, Any]:
    who.require_area(code)
    found = queries.area_summary(conn, code)
    if found is None:
        raise errors.NotFound(f"no area with code {code}", field="code")
    return found


@router.get("/{code}", summary="One area: name, level, parent, bounds and its ancestors")
def get_area(code: Code, svc: Svc, who: Who) -> dict[str, Any]:
    with svc.reading(alone=True) as conn:
        out = _area(conn, code, who)
        out["ancestors"] = queries.area_ancestors(conn, code)
    return out


@router.get("/{code}/children", summary="The areas one level down")
def get_children(code: Code, svc: Svc, who: Who) -> dict[str, Any]:
    with svc.reading(alone=True) as conn:
        _area(conn, code, who)
        return {"code": code, "children": queries.area_children(conn, code)}


@router.get("/{code}/stats", summary="Counts by step, type and level; resolution rate, village share, overdue")
def get_stats(
    code: Code,
    svc: Svc,
    who: Who,
    since: Annotated[Day | None, Query(description="First day (China time), YYYY-MM-DD")] = None,
    until: Annotated[Day | None, Query(description="Last day (China time), YYYY-MM-DD; not before since")] = None,
) -> dict[str, Any]:
    if since and until and until < since:
        raise errors.Invalid("until is before since", field="until")
    now = datetime.now(UTC)
    with svc.reading(alone=True) as conn:
        _area(conn, code, who)
        stats = areas_stats.area_stats(conn, code, now, since=day_start(since), until=day_start(until, end=True))
    return {"code": code, "since": since, "until": until, **stats}


@router.get("/{code}/cases", summary="An area's cases, newest first (masked for viewers)")
def get_area_cases(
    code: Code,
    request: Request,
    svc: Svc,
    who: Who,
    rt: Annotated[CasesRuntime, Depends(runtime)],
    filters: Annotated[CaseFilters, Depends()],
) -> dict[str, Any]:
    now = datetime.now(UTC)
    with svc.reading() as conn, svc.writable(conn) as log:  # the audit row: on the primary
        _area(conn, code, who)
        page = filters.page(
            conn,
            code,
            who,
            rt.rules,
            now,
            route="GET /api/v1/areas/{code}/cases",
            address=client_address(request),
            log=log,
        )
        return {"code": code, **page}

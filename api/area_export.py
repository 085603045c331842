"""``GET /api/v1/areas/{code}/cases.csv``: the area view's table as CSV, with the same filters.

No personal data: code, type, step, level, times and grid cell only — stricter than the viewer's
mask (geodata/masking.py), since the route names no reader and a file travels further than a
screen. UTF-8 with a BOM so that Excel, which command-centre staff use, opens the Chinese text
correctly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from api.deps import services
from api.errors import Invalid, NotFound
from api.openapi import CSV, READ, answers, content
from api.params import Day
from geodata import queries
from geodata.clock import day_start
from geodata.workflow import STEPS
from services.runtime import Services

router = APIRouter(prefix="/api/v1/areas", tags=["areas"])
STEP = "^(" + "|".join(STEPS) + ")$"


@router.get(
    "/{code}/cases.csv",
    summary="An area's cases as CSV (filters as in the area view)",
    response_class=StreamingResponse,
    responses=answers(*READ, ok={200: content(CSV, "The cases, UTF-8 with a BOM")}),
)
def cases_csv(
    svc: Annotated[Services, Depends(services)],
    code: Annotated[str, Path(pattern=r"^[0-9]{6}([0-9]{3}){0,3}$")],
    step: Annotated[str | None, Query(pattern=STEP)] = None,
    type: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{1,40}$")] = None,
    since: Annotated[Day | None, Query(description="First day (China time), YYYY-MM-DD")] = None,
    until: Annotated[Day | None, Query(description="Last day (China time), YYYY-MM-DD; not before since")] = None,
) -> StreamingResponse:
    if since and until and until < since:
        raise Invalid("until is before since", field="until")
    flt = queries.CaseFilter(step=step, type=type, since=day_start(since), until=day_start(until, end=True))
    with svc.pool.connection() as conn:
        if queries.area_summary(conn, code) is None:
            raise NotFound(f"no area with code {code}", field="code")
        rows = queries.area_cases_page(conn, code, flt, limit=1_000_000)

    def lines() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(
            ["code", "type", "type_zh", "step", "level", "reported_at", "deadline", "grid", "grid_name", "overdue"]
        )
        yield "\ufeff" + buf.getvalue()
        for r in rows:
            buf.seek(0)
            buf.truncate()
            writer.writerow(
                [
                    r["code"],
                    r["type"],
                    r["type_zh"],
                    r["step"],
                    r["level"],
                    r["reported_at"].isoformat(),
                    r["deadline"].isoformat() if r["deadline"] else "",
                    r["grid"] or "",
                    r["grid_name"] or "",
                    "1" if r["overdue"] else "0",
                ]
            )
            yield buf.getvalue()

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="cases-{code}.csv"'},
    )

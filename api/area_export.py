"""``GET /api/v1/areas/{code}/cases.csv``: the area view's table as CSV, with the same filters.

The rows come from a server-side cursor a few thousand at a time while the response streams, so a
banner of a million cases costs no more memory than a village; its statements run under the export
budget (``YITU_EXPORT_STATEMENT_TIMEOUT_MS``) instead of the reads' one.

No personal data: code, type, step, level, times and grid cell only — stricter than the viewer's
mask (geodata/masking.py), since the route names no reader and a file travels further than a
screen. UTF-8 with a BOM so that Excel, which command-centre staff use, opens the Chinese text
correctly.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from api.auth import Principal, principal
from api.deps import services
from api.errors import Invalid, NotFound
from api.openapi import CSV, READ, answers, content
from api.params import Day
from geodata import queries
from geodata.clock import CST, day_start
from geodata.db import budget
from geodata.workflow import STEPS
from services.identity import scope_of
from services.runtime import Services

router = APIRouter(prefix="/api/v1/areas", tags=["areas"])
Who = Annotated[Principal, Depends(principal)]
STEP = "^(" + "|".join(STEPS) + ")$"


@router.get(
    "/{code}/cases.csv",
    summary="An area's cases as CSV (filters as in the area view)",
    response_class=StreamingResponse,
    responses=answers(*READ, ok={200: content(CSV, "The cases, UTF-8 with a BOM")}),
)
def cases_csv(
    svc: Annotated[Services, Depends(services)],
    who: Who,
    code: Annotated[str, Path(pattern=r"^[0-9]{6}([0-9]{3}){0,3}$")],
    step: Annotated[str | None, Query(pattern=STEP)] = None,
    type: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{1,40}$")] = None,
    since: Annotated[Day | None, Query(description="First day (China time), YYYY-MM-DD")] = None,
    until: Annotated[Day | None, Query(description="Last day (China time), YYYY-MM-DD; not before since")] = None,
) -> StreamingResponse:
    if since and until and until < since:
        raise Invalid("until is before since", field="until")
    flt = queries.CaseFilter(step=step, type=type, since=day_start(since), until=day_start(until, end=True))
    who.require_area(code)  # 403 outside the reader's area; the SQL filters by it too
    with svc.reading() as conn:
        if queries.area_summary(conn, code) is None:
            raise NotFound(f"no area with code {code}", field="code")
    chunks = _chunks(svc, code, flt, scope_of(who))
    # The first chunk is read here, in the route: the cursor's first fetch sorts the selection, and
    # a timeout or an outage there is still a 503 in the one JSON shape, not a cut-off download.
    first = next(chunks)
    return StreamingResponse(
        itertools.chain([first], chunks),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="cases-{code}.csv"'},
    )


CHUNK = 64 * 1024  # characters per piece of the response: a thread hop per row would cost more than the row


def _chunks(svc: Services, code: str, flt: queries.CaseFilter, scope: str | None) -> Iterator[str]:
    """The CSV in pieces of about CHUNK characters, read from a server-side cursor in a transaction of
    its own (held while the client downloads: the export budget bounds how long it may idle)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    buf.write("\ufeff")
    writer.writerow(
        ["code", "type", "type_zh", "step", "level", "reported_at", "deadline", "grid", "grid_name", "overdue"]
    )
    limit = svc.settings.export_statement_timeout_ms
    with svc.reading() as conn, conn.transaction():
        budget(conn, statement_timeout_ms=limit, idle_in_transaction_ms=limit)
        rows = queries.area_cases_all(conn, code, flt, scope=scope)
        first = next(rows, None)  # the first fetch runs before anything is sent
        for r in itertools.chain([first] if first is not None else [], rows):
            writer.writerow(
                [
                    r["code"],
                    r["type"],
                    r["type_zh"],
                    r["step"],
                    r["level"],
                    r["reported_at"].astimezone(CST).isoformat(),  # China time, its offset written
                    r["deadline"].astimezone(CST).isoformat() if r["deadline"] else "",
                    r["grid"] or "",
                    r["grid_name"] or "",
                    "1" if r["overdue"] else "0",
                ]
            )
            if buf.tell() >= CHUNK:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
    yield buf.getvalue()

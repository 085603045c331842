"""``GET /api/v1/search``: the search box's answer over HTTP — cases by code prefix, by a party's
name or phone (for roles that see parties), by a word of the description, and areas by name or code.

What a reader finds, and how they see it, is decided in geodata/search.py (scope in the SQL, parties
per geodata/masking.py); a page of unmasked parties is logged as a read of personal data, as the
case lists are.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from api import errors
from api.auth import Principal, principal
from api.cases import client_address
from api.deps import services
from api.openapi import READ, answers
from geodata import search as finder
from services import audit
from services.runtime import Services

router = APIRouter(prefix="/api/v1", tags=["search"], responses=answers(*READ))

# 1 to 100 characters, no control characters, not only spaces: what the schema says is what is taken
# (JSON Schema and Python read these escapes alike).
QUERY = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"


@router.get(
    "/search", summary="Find cases by code prefix, party name or phone, words of the description; areas by name or code"
)
def search(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(principal)],
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=finder.MAX_QUERY,
            pattern=QUERY,
            description="Taken literally (%, _ and \\ are characters); a whole case code gives `open`",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=finder.MAX_LIMIT, description="Results per group")] = 10,
) -> dict[str, Any]:
    problem = finder.check_query(q)
    if problem:
        raise errors.Invalid(f"q: {problem}", field="q")
    with svc.reading() as conn:
        found = finder.search(conn, q, finder.Reader(who.role, who.area), limit)
        with svc.writable(conn) as log:  # the audit row goes to the primary when the read came from the replica
            audit.personal_data_read(log, who, finder.cases_shown(found), "GET /api/v1/search", client_address(request))
    return found

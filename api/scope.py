"""Who reads, for the routes that a page's browser fetches by URL (layers, the CSV export).

Those routes have no bearer token of their own when a page asks: the guard (part "signin",
api/guard.py) binds the page's session as ``services.identity.current()``. An integration may
still send ``Authorization: Bearer``; then its token's principal reads. Until the guard lands, a
request with neither reads as today (``identity.who_is_asking`` returns None: the whole
territory, masked as a room screen).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.auth import principal
from services import identity
from services.identity import Principal


async def reader(request: Request) -> Principal | None:
    """The dependency: the bearer token's principal if the request carries one (401 if it is
    not valid), else the principal the guard bound (identity.who_is_asking)."""
    if request.headers.get("authorization"):
        return await principal(request)
    return identity.who_is_asking()


Reader = Annotated[Principal | None, Depends(reader)]

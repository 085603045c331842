"""The FastAPI dependencies every router shares: the process's services and the case runtime.

Both are opened by the app factory's lifespan (dashboard/app.py) and live on ``app.state``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Annotated

from fastapi import Depends, Request

from api.auth import Principal, principal
from geodata.errors import Forbidden
from services.runtime import Services
from services.scheduler import CasesRuntime


def services(request: Request) -> Services:
    """Dependency: the PostGIS pool, the Redis client and the settings of this process."""
    svc: Services = request.app.state.services
    return svc


def role_in(roles: Collection[str], doing: str) -> Callable[[Principal], Awaitable[None]]:
    """Dependency: 403 unless the caller's role is one of ``roles``, before the body is read and
    validated (a viewer's report is refused as a viewer's, whatever its body holds). The route's
    finer checks (which van, which area, which action) still run on the body."""

    async def check(who: Annotated[Principal, Depends(principal)]) -> None:
        if who.role not in roles:
            raise Forbidden(f"a {who.role} token cannot {doing}", field="Authorization")

    return check


def runtime(request: Request) -> CasesRuntime:
    """Dependency: the case runtime (event stream client, overdue scheduler) the lifespan started."""
    rt: CasesRuntime = request.app.state.cases_runtime
    return rt

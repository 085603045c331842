"""The FastAPI dependencies every router shares: the process's services and the case runtime.

Both are opened by the app factory's lifespan (dashboard/app.py) and live on ``app.state``.
"""

from __future__ import annotations

from fastapi import Request

from services.runtime import Services
from services.scheduler import CasesRuntime


def services(request: Request) -> Services:
    """Dependency: the PostGIS pool, the Redis client and the settings of this process."""
    svc: Services = request.app.state.services
    return svc


def runtime(request: Request) -> CasesRuntime:
    """Dependency: the case runtime (event stream client, overdue scheduler) the lifespan started."""
    rt: CasesRuntime = request.app.state.cases_runtime
    return rt

"""``GET /healthz``: is PostGIS and Redis reachable from this process?

Anyone (a load balancer, a monitor) gets only 200 ``{"status": "ok"}`` or 503 ``{"status": "degraded"}``.
A signed-in admin gets the parts: 200 ``{"status": "ok", "postgis": "<version>", "redis": "ok", …}``;
503 with the failing part(s) named in ``failing`` and an error text in place of the version or "ok".
Beside them: the scheduler's jobs (each one's last run, last success, last error, failures) and who
runs them (``leader``: this process; ``process``: its host:pid; ``leader_process``: the process that
leads now, services/leader.py — one across all app processes), the rows
that fell into the history tables' DEFAULT partitions (0 while the partitions are made ahead), and
``outbox``: ``pending`` (committed events not yet in the stream) and this process's ``relay``
(leader or not, last run, last publish, last error; services/relay.py). With a replica
(``YITU_DATABASE_READ_URL``), ``replica``: whether the read-heavy paths read there now (``in_use``,
``reads``: replica or primary), why not (``reason``: lagging, unreachable …), the lag and the WAL
positions of the last background check (services/replica.py), and how many reads made for a screen's
event it had not replayed yet went to the primary (``behind_floor``). A replica that is down or lags does
not make the answer 503: the primary serves its reads.
Each probe has a short timeout, so a dead service makes the answer slow by seconds, never hang.
"""

from __future__ import annotations

import logging
from typing import Annotated

import psycopg
import redis
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from api.deps import services
from geodata import outbox, partitions
from services import identity
from services.runtime import Services

log = logging.getLogger("yitu.health")
router = APIRouter(tags=["health"])


def _postgis(svc: Services, body: dict[str, object] | None) -> tuple[bool, str]:
    """PostGIS's version; with ``body``, also the rows in the default partitions (an admin's detail:
    a load balancer polling /healthz costs one query)."""
    try:
        with svc.pool.connection(timeout=svc.settings.db_connect_timeout) as conn:
            row = conn.execute("SELECT postgis_lib_version()").fetchone()
            if body is not None:
                body["rows_in_default_partitions"] = partitions.rows_in_default(conn)
                body["outbox"] = {"pending": outbox.pending(conn)}
        return True, str(row[0]) if row else "unknown"
    except psycopg.errors.UndefinedFunction:
        return False, "error: the PostGIS extension is not installed in this database (run `yitu db migrate`)"
    except PoolTimeout:
        return False, "unreachable: no connection within timeout"
    except psycopg.Error as exc:
        return False, f"error: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def _redis(svc: Services) -> tuple[bool, str]:
    try:
        svc.redis.ping()
        return True, "ok"
    except redis.RedisError as exc:
        return False, f"unreachable: {type(exc).__name__}"


@router.get(
    "/healthz",
    summary="Liveness of PostGIS and Redis",
    responses={
        200: {"description": "Both answer"},
        503: {
            "description": "PostGIS or Redis does not answer (`failing` names which)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    },
)
def healthz(request: Request, svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    who = identity.current()
    admin = who is not None and who.role == "admin"
    extra: dict[str, object] = {}
    pg_ok, pg = _postgis(svc, extra if admin else None)  # the partitions' figures: for an admin only
    redis_ok, rd = _redis(svc)
    if not admin:  # versions and errors tell an attacker too much
        if not (pg_ok and redis_ok):  # the parts go to the log, where the operator looks
            log.warning("health check failed postgis=%r redis=%r", pg, rd)
        return JSONResponse(
            {"status": "ok"} if pg_ok and redis_ok else {"status": "degraded"}, 200 if pg_ok and redis_ok else 503
        )
    body: dict[str, object] = {"status": "ok" if pg_ok and redis_ok else "unavailable", "postgis": pg, "redis": rd}
    body.update(extra)
    if svc.replica is not None:  # reads from a streaming replica: in use, or why the primary serves them
        body["replica"] = svc.replica.status()
    runtime = getattr(request.app.state, "cases_runtime", None)
    if runtime is not None:
        body["scheduler"] = runtime.scheduler.status()
        if runtime.notifier is not None:  # the webhook's thread (services/notify.py)
            body["notify"] = runtime.notifier.status()
        ob = body.setdefault("outbox", {"pending": None})  # None: the database did not answer
        assert isinstance(ob, dict)
        ob["relay"] = runtime.relay.status()
    if not (pg_ok and redis_ok):
        failing = [name for name, ok in (("postgis", pg_ok), ("redis", redis_ok)) if not ok]
        body["failing"] = failing
        log.warning("health check failed failing=%s", ",".join(failing))
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)

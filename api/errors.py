"""The HTTP face of yitu's one error family (geodata/errors.py): the status table and the handlers.

Raise a :class:`YituError` anywhere (a kind, or a domain error deriving from one); the handler
turns it into ``{"error": code, "message": ..., "field": ...}`` with the status of its kind from
``STATUS``. Request validation errors (pydantic) become 422 with the offending field named.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from geodata.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    TooManyAttempts,
    TransitionConflict,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    YituError,
)

__all__ = [
    "STATUS",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "TooManyAttempts",
    "TransitionConflict",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "YituError",
    "install",
    "payload",
]

log = logging.getLogger("yitu.api")


STATUS: dict[type[YituError], int] = {
    Invalid: 422,
    UnsupportedMediaType: 415,
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooManyAttempts: 429,
    Unavailable: 503,
}


def _status_of(exc: YituError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _field_of(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def payload(exc: YituError) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """(status, JSON body, extra headers) of an error: the one shape every route answers with."""
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    if exc.field:
        body["field"] = exc.field
    body.update(exc.extra)
    headers = None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, Unavailable):
        headers = {"Retry-After": "5"}
    elif isinstance(exc, TooManyAttempts):
        headers = {"Retry-After": str(exc.extra.get("retry_after", 60))}
    return _status_of(exc), body, headers


def database_unavailable(exc: Exception) -> Unavailable:
    """The database down or gone mid-request (a pool timeout, a lost connection; also a deadlock
    or a cancelled statement): nothing of the request was committed, and trying again is the answer."""
    log.warning("database unavailable for a request error=%s", type(exc).__name__)
    return Unavailable("the database is unavailable; nothing was written, try again")


def install(app: FastAPI) -> None:
    @app.exception_handler(YituError)
    async def _yitu_error(_req: Request, exc: YituError) -> JSONResponse:
        status, body, headers = payload(exc)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    async def _database_unavailable(_req: Request, exc: Exception) -> JSONResponse:
        status, body, headers = payload(database_unavailable(exc))
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field_of(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")} for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        return JSONResponse(
            {
                "error": "invalid",
                "message": f"{first['field']}: {first['message']}",
                "field": first["field"],
                "errors": errors,
            },
            status_code=422,
        )

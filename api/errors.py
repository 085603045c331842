"""One error taxonomy, mapped to HTTP status codes in one place.

Raise a subclass of :class:`YituError` anywhere below the API; the handler turns it into
``{"error": code, "message": ..., "field": ...}`` with the status from ``STATUS``. Request
validation errors (pydantic) become 422 with the offending field named.
"""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

log = logging.getLogger("yitu.api")


class YituError(Exception):
    code = "error"

    def __init__(self, message: str, *, field: str | None = None, extra: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra or {}  # more keys for the JSON body (e.g. the allowed actions of a 409)


class BadRequest(YituError):
    code = "bad_request"


class NotFound(YituError):
    code = "not_found"


class Conflict(YituError):
    code = "conflict"


class TransitionConflict(Conflict):
    """A case workflow action that does not apply now; the body lists ``allowed`` actions."""

    code = "illegal_transition"


class Unauthorized(YituError):
    code = "unauthorized"


class Forbidden(YituError):
    code = "forbidden"


class ServiceUnavailable(YituError):
    code = "service_unavailable"


class UnsupportedMediaType(BadRequest):
    """The body is not in a format the endpoint reads (JSON endpoints want application/json)."""

    code = "unsupported_media_type"


class InvalidParameter(BadRequest):
    """A parameter that parses but makes no sense: 422, like the request validation errors."""

    code = "invalid"


STATUS: dict[type[YituError], int] = {
    InvalidParameter: 422,
    UnsupportedMediaType: 415,
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    ServiceUnavailable: 503,
}


def _status_of(exc: YituError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def _field_of(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def payload(exc: YituError) -> tuple[int, dict, dict[str, str] | None]:
    """(status, JSON body, extra headers) of an error: the one shape every route answers with."""
    body = {"error": exc.code, "message": exc.message}
    if exc.field:
        body["field"] = exc.field
    body.update(exc.extra)
    headers = None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, ServiceUnavailable):
        headers = {"Retry-After": "5"}
    return _status_of(exc), body, headers


def database_unavailable(exc: Exception) -> ServiceUnavailable:
    """The database down or gone mid-request (a pool timeout, a lost connection; also a deadlock
    or a cancelled statement): nothing of the request was committed, and trying again is the answer."""
    log.warning("database unavailable for a request error=%s", type(exc).__name__)
    return ServiceUnavailable("the database is unavailable; nothing was written, try again")


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
            {"field": _field_of(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        return JSONResponse(
            {"error": "invalid", "message": f"{first['field']}: {first['message']}", "field": first["field"], "errors": errors},
            status_code=422,
        )

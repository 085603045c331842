"""The HTTP face of yitu's one error family (geodata/errors.py): the status table and the handlers.

Raise a :class:`YituError` anywhere (a kind, or a domain error deriving from one); the handler
turns it into ``{"error": code, "message": ..., "field": ...}`` with the status of its kind from
``STATUS``. Request validation errors (pydantic) become 422 with the offending field named; the
framework's own refusals (an unknown path, a method the path does not take, a body that cannot be
read) are answered in the same shape. Under ``/api/`` nothing falls through to the dashboard's
pages: :func:`fallback_router` answers an unknown path 404 and a known path's other methods 405.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException
from starlette.routing import Match

from api.auth import principal
from geodata.db import database_unavailable
from geodata.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    OutcomeUnknown,
    PayloadTooLarge,
    PreconditionRequired,
    TimedOut,
    TooManyAttempts,
    TooManyConnections,
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
    "OutcomeUnknown",
    "PayloadTooLarge",
    "PreconditionRequired",
    "TimedOut",
    "TooManyAttempts",
    "TooManyConnections",
    "TransitionConflict",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "YituError",
    "database_unavailable",
    "fallback_router",
    "install",
    "payload",
]

log = logging.getLogger("yitu.api")


STATUS: dict[type[YituError], int] = {
    Invalid: 422,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PreconditionRequired: 428,
    TooManyConnections: 429,
    TooManyAttempts: 429,
    Unavailable: 503,
    OutcomeUnknown: 503,
}


def _status_of(exc: YituError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _field_of(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def _field_error(e: Mapping[str, Any]) -> dict[str, str]:
    if e.get("type") == "json_invalid":  # loc is ("body", <offset>): the body is at fault
        return {"field": "body", "message": f"not JSON: {e.get('ctx', {}).get('error', 'decode error')}"}
    return {"field": _field_of(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}


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
    elif isinstance(exc, OutcomeUnknown):  # the server may well be up: the retry (same key) tells
        headers = {"Retry-After": "1"}
    elif isinstance(exc, TooManyAttempts):
        headers = {"Retry-After": str(exc.extra.get("retry_after", 60))}
    return _status_of(exc), body, headers


# The framework's refusals (starlette's HTTPException) by status: the ``error`` code of the one shape.
HTTP_CODES: dict[int, str] = {
    400: BadRequest.code,
    401: Unauthorized.code,
    403: Forbidden.code,
    404: NotFound.code,
    405: "method_not_allowed",
    409: Conflict.code,
    413: "payload_too_large",
    415: UnsupportedMediaType.code,
    422: Invalid.code,
    428: PreconditionRequired.code,
    429: "too_many_requests",
    503: Unavailable.code,
}
API_PREFIX = "/api/"


def allowed_methods(request: Request) -> list[str]:
    """The methods the API's routes take at this request's path (HEAD with GET), for ``Allow``."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        if route.methods and getattr(route, "include_in_schema", False):
            match, _ = route.matches({**request.scope, "method": "\x00"})  # a path that matches is PARTIAL
            if match is not Match.NONE:
                methods |= route.methods | ({"HEAD"} if "GET" in route.methods else set())
    return sorted(methods)


async def _caller_first(request: Request) -> JSONResponse | None:
    """A body the framework could not read is reported only to a known caller: without a valid
    identity the answer is the 401 it would have been had the body been fine. (FastAPI reads the
    body before the route's dependencies run; this puts authentication back in front of it.)"""
    if not request.url.path.startswith("/api/v1/"):
        return None
    try:
        await principal(request)
    except YituError as exc:
        return _yitu_answer(exc)
    return None


def _yitu_answer(exc: YituError) -> JSONResponse:
    status, body, headers = payload(exc)
    return JSONResponse(body, status_code=status, headers=headers)


_FALLBACK = "api_fallback"


def fallback_router() -> APIRouter:
    """The last API route: any other path under ``/api/`` is a JSON 404 (not the dashboard's page),
    and a known path asked with a method it does not take is a JSON 405 with ``Allow``.

    Mounted after every API router and before Dash, whose catch-all GET would otherwise answer
    ``GET /api/…`` with the dashboard's HTML and 200.
    """
    router = APIRouter()

    async def fallback(request: Request) -> JSONResponse:
        allowed = allowed_methods(request)
        if allowed:
            exc = HTTPException(405, f"{request.method} is not allowed here; use {', '.join(allowed)}")
            return _http_answer(exc, {"Allow": ", ".join(allowed)})
        return _http_answer(HTTPException(404, f"no API endpoint at {request.url.path}"), None)

    router.add_api_route(
        API_PREFIX + "{rest:path}",
        fallback,
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
        name=_FALLBACK,
        include_in_schema=False,
    )
    return router


def _http_answer(exc: HTTPException, headers: Mapping[str, str] | None) -> JSONResponse:
    status = exc.status_code
    body: dict[str, Any] = {"error": HTTP_CODES.get(status, "error"), "message": str(exc.detail)}
    if status in (400, 413):
        body["field"] = "body"  # the framework refuses a body it cannot read (or that is too large)
    return JSONResponse(body, status_code=status, headers=headers or exc.headers)


# Required headers whose absence is a 428 (a missing precondition), not a 422: a report's key.
_PRECONDITIONS = {("header", "Idempotency-Key")}


def install(app: FastAPI) -> None:
    @app.exception_handler(YituError)
    async def _yitu_error(_req: Request, exc: YituError) -> JSONResponse:
        return _yitu_answer(exc)

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    async def _database_unavailable(_req: Request, exc: Exception) -> JSONResponse:
        status, body, headers = payload(database_unavailable(exc))
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def _http_error(req: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400 and (refused := await _caller_first(req)) is not None:
            return refused
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(req))}
        return _http_answer(exc, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(req: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()) and (refused := await _caller_first(req)):
            return refused
        if any(e.get("type") == "missing" and tuple(e.get("loc", ())) in _PRECONDITIONS for e in exc.errors()):
            return _yitu_answer(
                PreconditionRequired(
                    "send an Idempotency-Key header with every report (a new one per report, the same one on "
                    "its retries)",
                    field="Idempotency-Key",
                )
            )
        errors = [_field_error(e) for e in exc.errors()]
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

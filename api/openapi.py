"""What ``/openapi.json`` promises: every status and content type a route can answer, and who may call it.

The routes declare their answers with :func:`answers` (``responses=``), all errors in the one
shape of api/errors.py (:class:`ErrorOut`). :func:`install` replaces the app's schema builder
with one that also

- declares the two ways to say who is asking (``bearer``: ``Authorization: Bearer``; ``session``:
  the ``yitu_session`` cookie of a signed-in person) and marks every operation that needs an
  identity with them (the routes that depend on :func:`api.auth.principal`);
- lists the active case types (``case_types``) as the enum of a report's ``type``, so that a
  client, and a schema-driven test, knows which values the route takes.

The schema is built once, on first request, while the database answers (a server started with
the database down builds it again on the next request).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field

from api.auth import principal

log = logging.getLogger("yitu.api")

__all__ = ["CSV", "GEOBUF", "GEOJSON", "READ", "WRITE", "ErrorOut", "answers", "content", "install"]

GEOJSON = "application/geo+json"
GEOBUF = "application/x-protobuf"
CSV = "text/csv"


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """The one shape of every refusal (api/errors.py): a kind, a message, the field at fault."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="The kind: invalid, unauthorized, forbidden, not_found, conflict, ...")
    message: str = Field(description="What is wrong, in English, for logs and API clients.")
    field: str | None = Field(default=None, description="The parameter, header or body field at fault.")
    errors: list[FieldError] | None = Field(default=None, description="422: every invalid field.")
    allowed: list[str] | None = Field(default=None, description="409 of a transition: the actions allowed now.")


_WHY: dict[int, str] = {
    400: "The body cannot be read (not UTF-8, or not JSON).",
    401: "No identity, or an unknown, expired or revoked one.",
    403: "The identity's role or area does not allow this.",
    404: "No such resource (or none that this identity may see).",
    405: "The path does not take this method (``Allow`` lists those it takes).",
    409: "The resource is not in a state that allows this.",
    413: "The body is larger than this route reads.",
    415: "The body is not JSON (send Content-Type: application/json).",
    422: "A parameter or body field is invalid; ``field`` names it.",
    428: "A precondition header is required.",
    429: "Too many attempts: wait for ``Retry-After`` seconds.",
    503: "``service_unavailable`` / ``timeout``: PostGIS is unavailable (or the query ran past its budget) and "
    "nothing was written; try again after ``Retry-After``. A write only: ``outcome_unknown``, the connection "
    "was lost while the change was being committed, so it may or may not have been written; send it again "
    "with the same ``Idempotency-Key``.",
}
# What a reading route can answer besides its success (401 / 403 / 429 also come from the guard in
# front of every route), and a writing one with a JSON body besides those.
READ = (401, 403, 404, 422, 429, 503)
WRITE = (*READ, 400, 409, 413, 415)


def answers(*statuses: int, ok: dict[int | str, dict[str, Any]] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: its success answers (``ok``) and its refusals, each in the one error shape."""
    out: dict[int | str, dict[str, Any]] = dict(ok or {})
    for status in sorted(set(statuses)):
        out[status] = {"model": ErrorOut, "description": _WHY[status]}
    return out


def content(media: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A success answer of another content type than JSON."""
    return {"description": description, "content": {media: {"schema": schema or {"type": "string"}}}}


def _needs_identity(dependant: Dependant) -> bool:
    return any(d.call is principal or _needs_identity(d) for d in dependant.dependencies)


def _case_types(app: FastAPI) -> list[str] | None:
    services = getattr(app.state, "services", None)
    if services is None:
        return None
    try:
        with services.pool.connection(timeout=services.settings.db_connect_timeout) as conn:
            rows = conn.execute("SELECT code FROM case_types WHERE active ORDER BY sort_order, code").fetchall()
    except (psycopg.Error, PoolTimeout) as exc:
        log.warning("openapi: case types unavailable error=%s", type(exc).__name__)
        return None
    return [str(r[0]) for r in rows]


def _build(app: FastAPI) -> tuple[dict[str, Any], bool]:
    """The schema, and whether it is complete (the case types were read)."""
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes, description=app.description)
    components = schema.setdefault("components", {})
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "A token from `yitu token create`."},
        "session": {"type": "apiKey", "in": "cookie", "name": "yitu_session", "description": "A signed-in person."},
    }
    either: list[dict[str, list[str]]] = [{"bearer": []}, {"session": []}]
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        if getattr(route, "include_in_schema", False) and route.methods and dependant and _needs_identity(dependant):
            for method in route.methods:
                operation = schema["paths"].get(route.path_format, {}).get(method.lower())
                if operation is not None:
                    operation["security"] = either
    types = _case_types(app)
    case_in = components.get("schemas", {}).get("CaseIn", {}).get("properties", {}).get("type")
    if types and case_in is not None:
        case_in["enum"] = types
    return schema, types is not None


def install(app: FastAPI) -> None:
    """Build ``/openapi.json`` with :func:`_build` (and keep it once it is complete)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema, complete = _build(app)
        if complete:
            app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

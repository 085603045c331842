"""Dash's callback route, with the callbacks run off the event loop.

Dash 4.4's FastAPI backend serves ``POST /_dash-update-component`` from an ``async`` view that calls
the callback in place (``dash/backends/_fastapi.py`` ``serve_callback``): a plain ``def`` callback —
all of yitu's, which read PostgreSQL — runs on the process's one event loop and holds it until it
returns. Every other request of the process waits meanwhile: under the command centre's mix (four
wall-figure callbacks a second of 100–150 ms each) ``GET /healthz`` took p50 7 ms but p95 68 ms at a
fifth of the rates (docs/scaling.md, "Callbacks off the event loop"). Dash's own WebSocket path
already sends a plain callback to a thread pool; this route does the same over HTTP: the callback
runs in Starlette's thread pool (the one FastAPI's plain routes run in) inside a copy of the
request's context (Dash's ``callback_context``, the current request, the guard's reader), and a
callback that is a coroutine is awaited on the loop as before.

:func:`install` swaps the route Dash added for this one, in place (the order of the routes stays),
and fails loudly if Dash no longer adds it where it did.
"""

from __future__ import annotations

from contextvars import copy_context
from inspect import iscoroutine
from typing import Any

import dash
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

NAME = "_dash-update-component"


def _dispatch(dash_app: dash.Dash) -> Any:
    """Dash's ``serve_callback`` view, step for step, with the callback's call in the thread pool."""

    async def dispatch(request: Request) -> Any:  # FastAPI passes it; Dash reads it from its context
        body = dash_app.backend.request_adapter().get_json()  # type: ignore[no-untyped-call]
        cb_ctx = dash_app._initialize_context(body)  # Dash's own steps (the module says why)
        func = dash_app._prepare_callback(cb_ctx, body)
        args = dash_app._inputs_to_vals(cb_ctx.inputs_list + cb_ctx.states_list)
        ctx = copy_context()
        call = dash_app._execute_callback(func, args, cb_ctx.outputs_list, cb_ctx)
        data = await run_in_threadpool(ctx.run, call)
        if iscoroutine(data):  # an async callback: only its coroutine was made in the thread
            data = await data
        return cb_ctx.dash_response.set_response(data=data)

    return dispatch


def install(dash_app: dash.Dash, app: FastAPI) -> None:
    """Serve Dash's callbacks with :func:`_dispatch` instead of Dash's view (same path, name, methods)."""
    path = dash_app.config.routes_pathname_prefix + NAME
    routes = app.router.routes
    for i, route in enumerate(routes):
        if isinstance(route, APIRoute) and route.path == path:
            routes[i] = APIRoute(
                path, _dispatch(dash_app), methods=sorted(route.methods or ()), name=route.name, include_in_schema=False
            )
            return
    raise RuntimeError(f"Dash did not add its callback route {path}: dashboard/callback_route.py needs a look")

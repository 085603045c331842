"""The app factory: one FastAPI application with the Dash dashboard mounted on it.

``create_app(settings)`` builds everything from the settings it is given; the PostGIS pool
and the Redis client are opened in the lifespan and closed on shutdown, so several processes
can run side by side, each with its own pools.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import dash
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from starlette.middleware.gzip import GZipMiddleware

from api import budgets, errors, openapi
from api.guard import Guard, enforce_callbacks
from api.routers import all_routers
from callbacks import admin as admin_callbacks
from callbacks import area as area_callbacks
from callbacks import case as case_callbacks
from callbacks import dispatch as dispatch_callbacks
from callbacks import inbox as inbox_callbacks
from callbacks import live as live_callbacks
from callbacks import pages as pages_callbacks
from callbacks import roster as roster_callbacks
from callbacks import search as search_callbacks
from callbacks import wall as wall_callbacks
from dashboard import callback_route, layout
from geodata.db import open_pool
from services import identity
from services import scheduler as cases_scheduler
from services.basemap import tile_sources
from services.live import LiveHub
from services.runtime import Services, open_redis
from services.settings import Settings

log = logging.getLogger("yitu.app")
ASSETS = Path(__file__).resolve().parent / "assets"


def _open_services(settings: Settings) -> Services:
    pool = open_pool(
        settings.database_dsn(),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout_ms=settings.statement_timeout_ms,
        idle_in_transaction_ms=settings.idle_in_transaction_timeout_ms,
    )
    return Services(settings=settings, pool=pool, redis=open_redis(settings.redis_dsn(), settings.redis_timeout))


def _offline_docs(app: FastAPI) -> str:
    """``/docs``: Swagger UI served from local files instead of FastAPI's CDN default (a command network
    may be offline): the files of the fastapi-offline package, whose Swagger UI 5 reads the OpenAPI 3.1
    FastAPI writes (swagger-ui-bundle's 4.15 could not: "does not specify a valid version field").
    Returns the page's HTML (fixed), whose inline script the Content-Security-Policy allows by hash."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    static = files("fastapi_offline") / "static"
    app.mount("/static/swagger", StaticFiles(directory=str(static)), name="swagger")
    page = bytes(
        get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="yitu 一图指挥 API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon.png",
        ).body
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page)

    return page.decode("utf-8")


def _area_pages_in_scope(app: FastAPI) -> None:
    """``GET /area/{code}`` of an area outside the reader's own answers 403 (the page is Dash's, so
    the refusal it renders is in the page's language: callbacks/pages.py ``refused``). Registered
    before Dash's routes; the page itself is Dash's catch-all's."""

    @app.get("/area/{code}", include_in_schema=False)
    async def area_page(code: str, request: Request) -> Response:
        # Dash's catch-all page route, added when the app starts (its path is "{path:path}")
        dash_page = next(r for r in app.router.routes if str(getattr(r, "path", "")).lstrip("/") == "{path:path}")
        page: Response = await dash_page.endpoint(request)  # type: ignore[attr-defined]
        who = identity.who_is_asking()
        if not who.sees_area(code):
            page.status_code = 403
        return page


def _admin_page(app: FastAPI) -> None:
    """``GET /admin``: Dash's page (callbacks/admin.py fills it). The guard lets only an admin through
    (anyone else gets the refusal page with 403, api/guard.py); the status says so here too."""

    @app.get("/admin", include_in_schema=False)
    async def admin_page(request: Request) -> Response:
        dash_page = next(r for r in app.router.routes if str(getattr(r, "path", "")).lstrip("/") == "{path:path}")
        page: Response = await dash_page.endpoint(request)  # type: ignore[attr-defined]
        who = identity.current()
        if who is None or who.role != "admin":
            page.status_code = 403
        return page


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = _open_services(settings)
        app.state.cases_runtime = cases_scheduler.start(app.state.services)
        app.state.live = LiveHub(settings.redis_dsn(), settings.redis_timeout)
        await app.state.live.start()
        log.info("yitu started lang=%s embedded=%s", settings.lang, settings.embedded)
        try:
            yield
        finally:
            await app.state.live.stop()
            app.state.cases_runtime.stop()
            app.state.services.close()
            log.info("yitu stopped; pools closed")

    app = FastAPI(
        title="yitu 一图指挥 API",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served below from local files: a command network may be offline
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)
    errors.install(app)
    openapi.install(app)  # /openapi.json: security schemes, the case types
    # API routes first: Dash adds a catch-all GET route for its pages.
    docs_html = _offline_docs(app)
    _area_pages_in_scope(app)
    _admin_page(app)
    for router in all_routers():
        app.include_router(router)

    dash_app = dash.Dash(
        __name__,
        # Dash 4 takes a FastAPI app here (dash[fastapi]); its annotation still reads bool | Callable.
        server=app,  # type: ignore[arg-type]
        assets_folder=str(ASSETS),
        external_stylesheets=["/theme.css"],  # the colours, shared with the sign-in page (api/signin.py)
        title=layout.page_title(settings.lang),
        update_title="",  # the tab's title stays while callbacks run ("" and None both mean that)
        serve_locally=True,
        suppress_callback_exceptions=True,  # pages are built per visit, after the frame
        websocket_allowed_origins=settings.websocket_origins,
    )
    callback_route.install(dash_app, app)  # the callbacks in the thread pool, not on the event loop
    dash_app.layout = layout.root(settings.lang)
    get_services = lambda: app.state.services  # noqa: E731 - the lifespan opens them after start
    for module in (pages_callbacks, wall_callbacks, area_callbacks, search_callbacks, inbox_callbacks):
        module.register(dash_app, get_services)
    dispatch_callbacks.register(dash_app, get_services, lambda: app.state.cases_runtime)
    case_callbacks.register(dash_app, get_services, lambda: app.state.cases_runtime)
    live_callbacks.register(dash_app, lambda: app.state.live, get_services)
    admin_callbacks.register(dash_app, get_services)
    roster_callbacks.register(dash_app, get_services)
    # Dash collects its assets on the first request; with the FastAPI backend the first page served
    # (say a shared /area/… link) would go out without them. Collect them now instead.
    dash_app._setup_server()
    enforce_callbacks(dash_app)  # each callback's declared roles (api/guard.py CALLBACKS)
    app.state.dash = dash_app
    # Who asks, and may they: every route, callback and the WebSocket (api/guard.py).
    app.add_middleware(Guard)
    # Around everything, the guard and Starlette's error layer included: body caps, WebSocket caps,
    # security headers.
    budgets.install(app, settings, _csp(dash_app, settings, budgets.inline_script_hashes(docs_html)))
    return app


def _csp(dash_app: dash.Dash, settings: Settings, more_hashes: list[str]) -> str:
    """The pages' Content-Security-Policy: Dash's (and /docs') inline scripts by hash, the base map's
    tile host only."""
    origins = [
        origin
        for source in tile_sources(settings)
        for origin in budgets.tile_origins([source.url], source.options.get("subdomains") or ())
    ]
    return budgets.content_security_policy([*dash_app.csp_hashes(), *more_hashes], origins)

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
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.middleware.gzip import GZipMiddleware

from api import errors
from api.guard import Guard, enforce_callbacks
from api.intake_front import IntakeFront
from api.routers import all_routers
from callbacks import area as area_callbacks
from callbacks import dispatch as dispatch_callbacks
from callbacks import live as live_callbacks
from callbacks import pages as pages_callbacks
from callbacks import wall as wall_callbacks
from dashboard import layout
from geodata.db import open_pool
from services import scheduler as cases_scheduler
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
    )
    return Services(settings=settings, pool=pool, redis=open_redis(settings.redis_dsn(), settings.redis_timeout))


def _offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the swagger-ui-bundle package instead of FastAPI's CDN default."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="yitu 一图指挥 API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )


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
    # API routes first: Dash adds a catch-all GET route for its pages.
    _offline_docs(app)
    for router in all_routers():
        app.include_router(router)

    dash_app = dash.Dash(
        __name__,
        # Dash 4 takes a FastAPI app here (dash[fastapi]); its annotation still reads bool | Callable.
        server=app,  # type: ignore[arg-type]
        assets_folder=str(ASSETS),
        title=layout.page_title(settings.lang),
        update_title="",  # the tab's title stays while callbacks run ("" and None both mean that)
        serve_locally=True,
        suppress_callback_exceptions=True,  # pages are built per visit, after the frame
        websocket_allowed_origins=settings.websocket_origins,
    )
    dash_app.layout = layout.root(settings.lang)
    get_services = lambda: app.state.services  # noqa: E731 - the lifespan opens them after start
    for module in (pages_callbacks, wall_callbacks, area_callbacks):
        module.register(dash_app, get_services)
    dispatch_callbacks.register(dash_app, get_services, lambda: app.state.cases_runtime)
    live_callbacks.register(dash_app, lambda: app.state.live, get_services)
    # Dash collects its assets on the first request; with the FastAPI backend the first page served
    # (say a shared /area/… link) would go out without them. Collect them now instead.
    dash_app._setup_server()
    enforce_callbacks(dash_app)  # each callback's declared roles (api/guard.py CALLBACKS)
    app.state.dash = dash_app
    # Who asks, and may they: every route, callback and the WebSocket (api/guard.py).
    app.add_middleware(Guard)
    # Outermost (added last): a well-formed report from a known token skips the layers above.
    app.add_middleware(IntakeFront)
    return app

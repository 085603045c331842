"""The app as served, and an ASGI factory for several worker processes (``uvicorn --factory cli.asgi:app``).

``yitu serve`` runs one process; a deployment (and bench/bench_intake.py) may run several side by
side, each with its own pools, reading the same settings from the environment and ``.env``.

Behind a reverse proxy the client's address and scheme arrive in ``X-Forwarded-For`` and
``X-Forwarded-Proto``; they are believed only from the addresses in ``YITU_TRUSTED_PROXIES``
(anyone else could claim any address, or claim https to get a cookie marked for it).
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from cli import heap
from cli.logs import setup_logging
from dashboard.app import create_app
from services.settings import Settings

access = logging.getLogger("yitu.access")


class AccessLog:
    """One line per request or WebSocket, with the address and scheme the app itself sees.

    It sits inside the proxy-headers step, so behind nginx it shows the browser's address and
    https: what the session cookie's Secure flag, HSTS and the sign-in throttle go by. The query
    string is left out: OsmAnd devices send their identifier, a credential, in it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: list[int] = []  # the first status seen: the answer's, or the socket's accept / refusal

        async def watch(message: Message) -> None:
            if not status:
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                elif message["type"] == "websocket.accept":
                    status.append(101)
                    _line(scope, 101, start)  # a socket may stay open for hours: log it when it opens
                elif message["type"] == "websocket.close":
                    status.append(403)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if status != [101]:
                _line(scope, status[0] if status else 500, start)


def _line(scope: Scope, status: int, start: float) -> None:
    client = scope.get("client")
    access.info(
        "%s %s",
        scope.get("method", "WS"),
        scope["path"],
        extra={
            "status": status,
            "client": client[0] if client else "-",
            "scheme": scope["scheme"],
            "ms": round((time.perf_counter() - start) * 1000, 1),
        },
    )


def build(settings: Settings) -> FastAPI:
    """The app ``yitu serve`` and the factory serve: ``create_app`` and the serving concerns around it."""
    served = create_app(settings)
    if settings.access_log:
        served.add_middleware(AccessLog)  # outermost of the app's own layers, inside the proxy-headers step
    heap.settle()  # what the built app keeps, out of the collector's full passes (cli/heap.py)
    return served


def app() -> FastAPI:
    """The factory: run it as ``uvicorn --factory cli.asgi:app --no-proxy-headers``.

    It applies ``YITU_TRUSTED_PROXIES`` itself, as ``yitu serve`` does; with uvicorn's own proxy
    headers left on, uvicorn's ``--forwarded-allow-ips`` (default 127.0.0.1 and ::1) applies first.
    """
    settings = Settings()
    setup_logging(settings.log_level, settings.log_format)  # the same lines as `yitu serve`, YITU_ACCESS_LOG's too
    served = build(settings)
    served.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)  # added last: outermost
    return served

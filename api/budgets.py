"""Resource budgets and security headers: the outermost layer of the app (pure ASGI).

No request may exhaust the process, whoever sends it and before anyone has looked at it:

- **Bodies are capped while they stream.** A ``Content-Length`` over the cap is refused at once,
  unread; a chunked body is counted as it arrives and refused at the chunk that passes the cap.
  Nothing past the cap reaches the app, and what the app may have started to answer is replaced by
  ``413 {"error": "payload_too_large", ...}`` (api/errors.py's one shape) with ``Connection: close``.
  1 MiB by default (``YITU_BODY_MAX_BYTES``), 8 MiB for GPS batches (``YITU_GPS_BODY_MAX_BYTES``:
  ``POST /api/v1/vans/positions`` and the OsmAnd route ``/osmand``), 101 MiB for an attachment
  upload (``POST /api/v1/cases/{code}/attachments``: 10 files of 10 MiB, each capped by the route).
- **Live WebSocket connections are capped** per process (``YITU_WS_MAX_PER_PROCESS``) and per
  identity (``YITU_WS_MAX_PER_IDENTITY``, by ``services.identity.current().ident``). The check is
  made when the app accepts the connection, so it sees the identity the guard bound whether the
  guard runs inside or outside this layer; a connection over a cap is refused in the handshake
  (``429`` JSON where the server supports ASGI's WebSocket denial response, else close code 1013).
- **Security headers on every answer** — pages, API, assets and errors, including the 500 page of
  Starlette's outermost error layer, which is why :func:`install` wraps the whole middleware stack
  instead of adding a middleware inside it: a Content-Security-Policy allowing no other origin than
  the configured base map's tile host (:func:`content_security_policy`), ``frame-ancestors 'none'``,
  ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``, and HSTS when the request
  came over HTTPS (``scope["scheme"]``, which uvicorn sets from a trusted proxy's
  ``X-Forwarded-Proto``).

Why not Starlette's BaseHTTPMiddleware: it reads the body through its own stream and runs the app
in a task of its own; a pure ASGI layer sees every chunk as it comes and keeps the app's context.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from geodata.attachments import UPLOAD_BODY_MAX
from services import identity
from services.settings import Settings

log = logging.getLogger("yitu.budgets")

# The GPS batch routes: a terminal's buffer of pings after a dead zone may be megabytes.
GPS_PATHS = frozenset({"/api/v1/vans/positions", "/osmand"})
# Attachment uploads (api/attachments.py): up to 10 files of 10 MiB each; each file's own cap is
# the route's (413 naming ``file``), checked as it streams.
UPLOAD_PATH = re.compile(r"^/api/v1/cases/[^/]+/attachments$")
# Dash 4's WebSocket for callbacks and the live push (dash/backends/_fastapi.py).
WS_PATH = "/_dash-ws-callback"
HSTS = b"max-age=31536000; includeSubDomains"


class _TooLarge(Exception):
    """Raised into the app from ``receive`` when the body passes its cap; never leaves this module."""


def content_security_policy(script_hashes: Iterable[str] = (), tile_origins: Iterable[str] = ()) -> str:
    """The policy of every answer: nothing from another origin but the base map's tiles.

    What the pages need, checked in Chromium (tests/test_budgets.py): Dash's own inline script
    (the renderer's start; allowed by its hash, ``Dash.csp_hashes()``), no ``eval``; inline styles
    (React and Leaflet set ``style`` attributes, Leaflet's panes their own); ``data:`` images
    (Leaflet's and the cluster icons) and ``blob:`` for images and workers; the live WebSocket on
    the page's own origin (``'self'`` covers ws:/wss: of the same host in CSP 3).
    """
    tiles = " ".join(sorted(set(tile_origins)))
    directives = {
        "default-src": "'self'",
        "script-src": " ".join(["'self'", *script_hashes]),
        "style-src": "'self' 'unsafe-inline'",
        "img-src": " ".join(filter(None, ["'self'", "data:", "blob:", tiles])),
        "font-src": "'self' data:",
        "connect-src": "'self'",
        "worker-src": "'self' blob:",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def inline_script_hashes(html: str) -> list[str]:
    """CSP sources (``'sha256-…'``) for the inline scripts of a page the app serves as fixed HTML
    (Swagger UI's start at /docs), so the policy needs no ``'unsafe-inline'`` for it."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii") + "'"
        for body in _INLINE_SCRIPT.findall(html)
    ]


def tile_origins(urls: Iterable[str], subdomains: Iterable[str] = ()) -> list[str]:
    """The origins (scheme://host[:port]) of tile URL templates; ``{s}`` expands to each subdomain."""
    subs = list(subdomains) or ["a", "b", "c"]  # Leaflet's default subdomains
    origins: set[str] = set()
    for url in urls:
        for sub in subs if "{s}" in url else [""]:
            parts = urlsplit(url.replace("{s}", sub))
            if parts.scheme in ("http", "https") and parts.netloc:
                origins.add(f"{parts.scheme}://{parts.netloc}")
    return sorted(origins)


@dataclass
class Budgets:
    """The ASGI layer itself; :func:`install` puts it around the app's whole middleware stack."""

    app: ASGIApp
    body_max: int
    gps_body_max: int
    csp: str
    ws_max_per_process: int
    ws_max_per_identity: int
    ws_open: int = 0
    ws_by_identity: dict[str, int] = field(default_factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket" and scope["path"] == WS_PATH:
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # --- HTTP: headers and the body cap -----------------------------------------------------------
    def _headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        extra = [
            (b"content-security-policy", self.csp.encode("latin-1")),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers without CSP 2
        ]
        if scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", HSTS))
        return extra

    def _cap(self, scope: Scope) -> int:
        if scope["path"] in GPS_PATHS:
            return self.gps_body_max
        if scope.get("method") == "POST" and UPLOAD_PATH.match(scope["path"]):
            return max(self.body_max, UPLOAD_BODY_MAX)
        return self.body_max

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra = self._headers(scope)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {name.lower() for name, _ in message.get("headers", [])}
                message = {
                    **message,
                    "headers": [*message.get("headers", []), *((k, v) for k, v in extra if k not in names)],
                }
            await send(message)

        cap = self._cap(scope)
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            log.info("body refused unread path=%s declared=%d cap=%d", scope["path"], declared, cap)
            await _too_large(send_with_headers, cap)
            return

        received = 0
        tripped = False

        async def capped_receive() -> Message:
            nonlocal received, tripped
            if tripped:
                raise _TooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    tripped = True
                    raise _TooLarge
            return message

        async def send_unless_tripped(message: Message) -> None:
            if not tripped:  # once over the cap, the 413 below is the answer, whatever the app began
                await send_with_headers(message)

        try:
            await self.app(scope, capped_receive, send_unless_tripped)
        except _TooLarge:
            pass
        except Exception:
            if not tripped:  # an error of the app's own: its layers answered (500) and it is logged
                raise
            log.debug("the app failed on a body cut off at its cap", exc_info=True)
        if tripped:
            log.info("body cut off at its cap path=%s read=%d cap=%d", scope["path"], received, cap)
            if started:  # the app had answered before it read the rest: nothing more can be said
                return
            await _too_large(send_with_headers, cap)

    # --- WebSocket: connection caps -------------------------------------------------------------
    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        counted: str | None = None  # the identity counted for this connection ("" when anonymous)
        refused = False

        async def guarded_send(message: Message) -> None:
            nonlocal counted, refused
            if refused:
                return
            if message["type"] == "websocket.accept":
                who = identity.current()
                ident = who.ident if who is not None else ""
                reason = self._over_cap(ident)
                if reason is not None:
                    refused = True
                    log.warning("websocket refused ident=%s reason=%s", ident or "-", reason)
                    await _deny(scope, send, reason)
                    return
                counted = ident
                self.ws_open += 1
                if ident:
                    self.ws_by_identity[ident] = self.ws_by_identity.get(ident, 0) + 1
            await send(message)

        async def guarded_receive() -> Message:
            if refused:
                return {"type": "websocket.disconnect", "code": 1013}
            return await receive()

        try:
            await self.app(scope, guarded_receive, guarded_send)
        finally:
            if counted is not None:
                self.ws_open -= 1
                if counted:
                    left = self.ws_by_identity.get(counted, 1) - 1
                    if left > 0:
                        self.ws_by_identity[counted] = left
                    else:
                        self.ws_by_identity.pop(counted, None)

    def _over_cap(self, ident: str) -> str | None:
        if self.ws_open >= self.ws_max_per_process:
            return f"this server holds its maximum of {self.ws_max_per_process} live connections"
        if ident and self.ws_by_identity.get(ident, 0) >= self.ws_max_per_identity:
            return f"{ident} holds its maximum of {self.ws_max_per_identity} live connections: close another screen"
        return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None


async def _too_large(send: Send, cap: int) -> None:
    exc = errors.PayloadTooLarge(f"the request body is larger than {cap} bytes", field="body", extra={"max": cap})
    status, body, headers = errors.payload(exc)
    content = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                (b"connection", b"close"),  # the rest of the body is never read: the connection cannot be reused
                *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


async def _deny(scope: Scope, send: Send, reason: str) -> None:
    """Refuse a WebSocket in its handshake: a 429 JSON answer where the server supports it."""
    if "websocket.http.response" in scope.get("extensions", {}):
        status, body, _ = errors.payload(errors.TooManyConnections(reason))
        content = orjson.dumps(body)
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": content})
    else:
        await send({"type": "websocket.close", "code": 1013, "reason": reason[:120]})


def install(app: FastAPI, settings: Settings, csp: str) -> None:
    """Wrap the app's whole middleware stack (built on its first request) in :class:`Budgets`."""
    build = app.build_middleware_stack

    def build_with_budgets() -> ASGIApp:
        return Budgets(
            build(),
            body_max=settings.body_max_bytes,
            gps_body_max=settings.gps_body_max_bytes,
            csp=csp,
            ws_max_per_process=settings.ws_max_per_process,
            ws_max_per_identity=settings.ws_max_per_identity,
        )

    app.build_middleware_stack = build_with_budgets  # type: ignore[method-assign]

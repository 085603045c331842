"""The guard: who is asking, and may they — for every route, callback and the WebSocket, in one place.

One pure-ASGI middleware (it sees HTTP and WebSocket scopes alike, and adds no Starlette layer):

1. **Identity.** ``Authorization: Bearer <token>`` (devices, integrations: api_tokens, trusted for
   ``auth_cache_seconds`` per process as before) or else the cookie ``yitu_session`` (people and
   paired wall screens: a server-side session in PostgreSQL, looked up on every request so a
   disabled user or a revoked screen stops at once). The principal is bound to
   :data:`services.identity.CURRENT` for the request, so routes (``api.auth.principal``) and Dash
   callbacks (``identity.current()``) read the same one.
2. **Policy.** :data:`ROUTES` declares, for every route the app serves (the route inventory test
   walks ``app.routes`` and fails on one missing here), its face and who may use it; :data:`CALLBACKS`
   does the same for every server-side Dash callback, enforced by :func:`enforce_callbacks`. A path
   no route declares is treated as a signed-in page (or API call under ``/api/``): nothing is open
   by omission.
3. **Answers without an identity**: a page redirects (302) to ``/login?next=<the path>``; an API call,
   a callback or an asset answers 401 in the one JSON error shape (api/errors.py); the WebSocket is
   refused before it is accepted. A signed-in caller whose role a page does not allow (``/admin``)
   gets the page frame with 403, whose router shows the refusal page; an API call 403 JSON.
4. **CSRF.** A state-changing request authenticated by the cookie must carry an ``Origin`` (or
   ``Referer``) of this host: the browser sends it with every POST, Dash's included. Bearer calls
   carry no ambient credential and need none.
5. **Guessing.** An unknown bearer token counts as a failed attempt of its address; after
   ``ADDRESS_LIMIT`` in 15 minutes the address gets 429 with ``Retry-After`` (services/identity.py,
   shared by all processes through PostgreSQL).
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from enum import StrEnum
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import psycopg
from dash import Dash
from dash.exceptions import PreventUpdate
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from api import consistency, errors
from api.auth import SCOPE_KEY
from geodata import db
from geodata.workflow import ROLES
from layers import registry
from services import identity
from services.identity import Principal, TokenCache, hash_token
from services.runtime import Services

log = logging.getLogger("yitu.guard")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DISPATCHERS = frozenset({"admin", "dispatcher"})
ADMINS = frozenset({"admin"})
LOGIN = "/login"


class Face(StrEnum):
    """How a route answers a caller it refuses."""

    PAGE = "page"  # 302 to /login
    API = "api"  # 401 JSON
    CALLBACK = "callback"  # 401 JSON (Dash's endpoints)
    ASSET = "asset"  # 401 JSON
    SOCKET = "socket"  # refused before accept


@dataclass(frozen=True)
class Policy:
    """Who may use a route: anonymous callers or not; the roles allowed (None: any signed-in one)."""

    face: Face
    anonymous: bool = False
    roles: frozenset[str] | None = None

    def allows(self, who: Principal | None) -> bool:
        if who is None:
            return self.anonymous
        return self.roles is None or who.role in self.roles


def _signed_in(face: Face, roles: Iterable[str] | None = None) -> Policy:
    return Policy(face, roles=frozenset(roles) if roles is not None else None)


def _public(face: Face) -> Policy:
    return Policy(face, anonymous=True)


# A van crew's token acts on the case its van is sent to and nothing else (Principal.sees_case): the
# lists of cases, which carry the parties, are not for it.
NOT_VAN = frozenset({*ROLES, identity.SCREEN_ROLE}) - {"van"}
# The van crew's page and its read: the crew, and the people who send vans.
CREW_READERS = frozenset({identity.CREW_ROLE, *DISPATCHERS})

# The phone page's shell files (api/mobile.py) and who the page is for.
MOBILE_SHELL = (
    "/m/app.js",
    "/m/outbox.js",
    "/m/app.css",
    "/m/sw.js",
    "/m/manifest.webmanifest",
    "/m/icon-192.png",
    "/m/icon-512.png",
)
FIELD_PAGE = frozenset({"grid_worker", "dispatcher", "admin"})

# The one policy table: every route the app serves, by its path template. A route added to the app
# is declared here before it does anything (tests/test_guard.py fails on one that is not).
ROUTES: Mapping[str, Policy] = {
    # anonymous: the sign-in page and what it needs, pairing a wall screen, an imported account's welcome
    # link, liveness, device pings
    "/login": _public(Face.PAGE),
    "/login.css": _public(Face.ASSET),
    "/theme.css": _public(Face.ASSET),
    "/logout": _public(Face.PAGE),
    "/pair/{code}": _public(Face.PAGE),
    "/welcome/{code}": _public(Face.PAGE),  # an imported account's first password (api/welcome.py), throttled
    "/healthz": _public(Face.API),  # anonymous callers get only the status (api/health.py)
    "/osmand": _public(Face.API),  # the device identifier is the credential (api/osmand.py), throttled
    # the phone page's shell (api/mobile.py): fixed files without data, kept by its service worker
    # (which the browser fetches, like the manifest, without the session cookie)
    **{path: _public(Face.ASSET) for path in MOBILE_SHELL},
    "/static/vendor/{path:path}": _public(Face.ASSET),  # Leaflet, for the phone pages
    # the API and its documentation
    "/openapi.json": _signed_in(Face.API),
    "/docs": _signed_in(Face.PAGE),
    "/redoc": _signed_in(Face.PAGE),
    "/static/swagger": _signed_in(Face.ASSET),
    **{layer.path: _signed_in(Face.API) for layer in registry.all_layers()},  # every map layer (layers/)
    "/api/v1/layers/grids/stats": _signed_in(Face.API),
    "/api/v1/basemap/{z}/{x}/{y}": _signed_in(Face.API),  # the base map's tiles: geography, no cases
    "/api/v1/areas/{code}/cases.csv": _signed_in(Face.API, NOT_VAN),
    "/api/v1/cases": _signed_in(Face.API, NOT_VAN),
    "/api/v1/cases/{code}": _signed_in(Face.API),
    "/api/v1/cases/{code}/transitions": _signed_in(Face.API),
    "/api/v1/cases/{code}/cell": _signed_in(Face.API, DISPATCHERS),  # confirm or change a case's cell
    # attachments: the list for anyone who sees the case; content and uploads by role in the route
    # (api/attachments.py, geodata/masking.py): a viewer or wall screen gets 403 for content
    "/api/v1/cases/{code}/attachments": _signed_in(Face.API),
    "/api/v1/attachments/{attachment_id}": _signed_in(Face.API),
    "/api/v1/attachments/{attachment_id}/thumbnail": _signed_in(Face.API),
    "/api/v1/areas/{code}": _signed_in(Face.API),
    "/api/v1/areas/{code}/children": _signed_in(Face.API),
    "/api/v1/areas/{code}/stats": _signed_in(Face.API),
    "/api/v1/areas/{code}/cases": _signed_in(Face.API, NOT_VAN),
    "/api/v1/stats/ranking": _signed_in(Face.API),
    "/api/v1/vans/positions": _signed_in(Face.API),
    # the vans of the reader's banner and the league's (a van's banner is its base centre's, in the SQL)
    "/api/v1/vans": _signed_in(Face.API),
    "/api/v1/vans/{van}/track": _signed_in(Face.API),
    # the van crew's phone page (api/mobile_van.py): the crew (its own van), dispatchers, admins
    "/api/v1/vans/{van}/dispatch": _signed_in(Face.API, CREW_READERS),
    "/m/van": _signed_in(Face.PAGE, CREW_READERS),
    "/m/van/app.js": _signed_in(Face.ASSET),
    "/m/van/app.css": _signed_in(Face.ASSET),
    "/api/v1/cases/{code}/van-candidates": _signed_in(Face.API),
    "/api/v1/cases/{code}/cameras": _signed_in(Face.API),
    "/api/v1/dispatches": _signed_in(Face.API),
    "/api/v1/dispatches/{dispatch_id}": _signed_in(Face.API),
    "/api/v1/dispatches/{dispatch_id}/end": _signed_in(Face.API),
    "/api/v1/dispatches/{dispatch_id}/cancel": _signed_in(Face.API),
    "/api/v1/search": _signed_in(Face.API, NOT_VAN),  # finds cases by their parties: a list of cases
    "/api/v1/locate": _signed_in(Face.API),  # a point's grid chain (no cases in it)
    # the grid worker's phone page (api/mobile.py): the page answers other roles 403 itself
    "/m": _signed_in(Face.PAGE),
    "/m/api/state": _signed_in(Face.API, FIELD_PAGE),  # my reports and my tasks
    "/m/events": _signed_in(Face.API, FIELD_PAGE),  # the live push (Server-Sent Events)
    # the roster (api/roster.py): read by anyone signed in (phones masked by role), changed by an admin
    "/api/v1/mediators": _signed_in(Face.API),  # POST: admin only, checked by the route (role_in)
    "/api/v1/mediators/{mediator_id}": _signed_in(Face.API),  # PATCH: admin only (role_in)
    "/api/v1/units": _signed_in(Face.API),  # POST: admin only (role_in)
    "/api/v1/units/{unit_id}": _signed_in(Face.API),  # PATCH: admin only (role_in)
    # deadlines per banner or for the league (api/deadlines.py): read by anyone signed in (their area's
    # banners), PUT by an admin within their area (role_in, then services/deadlines.py may_change)
    "/api/v1/deadlines": _signed_in(Face.API),
    # Dash: its assets, internal routes, the callback endpoint, the live WebSocket and the pages
    "/assets": _signed_in(Face.ASSET),
    "/_dash-component-suites/{package_name}/{fingerprinted_path:path}": _signed_in(Face.ASSET),
    "/_dash-layout": _signed_in(Face.CALLBACK),
    "/_dash-dependencies": _signed_in(Face.CALLBACK),
    "/_dash-update-component": _signed_in(Face.CALLBACK),
    "/_reload-hash": _signed_in(Face.CALLBACK),
    "/_favicon.ico": _signed_in(Face.ASSET),
    "/_dash-ws-callback": _signed_in(Face.SOCKET),
    "/": _signed_in(Face.PAGE),
    "/area/{code}": _signed_in(Face.PAGE),  # Dash's page, answered 403 outside the reader's area
    "/api/{rest:path}": _signed_in(Face.API),  # the rest of /api/: JSON 404 / 405 (api/errors.py)
    "/admin": _signed_in(Face.PAGE, ADMINS),  # anyone else signed in: the refusal page (403)
    # Dash's catch-all (/area/…, /dispatch, /cases/… — a case outside the reader's area: "not found" —, …):
    # what no other entry matches is a signed-in page
    # (or, under /api/, a signed-in API call): see policy_for.
    "{path:path}": _signed_in(Face.PAGE),
}

# Every server-side Dash callback, by ``module.function``: who may have it run. Clientside callbacks
# never reach the server. The callback endpoint itself already needs an identity (ROUTES).
ANY_SIGNED_IN: frozenset[str] | None = None
CALLBACKS: Mapping[str, frozenset[str] | None] = {
    "callbacks.pages._route": ANY_SIGNED_IN,
    "callbacks.wall._grid": ANY_SIGNED_IN,
    "callbacks.wall._switch": ANY_SIGNED_IN,
    "callbacks.wall._select": ANY_SIGNED_IN,
    "callbacks.wall._numbers": ANY_SIGNED_IN,
    "callbacks.wall._fly": ANY_SIGNED_IN,
    "callbacks.wall._detail": ANY_SIGNED_IN,  # the card is masked by role (geodata/masking.py)
    "callbacks.wall._filter": ANY_SIGNED_IN,  # the pins' URL; the layer route scopes what it serves
    "callbacks.wall._chip": ANY_SIGNED_IN,  # sets the pin filters; reads nothing
    "callbacks.wall._types": ANY_SIGNED_IN,  # the case types' names
    "callbacks.wall._focus_van": ANY_SIGNED_IN,  # a van's card and where it is: of the reader's banner's vans
    "callbacks.area._table": ANY_SIGNED_IN,
    "callbacks.dispatch._queue": ANY_SIGNED_IN,  # empty with a hint unless a dispatcher
    "callbacks.dispatch._select": ANY_SIGNED_IN,
    "callbacks.dispatch._panels": ANY_SIGNED_IN,  # empty with a hint unless a dispatcher
    "callbacks.dispatch._fly": ANY_SIGNED_IN,
    "callbacks.dispatch._send": DISPATCHERS,  # sends a van: a write
    "callbacks.dispatch._visit": DISPATCHERS,  # calls a van back or ends its visit: a write
    "callbacks.dispatch._next_send_key": ANY_SIGNED_IN,  # a fresh key for the next send; reads nothing
    # the live push; its messages: events inside the reader's area (services/live.py visible_in) and the
    # wall's numbers, made for the reader the socket was opened by as callbacks.wall._numbers makes them
    "callbacks.live._live": ANY_SIGNED_IN,
    "callbacks.inbox._inbox": ANY_SIGNED_IN,  # 我的待办: the caller's own cases, inside their area (SQL)
    "callbacks.inbox._wall_warnings": ANY_SIGNED_IN,  # the wall's deadline warnings: codes, no personal data
    # the case page (/cases/{code}): drawn for its reader (masked by role, scoped to their area); the
    # actions are refused by role in services/casework.py (workflow.ROLE_ACTIONS), as the API's are
    "callbacks.case._panels": ANY_SIGNED_IN,
    "callbacks.case._form": ANY_SIGNED_IN,
    "callbacks.case._act": ANY_SIGNED_IN,
    "callbacks.case._place": DISPATCHERS,  # confirms or changes a case's cell: a write
    "callbacks.search._results": NOT_VAN,  # the search box (every page): cases found, masked for the room
    # the admin page (/admin): every one of its callbacks, the tables included, for admins only
    "callbacks.admin._users": ADMINS,
    "callbacks.admin._screens": ADMINS,
    "callbacks.admin._tokens": ADMINS,
    "callbacks.admin._vans": ADMINS,
    "callbacks.admin._signins": ADMINS,
    "callbacks.admin._changes": ADMINS,
    # the admin page's roster sections (callbacks/roster.py): admins only, as the rest of the page
    "callbacks.roster._mediators": ADMINS,
    "callbacks.roster._mediator_form": ADMINS,
    "callbacks.roster._units": ADMINS,
    "callbacks.roster._unit_form": ADMINS,
}


def _compile(table: Mapping[str, Policy]) -> list[tuple[re.Pattern[str], Policy]]:
    out = []
    for path, policy in table.items():
        if not path.startswith("/"):  # the catch-all: the fallback of policy_for, not a pattern
            continue
        if policy.face is Face.ASSET and "{" not in path and "." not in path.rsplit("/", 1)[-1]:
            out.append((re.compile("^" + re.escape(path) + "(/.*)?$"), policy))  # a mounted folder
        else:
            out.append((compile_path(path)[0], policy))
    return out


_COMPILED = _compile(ROUTES)
_PAGES = ROUTES["/"]
_API = _signed_in(Face.API)


def policy_for(path: str, websocket: bool = False) -> Policy:
    """The declared policy of a request path; undeclared paths are signed-in pages (API calls under /api/)."""
    for pattern, policy in _COMPILED:
        if pattern.match(path):
            if websocket and policy.face is not Face.SOCKET:
                return _signed_in(Face.SOCKET)
            return policy
    if websocket:
        return _signed_in(Face.SOCKET)
    return _API if path.startswith("/api/") else _PAGES


def route_paths(routes: Iterable[Any]) -> Iterator[str]:
    """The path of every route of an app, descending into included routers (FastAPI's flattening)."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            yield from route_paths(contexts())
        else:
            yield str(route.path)


def safe_next(value: str | None) -> str:
    """A ``next=`` target that stays on this site: a relative path (``/area/150623?step=x``), else ``/``."""
    value = (value or "").strip()
    if (
        not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
        or len(value) > 2000
    ):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def login_url(path: str, query: bytes = b"") -> str:
    target = path + ("?" + query.decode("latin-1") if query else "")
    return LOGIN + "?next=" + quote(safe_next(target), safe="/")


# --- reading the request ---------------------------------------------------------------------------


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def cookie_value(scope: Scope, name: str = identity.SESSION_COOKIE) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    try:
        jar = SimpleCookie()
        jar.load(raw)
    except Exception:  # a malformed Cookie header is no cookie (http.cookies raises CookieError and others)
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def is_https(scope: Scope, trusted: Iterable[str]) -> bool:
    """Served over HTTPS: the scheme (uvicorn sets it from X-Forwarded-Proto for its trusted proxies),
    or X-Forwarded-Proto from one of ``trusted`` (YITU_TRUSTED_PROXIES)."""
    if scope.get("scheme") in ("https", "wss"):
        return True
    forwarded = (_header(scope, b"x-forwarded-proto") or "").split(",")[0].strip().lower()
    return forwarded == "https" and client_address(scope) in set(trusted)


def same_origin(scope: Scope, extra: Iterable[str] = ()) -> bool | None:
    """Does the request's Origin (or else Referer) name this host? None when it has neither."""
    host = (_header(scope, b"host") or "").lower()
    origin = _header(scope, b"origin")
    if origin and origin != "null":
        return origin in set(extra) or urlsplit(origin).netloc.lower() == host
    referer = _header(scope, b"referer")
    if referer:
        return urlsplit(referer).netloc.lower() == host
    return False if origin == "null" else None


# --- the answers --------------------------------------------------------------------------------------


async def _json(send: Send, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
    content = orjson.dumps(body)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


async def refuse(send: Send, exc: errors.YituError, headers: Mapping[str, str] | None = None) -> None:
    status, body, extra = errors.payload(exc)
    await _json(send, status, body, {**(extra or {}), **(headers or {})})


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 302,
            "headers": [
                (b"location", location.encode("latin-1")),
                (b"content-length", b"0"),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _close_socket(receive: Receive, send: Send) -> None:
    """Refuse a WebSocket before accepting it (the server answers the handshake with 403)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 4401, "reason": "sign in first"})


def _frame_scope(scope: Scope) -> Scope:
    """A refused page is served as the bare page frame (Dash's ``/``: no data in it); the browser keeps
    its URL, so the frame's router (callbacks/pages.py) renders the refusal for that path."""
    return {**scope, "path": "/", "raw_path": b"/", "query_string": b""}


def _with_status(send: Send, status: int) -> Send:
    async def sending(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "status": status}
        await send(message)

    return sending


# --- the middleware ---------------------------------------------------------------------------------


class Guard:
    """The ASGI middleware (added in dashboard/app.py, inside the intake front)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        svc: Services | None = getattr(getattr(scope.get("app"), "state", None), "services", None)
        if scope["type"] != "http" or svc is None:
            await self._check(scope, receive, send)
            return
        # A request waits for the database at most its pool's timeout from its arrival (its
        # checkouts, the intake lanes' included, and the guard's own lookups): geodata/db.py.
        with (
            db.arrived(),
            consistency.reads_after_writes(
                scope, send, svc, cookie_value(scope, consistency.COOKIE), is_https(scope, svc.settings.trusted_proxies)
            ) as sending,
        ):
            await self._check(scope, receive, sending)

    async def _check(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        app: Starlette | None = scope.get("app")
        svc: Services | None = getattr(app.state, "services", None) if app is not None else None
        if app is None or svc is None:  # not started (no lifespan yet): nothing to check against
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        policy = policy_for(scope["path"], websocket)
        try:
            who, via_cookie = await self._identify(scope, app, svc)
        except errors.YituError as exc:
            if websocket:
                await _close_socket(receive, send)
            elif policy.anonymous and not isinstance(exc, errors.TooManyAttempts):
                await self._serve(scope, receive, send, None)  # a bad token on a public route: anonymous
            else:
                await refuse(send, exc)
            return
        except (psycopg.Error, PoolTimeout) as exc:  # the database is down (or not migrated): who asks is unknown
            if websocket:
                await _close_socket(receive, send)
            elif policy.anonymous:  # /healthz must still say "degraded", /login still show its page
                await self._serve(scope, receive, send, None)
            else:
                await refuse(send, errors.database_unavailable(exc))
            return

        if websocket:
            if not policy.allows(who):
                await _close_socket(receive, send)
                return
            await self._serve(scope, receive, send, who)
            return

        method = scope["method"]
        changes = via_cookie and method not in SAFE_METHODS and not policy.anonymous  # public routes check their own
        if changes and not same_origin(scope, svc.settings.websocket_origins):
            await refuse(
                send,
                errors.Forbidden(
                    "a change made with the session cookie needs an Origin (or Referer) of this site", field="Origin"
                ),
            )
            return
        if who is None and not policy.anonymous:
            if policy.face is Face.PAGE and method in SAFE_METHODS:
                await _redirect(send, login_url(scope["path"], scope.get("query_string", b"")))
            else:
                await refuse(
                    send,
                    errors.Unauthorized("sign in first (or send Authorization: Bearer <token>)", field="Authorization"),
                )
            return
        if who is not None and not policy.allows(who):
            if policy.face is Face.PAGE and method in SAFE_METHODS:  # the refusal page, in its language
                await self._serve(_frame_scope(scope), receive, _with_status(send, 403), who)
            else:
                await refuse(send, errors.Forbidden(f"a {who.role} may not use {scope['path']}"))
            return
        screen = who is not None and who.role == identity.SCREEN_ROLE
        if screen and method not in SAFE_METHODS and policy.face is Face.API and _route_takes(scope):
            await refuse(send, errors.Forbidden("a wall screen is read-only"))
            return
        await self._serve(scope, receive, send, who)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, who: Principal | None) -> None:
        scope[SCOPE_KEY] = who
        token = identity.CURRENT.set(who)
        try:
            await self.app(scope, receive, send)
        finally:
            identity.CURRENT.reset(token)

    async def _identify(self, scope: Scope, app: Starlette, svc: Services) -> tuple[Principal | None, bool]:
        """(the principal or None, whether it came from the cookie); raises Unauthorized for a bad
        bearer token and errors.TooManyAttempts for an address that guessed too often."""
        header = _header(scope, b"authorization")
        if header is not None:
            return await bearer(app, svc, header, client_address(scope)), False
        cookie = cookie_value(scope)
        if not cookie:
            return None, False
        who = await run_in_threadpool(_session, svc, cookie)
        return who, who is not None


def _route_takes(scope: Scope) -> bool:
    """Whether an API route takes this method at this path: a method none takes is answered 405 (a
    path none serves 404) by the app, to a wall screen as to anyone (the contract's undeclared methods)."""
    return scope["method"] in errors.allowed_methods(Request(scope))


def _session(svc: Services, cookie: str) -> Principal | None:
    with svc.pool.connection() as conn:
        return identity.session_principal(
            conn, cookie, svc.settings.session_idle_minutes, svc.settings.session_field_idle_minutes
        )


async def bearer(app: Starlette, svc: Services, header: str, address: str | None) -> Principal:
    """The principal of an ``Authorization: Bearer`` header (the per-process cache first)."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise errors.Unauthorized(
            "missing bearer token: send Authorization: Bearer <token> (see `yitu token create`)", field="Authorization"
        )
    if len(token) > 200:
        raise errors.Invalid("the bearer token is too long", field="Authorization")
    cache: TokenCache | None = getattr(app.state, "token_cache", None)
    if cache is None:
        cache = app.state.token_cache = TokenCache()
    digest = hash_token(token)
    found, who = cache.get(digest)
    if not found:
        who = await run_in_threadpool(_checked_lookup, svc, digest, address)
        cache.put(digest, who, svc.settings.auth_cache_seconds)
    if who is None:
        raise errors.Unauthorized("unknown or revoked token", field="Authorization")
    return who


def _checked_lookup(svc: Services, digest: str, address: str | None) -> Principal | None:
    """Look a token up unless its address is throttled; an unknown token counts as a failed attempt."""
    with svc.pool.connection() as conn:
        return identity.unless_guessing(
            conn, "token", address, lambda c: identity.lookup_digest_on(c, digest), what="tokens", field="Authorization"
        )


# --- callbacks ------------------------------------------------------------------------------------------


def callback_name(fn: Callable[..., Any]) -> str:
    """``module.function`` of a registered callback (what :data:`CALLBACKS` is keyed by)."""
    inner = inspect.unwrap(fn)
    return f"{inner.__module__}.{inner.__name__}"


def enforce_callbacks(dash_app: Dash, table: Mapping[str, frozenset[str] | None] = CALLBACKS) -> list[str]:
    """Wrap every server-side callback with its declared role check (a refused caller gets no update:
    204, no data). An undeclared callback refuses everyone. Returns the undeclared names."""
    undeclared = []
    for spec in dash_app.callback_map.values():
        fn = spec.get("callback")
        if fn is None or getattr(fn, "_yitu_guarded", False):
            continue
        name = callback_name(fn)
        if name not in table:
            undeclared.append(name)
            log.error("callback without a declared policy refuses everyone name=%s", name)
        spec["callback"] = _guarded(fn, name, table.get(name, frozenset()), name in table)
    return undeclared


def _allowed(name: str, roles: frozenset[str] | None, declared: bool) -> None:
    who = identity.current()
    if not declared or who is None or (roles is not None and who.role not in roles):
        log.info("callback refused name=%s who=%s", name, who.ident if who else "anonymous")
        raise PreventUpdate


def _guarded(fn: Callable[..., Any], name: str, roles: frozenset[str] | None, declared: bool) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def check_async(*args: Any, **kwargs: Any) -> Any:
            _allowed(name, roles, declared)
            return await fn(*args, **kwargs)

        check_async._yitu_guarded = True  # type: ignore[attr-defined]
        return check_async

    @functools.wraps(fn)
    def check(*args: Any, **kwargs: Any) -> Any:
        _allowed(name, roles, declared)
        return fn(*args, **kwargs)

    check._yitu_guarded = True  # type: ignore[attr-defined]
    return check

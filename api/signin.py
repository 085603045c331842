"""Signing in and out, and pairing a wall screen: ``/login``, ``/logout``, ``/pair/<code>``.

Plain server-rendered HTML and one small CSS file (``/login.css``): the sign-in page is what an
anonymous browser may load, so it needs nothing of Dash and nothing from another origin.

``POST /login`` reads the form itself (``username``, ``password``, ``next``; URL-encoded, at most
``MAX_FORM`` bytes), so every malformed input is refused with the field named: a missing field, an
oversized one, bytes that are not UTF-8. Wrong passwords count against the account and the address
(services/identity.py's throttle, in PostgreSQL); past the limit the answer is 429 with
``Retry-After`` and the password is not even checked. A browser (``Accept: text/html``) gets the page
again with the message; any other client the one JSON error shape.

On success the cookie ``yitu_session`` (HttpOnly, SameSite=Strict, Path=/, Secure over HTTPS) carries
a random value whose SHA-256 names the server-side session; the answer is 303 to ``next`` if that is
a path of this site (never another host).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from api import errors
from api.guard import client_address, cookie_value, is_https, safe_next, same_origin
from api.page_head import page_head
from services import identity
from services.identity import SESSION_COOKIE, Principal
from services.runtime import Services

log = logging.getLogger("yitu.signin")
router = APIRouter(tags=["sign-in"])

MAX_FORM = 8 * 1024
CSS = Path(__file__).resolve().parent / "static" / "login.css"
THEME = Path(__file__).resolve().parent / "static" / "theme.css"
FIELDS = ("username", "password", "next")

TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "一图指挥",
        "sub": "矛盾纠纷多元化解指挥中心 · 登录",
        "username": "用户名",
        "password": "密码",
        "submit": "登录",
        "wrong": "用户名或密码错误，或账号已停用",
        "throttled": "尝试次数过多，请 {minutes} 分钟后再试",
        "invalid": "请填写{field}",
        "too_long": "{field}过长",
        "encoding": "{field}含有无法识别的字符",
        "origin": "请求来源不符，请刷新页面后重试",
        "note": "账号由管理员开通（yitu user create）",
        "pair_bad": "配对链接无效、已使用或已过期。请在服务器上运行 yitu screen pair 名称 获取新链接。",
        "pair_title": "大屏配对",
    },
    "en": {
        "title": "One-Map Command",
        "sub": "Dispute resolution command centre · Sign in",
        "username": "User name",
        "password": "Password",
        "submit": "Sign in",
        "wrong": "Wrong user name or password, or the account is disabled",
        "throttled": "Too many attempts; try again in {minutes} minutes",
        "invalid": "Please fill in {field}",
        "too_long": "{field} is too long",
        "encoding": "{field} holds characters that are not UTF-8",
        "origin": "The request came from another site; reload the page and try again",
        "note": "Accounts are made by an administrator (yitu user create)",
        "pair_bad": "This pairing link is invalid, used or expired. "
        "Run yitu screen pair NAME on the server for a new one.",
        "pair_title": "Pair a wall screen",
    },
}


def _lang(request: Request) -> str:
    lang: str = request.app.state.settings.lang
    return lang if lang in TEXTS else "zh-CN"


def _page(lang: str, *, next_path: str = "/", message: str = "", field: str = "", username: str = "") -> str:
    t = TEXTS[lang]
    esc = html.escape
    error = f'<p class="yitu-error" role="alert" data-field="{esc(field)}">{esc(message)}</p>' if message else ""
    head = page_head(
        lang, f"{t['title']} · {t['submit']}", [("stylesheet", "/theme.css"), ("stylesheet", "/login.css")]
    )
    return f"""{head}
<body>
<main class="yitu-login">
<h1>{esc(t["title"])}</h1>
<p class="yitu-sub">{esc(t["sub"])}</p>
<form method="post" action="/login" autocomplete="on">
<input type="hidden" name="next" value="{esc(next_path)}">
<label for="username">{esc(t["username"])}</label>
<input id="username" name="username" type="text" maxlength="{identity.MAX_NAME}" autocomplete="username"
 value="{esc(username)}" required autofocus>
<label for="password">{esc(t["password"])}</label>
<input id="password" name="password" type="password" maxlength="{identity.MAX_PASSWORD}"
 autocomplete="current-password" required>
<button type="submit" id="signin">{esc(t["submit"])}</button>
{error}
</form>
<p class="yitu-note">{esc(t["note"])}</p>
</main>
</body>
</html>
"""


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


@router.get("/login", include_in_schema=False)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return HTMLResponse(_page(_lang(request), next_path=safe_next(next)), headers={"Cache-Control": "no-store"})


@router.get("/login.css", include_in_schema=False)
def login_css() -> Response:
    return Response(CSS.read_bytes(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/theme.css", include_in_schema=False)
def theme_css() -> Response:
    """The colours of every page, the sign-in page's included (so public, like /login.css)."""
    return Response(THEME.read_bytes(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})


async def read_urlencoded(request: Request, fields: Iterable[str], names: str) -> dict[str, str]:
    """A browser form's ``fields`` (others ignored, the first of a repeated one kept), read within
    MAX_FORM bytes and decoded as UTF-8; YituError naming what is wrong. ``names`` lists the fields
    for the message a wrong content type gets."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise errors.UnsupportedMediaType(f"send the form as application/x-www-form-urlencoded ({names})", field="body")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise errors.Invalid(f"the form is larger than {MAX_FORM} bytes", field="body")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding="latin-1", strict_parsing=False)
    except UnicodeDecodeError:
        raise errors.Invalid("the form is not URL-encoded", field="body") from None
    out: dict[str, str] = {}
    for key, raw in pairs:
        if key not in fields or key in out:
            continue
        try:
            out[key] = raw.encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            raise errors.Invalid(f"{key} is not UTF-8", field=key) from None
    return out


async def read_form(request: Request) -> dict[str, str]:
    """The login form's fields, read within MAX_FORM bytes; YituError naming what is wrong."""
    out = await read_urlencoded(request, FIELDS, "username, password, next")
    for key in ("username", "password"):
        if not out.get(key, "").strip() if key == "username" else not out.get(key):
            raise errors.Invalid(f"{key} is required", field=key)
    if len(out["username"]) > identity.MAX_NAME:
        raise errors.Invalid(f"username is longer than {identity.MAX_NAME} characters", field="username")
    if len(out["password"]) > identity.MAX_PASSWORD:
        raise errors.Invalid(f"password is longer than {identity.MAX_PASSWORD} characters", field="password")
    return out


def set_session_cookie(response: Response, request: Request, cookie: str, who: Principal) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int((identity.SESSION_ABSOLUTE if who.kind == "user" else identity.SCREEN_SESSION).total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request.scope, request.app.state.settings.trusted_proxies),
    )


def _refusal(request: Request, lang: str, exc: errors.YituError, username: str = "", next_path: str = "/") -> Response:
    status, body, headers = errors.payload(exc)
    if not _wants_html(request):
        return JSONResponse(body, status_code=status, headers=headers)
    t = TEXTS[lang]
    field = exc.field or ""
    label = t.get(field, field)
    if isinstance(exc, errors.TooManyAttempts):
        message = t["throttled"].format(minutes=max(1, round(int(exc.extra.get("retry_after", 60)) / 60)))
    elif isinstance(exc, errors.Unauthorized):
        message = t["wrong"]
    elif isinstance(exc, errors.Forbidden):
        message = t["origin"]
    elif "required" in exc.message:
        message = t["invalid"].format(field=label)
    elif "UTF-8" in exc.message:
        message = t["encoding"].format(field=label)
    elif "longer" in exc.message:
        message = t["too_long"].format(field=label)
    else:
        message = exc.message
    page = _page(lang, next_path=next_path, message=message, field=field, username=username)
    return HTMLResponse(page, status_code=status, headers={**(headers or {}), "Cache-Control": "no-store"})


def _sign_in(svc: Services, username: str, password: str, address: str | None) -> Principal:
    with svc.pool.connection() as conn:
        what = "failed sign-ins for this account or from this address"
        identity.refuse_if_throttled(conn, "password", what, "username", account=username.strip(), address=address)
        who = identity.verify_user(conn, username, password)
        identity.record_attempt(conn, "password", who is not None, account=username.strip(), address=address)
    if who is None:
        raise errors.Unauthorized("wrong user name or password, or the account is disabled", field="password")
    return who


# The form routes are the sign-in page's, not the JSON API's: they answer a browser with HTML and
# redirects (303 to ``next`` or to /login; 401/403/415/422/429 as the page again, or as the one JSON
# error shape to a client not asking for HTML), and they are kept out of /openapi.json
# (``include_in_schema=False``) like ``GET /login`` and ``/pair/<code>``. Published there, a
# schema-driven client would treat them as API calls: fuzzing ``POST /login`` counts failed sign-ins
# against the caller's own address until it is throttled (429), and ``POST /logout`` ends the very
# session that client acts with. Their contract is this module's docstring and tests/test_signin.py.


@router.post("/login", status_code=303, include_in_schema=False)
async def login(request: Request) -> Response:
    """Sign in (form: username, password, next): the session cookie and 303 to ``next``."""
    lang = _lang(request)
    svc: Services = request.app.state.services
    form: dict[str, str] = {}
    try:
        if same_origin(request.scope, svc.settings.websocket_origins) is False:
            raise errors.Forbidden("the sign-in form came from another site", field="Origin")
        form = await read_form(request)
        address = client_address(request.scope)
        who = await run_in_threadpool(_sign_in, svc, form["username"], form["password"], address)
        who, cookie = await run_in_threadpool(_start, svc, who, address, request.headers.get("user-agent"))
    except errors.YituError as exc:
        return _refusal(request, lang, exc, form.get("username", ""), safe_next(form.get("next")))
    log.info("signed in user=%s role=%s", who.name, who.role)
    target = safe_next(form.get("next"))
    if who.role == identity.CREW_ROLE and target == "/":  # a van crew's home is its phone page
        target = "/m/van"
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, cookie, who)
    response.headers["Cache-Control"] = "no-store"
    return response


def _start(svc: Services, who: Principal, address: str | None, agent: str | None) -> tuple[Principal, str]:
    with svc.pool.connection() as conn:
        return identity.start_session(conn, who, address=address, user_agent=agent)


def _end(svc: Services, cookie: str) -> bool:
    with svc.pool.connection() as conn:
        return identity.end_session(conn, cookie)


@router.post("/logout", status_code=303, include_in_schema=False)
async def logout(request: Request) -> Response:
    """Sign out: the session ends and the cookie is cleared; 303 to the sign-in page."""
    cookie = cookie_value(request.scope)
    svc: Services = request.app.state.services
    if cookie and same_origin(request.scope, svc.settings.websocket_origins) is not False:
        await run_in_threadpool(_end, svc, cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _pair(svc: Services, code: str, address: str | None, agent: str | None) -> tuple[Principal, str]:
    with svc.pool.connection() as conn:
        identity.refuse_if_throttled(
            conn, "pairing", "unknown pairing codes from this address", "code", address=address
        )
        who = identity.redeem_pairing(conn, code)
        identity.record_attempt(conn, "pairing", who is not None, address=address)
        if who is None:
            conn.commit()  # the failure counts for the throttle: the pool rolls back what a raise leaves open
            raise errors.NotFound("unknown, used or expired pairing code", field="code")
        return identity.start_session(conn, who, address=address, user_agent=agent)


@router.get("/pair/{code}", include_in_schema=False)
async def pair(request: Request, code: str) -> Response:
    """Open a one-time pairing link in the wall's browser: it gets a screen session and goes to the wall."""
    lang = _lang(request)
    svc: Services = request.app.state.services
    try:
        who, cookie = await run_in_threadpool(
            _pair, svc, code, client_address(request.scope), request.headers.get("user-agent")
        )
    except errors.YituError as exc:
        status, _, headers = errors.payload(exc)
        t = TEXTS[lang]
        page = _page(lang, message=t["pair_bad"], field="code")
        return HTMLResponse(page, status_code=status, headers={**(headers or {}), "Cache-Control": "no-store"})
    log.info("screen paired screen=%s", who.name)
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, request, cookie, who)
    response.headers["Cache-Control"] = "no-store"
    return response

"""The one-time welcome link of an imported account: ``/welcome/<code>`` (services/welcome.py).

``GET`` shows whose account it is and a form for a new password (the admin page's rules:
services/identity.py ``check_password_rules``); it does not use the link up, so a chat app's link
preview cannot burn it. ``POST`` sets the password and uses the link up, then sends the person to
/login to sign in with it. A used, expired or unknown code answers 404 with a page saying to ask
the administrator for a new import; unknown codes count against the caller's address like pairing
codes (429 with Retry-After past the limit). Public in the policy table (api/guard.py), and, like
/login and /pair, kept out of /openapi.json: a form for browsers, not an API.
"""

from __future__ import annotations

import html
import logging

import psycopg
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from api import errors
from api.guard import client_address, same_origin
from api.page_head import page_head
from api.signin import read_urlencoded
from services import identity, welcome
from services.runtime import Services

log = logging.getLogger("yitu.welcome")
router = APIRouter(tags=["sign-in"])

TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "一图指挥 · 设置密码",
        "brand": "一图指挥",
        "heading": "设置密码",
        "hello": "欢迎，{name}。请为您的账号设置密码（至少 {min} 个字符），然后用它登录。",
        "password": "新密码",
        "password2": "再次输入新密码",
        "submit": "设置密码",
        "mismatch": "两次输入的密码不一致",
        "bad": "此链接无效、已使用或已过期。请联系管理员重新开通。",
        "throttled": "尝试次数过多，请 {minutes} 分钟后再试",
        "origin": "请求来源不符，请刷新页面后重试",
    },
    "en": {
        "title": "One-Map Command · Set your password",
        "brand": "One-Map Command",
        "heading": "Set your password",
        "hello": "Welcome, {name}. Set a password for your account (at least {min} characters), then sign in with it.",
        "password": "New password",
        "password2": "New password again",
        "submit": "Set password",
        "mismatch": "The two passwords differ",
        "bad": "This link is invalid, used or expired. Ask your administrator for a new one.",
        "throttled": "Too many attempts; try again in {minutes} minutes",
        "origin": "The request came from another site; reload the page and try again",
    },
}
FIELDS = ("password", "password2")
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _lang(request: Request) -> str:
    lang: str = request.app.state.settings.lang
    return lang if lang in TEXTS else "zh-CN"


def _page(lang: str, code: str, name: str | None, message: str = "", field: str = "") -> str:
    t = TEXTS[lang]
    esc = html.escape
    error = f'<p class="yitu-error" role="alert" data-field="{esc(field)}">{esc(message)}</p>' if message else ""
    form = ""
    if name is not None:
        hello = t["hello"].format(name=name, min=identity.MIN_PASSWORD)
        form = f"""<p class="yitu-sub" id="welcome-hello">{esc(hello)}</p>
<form method="post" action="/welcome/{esc(code)}" autocomplete="off">
<input type="text" name="username" value="{esc(name)}" autocomplete="username" hidden readonly>
<label for="password">{esc(t["password"])}</label>
<input id="password" name="password" type="password" minlength="{identity.MIN_PASSWORD}"
 maxlength="{identity.MAX_PASSWORD}" autocomplete="new-password" required autofocus>
<label for="password2">{esc(t["password2"])}</label>
<input id="password2" name="password2" type="password" maxlength="{identity.MAX_PASSWORD}"
 autocomplete="new-password" required>
<button type="submit" id="welcome-set">{esc(t["submit"])}</button>
{error}
</form>"""
    else:
        form = error
    head = page_head(
        lang, t["title"], [("stylesheet", "/theme.css"), ("stylesheet", "/login.css")], referrer="no-referrer"
    )
    return f"""{head}
<body>
<main class="yitu-login">
<h1>{esc(t["brand"])}</h1>
<p class="yitu-sub">{esc(t["heading"])}</p>
{form}
</main>
</body>
</html>
"""


def _look_up(svc: Services, code: str, address: str | None) -> str:
    """The account of a live code; TooManyAttempts for an address that guesses, NotFound otherwise.
    The failed attempt is committed before NotFound is raised (the pool rolls back on an exception)."""
    with svc.pool.connection() as conn:
        _throttle(conn, address)
        name = welcome.welcome_user(conn, code)
        if name is None:
            identity.record_attempt(conn, "welcome", False, address=address)
    if name is None:
        raise errors.NotFound("unknown, used or expired welcome link", field="code")
    return name


def _throttle(conn: psycopg.Connection, address: str | None) -> None:
    identity.refuse_if_throttled(conn, "welcome", "unknown welcome links from this address", "code", address=address)


def _redeem(svc: Services, code: str, password: str, address: str | None) -> str:
    with svc.pool.connection() as conn:
        _throttle(conn, address)
        name = welcome.redeem_welcome(conn, code, password)
        identity.record_attempt(conn, "welcome", name is not None, address=address)
    if name is None:
        raise errors.NotFound("unknown, used or expired welcome link", field="code")
    return name


def _refused(lang: str, code: str, name: str | None, exc: errors.YituError) -> HTMLResponse:
    status, _, headers = errors.payload(exc)
    t = TEXTS[lang]
    if isinstance(exc, errors.TooManyAttempts):
        message = t["throttled"].format(minutes=max(1, round(int(exc.extra.get("retry_after", 60)) / 60)))
        name = None
    elif isinstance(exc, errors.NotFound):
        message, name = t["bad"], None
    elif isinstance(exc, errors.Forbidden):
        message = t["origin"]
    else:
        message = exc.message
    page = _page(lang, code, name, message, exc.field or "")
    return HTMLResponse(page, status_code=status, headers={**(headers or {}), **NO_STORE})


@router.get("/welcome/{code}", include_in_schema=False)
async def welcome_page(request: Request, code: str) -> Response:
    """The form to set the first password; the link stays unused until the form is sent."""
    lang = _lang(request)
    svc: Services = request.app.state.services
    try:
        name = await run_in_threadpool(_look_up, svc, code, client_address(request.scope))
    except errors.YituError as exc:
        return _refused(lang, code, None, exc)
    return HTMLResponse(_page(lang, code, name), headers=NO_STORE)


@router.post("/welcome/{code}", status_code=303, include_in_schema=False)
async def set_first_password(request: Request, code: str) -> Response:
    """Set the password (form: password, password2) and use the link up; 303 to /login."""
    lang = _lang(request)
    svc: Services = request.app.state.services
    address = client_address(request.scope)
    name: str | None = None
    try:
        if same_origin(request.scope, svc.settings.websocket_origins) is False:
            raise errors.Forbidden("the form came from another site", field="Origin")
        form = await read_urlencoded(request, FIELDS, "password, password2")
        name = await run_in_threadpool(_look_up, svc, code, address)
        password = form.get("password", "")
        if password != form.get("password2", ""):
            raise errors.Invalid(TEXTS[lang]["mismatch"], field="password2")
        identity.check_password_rules(password)
        name = await run_in_threadpool(_redeem, svc, code, password, address)
    except errors.YituError as exc:
        return _refused(lang, code, name, exc)
    log.info("welcome link used user=%s", name)
    return RedirectResponse("/login", status_code=303, headers=NO_STORE)

"""People sign in: the form, the cookie, the session's timeouts, the throttle, CSRF, next=, `yitu user`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cli.users import user_group
from dashboard.app import create_app
from services import identity
from services.settings import Settings

from .cases_fixtures import settings_for
from .conftest import PASSWORD, create_user, make_token
from .helpers import keyed

ORIGIN = {"Origin": "http://testserver"}


@pytest.fixture
def app_settings_signin(db_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return settings_for(db_url, redis_url, tmp_path)


@pytest.fixture
def app_client(app_settings_signin: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings_signin)) as c:
        yield c


def _login(c: TestClient, username: str, password: str = PASSWORD, next: str = "/", **headers: str) -> httpx.Response:
    return c.post(
        "/login",
        data={"username": username, "password": password, "next": next},
        headers=headers,
        follow_redirects=False,
    )


def _cookie(r: httpx.Response) -> str:
    value = r.cookies.get(identity.SESSION_COOKIE)
    assert value, r.headers
    return value


def _as(c: TestClient, cookie: str) -> TestClient:
    c.cookies.clear()
    c.cookies.set(identity.SESSION_COOKIE, cookie)
    return c


def test_a_user_signs_in_gets_a_strict_cookie_and_signs_out(app_client: TestClient, db_url: str) -> None:
    c = app_client
    assert c.get("/", follow_redirects=False).status_code == 302
    name = create_user(db_url, "dispatcher")
    r = _login(c, name, next="/dispatch")
    assert r.status_code == 303 and r.headers["location"] == "/dispatch"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("yitu_session=")
    flags = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
    assert {"httponly", "path", "samesite", "max-age"} <= flags and "secure" not in flags  # plain HTTP here
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    value = _cookie(r)
    with psycopg.connect(db_url) as conn:  # only the SHA-256 of the cookie is stored
        assert conn.execute("SELECT count(*) FROM sessions WHERE token_hash = %s", (value,)).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM sessions WHERE token_hash = %s", (identity.hash_token(value),)
        ).fetchone() == (1,)
    _as(c, value)
    assert c.get("/", follow_redirects=False).status_code == 200
    assert c.get("/api/v1/vans").status_code == 200  # the API takes the session too
    r = c.post("/logout", headers=ORIGIN, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert 'yitu_session=""' in r.headers["set-cookie"] or "max-age=0" in r.headers["set-cookie"].lower()
    _as(c, value)  # the old cookie, kept by someone: the session is over
    assert c.get("/api/v1/vans").status_code == 401
    assert c.get("/", follow_redirects=False).status_code == 302


def test_the_cookie_is_secure_over_https_and_behind_a_trusted_proxy(app_settings_signin: Settings, db_url: str) -> None:
    name = create_user(db_url, "viewer")
    with TestClient(create_app(app_settings_signin), base_url="https://testserver") as c:
        r = _login(c, name)
        assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
    trusting = app_settings_signin.model_copy(update={"trusted_proxies": ["testclient"]})
    with TestClient(create_app(trusting)) as c:
        r = _login(c, name, **{"X-Forwarded-Proto": "https"})
        assert "secure" in r.headers["set-cookie"].lower()
    with TestClient(create_app(app_settings_signin)) as c:  # the header from an untrusted peer means nothing
        r = _login(c, name, **{"X-Forwarded-Proto": "https"})
        assert "secure" not in r.headers["set-cookie"].lower()


def test_wrong_passwords_and_disabled_users_are_refused(app_client: TestClient, db_url: str) -> None:
    c = app_client
    name = create_user(db_url, "viewer")
    r = _login(c, name, "not the password")
    assert (
        r.status_code == 401
        and r.json()["field"] == "password"
        and "yitu_session" not in r.headers.get("set-cookie", "")
    )
    r = _login(c, "nobody-at-all", PASSWORD)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"  # same answer: names are not told
    page = _login(c, name, "not the password", Accept="text/html")
    assert page.status_code == 401 and "用户名或密码错误" in page.text and 'value="' + name + '"' in page.text
    session = _cookie(_login(c, name))
    _as(c, session)
    assert c.get("/api/v1/vans").status_code == 200
    with psycopg.connect(db_url) as conn:
        identity.set_user_disabled(conn, name, True)
    assert c.get("/api/v1/vans").status_code == 401  # at once: sessions are looked up on every request
    c.cookies.clear()
    assert _login(c, name).status_code == 401
    with psycopg.connect(db_url) as conn:
        identity.set_user_disabled(conn, name, False)
    assert _login(c, name).status_code == 303


def test_an_unknown_name_is_checked_against_a_hash_as_costly_as_a_users() -> None:
    """The hash an unknown name is checked against (so that timing does not tell which names exist)
    is a constant since 2026-12-07: it must keep the parameters the hasher gives every password, or an
    unknown name would answer faster (or slower) than a wrong password."""
    hasher = identity.PasswordHasher()
    assert identity.DUMMY_HASH.split("$")[3] == identity.hash_password(PASSWORD).split("$")[3]  # m=…,t=…,p=…
    assert not hasher.check_needs_rehash(identity.DUMMY_HASH)
    for guess in ("", PASSWORD, "yitu-no-such-user-"):
        with pytest.raises(identity.VerifyMismatchError):
            hasher.verify(identity.DUMMY_HASH, guess)


def test_idle_and_absolute_expiry(app_client: TestClient, db_url: str) -> None:
    c = app_client
    name = create_user(db_url, "viewer")
    idle, absolute, screen = _cookie(_login(c, name)), _cookie(_login(c, name)), None
    with psycopg.connect(db_url) as conn:
        span = conn.execute(
            "SELECT expires_at - created_at FROM sessions WHERE token_hash = %s", (identity.hash_token(absolute),)
        ).fetchone()[0]
        assert span.total_seconds() == 12 * 3600
        _, code = identity.create_screen(conn, "hall")
    screen = _cookie(c.get(f"/pair/{code}", follow_redirects=False))
    assert _as(c, idle).get("/api/v1/vans").status_code == 200
    with psycopg.connect(db_url) as conn:  # 31 minutes without a request (YITU_SESSION_IDLE_MINUTES=30)
        conn.execute(
            "UPDATE sessions SET last_seen_at = now() - interval '31 minutes' WHERE token_hash = ANY(%s)",
            ([identity.hash_token(idle), identity.hash_token(screen)],),
        )
        conn.execute(  # 12 h after signing in, however busy
            "UPDATE sessions SET created_at = now() - interval '12 hours 1 minute', "
            "expires_at = now() - interval '1 minute' WHERE token_hash = %s",
            (identity.hash_token(absolute),),
        )
    assert _as(c, idle).get("/api/v1/vans").status_code == 401
    assert _as(c, absolute).get("/api/v1/vans").status_code == 401
    assert _as(c, screen).get("/api/v1/vans").status_code == 200  # a wall screen has no idle timeout


def test_an_active_session_is_touched_at_most_every_half_minute(app_client: TestClient, db_url: str) -> None:
    c = app_client
    cookie = _cookie(_login(c, create_user(db_url, "viewer")))
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE sessions SET last_seen_at = now() - interval '29 minutes' WHERE token_hash = %s",
            (identity.hash_token(cookie),),
        )
    assert _as(c, cookie).get("/api/v1/vans").status_code == 200
    with psycopg.connect(db_url) as conn:
        seen = conn.execute(
            "SELECT now() - last_seen_at FROM sessions WHERE token_hash = %s", (identity.hash_token(cookie),)
        ).fetchone()[0]
    assert seen.total_seconds() < 5  # the request counted as activity


def test_five_failures_for_an_account_are_throttled_with_retry_after(app_client: TestClient, db_url: str) -> None:
    c = app_client
    name, other = create_user(db_url, "viewer"), create_user(db_url, "viewer")
    for _ in range(5):
        assert _login(c, name, "wrong password").status_code == 401
    r = _login(c, name, PASSWORD)  # even the right password: the account waits
    assert r.status_code == 429 and r.json()["error"] == "too_many_attempts"
    wait = int(r.headers["retry-after"])
    assert 0 < wait <= 15 * 60
    html = _login(c, name, PASSWORD, Accept="text/html")
    assert html.status_code == 429 and "尝试次数过多" in html.text and html.headers["retry-after"]
    assert _login(c, other).status_code == 303  # another account from the same address still signs in
    with psycopg.connect(db_url) as conn:  # the window passes
        conn.execute("UPDATE signin_attempts SET at = at - interval '16 minutes'")
    assert _login(c, name).status_code == 303


def test_twenty_failures_from_an_address_are_throttled(app_client: TestClient, db_url: str) -> None:
    c = app_client
    names = [create_user(db_url, "viewer", name=f"p{i}") for i in range(5)]
    for i in range(20):
        assert _login(c, names[i % 5] if i < 15 else f"ghost{i}", "wrong password").status_code == 401
    r = _login(c, create_user(db_url, "viewer"))  # a new account, the right password: the address waits
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_the_throttle_is_shared_by_processes(app_settings_signin: Settings, db_url: str) -> None:
    name = create_user(db_url, "viewer")
    with TestClient(create_app(app_settings_signin)) as a, TestClient(create_app(app_settings_signin)) as b:
        for c in (a, b, a, b, a):
            assert _login(c, name, "wrong password").status_code == 401
        assert _login(b, name).status_code == 429


@pytest.mark.parametrize(
    ("body", "ctype", "status", "field"),
    [
        ({"password": PASSWORD}, None, 422, "username"),
        ({"username": "someone"}, None, 422, "password"),
        ({"username": "", "password": PASSWORD}, None, 422, "username"),
        ({"username": "x" * 101, "password": PASSWORD}, None, 422, "username"),
        ({"username": "someone", "password": "p" * 1025}, None, 422, "password"),
        (b"username=%FF%FE&password=abcdefghijkl", None, 422, "username"),
        (b"username=someone&password=%C3%28abcdefghij", None, 422, "password"),
        (b"username=" + b"a" * 9000 + b"&password=x", None, 422, "body"),
        (b'{"username": "someone", "password": "abcdefghijkl"}', "application/json", 415, "body"),
        (b"username=\xff\xfe&password=abcdefghijkl", None, 422, "body"),
    ],
)
def test_hostile_sign_in_input_is_refused_naming_the_field(
    app_client: TestClient, body: Any, ctype: str | None, status: int, field: str
) -> None:
    headers = {"Content-Type": ctype or "application/x-www-form-urlencoded"}
    if isinstance(body, dict):
        r = app_client.post("/login", data=body, follow_redirects=False)
    else:
        r = app_client.post("/login", content=body, headers=headers, follow_redirects=False)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and r.json()["error"] in ("invalid", "unsupported_media_type")
    assert "set-cookie" not in r.headers


def test_next_stays_on_this_site(app_client: TestClient, db_url: str) -> None:
    c = app_client
    r = c.get("/area/150623?step=handling", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/login?next=/area/150623%3Fstep%3Dhandling"
    page = c.get(r.headers["location"])
    assert page.status_code == 200 and 'name="next" value="/area/150623?step=handling"' in page.text
    name = create_user(db_url, "viewer")
    assert _login(c, name, next="/area/150623?step=handling").headers["location"] == "/area/150623?step=handling"
    for hostile in (
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "http:/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/ok\r\nSet-Cookie: x=1",
    ):
        assert _login(c, name, next=hostile).headers["location"] == "/", hostile
        assert 'name="next" value="/"' in c.get("/login", params={"next": hostile}).text


def test_changes_with_the_cookie_need_this_sites_origin(app_client: TestClient, db_url: str) -> None:
    c = app_client
    _as(c, _cookie(_login(c, create_user(db_url, "admin"))))
    body = {"type": "grassland", "description": "x", "lon": 107.5, "lat": 38.2, "channel": "hotline_12345"}
    for headers in ({}, {"Origin": "http://evil.example"}, {"Referer": "http://evil.example/page"}, {"Origin": "null"}):
        r = c.post("/api/v1/cases", json=body, headers=headers)
        assert r.status_code == 403 and r.json()["field"] == "Origin", (headers, r.text)
    assert c.post("/api/v1/cases", json=body, headers=keyed(ORIGIN)).status_code not in (401, 403)
    assert c.post(
        "/api/v1/cases", json=body, headers=keyed({"Referer": "http://testserver/dispatch"})
    ).status_code not in (401, 403)
    assert c.get("/api/v1/cases?limit=1").status_code == 200  # reads need no Origin
    # A bearer call carries no ambient credential: no Origin needed.
    c.cookies.clear()
    tok = make_token(db_url, "admin")
    r = c.post("/api/v1/cases", json=body, headers=keyed({"Authorization": f"Bearer {tok}"}))
    assert r.status_code not in (401, 403)
    # The sign-in form posted from another site is refused too (login CSRF).
    name = create_user(db_url, "viewer")
    assert _login(c, name, Origin="http://evil.example").status_code == 403


def _cli(settings: Settings, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(user_group, list(args), obj=settings, input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_yitu_user_commands(app_client: TestClient, app_settings_signin: Settings, db_url: str) -> None:
    s = app_settings_signin
    code, out, err = _cli(s, "create", "巴图", "--role", "dispatcher", "--password-stdin", stdin="a long secret 1\n")
    assert code == 0 and "巴图 (dispatcher) created" in out, err
    assert _login(app_client, "巴图", "a long secret 1").status_code == 303
    code, _, err = _cli(s, "create", "巴图", "--role", "viewer", "--password-stdin", stdin="a long secret 2\n")
    assert code == 1 and "exists already" in err
    code, _, err = _cli(s, "create", "short", "--role", "viewer", "--password-stdin", stdin="too short\n")
    assert code == 1 and "at least 10 characters" in err
    code, _, err = _cli(s, "create", "x", "--role", "boss", "--password-stdin", stdin="a long secret 3\n")
    assert code == 2 and "--role" in err
    code, _, err = _cli(
        s, "create", "y", "--role", "viewer", "--area", "999999", "--password-stdin", stdin="a long secret 3\n"
    )
    assert code == 1 and "no area with code" in err
    code, _, err = _cli(s, "create", "z", "--role", "viewer", "--password-stdin", stdin="")
    assert code == 2 and "no password" in err
    code, out, _ = _cli(s, "list")
    assert code == 0 and "\t巴图\tdispatcher\t-\t" in out and "argon2" not in out
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT password_hash FROM users WHERE name = '巴图'").fetchone()[0]
    assert stored.startswith("$argon2id$") and "a long secret" not in stored
    session = _cookie(_login(app_client, "巴图", "a long secret 1"))
    code, out, _ = _cli(s, "passwd", "巴图", "--password-stdin", stdin="another long secret\n")
    assert code == 0 and "sessions ended" in out
    assert _as(app_client, session).get("/api/v1/vans").status_code == 401  # the old session ended
    app_client.cookies.clear()
    assert _login(app_client, "巴图", "a long secret 1").status_code == 401
    assert _login(app_client, "巴图", "another long secret").status_code == 303
    assert _cli(s, "disable", "巴图")[1].strip() == "user 巴图 disabled"
    assert _login(app_client, "巴图", "another long secret").status_code == 401
    row = next(line.split("\t") for line in _cli(s, "list")[1].splitlines() if "\t巴图\t" in line)
    assert row[5] != "-"  # the disabled column has a time
    assert _cli(s, "enable", "巴图")[1].strip() == "user 巴图 enabled"
    assert _login(app_client, "巴图", "another long secret").status_code == 303
    code, _, err = _cli(s, "disable", "nobody")
    assert code == 1 and "no user named" in err
    code, out, _ = _cli(s, "--help")
    assert all(cmd in out for cmd in ("create", "list", "disable", "enable", "passwd"))
    code, out, _ = _cli(s, "create", "--help")
    assert "--password-stdin" in out and "grid_worker" in out


def test_the_login_page_is_plain_html_in_the_apps_language(app_settings_signin: Settings) -> None:
    with TestClient(create_app(app_settings_signin)) as c:
        page = c.get("/login")
        css = c.get("/login.css")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in page.text and "登录" in page.text and "_dash" not in page.text
    assert 'href="/login.css"' in page.text and "http" not in page.text.split("<body>")[0].replace("http-equiv", "")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    with TestClient(create_app(app_settings_signin.model_copy(update={"lang": "en"}))) as c:
        page = c.get("/login")
    assert '<html lang="en">' in page.text and "Sign in" in page.text

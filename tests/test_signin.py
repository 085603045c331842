"""Signing in and out: the form, the cookie, the session's timeouts, the throttle, CSRF, next=."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from dashboard.app import create_app
from services.settings import Settings

from .cases_fixtures import settings_for
from .conftest import PASSWORD, create_user, make_token, sign_in


@pytest.fixture
def app_client(db_url: str, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(db_url, redis_url, tmp_path))) as c:
        yield c


def _login(c: TestClient, username: str, password: str = PASSWORD, next: str = "/", **headers: str):  # type: ignore[no-untyped-def]
    return c.post(
        "/login",
        data={"username": username, "password": password, "next": next},
        headers=headers,
        follow_redirects=False,
    )


def test_a_user_signs_in_gets_a_strict_cookie_and_signs_out(app_client: TestClient, db_url: str) -> None:
    c = app_client
    assert c.get("/", follow_redirects=False).status_code == 302
    name = create_user(db_url, "dispatcher")
    r = _login(c, name, next="/dispatch")
    assert r.status_code == 303 and r.headers["location"] == "/dispatch"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("yitu_session=")
    flags = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
    assert {"httponly", "path", "samesite"} <= flags and "secure" not in flags
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    c.cookies.set("yitu_session", r.cookies["yitu_session"])
    assert c.get("/", follow_redirects=False).status_code == 200
    assert c.get("/api/v1/vans").status_code == 200
    r = c.post("/logout", headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    c.cookies.set("yitu_session", cookie.split(";")[0].split("=", 1)[1])
    assert c.get("/api/v1/vans").status_code == 401

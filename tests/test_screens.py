"""Wall screens: `yitu screen …`, pairing once within 10 minutes, and a revoked screen's open page
showing the sign-in page within 10 seconds (in Chromium)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from playwright.sync_api import Browser

from cli.users import screen_group
from dashboard.app import create_app
from services import identity
from services.settings import Settings

from .browser import SETTLED, Watched, browser  # noqa: F401 - browser is a fixture
from .cases_fixtures import settings_for
from .conftest import make_token
from .helpers import keyed


@pytest.fixture
def screen_settings(db_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return settings_for(db_url, redis_url, tmp_path, public_url="https://yitu.example")


@pytest.fixture
def app_client(screen_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(screen_settings)) as c:
        yield c


def _cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(screen_group, list(args), obj=settings)
    return result.exit_code, result.stdout, result.stderr


def _code(out: str) -> str:
    m = re.fullmatch(r"https://yitu\.example/pair/([A-Za-z0-9_-]+)\n", out)
    assert m, out
    return m.group(1)


def test_guessed_pairing_codes_are_throttled_by_address(app_client: TestClient, db_url: str) -> None:
    statuses = [app_client.get(f"/pair/guess{n:04d}", follow_redirects=False).status_code for n in range(25)]
    assert statuses[:20] == [404] * 20  # ADDRESS_LIMIT unknown codes from one address in the window...
    assert set(statuses[20:]) == {429}  # ...then refused before any code is looked at
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM signin_attempts WHERE kind = 'pairing' AND NOT ok").fetchone()
    assert row == (20,)


def test_a_pairing_link_works_once(app_client: TestClient, screen_settings: Settings, db_url: str) -> None:
    code, out, err = _cli(screen_settings, "create", "会议室大屏")
    assert code == 0 and "once, 10 minutes" in err, err
    pairing = _code(out)
    with psycopg.connect(db_url) as conn:  # only the hash of the code is kept
        assert conn.execute("SELECT count(*) FROM screen_pairings WHERE code_hash = %s", (pairing,)).fetchone() == (0,)
    r = app_client.get(f"/pair/{pairing}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.cookies["yitu_session"]
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    with psycopg.connect(db_url) as conn:
        kind, span = conn.execute(
            "SELECT kind, expires_at - created_at FROM sessions WHERE token_hash = %s", (identity.hash_token(cookie),)
        ).fetchone()
    assert kind == "screen" and span.days >= 365  # long-lived
    app_client.cookies.set("yitu_session", cookie)
    assert app_client.get("/", follow_redirects=False).status_code == 200
    assert app_client.get("/api/v1/vans").status_code == 200
    again = TestClient(app_client.app)  # another browser (the same app, its lifespan already running)
    r = again.get(f"/pair/{pairing}", follow_redirects=False)
    assert r.status_code == 404 and "set-cookie" not in r.headers and "配对链接无效" in r.text
    # A new link for the same screen (another browser of the wall), and the list.
    code, out, _ = _cli(screen_settings, "pair", "会议室大屏")
    assert code == 0 and again.get(f"/pair/{_code(out)}", follow_redirects=False).status_code == 303
    code, out, _ = _cli(screen_settings, "list")
    assert code == 0 and re.search(r"\t会议室大屏\t-\t\S+\t-\t2\t", out), out


def test_an_expired_or_unknown_link_pairs_nothing(
    app_client: TestClient, screen_settings: Settings, db_url: str
) -> None:
    _, out, _ = _cli(screen_settings, "create", "hall")
    pairing = _code(out)
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE screen_pairings SET expires_at = created_at + interval '10 minutes'")
        assert conn.execute("SELECT expires_at - created_at FROM screen_pairings").fetchone()[0].seconds == 600
        conn.execute(
            "UPDATE screen_pairings SET created_at = now() - interval '11 minutes', "
            "expires_at = now() - interval '1 minute'"
        )
    assert app_client.get(f"/pair/{pairing}", follow_redirects=False).status_code == 404
    assert app_client.get("/pair/" + "x" * 500, follow_redirects=False).status_code == 404
    code, _, err = _cli(screen_settings, "create", "hall")
    assert code == 1 and "exists already" in err
    code, _, err = _cli(screen_settings, "create", "other", "--area", "999999")
    assert code == 1 and "no area with code" in err


def test_a_screen_is_read_only_and_masked(app_client: TestClient, screen_settings: Settings, db_url: str) -> None:
    _, out, _ = _cli(screen_settings, "create", "lobby")
    r = app_client.get(f"/pair/{_code(out)}", follow_redirects=False)
    app_client.cookies.set("yitu_session", r.cookies["yitu_session"])
    who = app_client.get("/api/v1/vans")
    assert who.status_code == 200
    r = app_client.post("/api/v1/vans/positions", json={"positions": []}, headers={"Origin": "http://testserver"})
    assert r.status_code == 403


def test_revoke_ends_the_sessions_and_dead_links(
    app_client: TestClient, screen_settings: Settings, db_url: str
) -> None:
    _, out, _ = _cli(screen_settings, "create", "lobby")
    first = app_client.get(f"/pair/{_code(out)}", follow_redirects=False).cookies["yitu_session"]
    _, out, _ = _cli(screen_settings, "pair", "lobby")
    unused = _code(out)
    app_client.cookies.set("yitu_session", first)
    assert app_client.get("/api/v1/vans").status_code == 200
    code, out, _ = _cli(screen_settings, "revoke", "lobby")
    assert code == 0 and "revoked" in out
    assert app_client.get("/api/v1/vans").status_code == 401
    assert app_client.get("/", follow_redirects=False).status_code == 302
    app_client.cookies.clear()
    assert app_client.get(f"/pair/{unused}", follow_redirects=False).status_code == 404
    code, _, err = _cli(screen_settings, "revoke", "lobby")
    assert code == 1 and "no live screen" in err
    code, _, err = _cli(screen_settings, "pair", "lobby")
    assert code == 1 and "no live screen" in err


@pytest.mark.browser
def test_a_revoked_screens_open_page_shows_the_login_page_within_10_seconds(
    live_server, demo_db: str, redis_url: str, browser: Browser, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    with psycopg.connect(demo_db) as conn:
        _, pairing = identity.create_screen(conn, "指挥大厅")
    w = Watched(browser, srv.url)
    p = w.page
    p.goto(f"{srv.url}/pair/{pairing}")
    p.wait_for_function(SETTLED, timeout=30_000)
    assert p.url == srv.url + "/"
    # The live push is up: a case reported now reaches the page.
    admin = make_token(demo_db, "admin")
    r = httpx.post(
        srv.url + "/api/v1/cases",
        headers=keyed({"Authorization": f"Bearer {admin}"}),
        json={"type": "grassland", "description": "草场争议", "lon": 107.5, "lat": 38.2, "channel": "hotline_12345"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    p.wait_for_function("c => window.yitu.live.seen[c] !== undefined", arg=r.json()["code"], timeout=15_000)

    settings = Settings(database_url=demo_db, redis_url=redis_url, home=tmp_path / "h", _env_file=None)
    code, _, err = _cli(settings, "revoke", "指挥大厅")
    assert code == 0, err
    revoked = time.monotonic()
    p.wait_for_url(re.compile(r".*/login\?next=.*"), timeout=10_000)
    assert time.monotonic() - revoked < 10
    assert p.locator("#username").is_visible() and p.locator("#password").is_visible()
    # The 401s that led there are expected on this page: nothing else went wrong.
    w.problems = [x for x in w.problems if "401" not in x]
    w.close()

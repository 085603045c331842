"""The guard (api/guard.py): every route, callback and the WebSocket has a declared policy, and an
anonymous caller gets nothing from any of them; tokens and device identifiers cannot be guessed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dash.exceptions import PreventUpdate
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api import guard
from dashboard.app import create_app
from services import identity
from services.identity import Principal

from .cases_fixtures import case_body, inner_point, settings_for
from .conftest import make_token, pair_screen, sign_in

PUBLIC = {path for path, policy in guard.ROUTES.items() if policy.anonymous}
ORIGIN = {"Origin": "http://testserver"}


@pytest.fixture
def app_client(demo_db: str, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(demo_db, redis_url, tmp_path))) as c:
        yield c


def _routes(app: Any) -> Iterator[tuple[str, set[str], str]]:
    """(path, methods, kind) of every route the app serves, included routers flattened."""
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            for ctx in contexts():
                yield str(ctx.path), set(ctx.methods or ()), "http"
        elif type(route).__name__ == "Mount":
            yield str(route.path), {"GET"}, "mount"
        elif "WebSocket" in type(route).__name__:
            yield str(route.path), set(), "websocket"
        else:
            yield str(route.path), set(getattr(route, "methods", None) or ()), "http"


def test_every_route_and_callback_has_a_declared_policy(app_client: TestClient) -> None:
    app = app_client.app
    served = {path for path, _, _ in _routes(app)}
    assert served == set(guard.route_paths(app.routes)) | {p for p, _, k in _routes(app) if k != "http"}
    undeclared = sorted(served - set(guard.ROUTES))
    assert undeclared == [], f"routes without a policy in api/guard.py ROUTES: {undeclared}"
    stale = sorted(set(guard.ROUTES) - served)
    assert stale == [], f"policies for routes the app does not serve: {stale}"
    assert guard.ROUTES["/_dash-ws-callback"].face is guard.Face.SOCKET
    assert guard.ROUTES["/_dash-update-component"].face is guard.Face.CALLBACK

    dash_app = app.state.dash  # type: ignore[attr-defined]
    server_side = [spec["callback"] for spec in dash_app.callback_map.values() if "callback" in spec]
    names = {guard.callback_name(fn) for fn in server_side}
    assert sorted(names - set(guard.CALLBACKS)) == [], "callbacks without a policy in api/guard.py CALLBACKS"
    assert sorted(set(guard.CALLBACKS) - names) == [], "policies for callbacks that do not exist"
    assert all(getattr(fn, "_yitu_guarded", False) for fn in server_side)  # each runs behind its check
    assert guard.enforce_callbacks(dash_app) == []


def _sample(path: str, demo: dict[str, str]) -> str:
    values = {
        "code": demo["case"] if "/cases/" in path else demo["area"],
        "name": "cases",
        "van": "V01",
        "dispatch_id": "1",
        "mediator_id": "1",
        "unit_id": "1",
        "attachment_id": "1",
        "action": "accept",
        "package_name": "dash",
        "fingerprinted_path:path": "dash.min.js",
        "rest:path": "v1/no-such-thing",
        "z": "9",  # a base map tile (api/basemap.py)
        "x": "418",
        "y": "195.png",  # the JSON 404 of the rest of /api/: no data, no hint either
    }
    if path.startswith("/pair/"):
        return "/pair/not-a-code"
    return re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], path)


def _assert_no_data(r: Any, path: str) -> None:
    body = r.json()
    assert set(body) <= {"error", "message", "field"}, (path, body)
    assert body["error"] == "unauthorized", (path, body)


def test_anonymous_callers_get_401_or_302_and_no_data(app_client: TestClient, demo_db: str) -> None:
    c = app_client
    with psycopg.connect(demo_db) as conn:
        demo = {
            "case": conn.execute("SELECT code FROM cases ORDER BY id LIMIT 1").fetchone()[0],
            "area": conn.execute("SELECT code FROM areas WHERE level = 2 ORDER BY code LIMIT 1").fetchone()[0],
        }
    checked = 0
    for path, methods, kind in _routes(c.app):
        if path in PUBLIC or not path.startswith("/"):  # the catch-all: pages checked below
            continue
        policy = guard.ROUTES[path]
        if kind == "websocket":
            with pytest.raises(WebSocketDisconnect), c.websocket_connect(path, headers=ORIGIN) as ws:
                ws.receive_text()
            checked += 1
            continue
        url = _sample(path, demo)
        if kind == "mount":
            url += "/yitu.css" if path == "/assets" else "/swagger-ui.css"
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            r = c.request(method, url, json={} if method != "GET" else None, follow_redirects=False)
            if policy.face is guard.Face.PAGE and method == "GET":
                assert r.status_code == 302, (method, url, r.status_code)
                assert r.headers["location"].startswith("/login?next=/"), (url, r.headers["location"])
                assert r.content == b""
            else:
                assert r.status_code == 401, (method, url, r.status_code, r.text[:200])
                _assert_no_data(r, url)
            checked += 1
    assert checked >= 35
    # Every page Dash's catch-all serves, and paths nobody declared: a page redirects, the API refuses.
    for page in ("/dispatch", f"/area/{demo['area']}", "/no-such-page"):
        r = c.get(page, follow_redirects=False)
        assert r.status_code == 302 and r.headers["location"].startswith("/login?next=")
    _assert_no_data(c.get("/api/v1/no-such-thing"), "/api/v1/no-such-thing")
    # Every callback, by its output: 401 before Dash reads the body.
    for output in c.app.state.dash.callback_map:  # type: ignore[attr-defined]
        r = c.post("/_dash-update-component", json={"output": output, "outputs": [], "inputs": []}, headers=ORIGIN)
        assert r.status_code == 401, output
        _assert_no_data(r, output)
    # A wrong token gets 401 too, a wrong cookie the login page.
    r = c.get("/api/v1/vans", headers={"Authorization": "Bearer yitu_nope"})
    assert r.status_code == 401 and r.json()["field"] == "Authorization"
    c.cookies.set("yitu_session", "forged")
    assert c.get("/", follow_redirects=False).status_code == 302


def test_the_public_routes_tell_anonymous_callers_nothing_more(app_client: TestClient, demo_db: str) -> None:
    c = app_client
    assert c.get("/healthz").json() == {"status": "ok"}  # no versions, no parts
    assert c.get("/login").status_code == 200 and c.get("/login.css").status_code == 200
    assert c.get("/pair/nothing", follow_redirects=False).status_code == 404
    assert c.post("/logout", follow_redirects=False).status_code == 303
    r = c.get("/osmand", params={"id": "unknown-device", "lat": 38.2, "lon": 107.5})
    assert r.status_code == 403 and r.json()["field"] == "id"
    sign_in(c, demo_db, "viewer")
    assert c.get("/healthz").json() == {"status": "ok"}  # a viewer neither
    sign_in(c, demo_db, "admin")
    body = c.get("/healthz").json()
    assert body["status"] == "ok" and body["redis"] == "ok" and body["postgis"][0].isdigit()


def test_a_signed_in_browser_and_a_token_reach_the_same_routes(app_client: TestClient, demo_db: str) -> None:
    c = app_client
    tok = make_token(demo_db, "viewer")
    by_token = c.get("/api/v1/cases?limit=3", headers={"Authorization": f"Bearer {tok}"})
    sign_in(c, demo_db, "viewer")
    by_cookie = c.get("/api/v1/cases?limit=3")
    assert by_token.status_code == by_cookie.status_code == 200
    assert by_token.json() == by_cookie.json()
    assert c.get("/", follow_redirects=False).status_code == 200
    assert c.get("/openapi.json").status_code == 200 and c.get("/docs").status_code == 200
    assert c.get("/assets/yitu.css").status_code == 200
    with c.websocket_connect("/_dash-ws-callback", headers=ORIGIN) as ws:
        ws.send_json({"type": "heartbeat"})
        assert ws.receive_json() == {"type": "heartbeat_ack"}


def test_callbacks_check_the_role_declared_for_them(app_client: TestClient) -> None:
    dash_app = app_client.app.state.dash  # type: ignore[attr-defined]
    send = next(
        spec["callback"]
        for spec in dash_app.callback_map.values()
        if "callback" in spec and guard.callback_name(spec["callback"]) == "callbacks.dispatch._send"
    )
    for role in ("viewer", "grid_worker", "screen", "van"):
        with identity.acting_as(Principal(1, "x", role, None, kind="user")), pytest.raises(PreventUpdate):
            send()
    with identity.acting_as(None), pytest.raises(PreventUpdate):
        send()


def test_a_wall_screen_reads_and_cannot_write(app_client: TestClient, demo_db: str) -> None:
    c = app_client
    pair_screen(c, demo_db, "hall")
    assert c.get("/api/v1/vans").status_code == 200
    r = c.post(
        "/api/v1/cases",
        json={"type": "grassland", "description": "x", "lon": 107.5, "lat": 38.2, "channel": "hotline_12345"},
        headers=ORIGIN,
    )
    assert r.status_code == 403 and "read-only" in r.json()["message"]


def test_guessing_tokens_is_throttled(app_client: TestClient, demo_db: str) -> None:
    c = app_client
    good = make_token(demo_db, "viewer")
    assert c.get("/api/v1/vans", headers={"Authorization": f"Bearer {good}"}).status_code == 200  # cached now
    for i in range(identity.ADDRESS_LIMIT):
        r = c.get("/api/v1/vans", headers={"Authorization": f"Bearer yitu_guess{i}"})
        assert r.status_code == 401
    r = c.get("/api/v1/vans", headers={"Authorization": "Bearer yitu_one-more"})
    assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 900
    assert r.json()["error"] == "too_many_attempts"
    fresh = make_token(demo_db, "viewer", name="fresh")  # the address waits, even with a real token
    assert c.get("/api/v1/vans", headers={"Authorization": f"Bearer {fresh}"}).status_code == 429
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE signin_attempts SET at = at - interval '16 minutes'")
    assert c.get("/api/v1/vans", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


def test_guessing_device_identifiers_is_throttled(app_client: TestClient) -> None:
    c = app_client
    for i in range(identity.ADDRESS_LIMIT):
        r = c.get("/osmand", params={"id": f"guess-{i}", "lat": 38.2, "lon": 107.5})
        assert r.status_code == 403
    r = c.get("/osmand", params={"id": "guess-x", "lat": 38.2, "lon": 107.5})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_safe_next() -> None:
    assert guard.safe_next("/area/1?x=1") == "/area/1?x=1"
    for bad in ("", None, "//x", "/\\x", "https://x", "x", "/a\nb", "/" + "a" * 3000):
        assert guard.safe_next(bad) == "/"


def test_a_person_and_a_token_with_the_same_id_keep_their_idempotency_keys_apart(
    app_client: TestClient, demo_db: str, demo_admin: dict[str, str]
) -> None:
    c = app_client
    sign_in(c, demo_db, "dispatcher")
    with psycopg.connect(demo_db) as conn:
        user_id = conn.execute("SELECT max(id) FROM users").fetchone()[0]
        token_ids = [r[0] for r in conn.execute("SELECT id FROM api_tokens")]
    assert user_id in token_ids  # the suite's admin token and this user share their number
    lon, lat, _ = inner_point(demo_db)
    key = {"Idempotency-Key": "same-key-0001"}
    by_person = c.post("/api/v1/cases", json=case_body(lon, lat), headers={**ORIGIN, **key})
    c.cookies.clear()
    by_token = c.post("/api/v1/cases", json=case_body(lon, lat), headers={**demo_admin, **key})
    assert by_person.status_code == by_token.status_code == 201, (by_person.text, by_token.text)
    assert by_person.json()["code"] != by_token.json()["code"]


def test_a_live_socket_opened_with_a_token_is_checked_again_and_ends_with_the_token(
    app_client: TestClient, demo_db: str
) -> None:
    """callbacks/live.py ``session_check``: the live push asks every few seconds whether what opened the
    socket is still good — a cookie's session, and a bearer token too (a revoked token's socket kept its
    events and the wall's numbers, since they are pushed)."""
    import asyncio

    from callbacks import live

    svc = app_client.app.state.services  # type: ignore[attr-defined]
    with psycopg.connect(demo_db, autocommit=True) as conn:
        _id, raw = identity.create_token(conn, name="wall-feed", role="viewer", area=None)
    who = identity.lookup(svc, raw)
    assert who is not None and who.kind == "token"
    alive = live.session_check(lambda: svc, who)
    assert alive is not None and asyncio.run(alive()) is True
    with psycopg.connect(demo_db, autocommit=True) as conn:
        assert identity.revoke_token(conn, "wall-feed") == 1
    assert asyncio.run(alive()) is False
    assert live.session_check(lambda: svc, None) is None

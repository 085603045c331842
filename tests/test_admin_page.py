"""The admin page (/admin, issue 12 item 5): only an admin gets it; each of its changes, and each
matching CLI action, writes one admin_events row (who, what, when, from where) in its transaction;
bad and hostile input is refused with a line naming the field, in the page's language."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from dash.exceptions import PreventUpdate
from fastapi.testclient import TestClient
from playwright.sync_api import Browser

from api import guard
from callbacks import admin as cb
from callbacks import pages
from cli.main import main
from cli.users import demo_identities
from dashboard.app import create_app
from dashboard.i18n import TEXTS
from dashboard.pages.admin import Ids
from services import identity
from services.identity import Principal, acting_as
from services.settings import Settings

from .browser import Watched, browser  # noqa: F401 - browser is a fixture
from .cases_fixtures import settings_for
from .conftest import ARTIFACTS, PASSWORD, create_user, pair_screen, sign_in

ORIGIN = {"Origin": "http://testserver"}
ADMIN_CALLBACKS = sorted(name for name in guard.CALLBACKS if name.startswith("callbacks.admin."))
ADDRESS = "10.20.30.40"


@pytest.fixture
def admin_settings(demo_db: str, redis_url: str, tmp_path: Path) -> Settings:
    return settings_for(demo_db, redis_url, tmp_path, public_url="https://yitu.example")


@pytest.fixture
def app_client(admin_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(admin_settings)) as c:
        yield c


@pytest.fixture
def me(demo_db: str) -> Principal:
    """A signed-in admin (a user row of the demo database)."""
    name = create_user(demo_db, "admin")
    with psycopg.connect(demo_db) as conn:
        who = identity.verify_user(conn, name, PASSWORD)
    assert who is not None
    return who


def _events(dsn: str, since: int = 0) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            """SELECT id, at, actor_kind, actor_id, actor_name, action, target, detail, host(address) AS address
               FROM admin_events WHERE id > %s ORDER BY id""",
            (since,),
        ).fetchall()


def _last_event_id(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM admin_events").fetchone()[0])  # type: ignore[index]


def _text(component: Any) -> str:
    """Every string in a Dash component tree."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


def _callback(c: TestClient, name: str) -> Any:
    dash_app = c.app.state.dash  # type: ignore[attr-defined]
    return next(
        spec["callback"]
        for spec in dash_app.callback_map.values()
        if "callback" in spec and guard.callback_name(spec["callback"]) == name
    )


# --- who may open it ---------------------------------------------------------------------------------------


def test_only_an_admin_gets_the_page_others_the_refusal_anonymous_the_login(
    app_client: TestClient, demo_db: str
) -> None:
    c = app_client
    assert "/admin" in set(guard.route_paths(c.app.routes))  # served, and declared: admins only
    assert guard.ROUTES["/admin"].face is guard.Face.PAGE and guard.ROUTES["/admin"].roles == {"admin"}
    r = c.get("/admin", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/login?next=/admin"
    for role in ("viewer", "grid_worker", "dispatcher"):
        c.cookies.clear()
        sign_in(c, demo_db, role)
        r = c.get("/admin", follow_redirects=False)
        assert r.status_code == 403, role
        assert r.headers["content-type"].startswith("text/html") and 'id="react-entry-point"' in r.text
    c.cookies.clear()
    pair_screen(c, demo_db)
    assert c.get("/admin", follow_redirects=False).status_code == 403
    c.cookies.clear()
    sign_in(c, demo_db, "admin")
    assert c.get("/admin", follow_redirects=False).status_code == 200
    # the page's router: the admin's frame for an admin, the refusal page for anyone else
    svc = c.app.state.services  # type: ignore[attr-defined]
    with acting_as(Principal(1, "a", "admin", None, kind="user")):
        assert "admin-users" in repr(pages.render(svc, "/admin", None))
    for role in ("viewer", "grid_worker", "dispatcher", "screen", "van"):
        with acting_as(Principal(1, "x", role, None, kind="user")):
            page = pages.render(svc, "/admin", None)
        assert page.id == "refused" and "admin-users" not in repr(page), role


def test_every_callback_of_the_page_refuses_anyone_but_an_admin(app_client: TestClient, demo_db: str) -> None:
    c = app_client
    assert len(ADMIN_CALLBACKS) == 6
    assert all(guard.CALLBACKS[name] == frozenset({"admin"}) for name in ADMIN_CALLBACKS)
    for name in ADMIN_CALLBACKS:
        fn = _callback(c, name)
        for role in ("viewer", "grid_worker", "dispatcher", "screen", "van"):
            with acting_as(Principal(1, "x", role, None, kind="user")), pytest.raises(PreventUpdate):
                fn()
        with acting_as(None), pytest.raises(PreventUpdate):
            fn()
    # and the work functions check again: a non-admin's change is refused, nothing written
    before = _last_event_id(demo_db)
    svc = c.app.state.services  # type: ignore[attr-defined]
    dispatcher = Principal(1, "d", "dispatcher", None, kind="user")
    fields = {"name": "sneaky", "role": "admin", "password": "x" * 12}
    outcome = cb.user_action(svc, dispatcher, ADDRESS, "create", fields, "zh-CN")
    assert not outcome.ok and outcome.message == TEXTS["zh-CN"]["error.forbidden"]
    with pytest.raises(Exception, match="admin"):
        cb.changes_view(svc, dispatcher, None, 0, "zh-CN")
    assert _last_event_id(demo_db) == before
    # through HTTP, as a viewer: Dash's "no update", and no user made
    sign_in(c, demo_db, "viewer")
    r = c.post(
        "/_dash-update-component",
        json=_users_request(c, "create", name="sneaky2", role="admin", password="x" * 12),
        headers=ORIGIN,
    )
    assert r.status_code == 204
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE name LIKE 'sneaky%'").fetchone() == (0,)


def _users_request(c: TestClient, action: str, **state: Any) -> dict[str, Any]:
    """The body Dash posts when a button of the users card is clicked."""
    dash_app = c.app.state.dash  # type: ignore[attr-defined]
    key = next(k for k, spec in dash_app.callback_map.items() if "admin-users.children" in k)
    outputs = [part.rsplit(".", 1) for part in key.strip(".").split("...")]
    buttons = [Ids.USER_CREATE, Ids.EDIT_APPLY, Ids.EDIT_PASSWD, Ids.USER_DISABLE, Ids.USER_ENABLE]
    pressed = {"create": Ids.USER_CREATE, "disable": Ids.USER_DISABLE}[action]
    states = [
        (Ids.USER_NAME, "name"),
        (Ids.USER_ROLE, "role"),
        (Ids.USER_AREA, "area"),
        (Ids.USER_VAN, "van"),
        (Ids.USER_PASSWORD, "password"),
        (Ids.USER_PICK, "pick"),
        (Ids.EDIT_ROLE, "edit_role"),
        (Ids.EDIT_AREA, "edit_area"),
        (Ids.EDIT_PASSWORD, "edit_password"),
    ]
    return {
        "output": key,
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": str(b), "property": "n_clicks", "value": 1 if b == pressed else 0} for b in buttons],
        "changedPropIds": [f"{pressed}.n_clicks"],
        "state": [{"id": str(i), "property": "value", "value": state.get(k)} for i, k in states]
        + [{"id": str(Ids.CHANGED), "property": "data", "value": 0}],
    }


# --- each change, through the callbacks, and its admin_events row ----------------------------------------


def test_each_change_on_the_page_writes_its_row_who_what_when_from_where(
    app_client: TestClient, demo_db: str, me: Principal
) -> None:
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    since = _last_event_id(demo_db)
    name = f"clerk-{uuid.uuid4().hex[:4]}"
    steps: list[tuple[str, Any]] = [
        ("user.create", lambda: cb.user_action(svc, me, ADDRESS, "create", _new(name), "zh-CN")),
        ("user.role", lambda: cb.user_action(svc, me, ADDRESS, "role", {"pick": name, "role": "dispatcher"}, "zh-CN")),
        (
            "user.password",
            lambda: cb.user_action(svc, me, ADDRESS, "passwd", {"pick": name, "password": "another long one"}, "zh-CN"),
        ),
        ("user.disable", lambda: cb.user_action(svc, me, ADDRESS, "disable", {"pick": name}, "zh-CN")),
        ("user.enable", lambda: cb.user_action(svc, me, ADDRESS, "enable", {"pick": name}, "zh-CN")),
        ("screen.create", lambda: cb.screen_action(svc, me, ADDRESS, "create", {"name": "北厅"}, "zh-CN", "https://y")),
        ("screen.pair", lambda: cb.screen_action(svc, me, ADDRESS, "pair", {"pick": "北厅"}, "zh-CN", "https://y")),
        ("screen.revoke", lambda: cb.screen_action(svc, me, ADDRESS, "revoke", {"pick": "北厅"}, "zh-CN", "https://y")),
        (
            "token.create",
            lambda: cb.token_action(svc, me, ADDRESS, "create", {"name": "gis", "role": "viewer"}, "zh-CN"),
        ),
        (
            "van.device.register",
            lambda: cb.van_action(svc, me, ADDRESS, "register", {"van": "V01", "device": "phone-0001-abc"}, "zh-CN"),
        ),
        (
            "van.device.unregister",
            lambda: cb.van_action(svc, me, ADDRESS, "unregister", {"device": "phone-0001-abc"}, "zh-CN"),
        ),
    ]
    outcomes = {}
    for action, step in steps:
        outcome = step()
        assert outcome.ok, (action, outcome)
        outcomes[action] = outcome
    token_id = int(re.search(r"#(\d+)", outcomes["token.create"].message).group(1))  # type: ignore[union-attr]
    outcome = cb.token_action(svc, me, ADDRESS, "revoke", {"pick": token_id}, "zh-CN")
    assert outcome.ok
    # what is shown once: the pairing URL, the token; never logged
    assert re.fullmatch(r"https://y/pair/[A-Za-z0-9_-]+", outcomes["screen.create"].secret or "")
    token = outcomes["token.create"].secret or ""
    assert token.startswith("yitu_")

    events = _events(demo_db, since)
    assert [e["action"] for e in events] == [a for a, _ in steps] + ["token.revoke"]
    for e in events:  # who (the admin, by identity), from where, when (the server's clock)
        assert (e["actor_kind"], e["actor_id"], e["actor_name"]) == ("user", me.token_id, me.name), e
        assert e["address"] == ADDRESS and e["at"] is not None
    logged = repr(events)
    assert token not in logged and "phone-0001-abc" not in logged and "another long one" not in logged
    assert outcomes["screen.create"].secret.rsplit("/", 1)[1] not in logged  # type: ignore[union-attr]
    by_action = {e["action"]: e for e in events}
    assert by_action["user.role"]["detail"]["was"]["role"] == "viewer"
    assert by_action["user.create"]["target"].startswith("user:")

    # the effects: the user is a dispatcher with the new password; the screen and the token are revoked
    with psycopg.connect(demo_db) as conn:
        who = identity.verify_user(conn, name, "another long one")
        assert who is not None and who.role == "dispatcher"
        assert conn.execute("SELECT revoked_at IS NOT NULL FROM screens WHERE name = '北厅'").fetchone() == (True,)
        assert conn.execute("SELECT revoked_at IS NOT NULL FROM api_tokens WHERE id = %s", (token_id,)).fetchone() == (
            True,
        )
    # and the change log shows them, newest first, filterable by who, paged
    table, page, label = cb.changes_view(svc, me, me.name, 0, "zh-CN")
    text = _text(table)
    assert page == 0 and label.endswith(f"· {len(events)}") and text.index("token.revoke") < text.index("user.create")
    assert ADDRESS in text and me.name in text
    table, _, label = cb.changes_view(svc, me, "nobody-of-that-name", 0, "zh-CN")
    assert label.endswith("· 0") and _text(table) == TEXTS["zh-CN"]["admin.none"]


def _new(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "role": "viewer", "area": "", "password": "a long password", **extra}


def test_role_change_disable_and_password_reset_end_the_users_sessions(
    app_client: TestClient, demo_db: str, me: Principal
) -> None:
    c = app_client
    svc = c.app.state.services  # type: ignore[attr-defined]
    for action, fields in (
        ("disable", {}),
        ("role", {"role": "grid_worker", "area": "150623"}),
        ("passwd", {"password": "a new long password"}),
    ):
        c.cookies.clear()
        name = f"u-{uuid.uuid4().hex[:6]}"
        cookie = sign_in(c, demo_db, "viewer", name=name)
        assert c.get("/", follow_redirects=False).status_code == 200
        assert cb.user_action(svc, me, ADDRESS, action, {"pick": name, **fields}, "en").ok
        c.cookies.set("yitu_session", cookie)
        assert c.get("/", follow_redirects=False).status_code == 302, action  # back to /login


def test_an_admin_cannot_lock_themselves_out(app_client: TestClient, me: Principal) -> None:
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    for action in ("disable", "role"):
        outcome = cb.user_action(svc, me, ADDRESS, action, {"pick": me.name, "role": "viewer"}, "zh-CN")
        assert not outcome.ok and outcome.message.startswith("选择对象：")


def test_the_sign_in_log_newest_first_paged_filtered(app_client: TestClient, demo_db: str, me: Principal) -> None:
    c = app_client
    svc = c.app.state.services  # type: ignore[attr-defined]
    c.post("/login", data={"username": "ghost22", "password": "wrong password", "next": "/"})  # a real one
    with psycopg.connect(demo_db) as conn:  # and older ones (more from one address would be throttled)
        for i in range(22):
            conn.execute(
                "INSERT INTO signin_attempts (at, kind, account, address, ok)"
                " VALUES (now() - make_interval(mins => %s), 'password', %s, '10.0.0.9', false)",
                (22 - i, f"ghost{i:02d}"),
            )
    table, page, label = cb.signins_view(svc, me, "ghost", 0, "zh-CN")
    text = _text(table)
    assert label == "1 / 2 · 23" and "ghost22" in text and "ghost02" not in text
    assert text.index("ghost22") < text.index("ghost21") and TEXTS["zh-CN"]["admin.attempt.failed"] in text
    table, page, label = cb.signins_view(svc, me, "ghost", 1, "zh-CN")
    assert page == 1 and "ghost00" in _text(table) and "ghost22" not in _text(table)
    table, page, _ = cb.signins_view(svc, me, "ghost", 99, "zh-CN")  # past the end: the last page
    assert page == 1
    assert cb._step(Ids.SIGNIN_NEXT, Ids.SIGNIN_PREV, Ids.SIGNIN_NEXT, 0) == 1
    assert cb._step(Ids.SIGNIN_FILTER, Ids.SIGNIN_PREV, Ids.SIGNIN_NEXT, 5) == 0  # a new filter: the newest


# --- the command line writes the same rows -----------------------------------------------------------------------


def test_every_matching_cli_action_writes_its_row(demo_db: str, redis_url: str, tmp_path: Path) -> None:
    env = {"YITU_DATABASE_URL": demo_db, "YITU_REDIS_URL": redis_url, "YITU_HOME": str(tmp_path / "h")}
    runner = CliRunner()
    since = _last_event_id(demo_db)

    def run(*args: str, stdin: str | None = None) -> str:
        result = runner.invoke(main, list(args), env=env, input=stdin)
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    run("user", "create", "cli-clerk", "--role", "viewer", "--password-stdin", stdin="a long password\n")
    run("user", "disable", "cli-clerk")
    run("user", "enable", "cli-clerk")
    run("user", "passwd", "cli-clerk", "--password-stdin", stdin="another long password\n")
    run("screen", "create", "cli-wall")
    run("screen", "pair", "cli-wall")
    run("screen", "revoke", "cli-wall")
    token = run("token", "create", "--role", "viewer", "--name", "cli-gis").strip()
    run("token", "revoke", "cli-gis")
    run("van", "register", "V01", "--device", "cli-phone-0001")
    run("van", "unregister", "--device", "cli-phone-0001")
    events = _events(demo_db, since)
    assert [e["action"] for e in events] == [
        "user.create",
        "user.disable",
        "user.enable",
        "user.password",
        "screen.create",
        "screen.pair",
        "screen.revoke",
        "token.create",
        "token.revoke",
        "van.device.register",
        "van.device.unregister",
    ]
    assert all(e["actor_kind"] == "cli" and e["actor_name"] and e["at"] for e in events)
    assert token not in repr(events) and "cli-phone-0001" not in repr(events) and "long password" not in repr(events)
    # a refused change writes nothing
    since = _last_event_id(demo_db)
    result = runner.invoke(
        main, ["user", "create", "x", "--role", "viewer", "--password-stdin"], env=env, input="short\n"
    )
    assert result.exit_code != 0 and _events(demo_db, since) == []


def test_the_demos_local_admin_and_wall_screen_are_logged_too(demo_db: str) -> None:
    since = _last_event_id(demo_db)
    demo_identities(demo_db, "http://127.0.0.1:8050")
    demo_identities(demo_db, "http://127.0.0.1:8050")  # a later run: a new password, a new link
    events = _events(demo_db, since)
    assert [e["action"] for e in events] == ["user.create", "screen.create", "user.password", "screen.pair"]
    assert {e["actor_kind"] for e in events} == {"cli"}


# --- bad and hostile input --------------------------------------------------------------------------------------


BAD_USERS: list[tuple[dict[str, Any], str]] = [  # (the create form, the field named)
    (_new(""), "name"),
    (_new("   "), "name"),
    (_new("x" * 5000), "name"),
    (_new("nul\x00name"), "name"),
    (_new("ok-name", role=None), "role"),
    (_new("ok-name", role="root"), "role"),
    (_new("ok-name", role="screen"), "role"),
    (_new("ok-name", area="abc"), "area"),
    (_new("ok-name", area="999999"), "area"),
    (_new("ok-name", area="1" * 500), "area"),
    (_new("ok-name", password="short"), "password"),
    (_new("ok-name", password=None), "password"),
    (_new("ok-name", password="p" * 5000), "password"),
    (_new("ok-name", role="van"), "van"),  # a crew member needs the van they ride in
    (_new("ok-name", role="van", van="V404"), "van"),
    (_new("ok-name", role="van", van="V01'; --"), "van"),
    (_new("ok-name", van="V01"), "van"),  # only a crew member rides in a van
]


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_bad_input_is_refused_naming_the_field_in_the_pages_language(
    app_client: TestClient, demo_db: str, me: Principal, lang: str
) -> None:
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    t = TEXTS[lang]
    sep = "："
    since = _last_event_id(demo_db)
    for fields, field in BAD_USERS:
        outcome = cb.user_action(svc, me, ADDRESS, "create", fields, lang)
        assert not outcome.ok, fields
        assert outcome.message.startswith(t[f"admin.field.{field}"] + sep), (fields, outcome.message)
        assert "Traceback" not in outcome.message and "\x00" not in outcome.message
    taken = cb.user_action(svc, me, ADDRESS, "create", _new(me.name), lang)
    assert taken.message == t["admin.field.name"] + sep + t["admin.conflict.name"]
    cases = [
        (cb.user_action(svc, me, ADDRESS, "passwd", {"pick": None, "password": "a long password"}, lang), "pick"),
        (cb.user_action(svc, me, ADDRESS, "disable", {"pick": "no-such-user"}, lang), "name"),
        (cb.screen_action(svc, me, ADDRESS, "create", {"name": "wall", "area": "15x"}, lang, "https://y"), "area"),
        (cb.screen_action(svc, me, ADDRESS, "pair", {"pick": ""}, lang, "https://y"), "pick"),
        (cb.token_action(svc, me, ADDRESS, "create", {"name": "t", "role": "boss"}, lang), "role"),
        (cb.token_action(svc, me, ADDRESS, "create", {"name": "a\x00b", "role": "viewer"}, lang), "name"),
        (cb.token_action(svc, me, ADDRESS, "revoke", {"pick": "1; DROP TABLE users"}, lang), "pick"),
        (cb.van_action(svc, me, ADDRESS, "register", {"van": "V01", "device": "short"}, lang), "device"),
        (cb.van_action(svc, me, ADDRESS, "register", {"van": "V404", "device": "long-enough-1"}, lang), "van"),
        (cb.van_action(svc, me, ADDRESS, "register", {"van": None, "device": "long-enough-1"}, lang), "van"),
        (cb.van_action(svc, me, ADDRESS, "unregister", {"device": "never-registered"}, lang), "device"),
    ]
    for outcome, field in cases:
        assert not outcome.ok and outcome.message.startswith(t[f"admin.field.{field}"] + sep), outcome
    table, _, _ = cb.changes_view(svc, me, "x\x00" * 80, 0, lang)
    assert _text(table).startswith(t["admin.field.filter"] + sep)
    assert _last_event_id(demo_db) == since  # nothing refused was written


def test_an_admin_makes_a_vans_crew_member_on_the_page(app_client: TestClient, demo_db: str) -> None:
    c = app_client
    sign_in(c, demo_db, "admin")
    name = f"crew-{uuid.uuid4().hex[:4]}"
    body = _users_request(c, "create", name=name, role="van", van="V02", password="a long password")
    r = c.post("/_dash-update-component", json=body, headers=ORIGIN)
    assert r.status_code == 200, r.text
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT role, van_id FROM users WHERE name = %s", (name,)).fetchone() == ("van", "V02")
        (details,) = conn.execute(
            "SELECT detail FROM admin_events WHERE action = 'user.create' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert details["van"] == "V02" and details["role"] == "van"
    admin = Principal(1, "admin", "admin", None, kind="user")
    options = cb.users_view(c.app.state.services, "zh-CN", admin)  # type: ignore[attr-defined]
    assert {"label": name, "value": name} in options[1]


def test_markup_in_a_name_is_shown_as_text(app_client: TestClient, me: Principal) -> None:
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    name = '<img src=x onerror="alert(1)">'
    assert cb.user_action(svc, me, ADDRESS, "create", _new(name), "zh-CN").ok
    table, options = cb.users_view(svc, "zh-CN", me)
    cells = [td.children for tr in table.children[1].children for td in tr.children]
    assert name in cells  # a plain string child: React renders it as text, never as markup
    assert {"label": name, "value": name} in options


# --- in Chromium: the main flow, and how it looks -----------------------------------------------------------------


@pytest.mark.browser
def test_create_a_user_sign_in_as_them_disable_them_and_their_page_goes_to_login(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    admin_cookie = srv.sign_in("admin")
    w = Watched(browser, srv.url, cookies=srv.browser_cookie(admin_cookie))
    p = w.page
    p.goto(srv.url + "/admin")
    p.wait_for_selector(f"#{Ids.USERS} table")
    p.wait_for_selector(f"#{Ids.CHANGES} > *")
    p.wait_for_selector(f"#{Ids.SIGNINS} table")
    ARTIFACTS.mkdir(exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / "admin-1920x1080.png"))

    # create a user
    name = "值班员小王"
    p.fill(f"#{Ids.USER_NAME}", name)
    p.click(f"#{Ids.USER_ROLE}")
    p.get_by_role("option", name=TEXTS["zh-CN"]["role.dispatcher"]).click()
    p.fill(f"#{Ids.USER_PASSWORD}", "a long password 1")
    p.click(f"#{Ids.USER_CREATE}")
    p.wait_for_selector(f"#{Ids.USER_MESSAGE} .yitu-admin-ok")
    assert name in p.inner_text(f"#{Ids.USERS}")
    p.wait_for_function(f"() => document.querySelector('#{Ids.CHANGES}').innerText.includes('user.create')")

    # that user signs in, in another browser
    other = browser.new_context(viewport={"width": 1366, "height": 768})
    q = other.new_page()
    q.goto(srv.url + "/login?next=/dispatch")
    q.fill("#username", name)
    q.fill("#password", "a long password 1")
    q.click("button[type=submit]")
    q.wait_for_url(srv.url + "/dispatch")
    q.wait_for_selector("#dispatch-who")
    # they may not open the admin page: the refusal page
    q.goto(srv.url + "/admin")
    q.wait_for_selector("#refused")
    q.goto(srv.url + "/dispatch")
    q.wait_for_selector("#dispatch-who")

    # the admin disables them: their open page goes to /login
    p.click(f"#{Ids.USER_PICK}")
    p.get_by_role("option", name=name).click()
    p.click(f"#{Ids.USER_DISABLE}")
    p.wait_for_selector(f"#{Ids.USER_MESSAGE} .yitu-admin-ok")
    q.wait_for_url(re.compile(r".*/login\?next=.*"), timeout=15_000)
    other.close()

    # the look at the smaller screen: a token shown once
    p.set_viewport_size({"width": 1366, "height": 768})
    p.fill(f"#{Ids.TOKEN_NAME}", "区GIS接口")
    p.click(f"#{Ids.TOKEN_ROLE}")
    p.get_by_role("option", name=TEXTS["zh-CN"]["role.viewer"]).click()
    p.click(f"#{Ids.TOKEN_CREATE}")
    p.wait_for_selector(f"#{Ids.TOKEN_MESSAGE} .yitu-admin-secret")
    assert p.inner_text(f"#{Ids.TOKEN_MESSAGE} .yitu-admin-secret").startswith("yitu_")
    p.screenshot(path=str(ARTIFACTS / "admin-1366x768.png"))
    # the page scrolls (the wall's body does not): the change log at its foot
    p.evaluate("() => { const a = document.querySelector('.yitu-admin'); a.scrollTop = a.scrollHeight; }")
    p.wait_for_function(f"() => document.querySelector('#{Ids.CHANGES}').innerText.includes('token.create')")
    assert p.locator(f"#{Ids.CHANGES}").is_visible()
    p.screenshot(path=str(ARTIFACTS / "admin-1366x768-logs.png"))
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute(
            "SELECT action, actor_kind, host(address) FROM admin_events WHERE actor_kind = 'user' ORDER BY id"
        ).fetchall()
    assert [r[0] for r in rows][-3:] == ["user.create", "user.disable", "token.create"]
    assert all(r[2] == "127.0.0.1" for r in rows[-3:])  # from where: the browser's address
    w.close()


# --- an admin's reach is its area (services/admin.py) ------------------------------------------------------------


def test_an_admin_of_one_town_manages_only_its_town(app_client: TestClient, demo_db: str, me: Principal) -> None:
    """An admin scoped to a town: makes identities of its town only (none of the whole territory,
    none of another town: 403 naming ``area``), cannot touch the league admin (as if it did not
    exist: no password reset, no disabling), lists and logs only its town's identities, its banner's
    vans and not the league's own, and changes only its town's roster. Nothing refused is written."""
    svc = app_client.app.state.services  # type: ignore[attr-defined]
    t = TEXTS["zh-CN"]
    sep = "："
    town, other = "150623102", "150623101"
    with psycopg.connect(demo_db) as conn:
        local = identity.verify_user(conn, create_user(demo_db, "admin", area=town), PASSWORD)
        conn.execute("INSERT INTO vans (id, name) VALUES ('L01', '市级调解车')")  # the league's own van (no base)
        conn.commit()
    assert local is not None and local.area == town
    since = _last_event_id(demo_db)

    def refused(outcome: cb.Outcome, field: str) -> None:
        assert not outcome.ok and outcome.message.startswith(t[f"admin.field.{field}"] + sep), outcome

    refused(cb.user_action(svc, local, ADDRESS, "create", _new("全域管理员", role="admin"), "zh-CN"), "area")
    refused(cb.user_action(svc, local, ADDRESS, "create", _new("邻镇用户", area=other), "zh-CN"), "area")
    refused(
        cb.user_action(svc, local, ADDRESS, "passwd", {"pick": me.name, "password": "taken over 123"}, "zh-CN"), "name"
    )
    refused(cb.user_action(svc, local, ADDRESS, "disable", {"pick": me.name}, "zh-CN"), "name")
    refused(
        cb.screen_action(svc, local, ADDRESS, "create", {"name": "全域屏", "area": ""}, "zh-CN", "http://x"), "area"
    )
    refused(
        cb.token_action(svc, local, ADDRESS, "create", {"name": "全域", "role": "viewer", "area": ""}, "zh-CN"), "area"
    )
    refused(cb.van_action(svc, local, ADDRESS, "register", {"van": "L01", "device": "league-device-1"}, "zh-CN"), "van")
    crew = _new("市级车组", role="van", area=town, van="L01")
    refused(cb.user_action(svc, local, ADDRESS, "create", crew, "zh-CN"), "van")  # the league's van: not its own
    van_token = {"name": "L01", "role": "van", "area": town}  # a van token acts for the van it is named after
    refused(cb.token_action(svc, local, ADDRESS, "create", van_token, "zh-CN"), "name")
    assert _events(demo_db, since) == []  # nothing refused was written, nor logged
    with psycopg.connect(demo_db) as conn:
        assert identity.verify_user(conn, me.name, PASSWORD) is not None  # the league admin's password holds
        assert conn.execute("SELECT count(*) FROM users WHERE name IN ('全域管理员', '邻镇用户')").fetchone() == (0,)

    # inside its town: it works, and only its town shows
    assert cb.user_action(svc, local, ADDRESS, "create", _new("本镇用户", area=town + "001"), "zh-CN").ok
    refused(
        cb.user_action(svc, local, ADDRESS, "role", {"pick": "本镇用户", "role": "viewer", "area": ""}, "zh-CN"), "area"
    )
    assert cb.token_action(
        svc, me, ADDRESS, "create", {"name": "邻镇令牌", "role": "viewer", "area": other}, "zh-CN"
    ).ok
    with psycopg.connect(demo_db) as conn:
        (token_id,) = conn.execute("SELECT id FROM api_tokens WHERE name = '邻镇令牌'").fetchone()  # type: ignore[misc]
    assert not cb.token_action(svc, local, ADDRESS, "revoke", {"pick": token_id}, "zh-CN").ok
    _, users = cb.users_view(svc, "zh-CN", local)
    assert {o["value"] for o in users} == {local.name, "本镇用户"}
    _, tokens = cb.tokens_view(svc, "zh-CN", local)
    assert token_id not in {o["value"] for o in tokens}  # another town's, still live
    # the league admin still lists and revokes every token, a van token of no known van too
    assert cb.token_action(svc, me, ADDRESS, "create", {"name": "V99", "role": "van", "area": ""}, "zh-CN").ok
    with psycopg.connect(demo_db) as conn:
        (stray,) = conn.execute("SELECT id FROM api_tokens WHERE name = 'V99'").fetchone()  # type: ignore[misc]
    assert {token_id, stray} <= {o["value"] for o in cb.tokens_view(svc, "zh-CN", me)[1]}
    assert cb.token_action(svc, me, ADDRESS, "revoke", {"pick": stray}, "zh-CN").ok
    _, vans = cb.vans_view(svc, "zh-CN", local)
    assert {o["value"] for o in vans} == {"V01", "V02", "V03", "V04"}  # the banner's, not L01
    assert {o["value"] for o in cb.vans_view(svc, "zh-CN", me)[1]} >= {"V01", "L01"}
    table, _, _ = cb.changes_view(svc, local, None, 0, "zh-CN")
    shown = _text(table)
    assert "本镇用户" in shown and "邻镇令牌" not in shown  # the league admin's change elsewhere is not its to read
    assert "邻镇令牌" in _text(cb.changes_view(svc, me, None, 0, "zh-CN")[0])
    # a crew member of its town riding the league's van, made by the league admin: not its to take over
    rider = _new("市级车组员", role="van", area=town, van="L01")
    assert cb.user_action(svc, me, ADDRESS, "create", rider, "zh-CN").ok
    taken = {"pick": "市级车组员", "password": "taken over 1234"}
    refused(cb.user_action(svc, local, ADDRESS, "passwd", taken, "zh-CN"), "name")
    assert "市级车组员" not in _text(cb.users_view(svc, "zh-CN", local)[0])
    # the sign-in log: not the league admin's sign-ins, not even through a screen named like it
    r = app_client.post("/login", data={"username": me.name, "password": PASSWORD, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303
    assert cb.screen_action(svc, local, ADDRESS, "create", {"name": me.name, "area": town}, "zh-CN", "http://x").ok
    assert me.name not in _text(cb.signins_view(svc, local, None, 0, "zh-CN")[0])
    assert me.name in _text(cb.signins_view(svc, me, None, 0, "zh-CN")[0])

    # the roster: its town's rows only
    from callbacks import roster as roster_page

    form = {
        "name": "邻镇调委会",
        "kind": "committee",
        "area_code": other,
        "level": None,
        "phone": "",
        "specialties": [],
    }
    refused(roster_page.roster_action(svc, local, ADDRESS, "units", "create", form, "zh-CN"), "area_code")
    with psycopg.connect(demo_db) as conn:
        (banner_unit,) = conn.execute("SELECT id FROM units WHERE area_code = '150623' ORDER BY id LIMIT 1").fetchone()  # type: ignore[misc]
        assert conn.execute("SELECT count(*) FROM units WHERE name = '邻镇调委会'").fetchone() == (0,)
    refused(
        roster_page.roster_action(svc, local, ADDRESS, "units", "deactivate", {"pick": banner_unit}, "zh-CN"),
        "area_code",
    )
    with psycopg.connect(demo_db) as conn:
        (elsewhere,) = conn.execute("SELECT id FROM units WHERE area_code LIKE %s", (other + "%",)).fetchone()  # type: ignore[misc]
    refused(roster_page.roster_action(svc, local, ADDRESS, "units", "deactivate", {"pick": elsewhere}, "zh-CN"), "id")
    mediator = {
        "name": "本镇调解员",
        "phone": "13600000001",
        "area_code": town,
        "level": None,
        "unit": banner_unit,
        "centre": "",
        "van": None,
        "specialties": [],
        "user": me.name,
    }
    refused(roster_page.roster_action(svc, local, ADDRESS, "mediators", "create", mediator, "zh-CN"), "user")
    league_van = {**mediator, "user": "", "van": "L01"}
    refused(roster_page.roster_action(svc, local, ADDRESS, "mediators", "create", league_van, "zh-CN"), "van")
    own_van = {**mediator, "user": "", "van": "V01"}
    assert roster_page.roster_action(svc, local, ADDRESS, "mediators", "create", own_van, "zh-CN").ok
    assert roster_page.roster_action(
        svc, local, ADDRESS, "units", "create", {**form, "name": "本镇调委会", "area_code": town}, "zh-CN"
    ).ok
    assert [e["action"] for e in _events(demo_db, since)][-2:] == ["mediator.create", "unit.create"]


def test_hostile_values_from_the_page_are_refused_naming_the_field(
    app_client: TestClient, demo_db: str, me: Principal
) -> None:
    """What the browser sends back may be any JSON: a NUL in a name or a van (PostgreSQL refuses it:
    a 500), a digit that ``int`` cannot read ("²"), a number past PostgreSQL's bigint, a boolean.
    Each is a refusal naming the field, for a scoped admin as for the league's."""
    from callbacks import roster as roster_page

    svc = app_client.app.state.services  # type: ignore[attr-defined]
    t = TEXTS["zh-CN"]
    town = "150623102"
    with psycopg.connect(demo_db) as conn:
        local = identity.verify_user(conn, create_user(demo_db, "admin", area=town), PASSWORD)
        (unit,) = conn.execute("SELECT id FROM units WHERE area_code = %s LIMIT 1", (town,)).fetchone()  # type: ignore[misc]
    assert local is not None
    since = _last_event_id(demo_db)

    def refused(outcome: cb.Outcome, field: str) -> None:
        assert not outcome.ok and outcome.message.startswith(t[f"admin.field.{field}"] + "："), outcome

    mediator = {"name": "甲", "phone": "13600000002", "area_code": town, "level": None, "unit": unit,
                "centre": "", "van": None, "specialties": [], "user": ""}  # fmt: skip
    for who in (local, me):
        for key, value in (("user", "a\x00b"), ("van", "V\x0001"), ("centre", "c\x00"), ("unit", "1\x00")):
            outcome = roster_page.roster_action(
                svc, who, ADDRESS, "mediators", "create", {**mediator, key: value}, "zh-CN"
            )
            refused(outcome, key)
        for pick in ("²", "9" * 5000, True, 2**70, "99999999999999999999", {"a": 1}, [1], -1):
            refused(cb.token_action(svc, who, ADDRESS, "revoke", {"pick": pick}, "zh-CN"), "pick")
            refused(
                roster_page.roster_action(svc, who, ADDRESS, "units", "deactivate", {"pick": pick}, "zh-CN"), "pick"
            )
    for who in (local, me):
        refused(cb.user_action(svc, who, ADDRESS, "passwd", {"pick": "a\x00b", "password": "x" * 12}, "zh-CN"), "pick")
        refused(cb.screen_action(svc, who, ADDRESS, "revoke", {"pick": "s\x00"}, "zh-CN", "http://x"), "pick")
    nul_van = {"van": "V0\x001", "device": "long-enough-2"}
    refused(cb.van_action(svc, local, ADDRESS, "register", nul_van, "zh-CN"), "van")
    assert _events(demo_db, since) == []
    # a name with a full-width or a Mongolian space is a name: its admin manages it
    spaced = "巴特尔\u3000其木格\u202f"
    assert cb.user_action(svc, me, ADDRESS, "create", _new(spaced, area=town), "zh-CN").ok
    assert cb.user_action(svc, local, ADDRESS, "passwd", {"pick": spaced, "password": "a new password"}, "zh-CN").ok

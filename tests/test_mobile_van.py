"""The van crew's phone page, /m/van (issue 15 item 2): a crew member signs in for one van, sees
its dispatch with the route and ETA, shares the phone's GPS (batched, kept and resent after a gap,
each fix stored once) until the van arrives, and ends the visit with a photo; and sees nothing
else. The browser tests run a phone-sized headless Chromium (390×844) with geolocation granted,
the positions moved through CDP (Emulation.setGeolocationOverride)."""

from __future__ import annotations

import io
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import Browser, CDPSession, Page, Route
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from pyproj import Geod

from cli.users import user_group
from geodata.errors import Invalid
from services import identity
from services.identity import create_user
from services.settings import Settings

from .browser import Watched, browser  # noqa: F401 - browser is a fixture
from .cases_fixtures import auth, case_body, cases_settings, client, inner_point, token  # noqa: F401
from .conftest import ARTIFACTS, PASSWORD
from .helpers import keyed

GEOD = Geod(ellps="WGS84")
PHONE = {"width": 390, "height": 844}


# --- setting the scene ---------------------------------------------------------------------------------


def crew(dsn: str, van: str, name: str | None = None) -> str:
    """A van crew member (role van, riding in ``van``) with the tests' password; returns the name."""
    name = name or f"车组-{van}"
    with psycopg.connect(dsn) as conn:
        create_user(conn, name=name, role="van", van=van, password=PASSWORD)
    return name


def place_van(dsn: str, van: str, lon: float, lat: float) -> None:
    """The van free, on line (seen 10 s ago) at (lon, lat)."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            """UPDATE vans SET geom = ST_SetSRID(ST_MakePoint(%s, %s), 4326), last_seen_at = now() - interval '10 s',
                               status = 'available' WHERE id = %s""",
            (lon, lat, van),
        )


def offset(lon: float, lat: float, metres: float, azimuth: float = 90.0) -> tuple[float, float]:
    x, y, _ = GEOD.fwd(lon, lat, azimuth, metres)
    return float(x), float(y)


def dispatched(
    http: Any, admin: dict[str, str], dsn: str, van: str, offset_n: int, far_m: float = 1500
) -> dict[str, Any]:
    """A case reported and accepted at an inner point, and ``van`` sent to it from ``far_m`` metres east."""
    lon, lat, _ = inner_point(dsn, offset=offset_n)
    r = http.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(admin))
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    r = http.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept"}, headers=admin)
    assert r.status_code == 200, r.text
    start = offset(lon, lat, far_m)
    place_van(dsn, van, *start)
    r = http.post("/api/v1/dispatches", json={"case": code, "van": van}, headers=admin)
    assert r.status_code == 201, r.text
    return {"code": code, "case": (lon, lat), "start": start, "dispatch": r.json()["id"]}


def signed_in(url: str, name: str) -> str:
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/login", data={"username": name, "password": PASSWORD, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/m/van", r.text  # a crew's home is its page
    return r.cookies["yitu_session"]


class _OwnContext:
    """A browser whose pages each get a context of their own that outlives them, so a test can
    close the page and open the same phone's browser again (its localStorage kept)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser

    def new_page(self, **options: Any) -> Page:
        return self.browser.new_context(**options).new_page()


def phone(browser: Browser, url: str, cookie: str) -> Watched:
    cookies = [{"name": "yitu_session", "value": cookie, "url": url}]
    w = Watched(_OwnContext(browser), url, cookies=cookies, **PHONE)  # type: ignore[arg-type]
    w.page.context.grant_permissions(["geolocation"], origin=url)
    return w


def gps(page: Page, lon: float, lat: float) -> None:
    """Where the phone is: Chromium's geolocation override (what a moving phone's GPS reports)."""
    cdp = _SESSIONS.get(page)
    if cdp is None:  # one session per page: an override ends with the session that set it
        cdp = _SESSIONS[page] = page.context.new_cdp_session(page)
    cdp.send("Emulation.setGeolocationOverride", {"latitude": lat, "longitude": lon, "accuracy": 5})


_SESSIONS: weakref.WeakKeyDictionary[Page, CDPSession] = weakref.WeakKeyDictionary()


def stored_fixes(dsn: str, van: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT recorded_at, ST_X(geom), ST_Y(geom) FROM van_positions WHERE van_id = %s AND recorded_at > now() - "
            "interval '10 minutes' ORDER BY recorded_at",
            (van,),
        ).fetchall()


def jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue())
    return path


def until(page: Page, expression: str, what: str, timeout: float = 20_000) -> None:
    """Wait for a page expression; a timeout says what the page's GPS and read stood at."""
    try:
        page.wait_for_function(f"() => {expression}", timeout=timeout)
    except PlaywrightTimeout:
        seen = page.evaluate(
            "() => ({gps: document.getElementById('mvan-gps-status').textContent, sent: window.yitu.mvan.sent,"
            " queued: window.yitu.mvan.queued(), batches: window.yitu.mvan.batches,"
            " failures: window.yitu.mvan.failures, state: (window.yitu.mvan.state || {}).dispatch})"
        )
        raise AssertionError(f"timed out waiting for {what}; the page: {seen}") from None


def hook(page: Page, name: str) -> Any:
    return page.evaluate(f"() => window.yitu.mvan.{name}")


# --- the browser: the crew's day --------------------------------------------------------------------------


@pytest.mark.browser
def test_the_crew_sees_its_dispatch_drives_there_sharing_gps_and_ends_the_visit_with_a_photo(
    live_server: Any, demo_db: str, redis_url: str, browser: Browser, token: Any, tmp_path: Path
) -> None:
    srv = live_server(demo_db, redis_url)
    admin = auth(token("admin"))
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        scene = dispatched(http, admin, demo_db, "V01", offset_n=3)
    w = phone(browser, srv.url, signed_in(srv.url, crew(demo_db, "V01")))
    p = w.page
    p.goto(srv.url + "/m/van")
    card = f"#mvan-dispatch[data-state=en_route][data-case='{scene['code']}']"
    p.wait_for_selector(card, timeout=20_000)
    p.wait_for_selector("[data-field=parties] li", timeout=20_000)  # the case, as the crew may see it
    assert "巴图" in p.inner_text("[data-field=parties]") and "草场" in p.inner_text("[data-field=description]")
    assert p.inner_text("#mvan-dispatch h1") == "草牧场纠纷"  # the type's name, in Chinese
    state = hook(p, "state")
    assert state["dispatch"]["id"] == scene["dispatch"] and state["route"]["method"] in ("road", "great_circle")
    assert len(state["route"]["line"]) >= 2 and state["route"]["eta_s"] > 0
    assert float(p.inner_text("[data-field=distance]")) > 0 and int(p.inner_text("[data-field=eta]")) >= 1
    # the route is drawn: a Leaflet path with as many points as the line
    assert p.evaluate("() => document.querySelectorAll('#mvan-map path.leaflet-interactive').length") >= 2
    ARTIFACTS.mkdir(exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / "mvan-en-route-390x844.png"))

    # Share the phone's GPS and drive to the case: the van arrives through the fixes the page posts.
    (clon, clat), (slon, slat) = scene["case"], scene["start"]
    gps(p, slon, slat)
    p.click("button[data-action=share-gps]")
    assert p.get_attribute("button[data-action=share-gps]", "aria-pressed") == "true"
    until(p, "window.yitu.mvan.sent + window.yitu.mvan.queued() >= 1", "the first fix")
    steps = 6
    for i in range(1, steps + 1):
        f = i / steps
        gps(p, slon + (clon - slon) * f, slat + (clat - slat) * f)
        until(p, f"window.yitu.mvan.sent + window.yitu.mvan.queued() >= {i + 1}", f"fix {i + 1} taken")
    p.wait_for_selector("#mvan-dispatch[data-state=on_site] [data-field=arrived]", timeout=30_000)
    with psycopg.connect(demo_db) as conn:
        status, arrived = conn.execute(
            "SELECT status, arrived_at FROM dispatches WHERE id = %s", (scene["dispatch"],)
        ).fetchone()
        step = conn.execute("SELECT step FROM cases WHERE code = %s", (scene["code"],)).fetchone()[0]
    assert status == "on_site" and arrived is not None and step == "handling"  # started by the arrival
    assert len(stored_fixes(demo_db, "V01")) >= steps  # the page's own fixes, in the history
    p.screenshot(path=str(ARTIFACTS / "mvan-on-site-390x844.png"))

    # End the visit: mediated, closed, with a photo of the signed agreement.
    p.select_option("#mvan-result", "success")
    p.select_option("#mvan-outcome", "mediated")
    p.fill("#mvan-note", "双方达成协议，已签字")
    p.set_input_files("#mvan-photos", str(jpeg(tmp_path / "agreement.jpg")))
    p.click("button[data-action=end-visit]")
    p.wait_for_selector("#mvan-dispatch[data-state=none]", timeout=20_000)
    assert scene["code"] in p.inner_text("#mvan-dispatch")  # 走访已结束 · the case
    with psycopg.connect(demo_db) as conn:
        d = conn.execute(
            "SELECT status, result, outcome, ended_by FROM dispatches WHERE id = %s", (scene["dispatch"],)
        ).fetchone()
        case = conn.execute("SELECT id, step, outcome FROM cases WHERE code = %s", (scene["code"],)).fetchone()
        photos = conn.execute("SELECT count(*), min(kind) FROM attachments WHERE case_id = %s", (case[0],)).fetchone()
        van = conn.execute("SELECT status FROM vans WHERE id = 'V01'").fetchone()[0]
    assert d == ("ended", "success", "mediated", "车组-V01")
    assert case[1:] in (("closed", "mediated"), ("evaluated", "mediated")) and van == "available"
    assert photos[0] == 1
    p.click("button[data-action=share-gps]")  # stop sharing
    w.close()
    p.context.close()


@pytest.mark.browser
def test_a_gap_in_the_network_keeps_the_fixes_and_resends_them_each_stored_once(
    live_server: Any, demo_db: str, redis_url: str, browser: Browser, token: Any
) -> None:
    srv = live_server(demo_db, redis_url)
    admin = auth(token("admin"))
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        scene = dispatched(http, admin, demo_db, "V02", offset_n=5, far_m=3000)
    w = phone(browser, srv.url, signed_in(srv.url, crew(demo_db, "V02")))
    p = w.page
    # The first batch reaches the server and is stored, but its answer is lost on the way back:
    # the page must send it again under the same Idempotency-Key, and it must be stored once.
    lost: list[str] = []

    def lose_first_answer(route: Route) -> None:
        if lost:
            route.continue_()
            return
        lost.append(route.request.headers.get("idempotency-key", ""))
        route.fetch()  # the server stores the batch …
        route.abort("connectionreset")  # … and the phone never hears of it

    p.route("**/api/v1/vans/positions", lose_first_answer)
    sent_keys: list[str] = []
    p.on(
        "request",
        lambda r: sent_keys.append(r.headers.get("idempotency-key", "")) if r.url.endswith("/vans/positions") else None,
    )
    p.goto(srv.url + "/m/van")
    p.wait_for_selector(f"#mvan-dispatch[data-state=en_route][data-case='{scene['code']}']", timeout=20_000)
    (slon, slat), (clon, clat) = scene["start"], scene["case"]
    track = [(slon + (clon - slon) * f, slat + (clat - slat) * f) for f in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)]
    gps(p, *track[0])
    p.click("button[data-action=share-gps]")
    p.wait_for_function("() => window.yitu.mvan.failures >= 1", timeout=20_000)  # the lost answer
    p.wait_for_function("() => window.yitu.mvan.batches >= 1", timeout=20_000)  # resent, answered
    assert lost and sent_keys.count(lost[0]) >= 2  # the same batch, the same key, twice
    p.unroute("**/api/v1/vans/positions")

    # No network at all for a while: the fixes wait on the phone, the page says so.
    p.context.set_offline(True)
    for point in track[1:4]:
        gps(p, *point)
        p.wait_for_timeout(1100)  # fixes a second apart, as a moving phone gives them
    p.wait_for_function("() => window.yitu.mvan.queued() >= 3", timeout=20_000)
    p.wait_for_selector("#mvan-net:not([hidden])", timeout=20_000)
    assert int(p.get_attribute("#mvan-gps-status", "data-waiting") or 0) >= 3
    waiting = p.evaluate("() => window.yitu.mvan.queued()")
    sent_before = p.evaluate("() => window.yitu.mvan.sent")
    # … and the page is closed before the network is back: the fixes live on the phone (localStorage).
    p.close()
    w.page.context.set_offline(False)
    p2 = w.page.context.new_page()
    p2.goto(srv.url + "/m/van")  # opened again: it sends what waited and shares the GPS as before
    p2.wait_for_selector(f"#mvan-dispatch[data-case='{scene['code']}']", timeout=20_000)
    until(p2, f"window.yitu.mvan.queued() === 0 && window.yitu.mvan.sent >= {waiting}", "the kept fixes sent")
    assert p2.get_attribute("button[data-action=share-gps]", "aria-pressed") == "true"
    for point in track[4:]:
        gps(p2, *point)
        p2.wait_for_timeout(1100)
    until(p2, f"window.yitu.mvan.queued() === 0 && window.yitu.mvan.sent >= {waiting + 2}", "the new fixes sent")
    p2.wait_for_selector("#mvan-net[hidden]", state="attached", timeout=20_000)

    # Every fix the phone took is stored, each once.
    taken = sent_before + p2.evaluate("() => window.yitu.mvan.sent")
    rows = stored_fixes(demo_db, "V02")
    times = [r[0] for r in rows]
    assert len(times) == len(set(times)) == taken, (len(times), taken)
    # The server answered the resent first batch from its store (one idempotency row, no second copy).
    with psycopg.connect(demo_db) as conn:
        keys = conn.execute("SELECT count(*) FROM idempotency_keys WHERE key = %s", (lost[0],)).fetchone()[0]
    assert keys == 1
    p2.click("button[data-action=share-gps]")
    p2.close()
    w.page.context.close()
    # The failed fetches of the offline minute are the browser's console errors, not the page's.
    w.problems = [x for x in w.problems if "Failed to load resource" not in x and "ERR_" not in x]
    w.close()


# --- least privilege: a crew member is its van's, and the case its van is sent to -------------------------------


def _as(c: TestClient, cookie: str) -> TestClient:
    c.cookies.clear()
    c.cookies.set("yitu_session", cookie)
    return c


def _login(c: TestClient, name: str) -> str:
    c.cookies.clear()
    r = c.post("/login", data={"username": name, "password": PASSWORD, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return r.cookies["yitu_session"]


def test_a_crew_member_sees_only_its_van_and_the_case_it_is_sent_to(
    client: TestClient, demo_db: str, token: Any
) -> None:
    admin = auth(token("admin"))
    mine = dispatched(client, admin, demo_db, "V01", offset_n=3)
    other = dispatched(client, admin, demo_db, "V02", offset_n=7)
    r = client.post("/api/v1/cases", json=case_body(*inner_point(demo_db, offset=11)[:2]), headers=keyed(admin))
    undispatched = r.json()["code"]
    cookie = _login(client, crew(demo_db, "V01"))
    c = _as(client, cookie)
    origin = {"Origin": "http://testserver"}

    # its own: the page, the van's visit with route and ETA, the case with its parties
    page = c.get("/m/van")
    assert page.status_code == 200 and 'data-action="share-gps"' in page.text and "V01" in page.text
    state = c.get("/api/v1/vans/V01/dispatch").json()
    assert state["van"]["id"] == "V01" and state["dispatch"]["case"] == mine["code"]
    assert state["dispatch"]["status"] == "en_route" and state["route"]["line"][0] == pytest.approx(
        [round(x, 6) for x in mine["start"]], abs=1e-6
    )
    assert state["route"]["line"][-1] == pytest.approx([round(x, 6) for x in mine["case"]], abs=1e-6)
    candidates = client.get(f"/api/v1/cases/{mine['code']}/van-candidates", headers=admin).json()["candidates"]
    ranked = next(v for v in candidates if v["id"] == "V01")  # the ETA the dispatcher read, from the same code
    _as(client, cookie)
    assert (state["route"]["method"], state["route"]["eta_s"]) == (ranked["method"], ranked["eta_s"])
    case = c.get(f"/api/v1/cases/{mine['code']}")
    assert case.status_code == 200 and case.json()["parties"][0]["phone"] == "13812345678"
    for asset in ("/m/van/app.js", "/m/van/app.css", "/static/vendor/leaflet/leaflet.js"):
        assert c.get(asset).status_code == 200, asset

    # another van, another van's case, a case no van is sent to, the lists of cases: refused
    assert c.get("/api/v1/vans/V02/dispatch").status_code == 403
    assert c.get("/m/van?van=V02").status_code == 403
    for code in (other["code"], undispatched):  # as cases that do not exist
        assert c.get(f"/api/v1/cases/{code}").status_code == 404, code
        assert c.get(f"/api/v1/cases/{code}/attachments").status_code == 404, code
    assert c.get("/api/v1/cases").status_code == 403
    assert c.get("/api/v1/search?q=巴图").status_code == 403
    r = c.post(f"/api/v1/dispatches/{other['dispatch']}/end", json={}, headers=origin)
    assert r.status_code == 403
    fix = {"lon": mine["start"][0], "lat": mine["start"][1], "time": "2026-12-06T00:00:00+00:00"}
    r = c.post("/api/v1/vans/positions", json={"positions": [{"van": "V02", **fix}]}, headers=keyed(origin))
    assert r.status_code == 403 and r.json()["field"] == "positions.0.van"
    r = c.post(
        f"/api/v1/dispatches/{mine['dispatch']}/cancel", json={}, headers=origin
    )  # calling a van back is the dispatcher's
    assert r.status_code == 403
    # its own van's positions it may post (the page's GPS), and its own visit it may end
    fix["time"] = datetime.now(UTC).isoformat()
    r = c.post("/api/v1/vans/positions", json={"positions": [{"van": "V01", **fix}]}, headers=keyed(origin))
    assert r.status_code == 200 and r.json()["stored"] == 1
    r = c.post(f"/api/v1/dispatches/{mine['dispatch']}/end", json={}, headers=keyed(origin))
    assert r.status_code == 200 and r.json()["status"] == "ended"
    # once the visit is over, the case is not the van's any more
    assert c.get(f"/api/v1/cases/{mine['code']}").status_code == 404
    assert c.get("/api/v1/vans/V01/dispatch").json()["dispatch"] is None

    # a dispatcher may open any van's page (to see what the crew sees); a grid worker none
    client.cookies.clear()
    assert client.get("/m/van?van=V02", headers=admin).status_code == 200
    assert client.get("/m/van", headers=admin).status_code == 200  # the list of vans
    grid = auth(token("grid_worker"))
    assert client.get("/api/v1/vans/V02/dispatch", headers=grid).status_code == 403


def test_a_crew_member_needs_a_known_van_and_only_a_crew_member_has_one(demo_db: str) -> None:
    with psycopg.connect(demo_db) as conn:
        with pytest.raises(Invalid) as e:
            identity.create_user(conn, name="无车", role="van", password=PASSWORD)
        assert e.value.field == "van"
        with pytest.raises(Invalid) as e:
            identity.create_user(conn, name="错车", role="van", van="V99", password=PASSWORD)
        assert e.value.field == "van"
        with pytest.raises(Invalid) as e:
            identity.create_user(conn, name="调度", role="dispatcher", van="V01", password=PASSWORD)
        assert e.value.field == "van"
        identity.create_user(conn, name="司机", role="van", van="V03", password=PASSWORD)
        conn.commit()
        who = identity.verify_user(conn, "司机", PASSWORD)
        assert who is not None and who.role == "van" and who.van == "V03"
        # the database itself: a crew member has a van, nobody else has one
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE users SET van_id = NULL WHERE name = '司机'")
        conn.rollback()
        # a crew member made something else leaves the van
        identity.set_user_role(conn, "司机", "viewer", None)
        assert conn.execute("SELECT role, van_id FROM users WHERE name = '司机'").fetchone() == ("viewer", None)


def test_yitu_user_create_makes_a_crew_member(cases_settings: Settings) -> None:
    def cli(*args: str) -> Any:
        return CliRunner().invoke(user_group, list(args), obj=cases_settings, input=PASSWORD + "\n")

    out = cli("create", "乌力吉", "--role", "van", "--van", "V04", "--password-stdin")
    assert out.exit_code == 0 and "乌力吉 (van, van V04) created" in out.stdout, out.output
    out = cli("create", "巴雅尔", "--role", "van", "--password-stdin")
    assert out.exit_code == 1 and "(van)" in out.stderr
    row = next(line.split("\t") for line in cli("list").stdout.splitlines() if "\t乌力吉\t" in line)
    assert row[2] == "van" and row[-1] == "V04"

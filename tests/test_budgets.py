"""Resource budgets (api/budgets.py, geodata/db.py): body caps while streaming, statement timeouts,
the CSV's flat memory, the layer cap, WebSocket caps, and the security headers on every answer.

The memory tests measure the real server process (``yitu serve`` in a subprocess) through
/proc/<pid>/status: ``VmHWM`` is the process's peak resident set, so a body or a CSV held whole at
any moment shows in it even if it was freed before the test looks.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Route
from psycopg import sql
from starlette.testclient import WebSocketDenialResponse

from api.budgets import WS_PATH, Budgets, content_security_policy, tile_origins
from dashboard.app import create_app
from services.identity import create_token
from services.settings import Settings

from .browser import SETTLED, Watched, browser  # noqa: F401 - browser is a fixture
from .conftest import LiveServer, sign_in
from .helpers import wait_for

MiB = 1024 * 1024
BANNER = "150623"


def _token(dsn: str, role: str = "admin") -> str:
    with psycopg.connect(dsn) as conn:
        return create_token(conn, name=f"budgets-{role}", role=role, area=None)[1]


def _kib(pid: int, field: str) -> int:
    """A memory figure of a process from /proc/<pid>/status, in KiB (VmRSS now, VmHWM its peak)."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
    assert match, f"no {field} in /proc/{pid}/status"
    return int(match.group(1))


# --- bodies ---------------------------------------------------------------------------------------


class RawRequest:
    """One HTTP/1.1 request written on a raw socket, with the answer read by a thread as it comes.

    An HTTP client library stops at the first failed write, and a server that refuses a body
    closes the connection while the client is still sending: the answer must be read while
    writing, or it is lost with the connection's reset.
    """

    def __init__(self, url: str, head: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.sendall(head.encode("latin-1"))
        self.answer = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.answer += chunk
        except OSError:  # reset after the answer: what came is kept
            pass

    def answered(self) -> bool:
        return b"\r\n\r\n" in self.answer

    def stream(self, chunk: bytes, total: int, chunked: bool) -> int:
        """Write up to ``total`` bytes of ``chunk`` repeats until the answer comes; returns bytes written."""
        sent = 0
        while sent < total and not self.answered():
            _, writable, _ = select.select([], [self.sock], [], 0.2)
            if not writable:
                continue
            try:
                self.sock.sendall((b"%x\r\n" % len(chunk) + chunk + b"\r\n") if chunked else chunk)
            except OSError:  # the server closed the connection after refusing: its answer is being read
                break
            sent += len(chunk)
        return sent

    def response(self, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        wait_for(self.answered, timeout=timeout, what="the server's answer")
        self.reader.join(timeout=timeout)  # the server closes the connection after a refusal
        head, _, body = self.answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return int(lines[0].split()[1]), headers, body

    def close(self) -> None:
        self.sock.close()


def _head(path: str, token: str, extra: str) -> str:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    )


@pytest.fixture
def server(live_server: Callable[..., LiveServer], db_url: str, redis_url: str) -> tuple[LiveServer, str]:
    return live_server(db_url, redis_url, YITU_SCHEDULER_INTERVAL="0"), _token(db_url)


def test_a_300_mb_chunked_body_is_refused_at_the_cap_with_flat_memory(server: tuple[LiveServer, str]) -> None:
    srv, token = server
    pid = srv.proc.pid
    assert srv.get("/healthz").status_code in (200, 503)  # warm: the first request builds the stacks
    peak_before = _kib(pid, "VmHWM")
    # A JSON array of pings, generated as it is sent: 300 MB are never in this process either.
    ping = b'{"van":"V01","lon":107.5,"lat":38.1,"time":"2026-11-22T08:00:00+00:00"},'
    chunk = b'{"positions":[' + ping * (65536 // len(ping))
    req = RawRequest(srv.url, _head("/api/v1/vans/positions", token, "Transfer-Encoding: chunked\r\n"))
    t0 = time.monotonic()
    try:
        sent = req.stream(chunk, 300 * MiB, chunked=True)
        status, headers, body = req.response()
    finally:
        req.close()
    elapsed = time.monotonic() - t0
    assert status == 413, body
    assert json.loads(body) == {
        "error": "payload_too_large",
        "message": f"the request body is larger than {8 * MiB} bytes",
        "field": "body",
        "max": 8 * MiB,
    }
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"
    assert sent < 40 * MiB, f"the client got to send {sent / MiB:.0f} MiB before the refusal"
    assert elapsed < 15, f"the refusal took {elapsed:.1f} s"
    grown = (_kib(pid, "VmHWM") - peak_before) / 1024
    assert grown < 40, f"the server's peak memory grew by {grown:.0f} MiB for a refused body"
    assert srv.get("/healthz").status_code in (200, 503)  # and it still serves


def test_a_declared_length_over_the_cap_is_refused_unread(server: tuple[LiveServer, str]) -> None:
    srv, token = server
    req = RawRequest(srv.url, _head("/api/v1/vans/positions", token, f"Content-Length: {300 * MiB}\r\n"))
    try:
        status, _, body = req.response(timeout=10)  # nothing of the body was sent: it is not waited for
    finally:
        req.close()
    assert status == 413 and json.loads(body)["error"] == "payload_too_large"
    # The default cap elsewhere: 1 MiB (GPS batches have 8).
    req = RawRequest(srv.url, _head("/api/v1/cases", token, f"Content-Length: {2 * MiB}\r\n"))
    try:
        status, _, body = req.response(timeout=10)
    finally:
        req.close()
    assert status == 413 and json.loads(body)["max"] == MiB


def test_a_length_that_lies_low_reads_no_more_than_it_declares(server: tuple[LiveServer, str]) -> None:
    """Declared 100 bytes, sent 20 MB: the app reads its 100 bytes (a 422: not JSON), the rest is
    not a request the server takes, and the process neither grows nor fails."""
    srv, token = server
    pid = srv.proc.pid
    peak_before = _kib(pid, "VmHWM")
    req = RawRequest(srv.url, _head("/api/v1/vans/positions", token, "Content-Length: 100\r\n"))
    try:
        req.stream(b"[" * 65536, 20 * MiB, chunked=False)
        status, _, body = req.response()
    finally:
        req.close()
    assert status in (400, 422), body
    assert (_kib(pid, "VmHWM") - peak_before) / 1024 < 40
    assert srv.get("/healthz").status_code in (200, 503)


def test_gps_batches_have_a_larger_cap_than_other_bodies(app_settings: Settings) -> None:
    with TestClient(create_app(app_settings)) as client:
        big = b'{"positions": [' + b" " * (2 * MiB) + b"]}"  # 2 MiB of JSON: over 1 MiB, under 8
        gps = client.post("/api/v1/vans/positions", content=big, headers={"Content-Type": "application/json"})
        osmand = client.post("/osmand", content=big, headers={"Content-Type": "application/json"})
        other = client.post("/api/v1/cases", content=big, headers={"Content-Type": "application/json"})
    # Read whole, then refused by whatever comes next (no token here; OsmAnd's one-position limit).
    assert gps.status_code != 413 and osmand.status_code != 413, (gps.text, osmand.text)
    assert other.status_code == 413 and other.json()["field"] == "body"


# --- statement timeouts ----------------------------------------------------------------------------


@pytest.fixture
def locked_cases(demo_db: str) -> Iterator[None]:
    """Another session holds an exclusive lock on the cases: every statement reading them waits."""
    with psycopg.connect(demo_db) as conn:
        conn.execute("LOCK TABLE cases IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def test_a_statement_over_its_timeout_answers_503_not_500(
    demo_db: str, redis_url: str, tmp_path: Path, locked_cases: None
) -> None:
    settings = Settings(
        database_url=demo_db,
        redis_url=redis_url,
        home=tmp_path / "h",
        statement_timeout_ms=300,
        export_statement_timeout_ms=600,
        scheduler_interval=0,
        _env_file=None,
    )
    token = _token(demo_db)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        h = {"Authorization": f"Bearer {token}"}
        for path in (f"/api/v1/cases?area={BANNER}", f"/api/v1/areas/{BANNER}/cases.csv", "/api/v1/layers/cases"):
            t0 = time.monotonic()
            r = client.get(path, headers=h)
            assert r.status_code == 503, (path, r.status_code, r.text[:300])
            assert r.json()["error"] == "timeout" and r.headers["retry-after"] == "5", path
            assert time.monotonic() - t0 < 5, f"{path} waited past its budget"
        # A page's callback (the area table) reads under the same budget and answers the same way.
        r = client.post("/_dash-update-component", json=_area_table_call(client, BANNER), headers=h)
        assert r.status_code == 503 and r.json()["error"] == "timeout", r.text[:300]
        # Each connection of the app's pool carries the budgets.
        svc = client.app.state.services  # type: ignore[attr-defined]
        with svc.pool.connection() as conn:
            shown = conn.execute(
                "SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout'),"
                " current_setting('jit')"
            ).fetchone()
    # no JIT: compiling a statement whose estimate is high cost 150-900 ms of a 10 ms read (geodata/db.py)
    assert shown == ("300ms", "1min", "off")


def _area_table_call(client: TestClient, code: str) -> dict[str, object]:
    """The body the area page posts to fill its table (Dash's callback protocol)."""
    dash_app = client.app.state.dash  # type: ignore[attr-defined]
    key = next(k for k in dash_app.callback_map if ".area-table.data." in k or k.startswith("..area-table.data"))
    spec = dash_app.callback_map[key]
    values = {"page_current": 0, "sort_by": [], "data": code}
    outputs = [
        {"id": part.rsplit(".", 1)[0], "property": part.rsplit(".", 1)[1]} for part in key.strip(".").split("...")
    ]
    return {
        "output": key,
        "outputs": outputs,
        "inputs": [{**i, "value": values.get(i["property"])} for i in spec["inputs"]],
        "state": [
            {**st, "value": "zh-CN" if st["id"] == "lang" else values.get(st["property"])} for st in spec["state"]
        ],
        "changedPropIds": [],
    }


# --- the CSV ---------------------------------------------------------------------------------------


def _grow_cases(dsn: str, copies: int) -> int:
    """Copies of the demo's cases under new codes (``generate_series``): a banner of many cases."""
    with psycopg.connect(dsn) as conn:
        # This database is the test's own clone, and only the export's path is this test's subject: the
        # copies skip what it does not read. The indexes it does not walk (it walks cases_banner_idx for the
        # banner, cases_village_idx for the village of the warm-up): the search's gram indexes
        # (024_search.sql) cost a GIN entry per gram per row (with them the copies once took some 90 s
        # to write), the others a third of the rest (30 s → 19 s, measured without the gram indexes,
        # in a slow hour). And the KPI counters (033_counters.sql): their insert trigger folds the
        # copies into the figures, which the export never reads (24 s → 10 s when it was measured).
        walked = ("cases_pkey", "cases_code_key", "cases_banner_idx", "cases_village_idx")
        others = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'cases'"
            " AND indexname <> ALL(%s)",
            (list(walked),),
        ).fetchall()
        for (name,) in others:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        conn.execute("ALTER TABLE cases DISABLE TRIGGER yitu_counters_insert")
        conn.execute(
            """INSERT INTO cases (code, type, description, parties, geom, grid_code, village_code, town_code,
                                  banner_code, channel, level, step, deadline, reported_at, closed_at)
               SELECT left(c.code, 16) || lpad((900000000 + n * 100000 + c.id)::text, 9, '0'), c.type, c.description,
                      c.parties, c.geom, c.grid_code, c.village_code, c.town_code, c.banner_code, c.channel,
                      c.level, c.step, c.deadline, c.reported_at - make_interval(days => n), c.closed_at
               FROM cases c CROSS JOIN generate_series(1, %s) AS n""",
            (copies,),
        )
        row = conn.execute("SELECT count(*) FROM cases WHERE banner_code = %s", (BANNER,)).fetchone()
    assert row is not None
    return int(row[0])


def test_a_banner_wide_csv_streams_with_flat_memory(
    live_server: Callable[..., LiveServer], demo_db: str, redis_url: str
) -> None:
    total = _grow_cases(demo_db, 33)  # ~6,300 × 34 ≈ 210,000 cases
    assert total > 200_000
    srv = live_server(demo_db, redis_url, YITU_SCHEDULER_INTERVAL="0")
    token = _token(demo_db)
    h = {"Authorization": f"Bearer {token}"}
    small = srv.get(f"/api/v1/areas/{BANNER}001001/cases.csv", headers=h)  # warm: one small export first
    assert small.status_code in (200, 404)
    pid = srv.proc.pid
    peak_before = _kib(pid, "VmHWM")
    rows = 0
    size = 0
    with httpx.stream("GET", f"{srv.url}/api/v1/areas/{BANNER}/cases.csv", headers=h, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        assert r.headers["x-content-type-options"] == "nosniff"
        for chunk in r.iter_bytes():
            rows += chunk.count(b"\n")
            size += len(chunk)
    assert rows == total + 1  # the header line
    grown = (_kib(pid, "VmHWM") - peak_before) / 1024
    # The whole selection as rows would be some 300 MB in the process; the cursor keeps a batch.
    assert grown < 40, f"the server's peak memory grew by {grown:.0f} MiB exporting {size / MiB:.0f} MiB of CSV"


# --- layers ---------------------------------------------------------------------------------------


@pytest.fixture
def demo_client(demo_dsn: str, demo_admin: dict[str, str], redis_url: str, tmp_path: Path) -> Callable[..., TestClient]:
    """A client of the seeded demo carrying the demo's admin token (every route needs an identity)."""

    def make(**extra: object) -> TestClient:
        settings = Settings(database_url=demo_dsn, redis_url=redis_url, home=tmp_path / "h", _env_file=None, **extra)
        return TestClient(create_app(settings), headers=demo_admin)

    return make


def test_a_layer_over_its_feature_cap_asks_to_zoom_in(demo_client: Callable[..., TestClient]) -> None:
    with demo_client() as client:  # the default cap serves the banner's 4,000 cameras and every pin
        assert len(client.get("/api/v1/layers/cameras").json()["features"]) == 4000
        assert client.get("/api/v1/layers/cases?closed_hours=720").status_code == 200
    with demo_client(layer_max_features=100) as client:
        r = client.get("/api/v1/layers/cameras")
        assert r.status_code == 422
        assert r.json() == {
            "error": "too_many_features",
            "message": "more than 100 features in this box: zoom in (a smaller bbox) or narrow the filters",
            "field": "bbox",
            "max_features": 100,
        }
        assert client.get("/api/v1/layers/cases").status_code == 422  # ~320 open pins banner-wide
        box = client.get("/api/v1/layers/cameras?bbox=107.40,38.00,107.45,38.05")
        assert box.status_code == 200 and 0 < len(box.json()["features"]) <= 100
        # The grids (bounded by the territory) and the vans are not capped.
        assert client.get("/api/v1/layers/grids?level=4").status_code == 200


# --- WebSocket caps -------------------------------------------------------------------------------


def test_websockets_are_capped_per_identity_and_per_process(app_settings: Settings, db_url: str) -> None:
    """Three people signed in (the guard binds each one from the session cookie, as in production)."""
    settings = app_settings.model_copy(update={"ws_max_per_process": 3, "ws_max_per_identity": 2})
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code in (200, 503)
        budgets = app.middleware_stack
        assert isinstance(budgets, Budgets)
        cookies = {n: sign_in(client, db_url, "viewer", name=f"ws-user{n}") for n in (1, 2, 3)}
        client.cookies.clear()  # each connection names its own person
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT id FROM users WHERE name = 'ws-user1'").fetchone()
        assert row is not None
        first = f"user:{row[0]}"

        def connect(user: int):  # type: ignore[no-untyped-def]
            headers = {"origin": "http://testserver", "cookie": f"yitu_session={cookies[user]}"}
            return client.websocket_connect(WS_PATH, headers=headers)

        with connect(1), connect(1):
            with pytest.raises(WebSocketDenialResponse) as refused, connect(1):
                pass
            assert refused.value.status_code == 429
            assert refused.value.json()["error"] == "too_many_connections"
            assert first in refused.value.json()["message"]
            with connect(2):
                assert budgets.ws_open == 3
                with pytest.raises(WebSocketDenialResponse) as full, connect(3):
                    pass
                assert "maximum of 3" in full.value.json()["message"]
        wait_for(lambda: budgets.ws_open == 0, timeout=10, what="the closed connections to be counted out")
        assert budgets.ws_by_identity == {}
        with connect(1), connect(1):  # the closed ones freed their places
            assert budgets.ws_open == 2


# --- security headers -----------------------------------------------------------------------------


def test_security_headers_on_every_kind_of_answer(app_settings: Settings, db_url: str) -> None:
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as client:
        # Before signing in: the sign-in page, its stylesheet and the redirect to it.
        anonymous = {
            "login page": client.get("/login"),
            "login css": client.get("/login.css"),
            "302 to /login": client.get(f"/area/{BANNER}", follow_redirects=False),
            "api 401": client.get("/api/v1/vans"),
        }
        sign_in(client, db_url)
        page = client.get("/")
        assets = [m for m in re.findall(r'(?:src|href)="(/[^"]+)"', page.text) if "_dash-component-suites" in m]
        answers = {
            **anonymous,
            "page": page,
            "area page": client.get(f"/area/{BANNER}"),
            "dash asset": client.get(assets[0]),
            "own asset": client.get("/assets/yitu_map.js"),
            "api": client.get("/healthz"),
            "openapi": client.get("/openapi.json"),
            "api 404": client.get("/api/v1/cases/150623-20261122-000001"),
            "api 422": client.get("/api/v1/layers/grids?level=9"),
            "dash callback 4xx": client.post(
                "/_dash-update-component", json={}, headers={"Origin": "http://testserver"}
            ),
            "413": client.post("/api/v1/cases", content=b"x" * (MiB + 1)),
        }
        https = TestClient(client.app, base_url="https://testserver").get("/healthz")
    for what, r in answers.items():
        csp = r.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, (what, r.status_code, csp)
        assert r.headers.get("x-content-type-options") == "nosniff", what
        assert r.headers.get("referrer-policy") == "same-origin", what
        assert "strict-transport-security" not in r.headers, f"HSTS over plain HTTP on {what}"
    assert answers["413"].status_code == 413
    assert answers["login page"].status_code == 200 and answers["302 to /login"].status_code == 302
    assert answers["api 401"].status_code == 401 and answers["page"].status_code == 200
    assert https.headers["strict-transport-security"].startswith("max-age=")
    # No origin but the page's own: no http(s) source, no eval, no blanket inline scripts.
    csp = answers["page"].headers["content-security-policy"]
    assert "http" not in csp and "unsafe-eval" not in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]


def test_the_policy_lets_in_only_the_configured_tile_host(app_settings: Settings) -> None:
    def img_src(**extra: object) -> str:
        settings = app_settings.model_copy(update=extra)
        with TestClient(create_app(settings)) as client:
            csp = client.get("/healthz").headers["content-security-policy"]
        return next(d for d in csp.split("; ") if d.startswith("img-src"))

    assert img_src() == "img-src 'self' data: blob:"
    assert img_src(basemap="osm") == "img-src 'self' data: blob: https://tile.openstreetmap.org"
    xyz = img_src(basemap="xyz", basemap_url="http://tiles.local:8080/{z}/{x}/{y}.png")
    assert xyz == "img-src 'self' data: blob: http://tiles.local:8080"
    assert tile_origins(["https://t{s}.tianditu.gov.cn/vec_w/wmts?x=1"], "01") == [
        "https://t0.tianditu.gov.cn",
        "https://t1.tianditu.gov.cn",
    ]
    assert "connect-src 'self'" in content_security_policy()


def test_pages_draw_under_the_policy_and_a_refused_script_is_caught(
    live_server: Callable[..., LiveServer], demo_dsn: str, redis_url: str, browser: Browser
) -> None:
    """Wall, area and dispatch pages draw with no CSP violation (Watched fails on any), and the
    watch is not blind: the same page served without Dash's script hash reports the refusal."""
    srv = live_server(demo_dsn, redis_url, YITU_SCHEDULER_INTERVAL="0")
    login = Watched(browser, srv.url)  # the sign-in page, anonymous: its form and stylesheet under the policy
    login.page.goto(srv.url + "/login")
    login.page.wait_for_selector("form[action='/login'] #signin", timeout=30_000)
    assert login.page.evaluate("() => getComputedStyle(document.querySelector('.yitu-login')).display") != "none"
    login.close()
    srv.sign_in()
    assert "script-src 'self' 'sha256-" in srv.get("/").headers["content-security-policy"]
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    w.page.goto(srv.url + "/")
    w.page.wait_for_function(SETTLED, timeout=60_000)
    w.page.goto(f"{srv.url}/area/{BANNER}")
    w.page.wait_for_selector("#area-table td[data-dash-column=code]", timeout=60_000)
    w.page.goto(srv.url + "/dispatch")
    w.page.wait_for_selector(".yitu-queue-item", timeout=60_000)  # signed in: the queue, no token field
    w.page.goto(srv.url + "/docs")  # Swagger UI: drawn by its inline start, allowed by its hash
    w.page.wait_for_selector("#swagger-ui .swagger-ui", timeout=60_000)
    w.close()

    blind = Watched(browser, srv.url, cookies=srv.browser_cookie())

    def without_hashes(route: Route) -> None:
        response = route.fetch()
        headers = dict(response.headers)
        headers["content-security-policy"] = re.sub(r" 'sha256-[^']+'", "", headers["content-security-policy"])
        route.fulfill(response=response, headers=headers)

    blind.page.route(srv.url + "/", without_hashes)
    blind.page.goto(srv.url + "/")
    wait_for(lambda: blind.csp, timeout=30, what="the refused inline script to be reported")
    assert any(v.startswith("script-src") for v in blind.csp), blind.csp
    blind.page.close()

"""deploy/nginx.conf in front of a real `yitu serve`: a real nginx (Debian's), a throwaway certificate.

The shipped file is rendered only where it marks a value "# SITE" (name, certificate, upstream) and in its
listen ports, and included in an http { } block like the one Debian's nginx.conf wraps around conf.d/.
The app runs with YITU_ACCESS_LOG, so its log shows the client address and scheme it sees.

Sign-in (issue 12): API requests here carry an admin bearer token; the browser signs in as a person does,
through nginx with the sign-in form (POST /login), and `_signed_in` asserts that the yitu_session cookie
is Secure (it goes by the https the app sees behind nginx) and that HSTS comes on the answers through
nginx and not on plain http.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser

from cli.main import KEEP_ALIVE_S
from services.identity import create_token

from .browser import Watched
from .conftest import ROOT, LiveServer
from .helpers import free_port, wait_for
from .nginx import CLIENT, NAME, Nginx, Proxies, _signed_in, report_through, tls_browser  # noqa: F401  (the fixture)
from .test_live_browser import _open_wall, _wait_pin

FORGED = "203.0.113.9"
MiB = 1024 * 1024


Site = tuple[LiveServer, Nginx, str]  # the app, nginx in front of it, an admin bearer token


@pytest.fixture
def site_of(live_server, redis_url: str, tmp_path: Path) -> Iterator[Callable[[str], Site]]:  # type: ignore[no-untyped-def]
    proxies = Proxies(tmp_path)

    def start(dsn: str) -> Site:
        with psycopg.connect(dsn) as conn:
            token = create_token(conn, name="nginx-admin", role="admin", area=None)[1]
        srv = live_server(dsn, redis_url, YITU_ACCESS_LOG="true")
        return srv, proxies.start(f"127.0.0.1:{srv.port}"), token

    yield start
    proxies.stop()


def _seen(srv: LiveServer | Factory, method: str, path: str) -> dict[str, str]:
    """The app's access-log line of a request (waits for it): status, client, scheme."""
    pattern = re.compile(rf"yitu\.access: {re.escape(method)} {re.escape(path)} (.*)$", re.M)

    def find() -> dict[str, str] | None:
        m = pattern.search(srv.log())
        return dict(kv.split("=", 1) for kv in m.group(1).split()) if m else None

    found = wait_for(find, timeout=15, what=f"the app's log line of {method} {path}")
    assert isinstance(found, dict)
    return found


def _never_seen(srv: LiveServer | Factory, method: str, path: str) -> bool:
    return f"yitu.access: {method} {path} " not in srv.log()


def test_https_serves_the_pages_and_the_api_and_http_only_redirects(site_of, db_url: str) -> None:  # type: ignore[no-untyped-def]
    srv, proxy, token = site_of(db_url)
    auth = {"Authorization": f"Bearer {token}"}
    with proxy.client() as c:
        page = c.get(proxy.base + "/", headers=auth)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-encoding"] == "gzip"  # the app's, once: httpx read the page from it
        assert "_dash-config" in page.text
        assert page.headers["server"] == "nginx"  # no version, and not the app's uvicorn

        vans = c.get(proxy.base + "/api/v1/vans", headers=auth)
        assert vans.status_code == 200, vans.text
        assert vans.headers["content-type"] == "application/json"
        assert vans.json()["vans"] == []  # a migrated database without vans

        # Plain HTTP answers only with the way to HTTPS, whatever the path; nothing reaches the app.
        moved = c.get(f"http://{NAME}:{proxy.http_port}/area/150623?tab=cases", headers=auth)
        assert moved.status_code == 301
        assert moved.headers["location"] == f"https://{NAME}/area/150623?tab=cases"
        assert moved.headers["server"] == "nginx"
        assert _never_seen(srv, "GET", "/area/150623")

        # nginx's own error pages name no version either.
        refused = c.post(proxy.base + "/api/v1/cases", content=b"{" * (MiB + 1), headers=auth)
        assert refused.status_code == 413
        assert refused.headers["server"] == "nginx"
        assert "nginx/" not in refused.text


def test_other_names_and_bare_addresses_get_nothing(site_of, db_url: str) -> None:  # type: ignore[no-untyped-def]
    srv, proxy, _ = site_of(db_url)
    with proxy.client() as c:
        with pytest.raises(httpx.RemoteProtocolError):  # 444: the connection closes without an answer
            c.get(f"http://{NAME}:{proxy.http_port}/", headers={"Host": "other.example"})
    # No server name (SNI) in the TLS greeting, as from https://127.0.0.1: the handshake is refused.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://127.0.0.1:{proxy.https_port}/", verify=False, timeout=10)
    assert _never_seen(srv, "GET", "/")


def test_the_app_sees_https_and_the_browser_address_only_through_the_proxy(site_of, db_url: str) -> None:  # type: ignore[no-untyped-def]
    srv, proxy, _ = site_of(db_url)
    forged = {"X-Forwarded-For": FORGED, "X-Forwarded-Proto": "http"}
    with proxy.client() as c:
        # Through nginx: the client's own address and https, whatever the client claims in the headers.
        c.get(proxy.base + "/api/v1/probe-through-nginx", headers=forged)
        seen = _seen(srv, "GET", "/api/v1/probe-through-nginx")
        assert (seen["client"], seen["scheme"]) == (CLIENT, "https")

    # Straight to the app from an address that is not a trusted proxy: the same headers are ignored.
    direct = httpx.Client(transport=httpx.HTTPTransport(local_address=CLIENT), timeout=30)
    with direct:
        direct.get(srv.url + "/api/v1/probe-direct", headers={"X-Forwarded-For": FORGED, "X-Forwarded-Proto": "https"})
    seen = _seen(srv, "GET", "/api/v1/probe-direct")
    assert (seen["client"], seen["scheme"]) == (CLIENT, "http")


class Factory:
    """``uvicorn --factory cli.asgi:app --no-proxy-headers``, as a deployment runs several workers."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        args = ["--factory", "cli.asgi:app", "--no-proxy-headers", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", *args],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: "Application startup complete" in self.log(), timeout=60, what=f"the factory ({log_path})")

    def log(self) -> str:
        if self.proc.poll() is not None:
            raise AssertionError(f"uvicorn exited with {self.proc.returncode}: {self.log_path.read_text()}")
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


@pytest.mark.parametrize("serve", ["yitu serve", "uvicorn --factory cli.asgi:app"])
def test_yitu_trusted_proxies_is_the_list_the_app_believes(  # type: ignore[no-untyped-def]
    serve: str, live_server, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Both ways of serving the app believe X-Forwarded-* from YITU_TRUSTED_PROXIES and from no one else
    (uvicorn's own default, loopback, included)."""
    env = {"YITU_ACCESS_LOG": "true", "YITU_TRUSTED_PROXIES": f'["{CLIENT}"]'}
    if serve == "yitu serve":
        srv: LiveServer | Factory = live_server(db_url, redis_url, **env)
    else:
        srv = Factory({**env, "YITU_DATABASE_URL": db_url, "YITU_REDIS_URL": redis_url}, tmp_path / "factory.log")
    forged = {"X-Forwarded-For": FORGED, "X-Forwarded-Proto": "https"}
    try:
        for source, path in ((CLIENT, "/api/v1/probe-from-the-proxy"), ("127.0.0.1", "/api/v1/probe-from-loopback")):
            with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30) as c:
                c.get(srv.url + path, headers=forged)
        from_proxy = _seen(srv, "GET", "/api/v1/probe-from-the-proxy")
        assert (from_proxy["client"], from_proxy["scheme"]) == (FORGED, "https")
        from_loopback = _seen(srv, "GET", "/api/v1/probe-from-loopback")
        assert (from_loopback["client"], from_loopback["scheme"]) == ("127.0.0.1", "http")
    finally:
        if isinstance(srv, Factory):
            srv.stop()


def test_bodies_over_the_caps_stop_at_nginx(site_of, db_url: str) -> None:  # type: ignore[no-untyped-def]
    srv, proxy, token = site_of(db_url)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with proxy.client() as c:
        # 1 MiB for every route: over it, nginx answers 413 before the app reads a byte.
        assert c.post(proxy.base + "/api/v1/cases", content=b" " * (MiB + 1), headers=auth).status_code == 413

        # A body without a length (chunked) is counted as it arrives.
        def chunks() -> Iterator[bytes]:
            for _ in range(3):
                yield b" " * (MiB // 2)

        assert c.post(proxy.base + "/api/v1/cases/by-chunks", content=chunks(), headers=auth).status_code == 413

        # GPS batches (the vans' API and OsmAnd) may carry up to 8 MiB: 2 MiB reach the app, 8 MiB + 1 do not.
        for path in ("/api/v1/vans/positions", "/osmand"):
            big = c.post(proxy.base + path, content=b" " * (2 * MiB), headers=auth)
            assert big.status_code != 413 and big.headers["content-type"].startswith("application/json"), big.text
            assert _seen(srv, "POST", path)["scheme"] == "https"
            too_big = c.post(proxy.base + path + "?over=1", content=b" " * (8 * MiB + 1), headers=auth)
            assert too_big.status_code == 413
            assert too_big.headers["content-type"].startswith("text/html")  # nginx's page, not the app's JSON

        # Attachment uploads (photos) may carry up to 101 MiB: 2 MiB reach the app (a case that does not
        # exist: its JSON 404, not nginx's 413).
        path = "/api/v1/cases/150623-20200101-999999/attachments"
        photo = {**auth, "Content-Type": "multipart/form-data; boundary=x"}
        upload = c.post(proxy.base + path, content=b" " * (2 * MiB), headers=photo)
        assert upload.status_code == 404 and upload.json()["field"] == "code", upload.text

        c.get(proxy.base + "/api/v1/probe-after-the-bodies")
        _seen(srv, "GET", "/api/v1/probe-after-the-bodies")  # the app has logged everything sent before it
    assert _never_seen(srv, "POST", "/api/v1/cases")
    assert _never_seen(srv, "POST", "/api/v1/cases/by-chunks")
    assert srv.log().count("yitu.access: POST /api/v1/vans/positions ") == 1
    assert srv.log().count("yitu.access: POST /osmand ") == 1


@pytest.mark.browser
def test_the_live_socket_works_through_nginx(site_of, demo_db: str, tls_browser: Browser) -> None:  # type: ignore[no-untyped-def]
    srv, proxy, token = site_of(demo_db)
    w = Watched(tls_browser, proxy.base)
    _signed_in(w, srv, proxy, demo_db)
    page = _open_wall(w, proxy.base)
    seen = _seen(srv, "WS", "/_dash-ws-callback")  # the socket reached the app through nginx: wss, from nginx
    assert (seen["status"], seen["scheme"], seen["client"]) == ("101", "wss", "127.0.0.1")

    # A case reported through nginx reaches the open screen through nginx, pushed on that socket.
    _wait_pin(page, report_through(proxy, token, "草场边界争议（经 nginx 推送）", 0.003, -0.001))
    assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded"
    w.close()  # no console errors, and no request left https://localhost:<port>


def test_nginx_lets_go_of_an_idle_app_connection_before_the_app_does(live_server, db_url: str, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    """nginx keeps idle connections to the app for its upstream ``keepalive_timeout``; the app must keep
    them longer, or a request nginx sends on one the app is closing gets a reset and the client a 502
    (one case transition in a bench_mix run, with uvicorn's default of 5 s). A real `yitu serve`: a
    connection idle for 6 s still answers."""
    upstream = re.search(r"upstream yitu_app \{(.*?)\}", (ROOT / "deploy" / "nginx.conf").read_text(), re.S)
    assert upstream is not None
    nginx_s = re.search(r"keepalive_timeout\s+(\d+)s;", upstream.group(1))
    assert nginx_s is not None and int(nginx_s.group(1)) < KEEP_ALIVE_S
    srv = live_server(db_url, redis_url)
    host, port = urlsplit(srv.url).hostname, urlsplit(srv.url).port

    def answer(s: socket.socket) -> bytes:  # one whole response (headers, then Content-Length bytes)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            assert chunk, "the app closed the connection"
            got += chunk
        head, body = got.split(b"\r\n\r\n", 1)
        size = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < size:
            body += s.recv(65536)
        return head

    with socket.create_connection((host, port), timeout=10) as s:
        ask = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        s.sendall(ask)
        assert answer(s).startswith(b"HTTP/1.1 200")
        time.sleep(6)  # the condition is time itself: past uvicorn's default keep-alive
        s.sendall(ask)
        assert answer(s).startswith(b"HTTP/1.1 200")

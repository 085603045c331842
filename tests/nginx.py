"""deploy/nginx.conf in front of the app in tests: a real nginx (Debian's) with a throwaway certificate,
shared by tests/test_nginx.py (one process behind it) and tests/test_workers.py (two). One copy, so the
two cannot drift in how nginx is rendered, started, signed in through and reported to.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from .browser import CHROMIUM_ARGS, Watched, chromium_path
from .conftest import PASSWORD, ROOT, LiveServer, create_user
from .helpers import free_port, keyed, wait_for
from .test_live_browser import SEAT

DEPLOY = ROOT / "deploy" / "nginx.conf"
NAME = "localhost"
CLIENT = "127.0.0.2"  # the test's own source address: not the proxy's (127.0.0.1), so the two can be told apart

# What Debian's /etc/nginx/nginx.conf sets around conf.d/*.conf (its gzip on and old TLS versions included,
# which deploy/nginx.conf must override), with this test's own paths instead of the system's.
MAIN = """daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
{user}
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    gzip on;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/yitu.conf;
}}
"""


def render(template: str, *, cert: Path, key: Path, upstream: str, http_port: int, https_port: int) -> str:
    """deploy/nginx.conf with this test's values: each "# SITE" line, and the listen ports (on loopback)."""
    site = {
        "server_name yitu.example.org;": (f"server_name {NAME};", 2),
        "/etc/ssl/yitu/fullchain.pem;": (f"{cert};", 1),
        "/etc/ssl/yitu/privkey.pem;": (f"{key};", 1),
        "server 127.0.0.1:8050;": (f"server {upstream};", 1),
    }
    marked = re.findall(r"^\s*\w+ .*;\s+# SITE\b.*$", template, re.M)  # the directives marked as a site's own
    assert len(marked) == sum(n for _, n in site.values()), f"a site value the test does not render: {marked}"
    for old, (new, times) in site.items():
        assert template.count(old) == times, f"{old!r} should appear {times} times in deploy/nginx.conf"
        template = template.replace(old, new)
    ports = {"80": http_port, "443": https_port}
    lines = []
    for line in template.splitlines():
        m = re.match(r"^(\s*)listen (\[::\]:)?(80|443)\b(.*)$", line)
        if m is None:
            lines.append(line)
        elif m.group(2) is None:  # IPv4 only: the test's ports on loopback
            lines.append(f"{m.group(1)}listen 127.0.0.1:{ports[m.group(3)]}{m.group(4)}")
    return "\n".join(lines) + "\n"


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={NAME}"]
        + ["-addext", f"subjectAltName=DNS:{NAME}"],
        check=True,
        capture_output=True,
    )
    return cert, key


class Nginx:
    """nginx from Debian in the foreground, its own prefix, deploy/nginx.conf rendered for free ports."""

    def __init__(self, prefix: Path, upstream: str, main: str = MAIN) -> None:
        """``main``: the nginx.conf around deploy/nginx.conf (bench/bench_mix.py gives Debian's worker
        counts instead of the test's one worker)."""
        prefix.mkdir()
        self.prefix = prefix
        self.http_port, self.https_port = free_port(), free_port()
        self.cert, key = _certificate(prefix)
        site = render(
            DEPLOY.read_text(),
            cert=self.cert,
            key=key,
            upstream=upstream,
            http_port=self.http_port,
            https_port=self.https_port,
        )
        (prefix / "yitu.conf").write_text(site)
        # As root the workers would drop to nobody, who cannot enter the test's temporary folder.
        user = "user root;" if os.geteuid() == 0 else ""
        (prefix / "nginx.conf").write_text(main.format(prefix=prefix, user=user))
        self.args = ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
        test = subprocess.run([*self.args, "-t"], check=False, capture_output=True, text=True)
        assert test.returncode == 0, test.stderr
        assert "[warn]" not in test.stderr, test.stderr  # the shipped file loads without a warning
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(self._up, timeout=20, what=f"nginx on ports {self.http_port}/{self.https_port}")

    @property
    def base(self) -> str:
        return f"https://{NAME}:{self.https_port}"

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited with {self.proc.returncode}: {self.error_log()}")
        try:  # listening is enough (a request would show in the app's log)
            for port in (self.http_port, self.https_port):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            return False
        return True

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def client(self) -> httpx.Client:
        """A client that trusts the test certificate and connects from CLIENT."""
        return httpx.Client(transport=httpx.HTTPTransport(verify=self.tls(), local_address=CLIENT), timeout=30)

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


class Proxies:
    """The nginx instances a test started, all stopped when it ends (a fixture's teardown)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Nginx] = []

    def start(self, upstream: str) -> Nginx:
        proxy = Nginx(self.folder / f"nginx{len(self.started) or ''}", upstream)
        self.started.append(proxy)
        return proxy

    def stop(self) -> None:
        for proxy in self.started:
            proxy.stop()


@pytest.fixture(scope="module")
def tls_browser() -> Iterator[Browser]:
    """Chromium that accepts the test's self-signed certificate on every connection: Playwright's
    ignore_https_errors covers page loads but not the WebSocket, which Chromium then refuses."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=[*CHROMIUM_ARGS, "--ignore-certificate-errors"])
        yield b
        b.close()


def _signed_in(w: Watched, srv: LiveServer, proxy: Nginx, dsn: str) -> Page:
    """A browser signed in through nginx with the sign-in form (POST /login): its session cookie is
    Secure, and the app's answers through nginx carry HSTS (plain http never does)."""
    name = create_user(dsn, "admin")
    page = w.page
    page.goto(proxy.base + "/")  # not signed in: the sign-in page, through nginx
    page.wait_for_selector("#username")
    assert page.url.startswith(proxy.base + "/login?next=/"), page.url
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    with page.expect_response(lambda r: r.url == proxy.base + "/login" and r.request.method == "POST") as posted:
        page.click("#signin")
    answer = posted.value
    assert answer.status == 303, answer.status
    assert answer.headers["strict-transport-security"].startswith("max-age=")  # the app saw https
    page.wait_for_url(proxy.base + "/")
    cookie = next(c for c in page.context.cookies(proxy.base) if c["name"] == "yitu_session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    with proxy.client() as c:
        assert c.get(proxy.base + "/login").headers["strict-transport-security"].startswith("max-age=")
        moved = c.get(f"http://{NAME}:{proxy.http_port}/login")
        assert moved.status_code == 301 and "strict-transport-security" not in moved.headers
    assert "strict-transport-security" not in srv.get("/login").headers  # the app itself, on plain http
    return page


def report_through(proxy: Nginx, token: str, description: str, dlon: float, dlat: float) -> str:
    """A grassland case reported through nginx near SEAT (an admin's bearer ``token``): its code."""
    with proxy.client() as c:
        r = c.post(
            proxy.base + "/api/v1/cases",
            headers=keyed({"Authorization": f"Bearer {token}"}),
            json={
                "type": "grassland",
                "description": description,
                "lon": SEAT[0] + dlon,
                "lat": SEAT[1] + dlat,
                "channel": "grid_app",
                "parties": [{"name": "巴图", "phone": "13812345678"}],
            },
        )
    assert r.status_code == 201, r.text
    return str(r.json()["code"])

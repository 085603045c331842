"""The dashboard served by `yitu serve`: the page, its assets (no CDN), and a real headless Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from .conftest import ARTIFACTS

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian chromium is missing: run scripts/bootstrap.sh --test"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_index_is_served_in_chinese_with_no_external_urls(live_server, db_url: str, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(db_url, redis_url)
    r = srv.get("/")
    assert r.status_code == 200
    assert "<title>一图指挥" in r.text
    external = [u for u in re.findall(r'(?:src|href)="([^"]+)"', r.text) if re.match(r"(https?:)?//", u)]
    assert external == [], f"page loads from outside: {external}"
    assert srv.get("/healthz").status_code == 200
    assert srv.get("/openapi.json").json()["paths"].get("/healthz")


def test_english_ui_with_yitu_lang_en(live_server, db_url: str, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(db_url, redis_url, YITU_LANG="en")
    assert "<title>One-Map Command" in srv.get("/").text


@pytest.mark.browser
def test_wall_screen_renders_in_chromium_without_console_errors(
    live_server, db_url: str, redis_url: str, browser: Browser  # type: ignore[no-untyped-def]
) -> None:
    srv = live_server(db_url, redis_url)
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    outside: list[str] = []
    page.on("request", lambda req: outside.append(req.url) if not req.url.startswith(srv.url) and not req.url.startswith("data:") else None)

    page.goto(srv.url + "/", wait_until="load")
    page.wait_for_selector(".yitu-title")
    assert page.inner_text(".yitu-title") == "一图指挥"
    page.wait_for_selector("#yitu-map.leaflet-container")
    box = page.locator("#yitu-map").bounding_box()
    assert box is not None and box["width"] >= 1900 and box["height"] >= 900  # the map fills the screen

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "wall-screen-skeleton-1920x1080.png"))
    page.close()
    assert problems == []
    assert outside == [], f"requests left the server: {outside}"

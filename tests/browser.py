"""Headless Chromium for the browser tests (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from layers import registry

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


def settled(names: list[str]) -> str:
    """A page function true once every layer named has drawn features (window.yitu.loaded counts them).
    False, not an error, while the page's scripts are still starting (window.yitu made, its
    ``loaded`` not yet): a wait that begins at the first byte (``wait_until="commit"``) polls then."""
    every = f"{json.dumps(names)}.every(k => (window.yitu.loaded[k] || 0) > 0)"
    return f"() => !!(window.yitu && window.yitu.loaded) && {every}"


LAYERS = tuple(layer.name for layer in registry.wall_layers())  # every layer the wall screen draws
SETTLED = settled(list(LAYERS))


def chromium_path() -> str:
    assert Path(CHROMIUM).exists(), "Debian chromium is missing: run scripts/bootstrap.sh --test"
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


# Records the page's Content-Security-Policy violations (api/budgets.py's policy): a page that needs
# something the policy refuses fails its test, even where the browser only warns.
CSP_WATCH = """document.addEventListener('securitypolicyviolation', e => window.yituCspViolation(
    e.effectiveDirective + ' refused ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber));"""


class Watched:
    """A page whose console errors, page errors, CSP violations and requests leaving the server are
    recorded; with ``cookies``, signed in.

    The page prefers reduced motion: the overdue pins' pulse, repainted every frame, otherwise
    keeps a software-rendering Chromium busy for as long as a wall screen is open.
    """

    def __init__(
        self,
        browser: Browser,
        base: str,
        width: int = 1920,
        height: int = 1080,
        cookies: list[dict[str, str]] | None = None,
    ) -> None:
        self.page: Page = browser.new_page(viewport={"width": width, "height": height}, reduced_motion="reduce")
        if cookies:  # a signed-in browser (LiveServer.browser_cookie): the session cookie
            self.page.context.add_cookies(cookies)  # type: ignore[arg-type]
        self.problems: list[str] = []
        self.outside: list[str] = []
        self.csp: list[str] = []  # every document's, across navigations
        self.page.expose_function("yituCspViolation", lambda text: self.csp.append(str(text)))
        self.page.add_init_script(CSP_WATCH)
        self.page.on("console", lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        # Not a problem by itself (a page may abandon a request), but what names the request behind a
        # problem such as "Failed to fetch": shown beside the problems when there are any.
        self.failed: list[str] = []
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.method} {r.url}: {r.failure}"))
        self.page.on(
            "request",
            lambda r: (
                self.outside.append(r.url) if not r.url.startswith(base) and not r.url.startswith("data:") else None
            ),
        )

    def close(self) -> None:
        self.page.close()
        assert self.csp == [], f"Content-Security-Policy violations: {self.csp}"
        assert self.problems == [], f"{self.problems}; requests that failed: {self.failed}"
        assert self.outside == [], f"requests left the server: {self.outside}"


# How many features other than polygons the last map holds (markers, cluster bubbles, trails): zero once
# every layer but the grid is switched off.
NON_POLYGON_FEATURES = """() => { const m = window.yitu.maps[window.yitu.maps.length - 1]; let n = 0;
    m.eachLayer(l => { if (l.feature && !/Polygon/.test((l.feature.geometry || {}).type)) { n += 1; } });
    return n; }"""

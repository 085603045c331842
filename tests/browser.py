"""Headless Chromium for the browser tests (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

from pathlib import Path

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
LAYERS = ("grids", "cameras", "cases", "vans", "centers")
SETTLED = "() => window.yitu && %s.every(k => (window.yitu.loaded[k] || 0) > 0)" % list(LAYERS)


def chromium_path() -> str:
    assert Path(CHROMIUM).exists(), "Debian chromium is missing: run scripts/bootstrap.sh --test"
    return CHROMIUM

"""A wall screen whose layer fetch failed keeps following: dash-leaflet's GeoJSON freezes after one
failed fetch of its url (it never clears its loading mark), so dashboard/assets/yitu_map.js tries a
layer fetch again until it gets an answer. Found by the fault harness (bench/chaos.py): after an app
restart the pins of a screen stayed where they were while its numbers moved on."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import Browser, Route

from .browser import Watched, browser  # noqa: F401 - browser is a fixture
from .conftest import make_token
from .test_live_browser import SEAT, _open_wall, _wait_pin


def _report(base: str, token: str, lon: float, lat: float) -> str:
    r = httpx.post(
        base + "/api/v1/cases",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        json={"type": "grassland", "description": "草场边界争议", "lon": lon, "lat": lat, "channel": "grid_app"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["code"])


@pytest.mark.browser
def test_a_failed_layer_fetch_is_tried_again_and_the_pins_keep_following(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    token = make_token(demo_db, "admin", name="layer-retry-admin")
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    page = _open_wall(w, srv.url)
    refused: list[str] = []

    def refuse_once(route: Route) -> None:  # the app away for one fetch of the case pins
        if refused:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("connectionrefused")

    page.route("**/api/v1/layers/cases*", refuse_once)
    first = _report(srv.url, token, SEAT[0] + 0.002, SEAT[1] + 0.001)
    _wait_pin(page, first)
    assert refused, "no case-layer fetch was refused"
    assert page.evaluate("() => window.yitu.layerRetries") >= 1
    second = _report(srv.url, token, SEAT[0] - 0.002, SEAT[1] - 0.001)  # and the layer still follows
    _wait_pin(page, second)
    # The refused fetch shows as the browser's own console line; nothing of the page's failed.
    assert [p for p in w.problems if not p.startswith("console: Failed to load resource")] == []
    w.problems.clear()
    w.close()

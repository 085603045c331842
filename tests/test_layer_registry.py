"""The layer registry: each layer declared once and everything built from it.

An extra layer added the documented way (docs/adding-a-layer.md: one module, one SQL file, one
style function — here tests/layer_area_points.*) is served by ``GET /api/v1/layers/<name>``, listed
in OpenAPI, switched and drawn on the wall screen, and shows its card on a click.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geobuf
import httpx
import psycopg
import pytest
import uvicorn
from fastapi.testclient import TestClient
from playwright.sync_api import Browser

from callbacks import pages
from dashboard.app import create_app
from dashboard.i18n import TEXTS, translator
from dashboard.pages.wall import POINT
from layers import cases, registry
from layers.registry import Filter, Layer
from services.identity import Principal, acting_as
from services.settings import Settings

from . import layer_area_points
from .browser import NON_POLYGON_FEATURES, Watched, browser, settled  # noqa: F401 - browser is a fixture
from .conftest import ARTIFACTS, sign_in
from .helpers import app_database, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
EXTRA = layer_area_points.LAYER


@pytest.fixture
def extra_layer() -> Iterator[Layer]:
    """The test layer registered for one test (apps created meanwhile serve and draw it)."""
    registry.register(EXTRA)
    try:
        yield EXTRA
    finally:
        registry.unregister(EXTRA.name)


def _client(dsn: str, redis_url: str, home: Path, headers: dict[str, str]) -> TestClient:
    settings = Settings(**app_database(dsn), redis_url=redis_url, home=home, _env_file=None)
    return TestClient(create_app(settings), headers=headers)


def test_every_module_of_layers_declares_one_registered_layer() -> None:
    modules = sorted(p.stem for p in (ROOT / "layers").glob("*.py") if p.stem not in ("__init__", "base", "registry"))
    assert sorted(layer.name for layer in registry.all_layers()) == modules
    for name in modules:
        module = importlib.import_module(f"layers.{name}")
        assert module.LAYER is registry.get(name)
        assert [v for v in vars(module).values() if isinstance(v, Layer)] == [module.LAYER]  # exactly one


def test_layer_names_come_from_the_registry_in_both_languages() -> None:
    for layer in registry.all_layers():
        for lang in ("zh-CN", "en"):
            assert translator(lang)(f"layer.{layer.name}") == layer.label[lang]
    assert translator("zh-CN")("layer.cases") == "矛盾纠纷" and translator("en")("layer.cases") == "Cases"
    stray = [k for table in TEXTS.values() for k in table if k.startswith(("layer.", "layers."))]
    assert stray == [], "a layer's name lives in its Layer, not in a second copy"


def _layer(**changes: Any) -> Layer:
    base: dict[str, Any] = {
        "name": "wells",
        "summary": "Wells",
        "label": {"zh-CN": "水井", "en": "Wells"},
        "geometry": "point",
        "style": "wellPoint",
    }
    return Layer(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "cases"}, "already registered"),
        ({"name": "Wells-2"}, "must match"),
        ({"label": {"zh-CN": "水井"}}, "label needs a text for en"),
        ({"geometry": "blob"}, "geometry"),
        ({"style": "yitu.map.x"}, "not JavaScript names"),
        ({"filters": (Filter("bbox"),)}, "not a free identifier"),
        ({"filters": (Filter("depth", int), Filter("depth", int))}, "not a free identifier"),
        ({"sql": Path("/nonexistent/wells.sql")}, "no SQL file"),
    ],
)
def test_register_refuses_a_layer_that_would_not_work(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        registry.register(_layer(**changes))
    assert "wells" not in [layer.name for layer in registry.all_layers()]


def test_case_type_glyphs_come_from_the_database(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        stored = dict(conn.execute("SELECT code, glyph FROM case_types").fetchall())
        assert len(stored) == 20 and all(stored.values()) and stored["grassland"] == "草"
        assert cases.glyphs(conn) == stored
        conn.execute("INSERT INTO case_types (code, name_zh, name_en) VALUES ('water_rights', '水权纠纷', 'Water')")
        conn.execute("UPDATE case_types SET glyph = '牧' WHERE code = 'grassland'")
        glyphs = cases.glyphs(conn)
    assert glyphs["water_rights"] == "水" and glyphs["grassland"] == "牧"  # no glyph: the name's first character
    script = (ROOT / "dashboard" / "assets" / "yitu_map.js").read_text(encoding="utf-8")
    copies = [code for code in stored if re.search(rf"\b{code}\s*:", script)]
    assert copies == [], f"the page's JavaScript keeps its own glyphs for {copies}"


def _find(component: Any, predicate: Any) -> Any:
    if predicate(component):
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children] if children is not None else []:
        found = _find(child, predicate)
        if found is not None:
            return found
    return None


def test_the_pages_give_the_case_layer_its_glyphs(
    demo_dsn: str, redis_url: str, tmp_path: Path, demo_admin: dict[str, str]
) -> None:
    with _client(demo_dsn, redis_url, tmp_path / "h", demo_admin) as client:
        svc = client.app.state.services  # type: ignore[attr-defined]
        for path, layer_id in (
            ("/", {"type": POINT, "layer": cases.LAYER.id}),
            ("/dispatch", {"type": "dispatch-point-layer", "layer": cases.LAYER.id}),
            ("/area/150623100", cases.LAYER.id),
        ):
            with acting_as(Principal(1, "page-admin", "admin", None, kind="user")):  # the guard's principal
                page = pages.render(svc, path, None)
            layer = _find(page, lambda c, i=layer_id: getattr(c, "id", None) == i)
            assert layer is not None, path
            assert layer.hideout["glyphs"]["grassland"] == "草" and layer.hideout["layer"] == "cases", path


def test_an_extra_layer_is_served_and_listed(
    extra_layer: Layer, demo_dsn: str, redis_url: str, tmp_path: Path, demo_admin: dict[str, str]
) -> None:
    with psycopg.connect(demo_dsn) as conn:
        towns, villages = conn.execute(
            "SELECT count(*) FILTER (WHERE level = 2), count(*) FILTER (WHERE level = 3) FROM areas"
        ).fetchone()
    with _client(demo_dsn, redis_url, tmp_path / "h", demo_admin) as client:
        r = client.get("/api/v1/layers/area_points")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
        features = r.json()["features"]
        assert len(features) == towns == 4 and {f["geometry"]["type"] for f in features} == {"Point"}
        assert len(client.get("/api/v1/layers/area_points?level=3").json()["features"]) == villages
        r = client.get("/api/v1/layers/area_points?format=geobuf")
        assert r.headers["content-type"] == "application/x-protobuf" and len(geobuf.decode(r.content)["features"]) == 4
        for url, field in (
            ("/api/v1/layers/area_points?level=9", "level"),
            ("/api/v1/layers/area_points?bbox=1,2", "bbox"),
        ):
            bad = client.get(url)
            assert bad.status_code == 422 and bad.json()["field"] == field
        spec = client.get("/openapi.json").json()["paths"]["/api/v1/layers/area_points"]["get"]
        assert spec["summary"] == EXTRA.summary and [p["name"] for p in spec["parameters"]] == [
            "bbox",
            "level",
            "format",
            "rev",
        ]
    with _client(
        demo_dsn, redis_url, tmp_path / "h2", demo_admin
    ) as client:  # the layers of the main package are all there
        assert all(client.get(layer.path).status_code == 200 for layer in registry.all_layers())


class AppServer:
    """The app served by uvicorn in a thread of this process: the way to serve a layer registered at run
    time (``yitu serve`` in a subprocess knows only the layers of the package)."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="app-server", daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=60, what="the app served in this process")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the app server did not stop"


@pytest.mark.browser
def test_an_extra_layer_is_drawn_on_the_wall_screen(
    extra_layer: Layer, demo_db: str, redis_url: str, browser: Browser, tmp_path: Path
) -> None:
    srv = AppServer(Settings(**app_database(demo_db), redis_url=redis_url, home=tmp_path / "h", _env_file=None))
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            cookie = sign_in(http, demo_db, "admin")
        w = Watched(browser, srv.url, cookies=[{"name": "yitu_session", "value": cookie, "url": srv.url}])
        page = w.page
        page.add_init_script(path=str(layer_area_points.SCRIPT))  # its style function, beside yitu_map.js
        page.goto(srv.url + "/")
        names = [layer.name for layer in registry.wall_layers()]
        assert EXTRA.name in names
        page.wait_for_function(settled(names), timeout=30_000)  # every registered layer has drawn
        points = page.locator(".yitu-test-area-point")
        wait_for(lambda: points.count() == 4, timeout=20, what="one marker per town")
        assert sorted(points.all_inner_texts()) == sorted(["敖勒召其镇", "上海庙镇", "城川镇", "昂素镇"])
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "wall-screen-extra-layer.png"))

        # Its switch carries its label; the others off, a click on a point shows its card.
        t = translator("zh-CN")
        for layer in registry.wall_layers():
            if layer.name not in ("grids", EXTRA.name):
                page.locator("#wall-layers label", has_text=t(f"layer.{layer.name}")).click()
        wait_for(lambda: page.evaluate(NON_POLYGON_FEATURES) == 4, timeout=20, what="only the area points left")
        points.filter(has_text="城川镇").click()
        wait_for(lambda: "城川镇" in page.inner_text("#wall-detail"), timeout=20, what="the area point's card")
        assert t("layer.area_points") in page.inner_text("#wall-detail")

        switch = page.locator("#wall-layers label", has_text=EXTRA.label["zh-CN"])
        switch.click()
        wait_for(lambda: points.count() == 0, timeout=20, what="the area points switched off")
        switch.click()
        wait_for(lambda: points.count() == 4, timeout=20, what="the area points switched on again")
        w.close()
    finally:
        srv.stop()

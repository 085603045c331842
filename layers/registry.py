"""The layer registry: every map layer is one :class:`Layer`, declared by one module of this package.

The API's routes, the wall's switches and layer URLs, the layers' names in both languages and the
browser tests all walk this registry, so adding a layer is one module here (``LAYER = Layer(...)``),
one SQL file and one style function in ``dashboard/assets/yitu_map.js`` (docs/adding-a-layer.md).

A module of this package is found by :func:`discover` (pkgutil); a layer kept elsewhere (a test, a
site's own package) joins with :func:`register` before the app is created.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import dash_leaflet as dl
import psycopg

from geodata.db import alone
from layers.base import BBox, Points, feature_collection, point_rows

# Where the layers are served: the API mounts its routes here and the pages build their URLs on it.
URL_PREFIX = "/api/v1/layers"

GeometryKind = Literal["point", "line", "polygon", "point+line"]
# The GeoJSON geometry types a layer of each kind may serve (tests hold every layer to its kind).
GEOJSON_TYPES: dict[str, frozenset[str]] = {
    "point": frozenset({"Point"}),
    "line": frozenset({"LineString", "MultiLineString"}),
    "polygon": frozenset({"Polygon", "MultiPolygon"}),
    "point+line": frozenset({"Point", "LineString", "MultiLineString"}),
}

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")
_JS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = frozenset(
    {"bbox", "format", "svc", "who", "scope"}
)  # query parameters every route has, or its own plumbing
LANGS = ("zh-CN", "en")


@dataclass(frozen=True)
class Filter:
    """One query parameter a layer accepts, with its validation.

    The API turns it into a FastAPI query parameter, so a bad value is a 422 naming the field and
    OpenAPI documents the bounds. ``default`` None makes the parameter optional (no filter).
    """

    name: str
    type: type = str  # str, int, float or bool
    default: Any = None
    choices: tuple[str, ...] = ()  # the allowed values (an enum in OpenAPI)
    ge: float | None = None
    le: float | None = None
    pattern: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Cluster:
    """Clustering in the browser (supercluster): points closer than ``radius`` pixels gather into a bubble
    drawn by ``style`` (a function under window.yitu.map), up to ``max_zoom``."""

    radius: int
    max_zoom: int
    style: str


# What a click on one of the layer's features shows: the data of its card, read with the feature's
# properties and the layer's configured values (see Layer.settings) with the reader's area as
# ``scope`` (None: everywhere); None when the feature has none, or none the reader may see.
CardData = Callable[[psycopg.Connection, Mapping[str, Any], Mapping[str, Any]], dict[str, Any] | None]


@dataclass(frozen=True)
class Layer:
    """One map layer: what the API serves, how the pages draw it, and what it shows on a click."""

    name: str  # URL path /api/v1/layers/<name>, component id layer-<name>, i18n key layer.<name>
    summary: str  # the route's summary in OpenAPI
    label: Mapping[str, str]  # the switch's text in each language: {"zh-CN": ..., "en": ...}
    geometry: GeometryKind
    style: str  # window.yitu.map.<style>: pointToLayer for point kinds, style for lines and polygons
    sql: str | Path | None = None  # a named query of geodata/sql/ (default layer_<name>) or a file's path
    # The SQL returns one row per point (lon, lat, a column per property) instead of the
    # FeatureCollection's text: a point layer of thousands of pins reloaded live (layers/base.py Points).
    rows: bool = False
    filters: tuple[Filter, ...] = ()
    bbox: bool = True  # the route takes ?bbox= and the SQL reads %(minx)s %(miny)s %(maxx)s %(maxy)s
    params: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None  # filters → SQL parameters (default: as is)
    settings: Mapping[str, str] = field(default_factory=dict)  # SQL/card parameter → the setting it comes from
    cluster: Cluster | None = None
    functions: Mapping[str, str] = field(default_factory=dict)  # more dash-leaflet function props → yitu.map names
    format: Literal["geojson", "geobuf"] = "geojson"  # what the pages ask the API for
    card: CardData | None = None
    page_data: Callable[[psycopg.Connection], dict[str, Any]] | None = None  # read per page into the hideout
    live: tuple[str, ...] = ()  # event types (prefixes) after which an open page reloads the layer
    order: int = 50  # drawing order (higher draws above) and the order of the wall's switches
    wall: bool = True  # drawn on the wall screen, with a switch
    wall_on: bool = True  # switched on when the wall screen opens

    @property
    def id(self) -> str:
        """The dash-leaflet component's id (pages may wrap it in a pattern-matching id)."""
        return f"layer-{self.name}"

    @property
    def path(self) -> str:
        return f"{URL_PREFIX}/{self.name}"

    def url(self, **params: Any) -> str:
        """The layer's URL with the given parameters (None ones left out), in the format the pages read."""
        parts = [f"{k}={quote(str(v), safe=',')}" for k, v in params.items() if v is not None]
        if self.format != "geojson":
            parts.append(f"format={self.format}")
        return self.path + ("?" + "&".join(parts) if parts else "")

    def configured(self, settings: Any) -> dict[str, Any]:
        """The server-side values the layer reads from the settings (never from the request)."""
        return {param: getattr(settings, attr) for param, attr in self.settings.items()}

    def query_text(self) -> str:
        if isinstance(self.sql, Path):
            return _read(self.sql)
        from geodata.queries import query

        return query(self.sql or f"layer_{self.name}")

    def features(
        self,
        conn: psycopg.Connection,
        values: Mapping[str, Any],
        bbox: BBox | None = None,
        max_features: int | None = None,
    ) -> str:
        """The layer's GeoJSON text for the request's filter values (and configured values); more
        than ``max_features`` features is a TooManyFeatures (422) for the layers whose SQL reads the cap."""
        got = self.read(conn, values, bbox, max_features)
        return got.geojson() if isinstance(got, Points) else got

    def read(
        self,
        conn: psycopg.Connection,
        values: Mapping[str, Any],
        bbox: BBox | None = None,
        max_features: int | None = None,
    ) -> str | Points:
        """What the layer's query gave: the GeoJSON text, or for a layer of ``rows`` its points,
        which go from the rows to the wire with no JSON in between (encode either with
        layers/base.py ``encode_answer``, after the connection is given back)."""
        params = self.params(values) if self.params else dict(values)
        if self.bbox:
            params.update((bbox or BBox.parse(None)).params())
        read = point_rows if self.rows else feature_collection
        with alone(conn):  # one statement: no BEGIN and COMMIT round trips around it
            return read(conn, self.query_text(), params, max_features)

    def hideout(self, data: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """What the layer's JavaScript reads: its name (the loaded-feature counter), the events that
        reload it, the data read from the database for the page (``page_data``), and what the page adds."""
        return {"layer": self.name, "live": list(self.live), **(data or {}), **extra}

    def component(self, url: str, hideout: Mapping[str, Any] | None = None) -> dl.GeoJSON:
        """The dash-leaflet layer drawing it from ``url``, styled by its functions under window.yitu.map."""
        fns = {
            "pointToLayer" if self.geometry.startswith("point") else "style": self.style,
            "onEachFeature": "count",
            **self.functions,
        }
        extra: dict[str, Any] = {}
        if self.cluster:
            extra = {
                "cluster": True,
                "superClusterOptions": {"radius": self.cluster.radius, "maxZoom": self.cluster.max_zoom},
                "clusterToLayer": {"variable": f"yitu.map.{self.cluster.style}"},
                "zoomToBoundsOnClick": True,
            }
        if self.format != "geojson":
            extra["format"] = self.format
        return dl.GeoJSON(
            id=self.id,
            url=url,
            hideout=dict(hideout) if hideout is not None else self.hideout(),
            **{prop: {"variable": f"yitu.map.{fn}"} for prop, fn in fns.items()},
            **extra,
        )


@cache
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


_layers: dict[str, Layer] = {}
_lock = threading.Lock()
_discovered = False


def _check(layer: Layer) -> None:
    if not _NAME.match(layer.name):
        raise ValueError(f"layer name {layer.name!r} must match {_NAME.pattern}")
    if layer.geometry not in GEOJSON_TYPES:
        raise ValueError(f"layer {layer.name}: geometry {layer.geometry!r} is not one of {sorted(GEOJSON_TYPES)}")
    missing = [lang for lang in LANGS if not layer.label.get(lang)]
    if missing:
        raise ValueError(f"layer {layer.name}: label needs a text for {', '.join(missing)}")
    fns = [layer.style, *layer.functions.values(), *([layer.cluster.style] if layer.cluster else [])]
    bad = [fn for fn in fns if not _JS_NAME.match(fn)]
    if bad:
        raise ValueError(f"layer {layer.name}: {bad} are not JavaScript names under window.yitu.map")
    names = [f.name for f in layer.filters]
    for name in names:
        if not name.isidentifier() or name in _RESERVED or names.count(name) > 1:
            raise ValueError(f"layer {layer.name}: filter {name!r} is not a free identifier (reserved: {_RESERVED})")
    if layer.rows and layer.geometry != "point":
        raise ValueError(f"layer {layer.name}: rows (lon, lat) are for a point layer, not {layer.geometry!r}")
    if isinstance(layer.sql, Path) and not layer.sql.is_file():
        raise ValueError(f"layer {layer.name}: no SQL file {layer.sql}")


def register(layer: Layer) -> Layer:
    """Add a layer; a second layer of the same name is an error (two modules would fight for one URL)."""
    _check(layer)
    with _lock:
        if layer.name in _layers and _layers[layer.name] is not layer:
            raise ValueError(f"a layer named {layer.name!r} is already registered")
        _layers[layer.name] = layer
    return layer


def unregister(name: str) -> None:
    """Remove a layer registered at run time (tests); apps created before keep their routes."""
    with _lock:
        _layers.pop(name, None)


def discover() -> None:
    """Import every module of this package once and register its ``LAYER``; a module without one is an error."""
    global _discovered  # noqa: PLW0603 - the registry is process-wide by design: one set of layers per process
    if _discovered:
        return
    package = importlib.import_module("layers")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in ("base", "registry"):
            continue
        module = importlib.import_module(f"layers.{info.name}")
        layer = getattr(module, "LAYER", None)
        if not isinstance(layer, Layer):
            raise TypeError(f"layers.{info.name} declares no LAYER = Layer(...)")
        if layer.name != info.name:
            raise ValueError(f"layers.{info.name} declares a layer named {layer.name!r}: name the module after it")
        register(layer)
    _discovered = True


def all_layers() -> list[Layer]:
    """Every registered layer in drawing order (bottom first)."""
    discover()
    with _lock:
        return sorted(_layers.values(), key=lambda layer: (layer.order, layer.name))


def wall_layers() -> list[Layer]:
    return [layer for layer in all_layers() if layer.wall]


def get(name: str) -> Layer:
    """The layer called ``name``; KeyError names the ones there are."""
    discover()
    try:
        return _layers[name]
    except KeyError:
        raise KeyError(f"no layer {name!r}; registered: {sorted(_layers)}") from None


def by_id(layer_id: str) -> Layer | None:
    """The layer whose component id is ``layer_id`` (``layer-<name>``), if any."""
    discover()
    return _layers.get(layer_id.removeprefix("layer-")) if layer_id.startswith("layer-") else None


def page_data(conn: psycopg.Connection, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each layer's data for a page's hideouts (say the case types' glyphs), read once per page."""
    layers = all_layers() if names is None else [get(n) for n in names]
    return {layer.name: layer.page_data(conn) for layer in layers if layer.page_data}

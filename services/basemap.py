"""Where the pages' base map comes from, as the settings choose it: one answer for the Dash pages
(dashboard/basemap.py) and the phone pages (api/mobile.py, api/mobile_van.py).

``own`` (the default) and ``mbtiles`` come from this server (api/basemap.py), so a command network
without internet still has roads and places under its pins and the Content-Security-Policy lets in
no other origin; ``osm``, ``tianditu-*`` and ``xyz`` come from the origin they name (dashboard/app.py
adds it to the policy); ``none`` is the layers on dark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from geodata import basemap, mbtiles
from services.settings import Settings

log = logging.getLogger("yitu.basemap")

OWN_TILES = "/api/v1/basemap/{z}/{x}/{y}{r}.png"  # {r}: Leaflet's "@2x" on a HiDPI screen
CLASS_NAME = "yitu-basemap"  # the tile layer's class (tests and styles find the base map by it)
SERVED_HERE = ("own", "mbtiles")


@dataclass(frozen=True)
class TileSource:
    """One tile layer: its URL template and Leaflet's options for it (by Leaflet's names)."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)
    drawn_here: bool = False  # this server draws the tiles: ``?style=light`` gives the light palette

    @property
    def attribution(self) -> str:
        return str(self.options.get("attribution") or "")


def tile_sources(settings: Settings) -> list[TileSource]:
    """The tile layers of the configured base map, bottom first; none for ``none``."""
    kind = settings.basemap
    if kind == "own":
        return [TileSource(OWN_TILES, {"maxZoom": basemap.MAX_ZOOM, "className": CLASS_NAME}, drawn_here=True)]
    if kind == "mbtiles":
        return _mbtiles(settings)
    if kind == "osm":
        return [
            TileSource(
                "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                {"maxZoom": 19, "attribution": "© OpenStreetMap contributors"},
            )
        ]
    if kind in ("tianditu-vec", "tianditu-img") and settings.tianditu_token:
        token = settings.tianditu_token.get_secret_value()
        base, note = ("vec", "cva") if kind == "tianditu-vec" else ("img", "cia")
        tmpl = (
            "https://t{s}.tianditu.gov.cn/%s_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=%s"
            "&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk=" + token
        )
        sub = "01234567"
        return [
            TileSource(tmpl % (base, base), {"subdomains": sub, "maxZoom": 18, "attribution": "© 天地图"}),
            TileSource(tmpl % (note, note), {"subdomains": sub, "maxZoom": 18}),
        ]
    if kind == "xyz" and settings.basemap_url:
        return [TileSource(settings.basemap_url, {"maxZoom": 19})]
    return []


def _mbtiles(settings: Settings) -> list[TileSource]:
    """The imported MBTiles, as far as it reaches: its bounds (no request for tiles outside), its
    attribution; a raster file's zooms (Leaflet enlarges its deepest beyond it), a vector file drawn
    here at every zoom (the server enlarges its deepest as geometry, sharp) and in @2x on HiDPI
    screens, as the own map."""
    try:
        info = mbtiles.installed(settings.basemap_path())
    except mbtiles.MbtilesRejected as exc:
        log.warning("basemap=mbtiles: the imported file cannot be read: %s", exc.message)
        return []
    if info is None:
        log.warning("basemap=mbtiles but none imported (yitu basemap import FILE.mbtiles): no base map drawn")
        return []
    options: dict[str, Any] = {"maxZoom": basemap.MAX_ZOOM, "className": CLASS_NAME}
    if not info.vector:
        options = {"minNativeZoom": info.minzoom, "maxNativeZoom": info.maxzoom, **options}
    if info.attribution:
        options["attribution"] = info.attribution
    if info.bounds is not None:
        w, s, e, n = info.bounds
        options["bounds"] = [[s, w], [n, e]]
    if info.vector:
        return [TileSource(OWN_TILES, options, drawn_here=True)]
    return [TileSource(f"/api/v1/basemap/{{z}}/{{x}}/{{y}}.{info.format}", options)]


def phone_tiles(settings: Settings, light: bool = False) -> dict[str, Any] | None:
    """The base map for Leaflet on a phone page: ``{url, attribution, options}``, or None. Not
    tianditu: its key is in the URL, and a phone page is not a place to hand it out. ``light``:
    the tiles this server draws in their light style (a page on a light background)."""
    if settings.basemap.startswith("tianditu"):
        return None
    sources = tile_sources(settings)
    if not sources:
        return None
    source = sources[0]
    url = source.url + "?style=light" if light and source.drawn_here else source.url
    return {"url": url, "attribution": source.attribution, "options": source.options}

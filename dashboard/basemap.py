"""The base map under every map page (wall, area, dispatch, case), as the settings choose it.

``own`` (the default) and ``mbtiles`` come from this server (api/basemap.py), so a command network
without internet still has roads and places under its pins and the Content-Security-Policy lets in
no other origin; ``osm``, ``tianditu-*`` and ``xyz`` come from the origin they name (dashboard/app.py
adds it to the policy); ``none`` is the layers on dark.
"""

from __future__ import annotations

import logging
from typing import Any

import dash_leaflet as dl

from geodata import basemap, mbtiles
from geodata.mbtiles import MBTilesRejected
from services.settings import Settings

log = logging.getLogger("yitu.basemap")

OWN_TILES = "/api/v1/basemap/{z}/{x}/{y}{r}.png"  # {r}: Leaflet's "@2x" on a HiDPI screen
BASEMAP_ID = "yitu-basemap"  # the tile layer's class name (tests find the base map by it)


def basemap_layers(settings: Settings) -> list[Any]:
    """Tile layers for the configured base map."""
    if settings.basemap == "own":
        return [dl.TileLayer(url=OWN_TILES, maxZoom=basemap.MAX_ZOOM, className=BASEMAP_ID, attribution="")]
    if settings.basemap == "mbtiles":
        return _mbtiles_layers(settings)
    if settings.basemap == "osm":
        return [
            dl.TileLayer(
                url="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                maxZoom=19,
                attribution="© OpenStreetMap contributors",
            )
        ]
    if settings.basemap in ("tianditu-vec", "tianditu-img") and settings.tianditu_token:
        token = settings.tianditu_token.get_secret_value()
        base, note = ("vec", "cva") if settings.basemap == "tianditu-vec" else ("img", "cia")
        tmpl = (
            "https://t{s}.tianditu.gov.cn/%s_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=%s"
            "&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk=" + token
        )
        sub = "01234567"
        return [
            dl.TileLayer(url=tmpl % (base, base), subdomains=sub, maxZoom=18, attribution="© 天地图"),
            dl.TileLayer(url=tmpl % (note, note), subdomains=sub, maxZoom=18),
        ]
    if settings.basemap == "xyz" and settings.basemap_url:
        return [dl.TileLayer(url=settings.basemap_url, maxZoom=19)]
    return []


def _mbtiles_layers(settings: Settings) -> list[Any]:
    """The imported MBTiles, as far as it reaches: its zooms (Leaflet enlarges its deepest beyond
    it), its bounds (no request for tiles outside), its attribution."""
    try:
        info = mbtiles.installed(settings.basemap_path())
    except MBTilesRejected as exc:
        log.warning("basemap=mbtiles: the imported file cannot be read: %s", exc.message)
        return []
    if info is None:
        log.warning("basemap=mbtiles but none imported (yitu basemap import FILE.mbtiles): no base map drawn")
        return []
    props: dict[str, Any] = {
        "url": f"/api/v1/basemap/{{z}}/{{x}}/{{y}}.{info.format}",
        "minNativeZoom": info.minzoom,
        "maxNativeZoom": info.maxzoom,
        "maxZoom": basemap.MAX_ZOOM,
        "className": BASEMAP_ID,
        "attribution": info.attribution,
    }
    if info.bounds is not None:
        w, s, e, n = info.bounds
        props["bounds"] = [[s, w], [n, e]]
    return [dl.TileLayer(**props)]


def attribution_shown(settings: Settings) -> bool:
    """Whether a map shows Leaflet's attribution: for a base map that owes one."""
    return any(getattr(layer, "attribution", "") for layer in basemap_layers(settings))

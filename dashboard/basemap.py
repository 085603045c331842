"""The base map under every map page (wall, area, dispatch, case): the tile layers of
services/basemap.py as dash-leaflet components."""

from __future__ import annotations

from typing import Any

import dash_leaflet as dl

from services.basemap import tile_sources
from services.settings import Settings


def basemap_layers(settings: Settings) -> list[Any]:
    """Tile layers for the configured base map (none for ``none``)."""
    return [dl.TileLayer(url=source.url, **source.options) for source in tile_sources(settings)]


def attribution_shown(settings: Settings) -> bool:
    """Whether a map shows Leaflet's attribution: for a base map that owes one."""
    return any(source.attribution for source in tile_sources(settings))

"""The four-level grid: polygons of the level the zoom asks for, styled by hideout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dash_leaflet as dl
import psycopg
from psycopg import sql

from geodata import kpi
from geodata.queries import CHAIN_COLUMN, query
from layers.base import BBox, feature_collection, level_for_zoom, tolerance_for_zoom

if TYPE_CHECKING:
    from redis import Redis

LAYER_ID = "layer-grids"
# Per area code: open, overdue and rate (None for an area with nothing reported this year).
AreaStats = dict[str, dict[str, float | None]]


def features(
    conn: psycopg.Connection,
    bbox: BBox,
    *,
    level: int | None = None,
    zoom: int | None = None,
    parent: str | None = None,
) -> str:
    lvl = level or level_for_zoom(zoom if zoom is not None else 9)
    tol = tolerance_for_zoom(zoom) if zoom is not None else 0.0
    return feature_collection(conn, "grids", {**bbox.params(), "level": lvl, "tol": tol, "parent": parent})


def stats(conn: psycopg.Connection, level: int) -> AreaStats:
    """Per-area numbers for the choropleth: open, overdue, rate (resolved ÷ reported this year)."""
    stmt = sql.SQL(query("area_stats_by_level")).format(column=sql.Identifier(CHAIN_COLUMN[level]))
    out: AreaStats = {}
    for code, open_, overdue, reported, resolved in conn.execute(stmt):
        out[code] = {"open": open_, "overdue": overdue, "rate": round(resolved / reported, 4) if reported else None}
    return out


def stats_cached(conn: psycopg.Connection, redis: Redis, level: int) -> AreaStats:
    """``stats`` through the one cache of figures (geodata/kpi.py ``cached``), beside the KPI tiles:
    the live hub drops both at once, so the map's shading never disagrees with the tiles."""
    value: AreaStats = kpi.cached(redis, f"area-stats:{level}", lambda: stats(conn, level))
    return value


def component(url: str, hideout: dict[str, Any]) -> dl.GeoJSON:
    return dl.GeoJSON(
        id=LAYER_ID,
        url=url,
        style={"variable": "yitu.map.gridStyle"},
        onEachFeature={"variable": "yitu.map.gridEach"},
        hoverStyle={"variable": "yitu.map.gridHover"},
        hideout=hideout,
        zoomToBoundsOnClick=False,
    )

"""The four-level grid: polygons of the level the zoom asks for, styled by hideout (choropleth, selection).

On the wall screen it is the base layer: always present, its URL follows the view (callbacks/wall.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from geodata import kpi
from geodata.queries import CHAIN_COLUMN, level_of, query
from layers.base import level_for_zoom, tolerance_for_zoom
from layers.registry import Filter, Layer

if TYPE_CHECKING:
    from redis import Redis

# Per area code: open, overdue and rate (None for an area with nothing reported this year).
AreaStats = dict[str, dict[str, float | None]]


def _params(values: Mapping[str, Any]) -> dict[str, Any]:
    """The level the request names, else the one its zoom shows; simplified to half a pixel at that zoom."""
    zoom = values.get("zoom")
    return {
        "level": values.get("level") or level_for_zoom(zoom if zoom is not None else 9),
        "tol": tolerance_for_zoom(zoom) if zoom is not None else 0.0,
        "parent": values.get("parent"),
    }


LAYER = Layer(
    name="grids",
    summary="Grid polygons of one level (by level, or by zoom)",
    label={"zh-CN": "四级网格", "en": "Grid"},
    geometry="polygon",
    style="gridStyle",
    functions={"onEachFeature": "gridEach", "hoverStyle": "gridHover"},
    filters=(
        Filter("level", int, ge=1, le=4),
        Filter("zoom", int, ge=0, le=22),
        Filter("parent", pattern=r"^[0-9]{6}([0-9]{3}){0,3}$"),
    ),
    params=_params,
    order=10,
)


def stats(conn: psycopg.Connection, level: int, scope: str | None = None) -> AreaStats:
    """Per-area numbers for the choropleth: open, overdue, rate (resolved ÷ reported this year);
    for a reader scoped to an area (``scope``), of the cases inside it only. Read from the KPI
    counters (033_counters.sql), overdue from the open cases."""
    stmt = sql.SQL(query("area_stats_by_level")).format(column=sql.Identifier(CHAIN_COLUMN[level]))
    read_level = max(level, level_of(scope)) if scope else level  # a deeper scope: its own counters
    params = {"scope": scope, "lvl": read_level, "width": 3 + 3 * level}
    out: AreaStats = {}
    for code, open_, overdue, reported, resolved in conn.execute(stmt, params):
        out[code] = {"open": open_, "overdue": overdue, "rate": round(resolved / reported, 4) if reported else None}
    return out


def stats_cached(conn: psycopg.Connection, redis: Redis, level: int, scope: str | None = None) -> AreaStats:
    """``stats`` through the one cache of figures (geodata/kpi.py ``cached``), beside the KPI tiles:
    the live hub drops both at once, so the map's shading never disagrees with the tiles. One
    entry per scope: a scoped reader never reads the territory's figures."""
    key = f"area-stats:{level}" + (f":{scope}" if scope else "")
    value: AreaStats = kpi.cached(redis, key, lambda: stats(conn, level, scope), conn=conn)
    return value

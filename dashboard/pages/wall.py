"""``/``: the command centre's wall screen — KPIs, the one map, the area panel, ranking, vans.

The layout is built per request from the territory in the database (its banner and bounds);
everything that changes afterwards is filled in by callbacks in ``callbacks/wall.py``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import dash_leaflet as dl
from dash import dcc, html

from dashboard.i18n import translator
from dashboard.layout import live_tick
from layers import cameras, cases, centers, grids, vans
from services.settings import Settings


class Ids(StrEnum):
    SELECTED = "wall-selected"
    CLOCK = "wall-clock"
    TICK = "wall-tick"
    CRUMBS = "wall-crumbs"
    KPIS = "wall-kpis"
    TOP_TYPES = "wall-top-types"
    TREND = "wall-trend"
    MAP = "yitu-map"
    MODE = "wall-mode"
    PANEL = "wall-panel"
    DETAIL = "wall-detail"
    RANKING = "wall-ranking"
    VANS = "wall-vans"
    LAYERS = "wall-layers"
    URLS = "wall-urls"


CRUMB = "wall-crumb"
POINT = "wall-point-layer"  # pattern-matching id type of the switchable point layers
LIVE_TICK = live_tick("wall")  # bumped by the live push when the numbers are stale
LAYER_KEYS = ("grids", "centers", "cameras", "cases", "vans")  # the operator's layer switches


POINT_LAYERS = {centers.LAYER_ID: centers, cameras.LAYER_ID: cameras, cases.LAYER_ID: cases, vans.LAYER_ID: vans}


def group_id(layer_id: str) -> str:
    return f"group-{layer_id}"


def point_layer(layer_id: str, url: str) -> dl.GeoJSON:
    """A point layer as first drawn (switching it off removes it from its group; on re-creates it).

    Its id is a pattern-matching one, so the click callback listens to whichever layers exist."""
    layer = POINT_LAYERS[layer_id].component(url, {})
    layer.id = {"type": POINT, "layer": layer_id}
    return layer


def basemap_layers(settings: Settings) -> list[Any]:
    """Tile layers for the configured base map; none by default (a command network may be offline)."""
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


def layout(settings: Settings, banner: dict[str, Any] | None) -> html.Div:
    t = translator(settings.lang)
    if banner is None:
        return html.Div(className="yitu-empty", children=t("map.empty"))
    minx, miny, maxx, maxy = banner["bounds"]
    pad_x, pad_y = (maxx - minx) * 0.25, (maxy - miny) * 0.25
    bbox = f"{minx - pad_x:.4f},{miny - pad_y:.4f},{maxx + pad_x:.4f},{maxy + pad_y:.4f}"
    grid_hideout = {
        "mode": "none",
        "stats": {},
        "selected": None,
        "labels": True,
        "breaks": {"open": [0, 2, 5, 10], "overdue": [0, 1, 2, 4], "rate": [0.8, 0.88, 0.92, 0.95]},
    }
    point_urls = {
        centers.LAYER_ID: f"/api/v1/layers/centers?bbox={bbox}",
        cameras.LAYER_ID: f"/api/v1/layers/cameras?bbox={bbox}&format=geobuf",
        cases.LAYER_ID: f"/api/v1/layers/cases?bbox={bbox}&format=geobuf",
        vans.LAYER_ID: "/api/v1/layers/vans",
    }
    map_layers = [
        grids.component(f"/api/v1/layers/grids?level=2&bbox={bbox}", grid_hideout),
        *[
            dl.LayerGroup(id=group_id(layer_id), children=point_layer(layer_id, url))
            for layer_id, url in point_urls.items()
        ],
    ]
    switches = dcc.Checklist(
        id=Ids.LAYERS,
        className="yitu-layers",
        value=list(LAYER_KEYS),
        options=[{"label": t(f"layers.{k}"), "value": k} for k in LAYER_KEYS],
    )
    return html.Div(
        className="yitu-wall",
        children=[
            dcc.Store(id=Ids.SELECTED, data={"code": banner["code"], "banner": banner["code"]}),
            dcc.Interval(id=Ids.TICK, interval=1000),
            dcc.Store(id=LIVE_TICK),
            html.Header(
                className="yitu-header",
                children=[
                    html.H1(t("title"), className="yitu-title"),
                    html.Span(f"{banner['name']} · {t('subtitle')}", className="yitu-subtitle"),
                    html.Nav(id=Ids.CRUMBS, className="yitu-crumbs"),
                    html.Span(id=Ids.CLOCK, className="yitu-clock"),
                ],
            ),
            html.Aside(
                className="yitu-left",
                children=[
                    html.Div(id=Ids.KPIS, className="yitu-kpis"),
                    html.Section(
                        className="yitu-card", children=[html.H3(t("chart.top_types")), html.Div(id=Ids.TOP_TYPES)]
                    ),
                    html.Section(className="yitu-card", children=[html.H3(t("chart.trend")), html.Div(id=Ids.TREND)]),
                ],
            ),
            html.Main(
                className="yitu-mapbox",
                children=[
                    dl.Map(
                        id=Ids.MAP,
                        center=[(miny + maxy) / 2, (minx + maxx) / 2],
                        zoom=9,
                        viewport={"bounds": [[miny, minx], [maxy, maxx]]},  # fitted on any screen size
                        preferCanvas=True,
                        trackViewport=True,
                        zoomSnap=0.5,
                        attributionControl=bool(settings.basemap != "none"),
                        className="yitu-map",
                        children=[
                            *basemap_layers(settings),
                            *map_layers,
                            dl.ScaleControl(position="bottomleft", imperial=False),
                        ],
                    ),
                    dcc.Store(id=Ids.URLS, data=point_urls),
                    switches,
                    html.Div(banner.get("attribution", ""), className="yitu-attribution"),
                    dcc.RadioItems(
                        id=Ids.MODE,
                        className="yitu-mode",
                        value="none",
                        options=[{"label": t(f"mode.{m}"), "value": m} for m in ("none", "open", "overdue", "rate")],
                    ),
                ],
            ),
            html.Aside(
                className="yitu-right",
                children=[
                    html.Section(className="yitu-card yitu-panel", id=Ids.PANEL),
                    html.Section(className="yitu-card yitu-detail", id=Ids.DETAIL),
                    html.Section(
                        className="yitu-card", children=[html.H3(t("ranking.title")), html.Div(id=Ids.RANKING)]
                    ),
                    html.Section(className="yitu-card", children=[html.H3(t("vans.title")), html.Div(id=Ids.VANS)]),
                ],
            ),
        ],
    )

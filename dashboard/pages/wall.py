"""``/``: the command centre's wall screen — KPIs, the one map, the area panel, ranking, vans.

The layout is built per request from the territory in the database (its banner and bounds);
everything that changes afterwards is filled in by callbacks in ``callbacks/wall.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

import dash_leaflet as dl
from dash import dcc, html

from dashboard.basemap import attribution_shown, basemap_layers
from dashboard.i18n import translator
from dashboard.layout import AREAS_REV_TYPE, banner_map
from dashboard.pages import inbox
from dashboard.search import search_box
from geodata import workflow
from layers import cases, registry
from layers.registry import Layer
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
    VAN_FOCUS = "wall-van-focus"  # the van whose row was clicked (set by yitu_wall.js, read by callbacks/wall.py)
    DRILL = "wall-drill"  # the banner whose ranking row was clicked (set by yitu_wall.js, read by callbacks/wall.py)
    LAYERS = "wall-layers"
    URLS = "wall-urls"
    HIDEOUTS = "wall-hideouts"
    # the pin filters (the case layer's URL follows them: callbacks/wall.py)
    FILTERS = "wall-filters"
    FILTER_STEP = "wall-filter-step"
    FILTER_TYPE = "wall-filter-type"
    FILTER_LEVEL = "wall-filter-level"
    FILTER_SEVERITY = "wall-filter-severity"
    FILTER_OVERDUE = "wall-filter-overdue"
    FILTER_CLEAR = "wall-filter-clear"
    # the period of the KPIs and the ranking
    PERIOD = "wall-period"
    PERIOD_DATES = "wall-period-dates"
    PERIOD_DATES_BOX = "wall-period-dates-box"  # shown for the period "dates" only
    RANKING_TITLE = "wall-ranking-title"
    # what the screen shows of the numbers: a digest per output (callbacks/wall.py sends only the changed ones)
    SHOWN = "wall-numbers-shown"


CRUMB = "wall-crumb"
LEVEL_CHIP = "wall-level-chip"  # pattern-matching type of the overdue-by-level chips (a click filters the pins)
VAN_ROW = "wall-van-row"  # pattern-matching type of the van board's rows (a click focuses the van)
PERIODS = ("month", "quarter", "year", "dates")
DEFAULT_PERIOD = "year"
POINT = "wall-point-layer"  # pattern-matching id type of the switchable layers (the name is historical)
# bumped by the live push of a grid import (``areas.changed``): the grid layer fetches its URL again
AREAS_REV = {"type": AREAS_REV_TYPE, "page": "wall"}
GRIDS = "grids"  # the base layer: always present, its URL follows the view (callbacks/wall.py)
GRID_HIDEOUT = {
    "mode": "none",
    "stats": {},
    "selected": None,
    "labels": True,
    "breaks": {"open": [0, 2, 5, 10], "overdue": [0, 1, 2, 4], "rate": [0.8, 0.88, 0.92, 0.95]},
}


def switchable() -> list[Layer]:
    """The wall's layers other than the grid, in drawing order: each in a group of its own, taken out
    of it when switched off and made again when switched on."""
    return [layer for layer in registry.wall_layers() if layer.name != GRIDS]


def group_id(layer_id: str) -> str:
    return f"group-{layer_id}"


def point_layer(layer_id: str, url: str, hideout: dict[str, Any] | None = None) -> dl.GeoJSON:
    """A switchable layer as first drawn (switching it off removes it from its group; on re-creates it).

    Its id is a pattern-matching one, so the click callback listens to whichever layers exist."""
    layer = registry.by_id(layer_id)
    if layer is None:
        raise KeyError(f"no layer with id {layer_id!r}")
    component = layer.component(url, hideout)
    component.id = {"type": POINT, "layer": layer_id}
    return component


def pin_filters(t: Callable[[str], str]) -> html.Div:
    """The case pins' filters over the map: step, type, level, severity (triage), overdue only.
    The type's options are the active case types, filled in by a callback (callbacks/wall.py)."""

    def choose(id_: str, label: str, options: list[dict[str, str]], searchable: bool = False) -> dcc.Dropdown:
        return dcc.Dropdown(
            id=id_,
            options=options,
            value=None,
            placeholder=label,
            clearable=True,
            searchable=searchable,  # a short list is picked, not searched; the twenty types are searched
            labels={"search": t("filter.search")},
            className="yitu-pin-filter",
        )

    return html.Div(
        id=Ids.FILTERS,
        className="yitu-pin-filters",
        children=[
            choose(Ids.FILTER_STEP, t("filter.step"), [{"label": t(f"step.{s}"), "value": s} for s in cases.PIN_STEPS]),
            choose(Ids.FILTER_TYPE, t("filter.type"), [], searchable=True),
            choose(
                Ids.FILTER_LEVEL,
                t("filter.level"),
                [{"label": t(f"level.{lv}"), "value": lv} for lv in workflow.LEVELS],
            ),
            choose(
                Ids.FILTER_SEVERITY,
                t("filter.severity"),
                [{"label": t(f"severity.{s}"), "value": s} for s in workflow.SEVERITIES],
            ),
            dcc.Checklist(
                id=Ids.FILTER_OVERDUE,
                className="yitu-pin-overdue-only",
                options=[{"label": t("filter.overdue"), "value": "overdue"}],
                value=[],
            ),
            html.Button(t("filter.clear"), id=Ids.FILTER_CLEAR, n_clicks=0, className="yitu-filter-clear"),
        ],
    )


def period_picker(t: Callable[[str], str]) -> html.Div:
    """The period of the KPIs and the ranking: this month, quarter, year, or two dates."""
    return html.Div(
        className="yitu-period",
        children=[
            html.Span(t("period.title"), className="yitu-muted"),
            dcc.RadioItems(
                id=Ids.PERIOD,
                className="yitu-period-choice",
                value=DEFAULT_PERIOD,
                options=[{"label": t(f"period.{p}"), "value": p} for p in PERIODS],
                inline=True,
            ),
            html.Div(
                id=Ids.PERIOD_DATES_BOX,
                style={"display": "none"},
                children=dcc.DatePickerRange(
                    id=Ids.PERIOD_DATES,
                    className="yitu-period-dates",
                    display_format="YYYY-MM-DD",
                    start_date_placeholder_text=t("period.from"),
                    end_date_placeholder_text=t("period.to"),
                    minimum_nights=0,
                ),
            ),
        ],
    )


def layout(
    settings: Settings,
    banner: dict[str, Any] | None,
    layer_data: Mapping[str, dict[str, Any]] | None = None,
    focus: dict[str, Any] | None = None,
) -> html.Div:
    """The wall screen opened at ``banner`` (the top: a banner, or the league/city root above
    several) and showing ``focus`` (an area inside it, ``/?area=CODE``; default the top itself);
    ``layer_data`` is what the layers read from the database for their hideouts
    (``registry.page_data``), by layer name."""
    t = translator(settings.lang)
    if banner is None or banner["bounds"][0] is None:  # no territory, or a root with no banner yet
        return html.Div(className="yitu-empty", children=t("map.empty"))
    focus = focus or banner
    data = layer_data or {}
    minx, miny, maxx, maxy = banner["bounds"]
    pad_x, pad_y = (maxx - minx) * 0.25, (maxy - miny) * 0.25
    bbox = f"{minx - pad_x:.4f},{miny - pad_y:.4f},{maxx + pad_x:.4f},{maxy + pad_y:.4f}"
    others = switchable()
    urls = {layer.id: layer.url(bbox=bbox if layer.bbox else None) for layer in others}
    hideouts = {layer.id: layer.hideout(data.get(layer.name)) for layer in others}
    grids = registry.get(GRIDS)
    map_layers = [
        grids.component(
            grids.url(level=1 if focus["level"] == 0 else 2, bbox=bbox), grids.hideout(data.get(GRIDS), **GRID_HIDEOUT)
        ),
        *[
            dl.LayerGroup(
                id=group_id(layer.id),
                children=point_layer(layer.id, urls[layer.id], hideouts[layer.id]) if layer.wall_on else [],
            )
            for layer in others
        ],
    ]
    filters = pin_filters(t)
    shown = registry.wall_layers()
    switches = dcc.Checklist(
        id=Ids.LAYERS,
        className="yitu-layers",
        value=[layer.name for layer in shown if layer.wall_on],
        options=[{"label": t(f"layer.{layer.name}"), "value": layer.name} for layer in shown],
    )
    return html.Div(
        className="yitu-wall",
        children=[
            dcc.Store(id=Ids.SELECTED, data={"code": focus["code"], "banner": banner["code"]}),
            dcc.Interval(id=Ids.TICK, interval=1000),
            dcc.Store(id=Ids.VAN_FOCUS),
            dcc.Store(id=Ids.SHOWN),
            dcc.Store(id=Ids.DRILL),
            dcc.Store(id=AREAS_REV),
            html.Header(
                className="yitu-header",
                children=[
                    html.H1(t("title"), className="yitu-title"),
                    html.Span(f"{banner['name']} · {t('subtitle')}", className="yitu-subtitle"),
                    html.Nav(id=Ids.CRUMBS, className="yitu-crumbs"),
                    search_box(settings.lang),
                    inbox.header_link(settings.lang),
                    html.Span(id=Ids.CLOCK, className="yitu-clock"),
                ],
            ),
            html.Aside(
                className="yitu-left",
                children=[
                    period_picker(t),
                    html.Div(id=Ids.KPIS, className="yitu-kpis"),
                    html.Section(
                        className="yitu-card",
                        children=[
                            html.Div(
                                id=Ids.TOP_TYPES,
                                children=[html.H3(t("chart.top_types").format(p=t("period.this_year")))],
                            )
                        ],
                    ),
                    html.Section(className="yitu-card", children=[html.H3(t("chart.trend")), html.Div(id=Ids.TREND)]),
                ],
            ),
            html.Main(
                className="yitu-mapbox",
                children=[
                    banner_map(
                        Ids.MAP,
                        focus["bounds"],
                        trackViewport=True,
                        attributionControl=attribution_shown(settings),
                        children=[
                            *basemap_layers(settings),
                            *map_layers,
                            dl.ScaleControl(position="bottomleft", imperial=False),
                        ],
                    ),
                    dcc.Store(id=Ids.URLS, data=urls),
                    dcc.Store(id=Ids.HIDEOUTS, data=hideouts),
                    switches,
                    inbox.wall_warnings(),
                    filters,
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
                        className="yitu-card yitu-ranking",
                        children=[html.H3(t("ranking.title"), id=Ids.RANKING_TITLE), html.Div(id=Ids.RANKING)],
                    ),
                    html.Section(className="yitu-card", children=[html.H3(t("vans.title")), html.Div(id=Ids.VANS)]),
                ],
            ),
        ],
    )

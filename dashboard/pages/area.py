"""``/area/{code}``: one area — the map fitted to it and a sortable, filterable, paged case table.

Filters live in the URL's query string (``?step=handling&type=grassland&since=2026-10-01``), so a
view can be shared by copying the address; the CSV link carries the same filters.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from dash import dcc, html
from dash.dash_table.DataTable import DataTable  # the class (mypy reads dash_table.DataTable as the module)

from dashboard.basemap import attribution_shown, basemap_layers
from dashboard.header import page_header
from dashboard.i18n import translator
from dashboard.layout import banner_map
from dashboard.pages import inbox
from layers import registry
from services.settings import Settings

STEPS = ("reported", "accepted", "dispatched", "handling", "closed", "evaluated", "rejected")
PAGE_SIZE = 20
COLUMNS = ("code", "type", "step", "level", "reported_at", "deadline", "grid")


class Ids(StrEnum):
    CODE = "area-code"
    STEP = "area-step"
    TYPE = "area-type"
    SINCE = "area-since"
    UNTIL = "area-until"
    TABLE = "area-table"
    TOTAL = "area-total"
    CSV = "area-csv"
    MAP = "area-map"


LAYERS = ("grids", "cases")  # the registry's layers this page draws (layers/registry.py)


def layout(
    settings: Settings,
    area: dict[str, Any] | None,
    types: list[dict[str, str]],
    query: dict[str, str],
    layer_data: Mapping[str, dict[str, Any]] | None = None,
) -> html.Div:
    """One area's page; ``layer_data`` is what its layers read from the database (``registry.page_data``)."""
    t = translator(settings.lang)
    if area is None:
        return html.Div(className="yitu-empty", children=[html.P("404"), dcc.Link(t("area.back"), href="/")])
    data = layer_data or {}
    grids, cases = (registry.get(name) for name in LAYERS)
    minx, miny, maxx, maxy = area["bounds"]
    lang_col = "name_zh" if settings.lang == "zh-CN" else "name_en"
    bbox = f"{minx:.5f},{miny:.5f},{maxx:.5f},{maxy:.5f}"
    child_level = min(4, area["level"] + 1)
    return html.Div(
        className="yitu-area",
        children=[
            dcc.Store(id=Ids.CODE, data=area["code"]),
            page_header(
                settings.lang,
                f"{area['name']}",
                inbox.header_link(settings.lang),
                subtitle=f"{t('panel.code')} {area['code']} · {t('level.' + str(area['level']))} · {t('area.title')}",
                back="area.back",
            ),
            html.Div(
                className="yitu-area-body",
                children=[
                    html.Div(
                        className="yitu-area-map",
                        # fitted to the area by its viewport, whatever the panel's size (a fixed zoom
                        # showed a corner of the banner at 1920x1080 and all of it at 3840x2160)
                        children=banner_map(
                            Ids.MAP,
                            area["bounds"],
                            attributionControl=attribution_shown(settings),
                            children=[
                                *basemap_layers(settings),
                                grids.component(
                                    grids.url(level=child_level, parent=area["code"]),
                                    grids.hideout(
                                        data.get("grids"), mode="none", stats={}, selected=None, labels=child_level < 4
                                    ),
                                ),
                                cases.component(cases.url(bbox=bbox), cases.hideout(data.get("cases"))),
                            ],
                        ),
                    ),
                    html.Div(
                        className="yitu-area-table",
                        children=[
                            html.Div(
                                className="yitu-filters",
                                children=[
                                    dcc.Dropdown(
                                        id=Ids.STEP,
                                        placeholder=t("area.filter.step"),
                                        value=query.get("step"),
                                        options=[{"label": t(f"step.{s}"), "value": s} for s in STEPS],
                                    ),
                                    dcc.Dropdown(
                                        id=Ids.TYPE,
                                        placeholder=t("area.filter.type"),
                                        value=query.get("type"),
                                        options=[{"label": ty[lang_col], "value": ty["code"]} for ty in types],
                                    ),
                                    *(
                                        # named beside it: a date input shows the browser's own
                                        # format (年/月/日, mm/dd/yyyy), never its placeholder
                                        html.Label(
                                            className="yitu-date-field",
                                            children=[
                                                html.Span(t(f"area.date.{key}"), className="yitu-date-name"),
                                                dcc.Input(
                                                    className="yitu-input yitu-date",
                                                    id=id_,
                                                    type="date",  # type: ignore[arg-type]  # not in the annotation; rendered as given
                                                    value=query.get(key),
                                                    placeholder=t(f"area.filter.{key}"),
                                                ),
                                            ],
                                        )
                                        for id_, key in ((Ids.SINCE, "since"), (Ids.UNTIL, "until"))
                                    ),
                                    html.A(t("area.export"), id=Ids.CSV, className="yitu-button", href="#"),
                                    html.Span(id=Ids.TOTAL, className="yitu-total"),
                                ],
                            ),
                            DataTable(
                                id=Ids.TABLE,
                                # the code is a link to the case page (callbacks/area.py writes it as markdown)
                                columns=[
                                    {"name": t(f"col.{c}"), "id": c, "presentation": "markdown"}
                                    if c == "code"
                                    else {"name": t(f"col.{c}"), "id": c}
                                    for c in COLUMNS
                                ],
                                markdown_options={"link_target": "_self"},
                                page_current=0,
                                page_size=PAGE_SIZE,
                                page_action="custom",
                                sort_action="custom",
                                sort_mode="single",
                                sort_by=[],
                                style_as_list_view=True,
                                style_header={"backgroundColor": "#0b1730", "color": "#7fd3ff", "fontWeight": "bold"},
                                style_cell={
                                    "backgroundColor": "#050b18",
                                    "color": "#d8e6ff",
                                    "border": "1px solid #1f3b6e",
                                    "fontFamily": "inherit",
                                    "fontSize": "1.5vh",
                                    "padding": "0.6vh 0.8vh",
                                    "textAlign": "left",
                                },
                            ),
                        ],
                    ),
                ],
            ),
        ],
    )

"""``/dispatch``: the dispatcher's page — the waiting queue, the map, the vans that could go.

A dispatcher or an admin signs in at /login (``yitu user create NAME --role dispatcher``); the
page shows who is signed in and a sign-out button, and every callback reads the session again on
the server (api/guard.py): only they see the queue and send vans. Parties are shown masked here
too (the room may have visitors); the API gives a dispatcher the full record.

Everything that changes is filled in by ``callbacks/dispatch.py``; the live push refreshes the
queue, the candidates and the van layer (``callbacks/live.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import dash_leaflet as dl
from dash import dcc, html

from dashboard.basemap import attribution_shown, basemap_layers
from dashboard.header import page_header
from dashboard.i18n import translator
from dashboard.layout import banner_map, live_tick
from dashboard.pages import inbox
from layers import registry
from layers.registry import Layer
from services.settings import Settings

POINT = "dispatch-point-layer"  # pattern-matching type of the page's live point layers
QUEUE_ITEM = "dispatch-queue-item"
SEND = "dispatch-send"
VISIT_ACTION = "dispatch-visit-action"  # pattern-matching type of a visit's buttons (cancel, end)
QUEUE_VIEWS = ("waiting", "active")  # the queue: cases waiting to be sent, or sent and not closed (to chase)
LIVE_TICK = live_tick("dispatch")  # bumped by the live push when the numbers are stale


class Ids(StrEnum):
    SIGNOUT = "dispatch-signout"  # the sign-out button (a form posting to /logout)
    WHO = "dispatch-who"
    MESSAGE = "dispatch-message"
    SELECTED = "dispatch-selected"  # the case code picked
    PICK = "dispatch-pick"  # the queue item clicked (set by yitu_wall.js from its data-code)
    SENT = "dispatch-sent"  # the last send's outcome (bumps the panels)
    SEND_KEY = "dispatch-send-key"  # the Idempotency-Key of the next send (new per selection and per send)
    QUEUE = "dispatch-queue"
    QUEUE_VIEW = "dispatch-queue-view"
    VISITS = "dispatch-visits"  # the selected case's vans on their way or on site, with cancel / end
    MAP = "dispatch-map"
    FOCUS = "dispatch-focus"  # the selected case's marker and its 500 m ring
    CASE = "dispatch-case"
    CANDIDATES = "dispatch-candidates"
    CAMERAS = "dispatch-cameras"
    VANS = "dispatch-vans"
    QUEUE_SHOWN = "dispatch-queue-shown"  # a digest of the queue as last sent (callbacks/shown.py)
    PANELS_SHOWN = "dispatch-panels-shown"  # a digest of each panel as last sent


LAYERS = ("grids", "cases", "vans")  # the registry's layers this page draws (layers/registry.py)


def new_send_key() -> str:
    """A fresh Idempotency-Key for the page's sends: made when the page is shown, again when a case is
    picked and after each send, so a double click (or a callback the browser sends again) carries the
    same key and sends one van, and the next deliberate send is a new request."""
    return uuid.uuid4().hex


def point_layer(layer: Layer, url: str, hideout: dict[str, Any]) -> dl.GeoJSON:
    component = layer.component(url, hideout)
    component.id = {"type": POINT, "layer": layer.id}
    return component


def layout(
    settings: Settings,
    banner: dict[str, Any] | None,
    layer_data: Mapping[str, dict[str, Any]] | None = None,
    who: str = "",
) -> html.Div:
    """The dispatch page; ``layer_data`` is what its layers read from the database (``registry.page_data``),
    ``who`` the line naming who is signed in."""
    t = translator(settings.lang)
    if banner is None:
        return html.Div(className="yitu-empty", children=t("map.empty"))
    data = layer_data or {}
    grids, cases, vans = (registry.get(name) for name in LAYERS)
    minx, miny, maxx, maxy = banner["bounds"]
    bbox = f"{minx:.4f},{miny:.4f},{maxx:.4f},{maxy:.4f}"
    return html.Div(
        className="yitu-dispatch",
        children=[
            dcc.Store(id=Ids.SELECTED),
            dcc.Store(id=Ids.PICK),
            dcc.Store(id=Ids.SENT),
            dcc.Store(id=Ids.SEND_KEY, data=new_send_key()),
            dcc.Store(id=Ids.QUEUE_SHOWN),
            dcc.Store(id=Ids.PANELS_SHOWN),
            dcc.Store(id=LIVE_TICK),
            page_header(
                settings.lang,
                t("dispatch.title"),
                inbox.header_link(settings.lang),
                subtitle=banner["name"],
                who=who,
                who_id=Ids.WHO,
                signout_id=Ids.SIGNOUT,
            ),
            html.Div(id=Ids.MESSAGE, className="yitu-message", role="status"),
            html.Aside(
                className="yitu-left",
                children=[
                    html.Section(
                        className="yitu-card yitu-queue-card",
                        children=[
                            html.H3(t("dispatch.queue")),
                            dcc.RadioItems(
                                id=Ids.QUEUE_VIEW,
                                className="yitu-queue-view",
                                value=QUEUE_VIEWS[0],
                                options=[{"label": t(f"dispatch.view.{v}"), "value": v} for v in QUEUE_VIEWS],
                                inline=True,
                            ),
                            html.Div(id=Ids.QUEUE, className="yitu-queue"),
                        ],
                    )
                ],
            ),
            html.Main(
                className="yitu-mapbox",
                children=[
                    banner_map(
                        Ids.MAP,
                        banner["bounds"],
                        attributionControl=attribution_shown(settings),
                        children=[
                            *basemap_layers(settings),
                            grids.component(
                                grids.url(level=2, bbox=bbox),
                                grids.hideout(data.get("grids"), mode="none", stats={}, selected=None, labels=True),
                            ),
                            point_layer(cases, cases.url(bbox=bbox), cases.hideout(data.get("cases"))),
                            point_layer(vans, vans.url(), vans.hideout(data.get("vans"))),
                            dl.LayerGroup(id=Ids.FOCUS),
                            dl.ScaleControl(position="bottomleft", imperial=False),
                        ],
                    )
                ],
            ),
            html.Aside(
                className="yitu-right",
                children=[
                    html.Section(className="yitu-card yitu-detail", id=Ids.CASE),
                    html.Section(className="yitu-card yitu-visits", id=Ids.VISITS),
                    html.Section(
                        className="yitu-card", children=[html.H3(t("dispatch.candidates")), html.Div(id=Ids.CANDIDATES)]
                    ),
                    html.Section(
                        className="yitu-card", children=[html.H3(t("dispatch.cameras")), html.Div(id=Ids.CAMERAS)]
                    ),
                    html.Section(className="yitu-card", children=[html.H3(t("vans.title")), html.Div(id=Ids.VANS)]),
                ],
            ),
        ],
    )

"""``/cases/{code}``: one case's workbench — what it is, where, who is in it, what happened, and the
buttons for exactly the steps the signed-in person may take now.

The frame is static; ``callbacks/case.py`` fills it from the database on each visit, after each
action and whenever the live push carries an event of this case (another screen acted on it).
Each action button (``button[data-action=<action>]``) opens its form, sent by its
``button[data-action=confirm]``; the form's fields are pattern-matched ids ({"type": FIELD,
"name": ...}) so one callback reads whichever form is open.
"""

from __future__ import annotations

import math
import uuid
from enum import StrEnum
from typing import Any

import dash_leaflet as dl
from dash import dcc, html

from dashboard.basemap import attribution_shown, basemap_layers
from dashboard.header import page_header
from dashboard.i18n import translator
from layers import registry
from services.settings import Settings

ACTION = "case-action"  # pattern-matching type of the action buttons ({"type", "action"})
CONFIRM = "case-confirm"  # of the open form's send button ({"type", "action"})
CELL = "case-cell"  # of the cell picker's buttons ({"type", "do": "confirm" | "move"})
CELL_PICK = "case-cell-pick"  # of its choice of cells ({"type", "i": 0})
FIELD = "case-field"  # of the open form's fields ({"type", "name"})
VIEW_M = 750  # the map shows this many metres around the case (the 500 m camera ring and a margin)
POINT = "case-point-layer"  # of the page's live point layers (the vans), reloaded by the push
TICK = "case-tick"  # of the store the live push bumps when an event of this case comes ({"type", "code"})


class Ids(StrEnum):
    CODE = "case-code"  # the case's code (store)
    DONE = "case-done"  # the last action's outcome (bumps the panels)
    KEY = "case-key"  # the Idempotency-Key of the next action (new per page and after each action)
    VERSION = "case-version"  # the case's version as shown: an action on an older view is refused
    CHOSEN = "case-chosen"  # the action whose form is open
    ALLOWED = "case-allowed"  # the actions whose buttons are shown (redrawn only when they change)
    WHO = "case-who"
    MESSAGE = "case-message"
    FACTS = "case-facts"
    PARTIES = "case-parties"
    ATTACHMENTS = "case-attachments"
    MAP = "case-map"
    FOCUS = "case-focus"  # the case, its cell, its cameras, the vans' routes
    ACTIONS = "case-actions"
    FORM = "case-form"
    TIMELINE = "case-timeline"
    DISPATCHES = "case-dispatches"


def new_key() -> str:
    """A fresh Idempotency-Key for the page's next action (a double click sends it once)."""
    return uuid.uuid4().hex


def layout(settings: Settings, code: str, center: tuple[float, float] | None, who: str = "") -> html.Div:
    """The frame of the case page for ``code``; ``center`` (lat, lon) is where the map opens."""
    t = translator(settings.lang)
    vans = registry.get("vans")
    van_layer = vans.component(vans.url(), vans.hideout(None))
    van_layer.id = {"type": POINT, "layer": vans.id}
    lat, lon = center or (0.0, 0.0)
    # The map opens on the case's 500 m ring and a little more, whatever the screen's size; the
    # neighbouring cells drawn around it (the grid layer, by URL) show where the edges run.
    dlat, dlon = VIEW_M / 111_000, VIEW_M / (111_000 * max(0.2, math.cos(math.radians(lat))))
    grids = registry.get("grids")
    bbox = f"{lon - 3 * dlon:.4f},{lat - 3 * dlat:.4f},{lon + 3 * dlon:.4f},{lat + 3 * dlat:.4f}"
    cells = grids.component(
        grids.url(level=4, bbox=bbox), grids.hideout(None, mode="none", stats={}, selected=None, labels=True)
    )
    return html.Div(
        className="yitu-casepage",
        children=[
            dcc.Store(id=Ids.CODE, data=code),
            dcc.Store(id={"type": TICK, "code": code}, data=0),
            dcc.Store(id=Ids.DONE),
            dcc.Store(id=Ids.KEY, data=new_key()),
            dcc.Store(id=Ids.VERSION),
            dcc.Store(id=Ids.CHOSEN),
            dcc.Store(id=Ids.ALLOWED),
            page_header(
                settings.lang,
                f"{t('case.title')} {code}",
                who=who,
                who_id=Ids.WHO,
                title_class="yitu-title yitu-case-code",
            ),
            html.Div(id=Ids.MESSAGE, className="yitu-message", role="status"),
            html.Aside(
                className="yitu-left",
                children=[
                    html.Section(id=Ids.FACTS, className="yitu-card yitu-case-facts"),
                    html.Section(id=Ids.PARTIES, className="yitu-card"),
                    html.Section(id=Ids.ATTACHMENTS, className="yitu-card"),
                ],
            ),
            html.Main(
                className="yitu-case-middle",
                children=[
                    html.Div(
                        className="yitu-mapbox",
                        children=[
                            dl.Map(
                                id=Ids.MAP,
                                center=[lat, lon],
                                zoom=15,
                                viewport={"bounds": [[lat - dlat, lon - dlon], [lat + dlat, lon + dlon]]},
                                preferCanvas=True,
                                zoomSnap=0.5,
                                className="yitu-map",
                                attributionControl=attribution_shown(settings),
                                children=[
                                    *basemap_layers(settings),
                                    cells,
                                    dl.LayerGroup(id=Ids.FOCUS),
                                    van_layer,
                                    dl.ScaleControl(position="bottomleft", imperial=False),
                                ],
                            )
                        ],
                    ),
                    html.Section(
                        className="yitu-card yitu-case-timeline",
                        children=[html.H3(t("casepage.timeline")), html.Div(id=Ids.TIMELINE)],
                    ),
                ],
            ),
            html.Aside(
                className="yitu-right",
                children=[
                    html.Section(
                        className="yitu-card yitu-case-actions",
                        children=[
                            html.H3(t("casepage.actions")),
                            html.Div(id=Ids.ACTIONS, className="yitu-action-bar"),
                            html.Div(id=Ids.FORM, className="yitu-case-form"),
                        ],
                    ),
                    html.Section(
                        className="yitu-card", children=[html.H3(t("casepage.dispatches")), html.Div(id=Ids.DISPATCHES)]
                    ),
                ],
            ),
        ],
    )


def not_found(settings: Settings, code: str) -> html.Div:
    """No such case, or one outside the reader's area: the same answer, so a code outside it is not
    confirmed to exist."""
    t = translator(settings.lang)
    return html.Div(
        className="yitu-empty",
        id="case-missing",
        children=[html.P(t("casepage.missing").format(code=code)), dcc.Link(t("area.back"), href="/")],
    )


def data_action(action: str) -> dict[str, Any]:
    """The ``data-action`` attribute that names a button's action (what the browser tests select on)."""
    return {"data-action": action}


def button(action: str, label: str, **props: Any) -> html.Button:
    """An action button: ``button[data-action=<action>]``."""
    return html.Button(
        label,
        id={"type": ACTION, "action": action},
        n_clicks=0,
        className="yitu-button yitu-action",
        **data_action(action),
        **props,
    )

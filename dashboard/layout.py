"""The page frame: the URL, the UI language, and the container the routed page goes into.

Pages are built per visit by ``callbacks/pages.py`` (``/`` the wall screen, ``/area/{code}`` the
area view) from the territory in the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import dash_leaflet as dl
from dash import dcc, html

from dashboard.i18n import translator


class LiveIds(StrEnum):
    """The live push's stores in the frame (they outlive page changes, so the cursor survives)."""

    EVENTS = "live-events"  # the last batch pushed: {"seq", "events", "resync", "numbers", "at"}
    CURSOR = "live-cursor"  # the id of the last stream entry this browser has seen
    LEAVE = "live-leave"  # set by the live push when the session ended: the page goes to /login
    # The numbers the page shows, for the push to send it theirs: {"key": [area, period, first day, last
    # day, language], "shown": [digests]} on the wall, empty elsewhere (emptied when the page changes)
    VIEW = "live-numbers-view"
    NUMBERS = "live-numbers"  # a round of numbers pushed: {"key", "parts", "shown", "warnings", "at"}


LIVE_TICK = "live-tick"  # pattern-matching type of the stores the live push bumps when numbers are stale


def banner_map(map_id: str, bounds: Sequence[float], children: list[Any], **props: Any) -> dl.Map:
    """The map the wall, the dispatch page and the area page open on: the banner (or the area's
    ``bounds``) fitted on any screen size, canvas markers (thousands of pins) and half-step zoom;
    ``props`` adds what one page needs."""
    minx, miny, maxx, maxy = bounds
    return dl.Map(
        id=map_id,
        center=[(miny + maxy) / 2, (minx + maxx) / 2],
        zoom=9,
        viewport={"bounds": [[miny, minx], [maxy, maxx]]},
        preferCanvas=True,
        zoomSnap=0.5,
        className="yitu-map",
        children=children,
        **props,
    )


# The pattern-matching type of a page's store that the live push of a grid import bumps (the wall's grid
# layer fetches its URL again: callbacks/live.py, yitu.live.areasRev in yitu_map.js).
AREAS_REV_TYPE = "yitu-areas-rev"


def live_tick(page: str) -> dict[str, str]:
    """The id of a page's live-tick store: bumped by the live push (callbacks/live.py) when that
    page's numbers are stale."""
    return {"type": LIVE_TICK, "page": page}


def page_title(lang: str) -> str:
    t = translator(lang)
    return f"{t('title')} · {t('subtitle')}"


def root(lang: str) -> html.Div:
    return html.Div(
        className="yitu-root",
        lang=lang,
        children=[
            dcc.Location(id="url", refresh=False),
            dcc.Store(id="lang", data=lang),
            dcc.Store(id=LiveIds.EVENTS),
            dcc.Store(id=LiveIds.CURSOR),
            dcc.Store(id=LiveIds.LEAVE),
            dcc.Store(id=LiveIds.VIEW),
            dcc.Store(id=LiveIds.NUMBERS),
            html.Div(id=LiveIds.LEAVE + "-done", hidden=True),
            html.Div(id="page", className="yitu-page"),
        ],
    )

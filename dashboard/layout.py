"""The page frame: the URL, the UI language, and the container the routed page goes into.

Pages are built per visit by ``callbacks/pages.py`` (``/`` the wall screen, ``/area/{code}`` the
area view) from the territory in the database.
"""

from __future__ import annotations

from dash import dcc, html

from callbacks.live import stores as live_stores
from dashboard.i18n import translator


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
            *live_stores(),
            html.Div(id="page", className="yitu-page"),
        ],
    )

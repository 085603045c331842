"""The page skeleton: a header and the map on a dark wall-screen background.

The wall screen proper (layers, KPI tiles, charts) is built by the wall-screen issue on this
skeleton; here the map already runs without any base map and without a CDN.
"""

from __future__ import annotations

import dash_leaflet as dl
from dash import html

from dashboard.i18n import translator

# Otog Front Banner's seat, 敖勒召其镇 (DOMAIN.md): the default view until a territory is loaded.
DEFAULT_CENTER = (38.18, 107.48)
DEFAULT_ZOOM = 8


def page_title(lang: str) -> str:
    t = translator(lang)
    return f"{t('title')} · {t('subtitle')}"


def root(lang: str) -> html.Div:
    t = translator(lang)
    return html.Div(
        className="yitu-root",
        lang=lang,
        children=[
            html.Header(
                className="yitu-header",
                children=[
                    html.H1(t("title"), className="yitu-title"),
                    html.Span(t("subtitle"), className="yitu-subtitle"),
                ],
            ),
            html.Main(
                className="yitu-main",
                children=[
                    dl.Map(
                        id="yitu-map",
                        center=DEFAULT_CENTER,
                        zoom=DEFAULT_ZOOM,
                        preferCanvas=True,
                        attributionControl=False,
                        className="yitu-map",
                        children=[],
                    )
                ],
            ),
        ],
    )

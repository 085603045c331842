"""``/inbox`` (我的待办): the cases waiting on the signed-in person, by deadline, with the counts.

What waits on whom is decided in SQL (geodata/warnings.py ``inbox``): cases assigned to the person's
mediator row, its unit or its van, and the unassigned cases at their level inside their area. This
module only lays the page out; ``callbacks/inbox.py`` fills the counts and the list, again whenever
the live push says the numbers are stale (the page's live-tick store). The link to the page that
every header carries (:func:`header_link`) and the wall's small list of deadline warnings
(:func:`wall_warnings`) live here too, so the pages that show them add one line each.
"""

from __future__ import annotations

from enum import StrEnum

from dash import dcc, html

from dashboard.header import page_header
from dashboard.i18n import translator
from dashboard.layout import live_tick
from services.settings import Settings

LIVE_TICK = live_tick("inbox")  # bumped by the live push when the numbers are stale
PATH = "/inbox"


class Ids(StrEnum):
    WHO = "inbox-who"
    SIGNOUT = "inbox-signout"
    COUNTS = "inbox-counts"  # the tiles: overdue, due today, due within 24 h, warned, in all
    LIST = "inbox-list"  # the table of cases (each code a link to /cases/{code})
    WALL_WARNINGS = "wall-warnings"  # the wall's badge and list of the warnings still running


def header_link(lang: str) -> dcc.Link:
    """The link to 我的待办 that each page's header carries."""
    return dcc.Link(translator(lang)("inbox.link"), href=PATH, className="yitu-inbox-link", id="inbox-link")


def wall_warnings() -> html.Div:
    """The wall's deadline warnings (filled by callbacks/inbox.py): a badge over the map's corner,
    opening to the soonest few. Small on purpose: the wall is for the picture."""
    return html.Div(id=Ids.WALL_WARNINGS, className="yitu-wall-warnings")


def layout(settings: Settings, who: str = "") -> html.Div:
    """The inbox page; ``who`` is the header's line naming who is signed in."""
    t = translator(settings.lang)
    return html.Div(
        className="yitu-inbox",
        children=[
            dcc.Store(id=LIVE_TICK),
            page_header(settings.lang, t("inbox.title"), who=who, who_id=Ids.WHO, signout_id=Ids.SIGNOUT),
            html.Section(id=Ids.COUNTS, className="yitu-inbox-counts", role="status"),
            html.Main(className="yitu-card yitu-inbox-list", children=html.Div(id=Ids.LIST)),
        ],
    )

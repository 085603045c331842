"""Routing: the URL's path picks the page; the page is built from the database per visit.

A reader scoped to an area (``identity.who_is_asking``) gets the wall of its own area, and the
refusal page for an area page outside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from dash import Dash, Input, Output, State, dcc, html

from callbacks.dispatch import who_line
from dashboard.i18n import translator
from dashboard.pages import admin, area, case, dispatch, inbox, wall
from geodata import queries
from layers import registry
from services import identity
from services.runtime import Services


def _attribution(banner_codes: list[str]) -> str:
    """The boundaries' source credit for those of the banners that are vendored (their licence asks
    for it), each credit once."""
    from geodata.vendored import TerritoryNotVendored, load_attribution

    credits: list[str] = []
    for code in banner_codes:
        try:
            credit = load_attribution(code)
        except TerritoryNotVendored:
            continue
        if credit not in credits:
            credits.append(credit)
    return " · ".join(credits)


def _wall_focus(conn: Any, who: identity.Principal, search: str | None) -> dict[str, Any] | None:
    """The area a wall URL asks to show (``/?area=CODE``: a drill-down from the root's ranking), when
    it exists and the reader may see it; None: the top."""
    code = (parse_qs((search or "").lstrip("?")).get("area") or [""])[0]
    try:
        queries.level_of(code)
    except ValueError:
        return None
    return queries.area_summary(conn, code) if who.sees_area(code) else None


def refused(lang: str) -> html.Div:
    """The refusal page (403) in the page's language: an area outside the reader's own, the admin
    page for anyone but an admin."""
    t = translator(lang)
    return html.Div(
        className="yitu-empty yitu-refused",
        id="refused",
        children=[html.P("403"), html.P(t("error.forbidden")), dcc.Link(t("area.back"), href="/")],
    )


def render(svc: Services, pathname: str | None, search: str | None) -> html.Div:
    path = (pathname or "/").rstrip("/") or "/"
    who = identity.who_is_asking()
    with svc.pool.connection() as conn:
        if path == "/":
            banner = queries.banner(conn) if who.area is None else queries.area_summary(conn, who.area)
            if banner is not None:
                under = [r[0] for r in conn.execute(queries.query("banners_under"), {"code": banner["code"]})]
                banner["attribution"] = _attribution(under)  # its banners' credit
            return wall.layout(
                svc.settings,
                banner,
                registry.page_data(conn, [la.name for la in registry.wall_layers()]),
                _wall_focus(conn, who, search),
            )
        if path == "/dispatch":
            return dispatch.layout(
                svc.settings,
                queries.banner(conn),
                registry.page_data(conn, list(dispatch.LAYERS)),
                who_line(identity.current(), svc.settings.lang),
            )
        if path == inbox.PATH:  # 我的待办: anyone signed in, their own (callbacks/inbox.py)
            return inbox.layout(svc.settings, who_line(who, svc.settings.lang))
        if path == "/admin":  # the guard refuses anyone else already; the page says so too
            if who.role != "admin":
                return refused(svc.settings.lang)
            return admin.layout(svc.settings, who_line(who, svc.settings.lang))
        if path.startswith("/cases/"):
            code = path.removeprefix("/cases/")
            where = conn.execute(
                """SELECT ST_Y(geom), ST_X(geom) FROM cases WHERE code = %s
                   AND yitu_in_scope(%s::text, grid_code, village_code, town_code, banner_code)""",
                (code, who.area),
            ).fetchone()
            if where is None or who.role == "van":  # a van crew's token acts on its visit only
                return case.not_found(svc.settings, code)
            return case.layout(
                svc.settings, code, (where[0], where[1]), who_line(identity.current(), svc.settings.lang)
            )
        if path.startswith("/area/"):
            code = path.removeprefix("/area/")
            if not who.sees_area(code):
                return refused(svc.settings.lang)
            summary = queries.area_summary(conn, code) if queries.digits(code) and len(code) <= 15 else None
            types = conn.execute(
                "SELECT code, name_zh, name_en FROM case_types WHERE active ORDER BY sort_order"
            ).fetchall()
            query = {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items() if v}
            return area.layout(
                svc.settings,
                summary,
                [{"code": c, "name_zh": zh, "name_en": en} for c, zh, en in types],
                query,
                registry.page_data(conn, list(area.LAYERS)),
            )
    return html.Div(className="yitu-empty", children="404")


def register(app: Dash, get: Callable[[], Services]) -> None:
    @app.callback(Output("page", "children"), Input("url", "pathname"), State("url", "search"))
    def _route(pathname: str | None, search: str | None) -> html.Div:
        return render(get(), pathname, search)

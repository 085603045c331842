"""The header every page but the wall starts with: back to the wall, the title, the search box, the
page's own links, and who is signed in with the sign-out button.

One function, so the pages cannot drift apart in what their headers hold or in the classes the
stylesheet and the tests find them by (``yitu-header``, ``yitu-back``, ``yitu-signin``, ``yitu-who``).
"""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from dashboard.i18n import translator
from dashboard.search import search_box


def page_header(
    lang: str,
    title: str,
    *links: Any,
    subtitle: Any = None,
    who: str | None = None,
    who_id: str | None = None,
    signout_id: str | None = None,
    title_class: str = "yitu-title",
    back: str = "dispatch.back",
) -> html.Header:
    """The header: ``links`` come after the search box (the inbox link, say); with ``who_id`` the
    signed-in name (``who``) and the sign-out button, a form posting to /logout (``signout_id``: the
    button's id, for the pages whose tests press it)."""
    t = translator(lang)
    children: list[Any] = [dcc.Link(t(back), href="/", className="yitu-back"), html.H1(title, className=title_class)]
    if subtitle is not None:
        children.append(html.Span(subtitle, className="yitu-subtitle"))
    children += [search_box(lang), *links]
    if who_id is not None:
        label, classes = t("dispatch.signout"), "yitu-button yitu-quiet"
        signout = (
            html.Button(label, type="submit", className=classes)
            if signout_id is None
            else html.Button(label, id=signout_id, type="submit", className=classes)
        )
        children.append(
            html.Form(
                className="yitu-signin",
                action="/logout",
                method="POST",
                children=[html.Span(who, id=who_id, className="yitu-who"), signout],
            )
        )
    return html.Header(className="yitu-header", children=children)

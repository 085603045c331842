"""The search box in every page's header (``input#search``) and the dropdown of what it found.

The box is one component (:func:`search_box`) that each page puts in its header; the dropdown is
filled by callbacks/search.py from geodata/search.py. A result is a link: a case to its page
``/cases/{code}``, an area to ``/area/{code}``; Enter on a whole case code opens the case.

The dropdown is read on room screens over the shoulder of whoever typed (the wall, the dispatch
page), so it shows a case as a room screen may see it (geodata/masking.py ROOM_READER), whoever
searched: code, type, step, village and the masked description — never the parties.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from dash import dcc, html

from dashboard.i18n import translator
from geodata import masking

SNIPPET = 36  # characters of a description shown under a case
GROUPS = ("by_code", "by_party", "by_description")  # the case groups of geodata/search.py, in this order


class Ids(StrEnum):
    INPUT = "search"  # the tests' and the users' handle: input#search
    RESULTS = "search-results"


def search_box(lang: str) -> html.Div:
    """The header's search box: results appear below it as the user types (after a short pause)."""
    t = translator(lang)
    return html.Div(
        className="yitu-search",
        role="search",
        title=t("search.label"),
        children=[
            dcc.Input(
                id=Ids.INPUT,
                type="search",
                placeholder=t("search.placeholder"),
                debounce=0.3,
                maxLength=100,
                autoComplete="off",
                spellCheck=False,
                className="yitu-search-input",
            ),
            html.Div(id=Ids.RESULTS, className="yitu-search-results", role="listbox"),
        ],
    )


def _case_item(case: Mapping[str, Any], lang: str, t: Any) -> dcc.Link:
    shown = masking.case_for(masking.ROOM_READER, case)  # idempotent: masked once more for the room
    description = str(shown.get("description") or "")
    if len(description) > SNIPPET:
        description = description[: SNIPPET - 1] + "…"
    kind = case.get("type_zh" if lang == "zh-CN" else "type_en") or case.get("type_zh") or case.get("type")
    return dcc.Link(
        href=str(case["href"]),
        className="yitu-search-item",
        children=[
            html.Span(case["code"], className="yitu-search-code"),
            html.Span(f"{kind} · {t('step.' + str(case['step']))}", className="yitu-search-meta"),
            html.Span(case.get("village") or "", className="yitu-muted"),
            html.Span(description, className="yitu-search-text"),
        ],
    )


def _area_item(area: Mapping[str, Any], t: Any) -> dcc.Link:
    parent = f" · {area['parent_name']}" if area.get("parent_name") else ""
    return dcc.Link(
        href=str(area["href"]),
        className="yitu-search-item",
        children=[
            html.Span(area["name"], className="yitu-search-code"),
            html.Span(f"{t('level.' + str(area['level']))} {area['code']}{parent}", className="yitu-search-meta"),
        ],
    )


def results(found: Mapping[str, Any] | None, lang: str, problem: str | None = None) -> list[Any]:
    """The dropdown's content for one answer of geodata/search.py (empty: the dropdown hides)."""
    t = translator(lang)
    if problem:
        return [html.Div(t("search.invalid"), className="yitu-search-note")]
    if not found or not found.get("q"):
        return []
    out: list[Any] = []
    if found.get("open"):
        code = str(found["open"]).rsplit("/", 1)[-1]
        out.append(html.Div(t("search.open").format(code=code), className="yitu-search-note"))
    for key in GROUPS:
        if found.get(key):
            out.append(html.Div(t(f"search.{key}"), className="yitu-search-group"))
            out.extend(_case_item(c, lang, t) for c in found[key])
    if found.get("areas"):
        out.append(html.Div(t("search.areas"), className="yitu-search-group"))
        out.extend(_area_item(a, t) for a in found["areas"])
    if not out:
        out.append(html.Div(t("search.none").format(q=found["q"]), className="yitu-search-note"))
        if len(str(found["q"])) < 2:
            out.append(html.Div(t("search.short"), className="yitu-search-note"))
    return out

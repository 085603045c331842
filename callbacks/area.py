"""Area-page callbacks: filters ↔ URL, the server-side paged and sorted table, the CSV link.

The table shows the cases a reader may see: an area outside a scoped reader's area shows none,
and the reader's area goes into the SQL as well (``identity.who_is_asking``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Literal, TypedDict
from urllib.parse import urlencode

from dash import Dash, Input, Output, State

from dashboard.i18n import translator
from dashboard.pages.area import PAGE_SIZE, Ids
from geodata import queries
from geodata.clock import day_start, shown
from services import identity
from services.runtime import Services


class SortBy(TypedDict):
    """One entry of a DataTable's ``sort_by``."""

    column_id: str
    direction: Literal["asc", "desc"]


class Row(TypedDict):
    """One row of the area's case table (the DataTable's columns, as shown)."""

    code: str
    type: str
    step: str
    level: str
    reported_at: str
    deadline: str
    grid: str


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def query_string(step: str | None, type_: str | None, since: str | None, until: str | None) -> str:
    params = {k: v for k, v in (("step", step), ("type", type_), ("since", since), ("until", until)) if v}
    return ("?" + urlencode(params)) if params else ""


def table_page(
    svc: Services,
    code: str,
    step: str | None,
    type_: str | None,
    since: str | None,
    until: str | None,
    page: int,
    sort_by: list[SortBy],
    lang: str,
) -> tuple[list[Row], int, int]:
    """Rows of one page, the page count and the total, for the filters and sort given."""
    flt = queries.CaseFilter(
        step=step, type=type_, since=day_start(_date(since)), until=day_start(_date(until), end=True)
    )
    sort = sort_by[0]["column_id"] if sort_by else "reported_at"
    descending = (sort_by[0]["direction"] == "desc") if sort_by else True
    t = translator(lang)
    name = "type_zh" if lang == "zh-CN" else "type_en"
    who = identity.who_is_asking()
    if not who.sees_area(code):
        return [], 1, 0
    scope = identity.scope_of(who)
    with svc.pool.connection() as conn:
        total = queries.area_cases_count(conn, code, flt, scope)
        rows = queries.area_cases_page(
            conn,
            code,
            flt,
            sort=sort if sort in queries.SORTABLE else "reported_at",
            descending=descending,
            limit=PAGE_SIZE,
            offset=page * PAGE_SIZE,
            scope=scope,
        )
    data: list[Row] = [
        {
            "code": f"[{r['code']}](/cases/{r['code']})",  # a link to the case page (markdown cell)
            "type": r[name],
            "step": t(f"step.{r['step']}") + (" ⚠" if r["overdue"] else ""),
            "level": t(f"level.{r['level']}"),
            "reported_at": shown(r["reported_at"]),
            "deadline": shown(r["deadline"], empty=""),
            "grid": r["grid_name"] or r["grid"] or "",
        }
        for r in rows
    ]
    return data, max(1, -(-total // PAGE_SIZE)), total


def register(app: Dash, get: Callable[[], Services]) -> None:
    @app.callback(
        Output(Ids.TABLE, "data"),
        Output(Ids.TABLE, "page_count"),
        Output(Ids.TOTAL, "children"),
        Output(Ids.CSV, "href"),
        Output("url", "search"),
        Input(Ids.STEP, "value"),
        Input(Ids.TYPE, "value"),
        Input(Ids.SINCE, "value"),
        Input(Ids.UNTIL, "value"),
        Input(Ids.TABLE, "page_current"),
        Input(Ids.TABLE, "sort_by"),
        State(Ids.CODE, "data"),
        State("lang", "data"),
    )
    def _table(
        step: str | None,
        type_: str | None,
        since: str | None,
        until: str | None,
        page: int | None,
        sort_by: list[SortBy] | None,
        code: str,
        lang: str,
    ) -> tuple[list[Row], int, str, str, str]:
        data, pages, total = table_page(get(), code, step, type_, since, until, page or 0, sort_by or [], lang)
        qs = query_string(step, type_, since, until)
        return data, pages, translator(lang)("area.total").format(n=total), f"/api/v1/areas/{code}/cases.csv{qs}", qs

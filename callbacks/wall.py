"""Wall-screen callbacks: zoom → grid level, clicks → drill-down and cards, the numbers around.

The work is in plain module-level functions taking the services first, so tests call them
directly; ``register`` wires them to Dash. Big data never goes through a callback: they change
layer URLs and ``hideout`` only.

Who reads is ``identity.who_is_asking()`` (the principal Dash's callback runs for): a reader
scoped to an area sees its area's figures, cards and ranking only (an area outside it is shown as
its own area; a case outside it shows no card) and its banner's vans and the league's (the board,
a van's card and focus; layers/vans.py); case cards show the parties as a room screen may
see them (masking.ROOM_READER), camera links follow the reader's role (geodata/masking.py).

The numbers (tiles, charts, panel, crumbs, ranking, van board) read the replica when one serves
(services/runtime.py ``reading``; the primary's otherwise, and for a screen told of an event the
replica has not replayed: the read floor of services/layer_answers.py). A round reads its figures
together — one look in the Redis figure cache, one statement for what it lacks, one keeping
(geodata/kpi.py ``figures``) — then draws each part from them; the live hub drops that cache at each
event, and a figure, read on the replica or on the primary, is kept only if it holds every event
published that drops it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple, TypedDict
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
import psycopg
from dash import ALL, Dash, Input, NoUpdate, Output, State, ctx, dcc, html, no_update
from dash.development.base_component import Component
from dash.exceptions import PreventUpdate
from dash_svg import G, Line, Polyline, Svg, Text
from plotly.io.json import to_json_plotly

from callbacks import inbox
from callbacks.shown import FRAGMENTS, changed, digest
from dashboard.i18n import TEXTS, translator
from dashboard.layout import LiveIds
from dashboard.pages.inbox import Ids as InboxIds
from dashboard.pages.wall import (
    AREAS_REV,
    CRUMB,
    DEFAULT_PERIOD,
    LEVEL_CHIP,
    POINT,
    VAN_ROW,
    Ids,
    group_id,
    point_layer,
    switchable,
)
from geodata import areas_stats, kpi, masking, queries, workflow
from geodata.clock import CST
from layers import cameras, cases, grids, registry, vans
from layers.base import level_for_zoom
from layers.registry import Layer
from services import identity
from services.runtime import Services

GRID_LAYER = grids.LAYER.id


class Selection(TypedDict):
    """The wall screen's selection store: the area shown and the top the wall opened at (the
    banner; the league/city root when there are several banners)."""

    code: str
    banner: str


ROOT_ZOOM = 8  # at the root, zoomed out this far or more, the map shows the banners (level 1)


def grid_url(
    zoom: int | None, bounds: list[list[float]] | None, at_root: bool = False, rev: int | None = None
) -> tuple[str, int]:
    """The grid layer's URL for a view: the level follows the zoom (the banners when the wall shows
    the root, zoomed out), the box is the view padded by half its size and rounded (so small pans
    reuse the same URL); ``rev`` (the live push of a grid import) makes the layer fetch it again."""
    z = int(zoom if zoom is not None else 9)
    level = 1 if at_root and z <= ROOT_ZOOM else level_for_zoom(z)
    url = grids.LAYER.url(level=level, zoom=z)
    if bounds:
        (s, w), (n, e) = bounds
        dx, dy = (e - w) / 2, (n - s) / 2
        r = 0.05
        box = [
            max(-180, (w - dx) // r * r),
            max(-90, (s - dy) // r * r),
            min(180, ((e + dx) // r + 1) * r),
            min(90, ((n + dy) // r + 1) * r),
        ]
        url += "&bbox=" + ",".join(f"{v:.2f}" for v in box)
    if rev:
        url += f"&rev={rev}"
    return url, level


EMPTY: dict[str, Any] = {"type": "FeatureCollection", "features": []}


def switched(url: str, on: bool) -> tuple[str | None, dict[str, Any] | None]:
    """A layer switched on fetches its URL; switched off it holds no features (url and data)."""
    return (url, None) if on else (None, EMPTY)


# The case layer's query parameters the pin filters set (the rest of its URL, the box, stays).
PIN_FILTERS = ("step", "type", "level", "severity", "overdue")


def filtered_url(url: str, **filters: str | bool | None) -> str:
    """The case layer's ``url`` with the pin filters set (None or False: not filtered): the
    layer is redrawn from it, and the live push reloads that same URL (with its filters)."""
    parts = urlsplit(url)
    keep = [(k, v) for k, v in parse_qsl(parts.query) if k not in PIN_FILTERS and k != "rev"]
    chosen = [(k, "true" if v is True else str(v)) for k, v in filters.items() if k in PIN_FILTERS and v]
    return parts.path + "?" + urlencode([*keep, *chosen], safe=",")


def in_scope(code: str) -> str:
    """The area a reader may look at: ``code``, or the reader's own area when ``code`` lies outside it."""
    who = identity.who_is_asking()
    return code if who.sees_area(code) else str(who.area)


def grid_hideout(
    svc: Services, level: int, mode: str, selected: str | None, zoom: int | None, current: dict[str, Any] | None
) -> dict[str, Any]:
    hideout = dict(current or {})
    hideout["mode"] = mode
    hideout["selected"] = selected
    hideout["labels"] = level < 4 or (zoom or 0) >= 12
    if mode != "none":
        scope = identity.scope_of(identity.who_is_asking())
        with svc.pool.connection() as conn:
            hideout["stats"] = grids.stats_cached(conn, svc.redis, level, scope)
    else:
        hideout["stats"] = {}
    return hideout


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


# What the wall's numbers callback answers, and the events after which it is computed again.
NumbersAnswer = tuple[
    list[Component], list[Component], Svg, list[Component], list[Component], html.Table, list[Component], str
]
NUMBERS_LIVE = ("case.", "dispatch.", "van.", "areas.")
# The same answer as the browser receives it: each output already serialized (an orjson Fragment,
# which plotly's orjson engine — Dash's serializer — copies into the response as it is).
NumbersWire = tuple[orjson.Fragment, ...]


class _Numbers(NamedTuple):
    """A shared answer of the wall's numbers: the components, their JSON made once, and a digest of
    each output's JSON (what a screen that shows it already need not be sent again)."""

    components: NumbersAnswer
    wire: NumbersWire
    digests: tuple[str, ...] = ()


# A screen's round of the numbers: each output, or no_update where the screen shows it already, then
# the digests of what it will show (the SHOWN store).
NumbersRound = tuple[Any, ...]


def numbers_round(shared: _Numbers, shown: object) -> NumbersRound:
    """What one screen is sent of a shared answer: only the outputs whose JSON differs from what it
    shows (``shown``: the digests it was sent last, the SHOWN store; None on a page just opened).
    Every round of the live push sent every output — the van board alone a thousand components,
    117 kB for a league's 200 vans — and the browser drew them all again, though most rounds change
    a tile or two (docs/scaling.md). Nothing changed: nothing is sent (Dash answers 204)."""
    if not shared.digests:  # no JSON made here (Dash does not take fragments): everything, as before
        return (*shared.components, no_update)
    return changed(shared.wire, shared.digests, shown)


BOARD = 6  # the van board's place among the numbers' outputs
# The page's elements the numbers go into, in the order of NumbersAnswer
NUMBERS_OUTPUTS = (Ids.KPIS, Ids.TOP_TYPES, Ids.TREND, Ids.PANEL, Ids.CRUMBS, Ids.RANKING, Ids.VANS, Ids.RANKING_TITLE)


class Period(NamedTuple):
    """The span the KPIs and the ranking count: [start, end) in China time, and its name
    (month, quarter, year or dates) for the labels."""

    start: datetime
    end: datetime
    name: str

    @property
    def key(self) -> str:
        """The figures' cache key part: two screens on the same period share their figures."""
        return f"{self.start:%Y%m%d}-{self.end:%Y%m%d}"


PERIOD_YEARS = (2000, 2100)  # the dates a period may span (reports are dated since 2000)


def period_of(name: str | None, start_date: str | None = None, end_date: str | None = None) -> Period:
    """The wall's period: this month, quarter or year (China time) around today, or the days from
    ``start_date`` to ``end_date`` (both included; reversed ones swapped). Dates not given yet, or
    not dates: the default period (the year)."""
    today = datetime.now(UTC).astimezone(CST).date()
    if name == "dates":
        try:
            first, last = date.fromisoformat(str(start_date)[:10]), date.fromisoformat(str(end_date)[:10])
        except ValueError:
            return period_of(DEFAULT_PERIOD)
        first, last = min(first, last), max(first, last)
        if first.year < PERIOD_YEARS[0] or last.year > PERIOD_YEARS[1]:  # 9999-12-31 + 1 day overflowed
            return period_of(DEFAULT_PERIOD)
        start = datetime.combine(first, datetime.min.time(), tzinfo=CST)
        return Period(start, datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=CST), "dates")
    if name not in ("month", "quarter", "year"):
        name = DEFAULT_PERIOD
    start, end = areas_stats.period_bounds(name, today)
    return Period(start, end, name)


def period_label(period: Period, t: Callable[[str], str]) -> str:
    """本月 / 本季度 / 本年 or the dates, for the tiles' and the ranking's titles."""
    if period.name != "dates":
        return t(f"period.this_{period.name}")
    last = (period.end - timedelta(days=1)).date()
    return f"{period.start:%m-%d}~{last:%m-%d}"


def kpi_tiles(svc: Services, code: str, lang: str, period: Period | None = None) -> list[Component]:
    """The KPI tiles: resolved, rate and village share of ``period`` (default: this year), the
    rest as of now; the overdue-by-level chips filter the pins (a click: callbacks below)."""
    period = period or period_of(DEFAULT_PERIOD)
    return _tiles_view(_read(svc, _tiles_wanted(code, period)), code, lang, period)


# Each figure's field in the figures' cache (what a part wants and what its view reads), or its
# name in a round's reads when it is read every time (the area, its ancestors, the van board).
def _tiles_key(code: str, period: Period) -> str:
    return f"tiles:{code}:{period.key}"


def _types_key(code: str, period: Period) -> str:
    return f"types:{code}:{period.key}"


def _trend_key(code: str) -> str:
    return f"trend:{code}"


def _ranking_key(parent: str, period: Period) -> str:
    return f"ranking:{parent}:{period.key}"


def _steps_key(code: str) -> str:
    return f"steps:{code}"


def _ancestors_key(code: str) -> str:
    return f"ancestors:{code}"


def _area_key(code: str) -> str:
    return f"area:{code}"


BOARD_KEY = "board"


def _tiles_wanted(code: str, period: Period) -> Wanted:
    return {_tiles_key(code, period): kpi.tiles_figure(code, period.start, period.end)}


def _tiles_view(figs: Figures, code: str, lang: str, period: Period) -> list[Component]:
    t = translator(lang)
    k = figs[_tiles_key(code, period)]
    overdue_total = sum(k["overdue"].values())
    p = period_label(period, t)
    tiles = [
        ("new_today", k["new_today"], "yitu-kpi-blue", t("kpi.new_today")),
        ("in_progress", k["in_progress"], "yitu-kpi-violet", t("kpi.in_progress")),
        ("overdue", overdue_total, "yitu-kpi-red" if overdue_total else "yitu-kpi-green", t("kpi.overdue")),
        ("open_major", k["open_major"], "yitu-kpi-red" if k["open_major"] else "yitu-kpi-green", t("kpi.open_major")),
        ("resolved", k["resolved_ytd"], "yitu-kpi-green", t("kpi.resolved_in").format(p=p)),
        ("rate", _pct(k["rate_ytd"]), "yitu-kpi-green", t("kpi.rate_in").format(p=p)),
        ("village_share", _pct(k["village_share"]), "yitu-kpi-cyan", t("kpi.village_share")),
        (
            "open_group",
            k["open_group"],
            "yitu-kpi-orange" if k["open_group"] else "yitu-kpi-green",
            t("kpi.open_group"),
        ),
    ]
    boxes = [
        html.Div(
            className=f"yitu-kpi {cls}",
            id=f"kpi-{key}",
            children=[html.Div(str(value), className="yitu-kpi-value"), html.Div(label, className="yitu-kpi-label")],
        )
        for key, value, cls, label in tiles
    ]
    by_level = html.Div(
        className="yitu-kpi-levels",
        children=[
            html.Span(t("kpi.overdue_by_level"), className="yitu-kpi-levels-title"),
            *[
                html.Button(
                    f"{t(f'level.{lv}')} {n}",
                    id={"type": LEVEL_CHIP, "level": lv},
                    n_clicks=0,
                    title=t("filter.by_level"),
                    className="yitu-chip yitu-chip-button" + (" yitu-chip-red" if n else ""),
                )
                for lv, n in k["overdue"].items()
            ],
        ],
    )
    return [*boxes, by_level]


def top_types_chart(svc: Services, code: str, lang: str, period: Period | None = None) -> list[Component]:
    """The ten most frequent types of the cases reported in ``period`` (default: this year), under
    a title naming the period, as the tiles and the ranking do."""
    period = period or period_of(DEFAULT_PERIOD)
    return _types_view(_read(svc, _types_wanted(code, period)), code, lang, period)


def _types_wanted(code: str, period: Period) -> Wanted:
    return {_types_key(code, period): kpi.top_types_figure(code, period.start.date(), period.end.date())}


def _types_view(figs: Figures, code: str, lang: str, period: Period) -> list[Component]:
    t = translator(lang)
    rows = figs[_types_key(code, period)]
    title = html.H3(t("chart.top_types").format(p=period_label(period, t)))
    if not rows:
        return [title, html.Div("—", className="yitu-muted")]
    top = max(r["n"] for r in rows)
    name = "name_zh" if lang == "zh-CN" else "name_en"
    return [title] + [
        html.Div(
            className="yitu-bar",
            children=[
                html.Span(r[name], className="yitu-bar-label"),
                html.Span(
                    className="yitu-bar-track",
                    children=html.Span(className="yitu-bar-fill", style={"width": f"{100 * r['n'] / top:.1f}%"}),
                ),
                html.Span(str(r["n"]), className="yitu-bar-value"),
            ],
        )
        for r in rows
    ]


def trend_chart(svc: Services, code: str, lang: str) -> Svg:
    return _trend_view(_read(svc, _trend_wanted(code)), code, lang)


def _trend_wanted(code: str) -> Wanted:
    return {_trend_key(code): kpi.trend_figure(code, 30)}


def _trend_view(figs: Figures, code: str, lang: str) -> Svg:
    t = translator(lang)
    rows = figs[_trend_key(code)]
    w, h, pad = 300.0, 110.0, 14.0
    top = max([1] + [max(r["reported"], r["resolved"]) for r in rows])

    def points(key: str) -> str:
        n = max(1, len(rows) - 1)
        return " ".join(
            f"{pad + i * (w - 2 * pad) / n:.1f},{h - pad - r[key] * (h - 2 * pad) / top:.1f}"
            for i, r in enumerate(rows)
        )

    return Svg(
        viewBox=f"0 0 {w:.0f} {h:.0f}",
        className="yitu-trend",
        children=[
            G([Line(x1=pad, x2=w - pad, y1=h - pad, y2=h - pad, stroke="#1f3b6e")]),
            Polyline(points=points("reported"), fill="none", stroke="#3fb6ff", strokeWidth=2),
            Polyline(points=points("resolved"), fill="none", stroke="#3ddc84", strokeWidth=2),
            Text(f"{t('chart.reported')} ━", x=pad, y=11, fill="#3fb6ff", fontSize=9),
            Text(f"{t('chart.resolved')} ━", x=pad + 60, y=11, fill="#3ddc84", fontSize=9),
            Text(str(top), x=w - pad, y=pad, fill="#7a8599", fontSize=8, textAnchor="end"),
        ],
    )


def ranking_parent(code: str) -> str:
    """Whose children the wall ranks while it shows ``code``: the root ranks its banners; a banner,
    and anything inside it, its towns (``code``'s banner: the first 6 digits)."""
    return code if queries.level_of(code) == 0 else code[:6]


def ranking_title(lang: str, period: Period | None = None, parent: str | None = None) -> str:
    t = translator(lang)
    key = "ranking.title_in_banners" if parent is not None and queries.level_of(parent) == 0 else "ranking.title_in"
    return t(key).format(p=period_label(period or period_of(DEFAULT_PERIOD), t))


def ranking_href(code: str) -> str:
    """Where a ranking row leads: a banner drills the wall down into it (``/?area=CODE``); a town
    opens its area page."""
    return f"/?area={code}" if queries.level_of(code) == 1 else f"/area/{code}"


def ranking_table(svc: Services, banner: str, lang: str, period: Period | None = None) -> html.Table:
    """The ranking of the children of ``banner`` (a scoped reader: of its own area) over ``period``
    (default: this year): the towns of a banner, the banners of the league/city root. A row opens
    its area (``data-href``: yitu_wall.js follows a click anywhere on the row; the name is a plain
    link too): a town's page, or the wall drilled down into a banner."""
    parent = in_scope(banner)
    period = period or period_of(DEFAULT_PERIOD)
    return _ranking_view(_read(svc, _ranking_wanted(parent, period)), parent, lang, period)


def _ranking_wanted(parent: str, period: Period) -> Wanted:
    figure = kpi.town_ranking_figure(parent, period.start, period.end)
    return {} if figure is None else {_ranking_key(parent, period): figure}


def _ranking_view(figs: Figures, parent: str, lang: str, period: Period) -> html.Table:
    t = translator(lang)
    rows = figs.get(_ranking_key(parent, period), [])  # none: a grid cell ranks no children
    head = html.Tr(
        [
            html.Th("#"),
            html.Th(t(f"level.{queries.level_of(parent) + 1}")),
            html.Th(t("ranking.score")),
            html.Th(t("ranking.rate")),
            html.Th(t("ranking.overdue")),
        ]
    )
    body = [
        _linked_row(
            [
                html.Td(i),
                html.Td(html.A(r["name"], href=ranking_href(r["code"]), className="yitu-row-name")),
                html.Td(f"{float(r['score']):.1f}"),
                html.Td(_pct(r["resolved"] / r["reported"]) if r["reported"] else "—"),
                html.Td(r["overdue"]),
            ],
            ranking_href(r["code"]),
        )
        for i, r in enumerate(rows, start=1)
    ]
    return html.Table(className="yitu-table", children=[html.Thead(head), html.Tbody(body)])


def van_board(
    svc: Services, lang: str, row_type: str | None = None, who: identity.Principal | None = None
) -> list[Component]:
    """The vans' board for its reader (``who``, else whoever the callback runs for): the vans of the
    reader's banner and the league's; with ``row_type`` each row is a button of that
    pattern-matching type (the wall's: a click focuses the van on the map)."""
    return [component for component, _ in van_board_rows(svc, lang, row_type, who)]


def van_board_rows(
    svc: Services, lang: str, row_type: str | None = None, who: identity.Principal | None = None
) -> list[tuple[Component, str]]:
    """:func:`van_board`, each row with its JSON as Dash serializes it (the wall's numbers send the
    board as the rows' JSON joined: a league's 200 vans took 13 ms to build and 16–22 ms to serialize
    in every round of the live push, docs/scaling.md). A row is made again only when what it shows
    changes (its van's name, status or kilometre; the language, the row's type)."""
    scope = identity.scope_of(who or identity.who_is_asking())
    return _board_view(_read(svc, _board_wanted(svc, scope)), lang, row_type)


def _board_wanted(svc: Services, scope: str | None) -> Wanted:
    return {BOARD_KEY: vans.board_figure(svc.settings.van_offline_seconds, scope)}


def _board_view(figs: Figures, lang: str, row_type: str | None) -> list[tuple[Component, str]]:
    t = translator(lang)
    rows = figs[BOARD_KEY]
    return [_van_row(r["id"], r["name"], r["status"], f"{r['odometer_km']:.0f}", lang, row_type, t) for r in rows]


_ROWS: dict[tuple[str, ...], tuple[Component, str]] = {}  # a board row, as shown: made once (read-only)
ROWS_KEPT = 4096  # rows kept: dropped all at once past this (a few rounds of every van's kilometre)


def _van_row(
    van: str, name: str, status: str, km: str, lang: str, row_type: str | None, t: Callable[[str], str]
) -> tuple[Component, str]:
    key = (van, name, status, km, lang, row_type or "")
    kept = _ROWS.get(key)
    if kept is not None:
        return kept
    cells = [
        html.Span(van, className="yitu-van-id"),
        html.Span(name),
        html.Span(t(f"van.{status}"), className="yitu-van-status"),
        html.Span(f"{km} km", className="yitu-muted"),
    ]
    cls = f"yitu-van-row yitu-van-{status}"
    row: Component
    if row_type:
        # the click is read by one listener on the document (assets/yitu_wall.js): a row drawn
        # again by the live push while it is clicked keeps the click
        data: dict[str, Any] = {"data-van": van}
        row = html.Button(
            cells, id={"type": row_type, "van": van}, className=cls + " yitu-row-link", title=name, **data
        )
    else:
        row = html.Div(cells, className=cls)
    made = (row, to_json_plotly(row))
    if len(_ROWS) >= ROWS_KEPT:
        _ROWS.clear()  # threads may race here: at worst a row is made twice
    _ROWS[key] = made
    return made


def _linked_row(cells: list[Component], href: str) -> html.Tr:
    """A table row that opens ``href`` when clicked anywhere (yitu_wall.js reads ``data-href``)."""
    row = html.Tr(cells, className="yitu-row-link")
    setattr(row, "data-href", href)  # a data-* attribute: Dash hands it to the DOM as it is
    return row


def crumbs(svc: Services, code: str, lang: str) -> list[Component]:
    return _crumbs_view(_read(svc, _crumbs_wanted(code)), code)


def _crumbs_wanted(code: str) -> Wanted:
    return {_ancestors_key(code): queries.areas_figure("area_ancestors", code), **_area_wanted(code)}


def _area_wanted(code: str) -> Wanted:
    return {_area_key(code): queries.area_summary_figure(code)}


def _crumbs_view(figs: Figures, code: str) -> list[Component]:
    who = identity.who_is_asking()
    chain = [a for a in reversed(figs[_ancestors_key(code)]) if who.sees_area(a["code"])]
    here = figs[_area_key(code)]
    items = [*chain, here] if here else chain
    out: list[Component] = []
    for i, a in enumerate(items):
        if i:
            out.append(html.Span("›", className="yitu-crumb-sep"))
        out.append(html.Button(a["name"], id={"type": CRUMB, "code": a["code"]}, className="yitu-crumb", n_clicks=0))
    return out


def area_panel(svc: Services, code: str, lang: str) -> list[Component]:
    """The selected area: name, code, level, its figures (the year's rate, as the tiles of the
    default period: one figure for both) and cases by step, a link to its page."""
    year = period_of(DEFAULT_PERIOD)
    return _panel_view(_read(svc, _panel_wanted(code, year)), code, lang, year)


def _panel_wanted(code: str, year: Period) -> Wanted:
    """``year``: the default period, named once for the reads and the view (a round made across
    midnight on 1 January would look for the new year's tiles among the old year's)."""
    return {**_area_wanted(code), **_tiles_wanted(code, year), _steps_key(code): kpi.steps_figure(code)}


def _panel_view(figs: Figures, code: str, lang: str, year: Period) -> list[Component]:
    t = translator(lang)
    area = figs[_area_key(code)]
    if area is None:
        return [html.P(t("panel.hint"), className="yitu-muted")]
    k = figs[_tiles_key(code, year)]
    steps = figs[_steps_key(code)]
    return [
        html.H3(t("panel.area")),
        html.Div(area["name"], className="yitu-panel-name", id="panel-name"),
        html.Div(
            f"{t('panel.code')} {area['code']} · {t('panel.level')} {t('level.' + str(area['level']))}",
            className="yitu-muted",
        ),
        html.Div(
            className="yitu-panel-figs",
            children=[
                html.Span(f"{t('kpi.rate')} {_pct(k['rate_ytd'])}"),
                html.Span(
                    f"{t('kpi.overdue')} {sum(k['overdue'].values())}",
                    className="yitu-red" if sum(k["overdue"].values()) else "",
                ),
                html.Span(f"{t('kpi.in_progress')} {k['in_progress']}"),
            ],
        ),
        html.H4(t("panel.by_step")),
        html.Div(
            className="yitu-chips",
            children=[
                html.Span(f"{t(f'step.{s}')} {steps.get(s, 0)}", className=f"yitu-chip yitu-step-{s}")
                for s in ("reported", "accepted", "dispatched", "handling", "closed", "evaluated")
            ],
        ),
        # (its types are the left column's chart, which follows the same area)
        html.A(t("panel.open_page"), href=f"/area/{area['code']}", className="yitu-link", id="panel-link"),
    ]


def _case_view(c: dict[str, Any], lang: str) -> list[Component]:
    t = translator(lang)
    name = "type_zh" if lang == "zh-CN" else "type_en"
    return [
        html.H3([f"{t('case.title')} ", dcc.Link(c["code"], href=f"/cases/{c['code']}", className="yitu-case-link")]),
        html.Div(
            className="yitu-chips",
            children=[
                html.Span(c[name], className="yitu-chip"),
                html.Span(t(f"step.{c['step']}"), className=f"yitu-chip yitu-step-{c['step']}"),
                html.Span(t(f"level.{c['level']}"), className="yitu-chip"),
                *([html.Span(t("case.overdue"), className="yitu-chip yitu-chip-red")] if c["overdue"] else []),
            ],
        ),
        *_triage_line(c, t),
        html.Div(f"{t('case.reported')} {c['reported_at']:%Y-%m-%d %H:%M}", className="yitu-muted"),
        html.Div(f"{t('case.deadline')} {c['deadline']:%Y-%m-%d %H:%M}" if c["deadline"] else ""),
        html.Div(f"{t('case.grid')} {c['grid_name'] or '—'} ({c['grid_code'] or '—'})"),
        html.Div(
            f"{t('case.parties')} " + masking.parties_line(masking.ROOM_READER, c["parties"]), className="yitu-parties"
        ),
        *_attachments_line(c, t),
    ]


def _triage_line(c: dict[str, Any], t: Callable[[str], str]) -> list[Component]:
    """The triage at intake: severity, 群体性, people involved, the sum at stake (what was given)."""
    chips: list[Component] = []
    if c.get("severity"):
        major = c["severity"] == "major"
        chips.append(
            html.Span(
                f"{t('case.severity')} {t('severity.' + c['severity'])}",
                className="yitu-chip yitu-severity" + (" yitu-chip-red" if major else ""),
            )
        )
    if c.get("group"):
        chips.append(html.Span(t("case.group"), className="yitu-chip yitu-chip-orange yitu-group"))
    if c.get("people_involved") is not None:
        chips.append(html.Span(f"{t('case.people')} {c['people_involved']}", className="yitu-chip"))
    if c.get("amount_yuan") is not None:
        chips.append(
            html.Span(f"{t('case.amount')} {float(c['amount_yuan']):,.2f} {t('case.yuan')}", className="yitu-chip")
        )
    return [html.Div(className="yitu-chips yitu-triage", children=chips)] if chips else []


def _attachments_line(c: dict[str, Any], t: Callable[[str], str]) -> list[Component]:
    """How many photos and documents the case has: a room page's readers see that they exist, never
    their content (geodata/masking.py: wall screens and viewers get the list, not the files)."""
    n = int(c.get("attachments") or 0)
    if not n:
        return []
    images = int(c.get("images") or 0)
    text = t("case.attachments").format(n=n, images=images, documents=n - images)
    return [html.Div(text, className="yitu-muted yitu-attachments")]


def _camera_view(c: dict[str, Any], lang: str) -> list[Component]:
    """A camera's card; its stream link only for the roles that get one (masking.stream_url_for)."""
    t = translator(lang)
    url = masking.stream_url_for(identity.reader_role(identity.who_is_asking()), c.get("stream_url"))
    return [
        html.H3(f"{t('camera.title')} {c['name']}"),
        html.Div(f"{c['device_code']} · {t('camera.' + str(c['kind']))} · {t('camera.' + str(c['status']))}"),
        html.Div(c["area_code"] or "", className="yitu-muted"),
        *([html.A(t("camera.stream"), href=url, className="yitu-link", target="_blank")] if url else []),
    ]


def _van_view(row: dict[str, Any], lang: str) -> list[Component]:
    t = translator(lang)
    return [
        html.H3(f"{t('van.title')} {row['id']} · {row['name']}"),
        html.Div(f"{t('van.' + str(row['status']))} · {row['plate'] or ''}"),
        html.Div(f"{row['odometer_km']:.0f} km · {row['cases_mediated']}", className="yitu-muted"),
    ]


def feature_view(layer: Layer, data: dict[str, Any], lang: str) -> list[Component]:
    """The card of a layer with no view of its own: its name, the feature's name, its other fields."""
    t = translator(lang)
    title = data.get("name") or data.get("code") or data.get("id") or ""
    return [
        html.H3(f"{t(f'layer.{layer.name}')} {title}"),
        *[html.Div(f"{k} {v}", className="yitu-muted") for k, v in data.items() if k != "name" and v is not None],
    ]


# How each layer's card looks, by layer name; a layer not here gets ``feature_view``.
CARD_VIEWS: dict[str, Callable[[dict[str, Any], str], list[Component]]] = {
    cases.LAYER.name: _case_view,
    cameras.LAYER.name: _camera_view,
    vans.LAYER.name: _van_view,
}


def case_card(svc: Services, code: str, lang: str, who: identity.Principal | None = None) -> list[Component]:
    """A case's card on a room page (the wall, the dispatch page), for its reader (``who``, else
    whoever the callback runs for): nothing for a case outside the reader's area, and the parties
    as a room screen may see them whoever signed in (masking.ROOM_READER: visitors read these
    pages over the reader's shoulder)."""
    who = who or identity.who_is_asking()
    with svc.pool.connection() as conn:
        c = cases.card(conn, code, masking.ROOM_READER, identity.scope_of(who))
    return _case_view(c, lang) if c else []


def detail_for(svc: Services, layer_id: str, props: dict[str, Any], lang: str) -> list[Component] | NoUpdate:
    """The card for a clicked feature, as its layer declares it (clusters just zoom); a case's
    card as the reader may see it."""
    layer = registry.by_id(layer_id)
    if props.get("cluster") or layer is None or layer.card is None:
        return no_update
    if layer.name == cases.LAYER.name:
        return case_card(svc, str(props.get("code") or ""), lang) or no_update
    scope = identity.scope_of(identity.who_is_asking())
    with svc.pool.connection() as conn:
        data = layer.card(conn, props, {**layer.configured(svc.settings), "scope": scope})
    if data is None:
        return no_update
    view = CARD_VIEWS.get(layer.name)
    return view(data, lang) if view else feature_view(layer, data, lang)


def case_types(conn: psycopg.Connection, lang: str) -> list[dict[str, str]]:
    """The pin filter's choice of types: the active case types, by their name in ``lang``."""
    name = "name_zh" if lang == "zh-CN" else "name_en"
    rows = conn.execute(
        "SELECT code, name_zh, name_en FROM case_types WHERE active ORDER BY sort_order, code"
    ).fetchall()
    return [{"label": r[1] if name == "name_zh" else r[2], "value": r[0]} for r in rows]


def van_focus(svc: Services, van: str, lang: str) -> tuple[dict[str, Any] | NoUpdate, list[Component] | NoUpdate]:
    """A click on a van's row: the map flies to where the van is and its card shows (a van
    without a fix yet only shows its card, saying so)."""
    t = translator(lang)
    scope = identity.scope_of(identity.who_is_asking())  # another banner's van: nothing to fly to
    with svc.pool.connection() as conn:
        row = next(iter(vans.board(conn, svc.settings.van_offline_seconds, scope, van)), None)
    if row is None:
        return no_update, no_update
    card = _van_view(row, lang)
    if row["lon"] is None:
        return no_update, [*card, html.Div(t("van.no_position"), className="yitu-muted")]
    return {"center": [row["lat"], row["lon"]], "zoom": 13, "transition": "flyTo"}, card


def fly_to(svc: Services, code: str) -> dict[str, Any] | None:
    with svc.pool.connection() as conn:
        area = queries.area_summary(conn, code)
    if area is None:
        return None
    minx, miny, maxx, maxy = area["bounds"]
    # set at once, not flown: a flight places every open label (the grid's area names) again at each
    # of its frames — 2.7 s of a village drill-down on the league (docs/performance.md)
    return {"bounds": [[miny, minx], [maxy, maxx]], "transition": "fitBounds", "options": {"animate": False}}


def numbers(svc: Services, code: str, lang: str, period: Period, rev: int | None) -> NumbersAnswer:
    """The wall's numbers for ``code`` (the tiles, charts, panel, crumbs, ranking, van board), asked
    for after the event ``rev`` (its outbox id; None: not after a particular event). The screens
    showing the same area to readers of the same scope, told of the same event, share one answer
    (services/layer_answers.py, as the map's layers): ten screens refreshing after a batch made
    the figures ten times, the largest cost of the push after the pins (docs/scaling.md)."""
    return _shared_numbers(svc, code, lang, period, rev).components


def numbers_wire(svc: Services, code: str, lang: str, period: Period, rev: int | None) -> NumbersWire | NumbersAnswer:
    """:func:`numbers` as the callback sends it: serialized once per shared answer. Dash serialized
    each screen's copy of the same answer again (the van board alone is a thousand components): a
    tenth of the time an app process held the GIL under the mix (docs/scaling.md)."""
    shared = _shared_numbers(svc, code, lang, period, rev)
    return shared.wire if FRAGMENTS else shared.components


def numbers_for(svc: Services, code: str, lang: str, period: Period, rev: int | None, shown: object) -> NumbersRound:
    """The callback's answer to a screen that shows ``shown`` (:func:`numbers_round`)."""
    return numbers_round(_shared_numbers(svc, code, lang, period, rev), shown)


# What a part of the numbers reads (field in the figures' cache, or a name for what is read every
# time → its figure), and what the reads gave (the same keys → the figures).
Wanted = dict[str, queries.Figure]
Figures = dict[str, Any]


def _read(svc: Services, wanted: Wanted, conn: psycopg.Connection[Any] | None = None) -> Figures:
    """The figures of ``wanted`` through the figures' cache: one look in Redis, one statement for
    the rest, one keeping (geodata/kpi.py ``figures``); on ``conn``, else on a connection of the
    primary's pool (a part called alone: the dispatch page's board, tests)."""
    if conn is not None:
        return kpi.figures(svc.redis, conn, wanted)
    with svc.pool.connection() as own:
        return kpi.figures(svc.redis, own, wanted)


def _shared_numbers(svc: Services, code: str, lang: str, period: Period, rev: int | None) -> _Numbers:
    def compute() -> _Numbers:
        parent = in_scope(ranking_parent(code))
        scope = identity.scope_of(identity.who_is_asking())
        year = period_of(DEFAULT_PERIOD)
        wanted = {
            **_tiles_wanted(code, period),
            **_types_wanted(code, period),
            **_trend_wanted(code),
            **_panel_wanted(code, year),
            **_crumbs_wanted(code),
            **_ranking_wanted(parent, period),
            **_board_wanted(svc, scope),
        }
        with svc.reading() as conn:  # the replica's when it serves (inside the answer's read floor)
            figs = _read(svc, wanted, conn)  # the round's reads together, the parts drawn from them
        return made(figs, parent, year)

    def made(figs: Figures, parent: str, year: Period) -> _Numbers:
        board = _board_view(figs, lang, VAN_ROW)
        components: NumbersAnswer = (
            _tiles_view(figs, code, lang, period),
            _types_view(figs, code, lang, period),
            _trend_view(figs, code, lang),
            _panel_view(figs, code, lang, year),
            _crumbs_view(figs, code),
            _ranking_view(figs, parent, lang, period),
            [row for row, _ in board],  # BOARD
            ranking_title(lang, period, ranking_parent(code)),
        )
        if not FRAGMENTS:
            return _Numbers(components, ())
        rows = orjson.Fragment("[" + ",".join(text for _, text in board) + "]")  # the rows' JSON, kept
        wire = tuple(rows if i == BOARD else orjson.Fragment(to_json_plotly(c)) for i, c in enumerate(components))
        return _Numbers(components, wire, tuple(digest(w) for w in wire))

    parts = {
        "code": code,
        "scope": identity.scope_of(identity.who_is_asking()),
        "period": period.key,
        "name": period.name,
        "lang": lang,
    }
    value, _ = svc.layer_answers.answer(svc.redis, "wall-numbers", NUMBERS_LIVE, parts, compute, rev)
    answer: _Numbers = value
    return answer


class NumbersView(NamedTuple):
    """What a wall page shows of the numbers, as its view store says (``LiveIds.VIEW``): the area,
    the period, the language, and the digests of the outputs it shows (the SHOWN store)."""

    key: list[str | None]  # [area, period, first day, last day, language] as the page wrote them
    code: str
    period: Period
    lang: str
    shown: object


VIEW_FIELD_MAX = 40  # no value the page writes in its view is longer


def view_of(data: object) -> NumbersView | None:
    """The view a page's store holds, or None: not a wall page (the store is empty on the others),
    or values that are not what the page writes (nothing is pushed to it; the page's own callback
    still answers it)."""
    if not isinstance(data, dict):
        return None
    key = data.get("key")
    if not isinstance(key, list) or len(key) != 5:
        return None
    if not all(v is None or (isinstance(v, str) and len(v) <= VIEW_FIELD_MAX) for v in key):
        return None
    code, period_name, start, end, lang = key
    if code is None or lang not in TEXTS:
        return None
    try:
        queries.level_of(code)
    except ValueError:
        return None
    return NumbersView(key, code, period_of(period_name, start, end), lang, data.get("shown"))


def numbers_push(svc: Services, view: NumbersView, rev: int | None) -> dict[str, Any]:
    """One round of a wall screen's numbers as its live push sends them (callbacks/live.py).

    The push used to bump a store, and each page then asked for its numbers and its warnings: two
    callbacks a round and screen, each a request through nginx and the app's front, which under a
    centre's load took longer than the figures themselves (docs/scaling.md). Now the push computes
    the round where it runs — the shared answer of the screens of the same area, scope and period
    (:func:`_shared_numbers`) — and sends each screen what changed since what its view says it shows,
    with the view it was made for: the page applies it only while it still shows that view (a click
    on another area meanwhile is answered by the page's own callback, which sends every part). The
    warnings badge (a few lines) goes every round: its time left moves without an event, and a digest
    kept here would not know what the page dropped."""
    code = in_scope(view.code)
    shared = _shared_numbers(svc, code, view.lang, view.period, rev)
    try:
        *parts, shown = numbers_round(shared, view.shown)
    except PreventUpdate:
        parts, shown = [no_update] * len(shared.components), view.shown
    return {
        "key": view.key,
        "parts": [None if p is no_update else p for p in parts],
        "shown": None if shown is no_update else shown,  # no digests where Dash takes no fragments
        "warnings": _shared_badge(svc, view, rev),
    }


WARNINGS_LIVE = ("case.",)  # a warning starts or ends with its case's events (case.warning, case.changed)


def _shared_badge(svc: Services, view: NumbersView, rev: int | None) -> orjson.Fragment:
    """The warnings badge of a pushed round, made once for the screens of the same area, reader's scope
    and language told of the same event, as the numbers (its time left at most services/layer_answers.py
    ``TTL_S`` old): each screen's own query was a tenth of a round's time."""
    who = identity.who_is_asking()

    def compute() -> orjson.Fragment:
        return orjson.Fragment(to_json_plotly(inbox.wall_view(svc, who, view.lang, area=view.code)))

    parts = {"area": view.code, "scope": identity.scope_of(who), "lang": view.lang}
    value, _ = svc.layer_answers.answer(svc.redis, "wall-warnings", WARNINGS_LIVE, parts, compute, rev)
    badge: orjson.Fragment = value
    return badge


def pushed_round(svc: Services, data: object, rev: int | None) -> dict[str, Any] | None:
    """:func:`numbers_push` for the view a page's store holds (``data``, as the page sent it): nothing
    for a page that is not the wall or says nothing it could have written (:func:`view_of`)."""
    view = view_of(data)
    return None if view is None else numbers_push(svc, view, rev)


def register(app: Dash, get: Callable[[], Services]) -> None:
    """Wire the wall screen's callbacks; ``get`` returns this process's services."""

    @app.callback(
        Output(GRID_LAYER, "url"),
        Output(GRID_LAYER, "data"),
        Output(GRID_LAYER, "hideout"),
        Input(Ids.MAP, "zoom"),
        Input(Ids.MAP, "bounds"),
        Input(Ids.MODE, "value"),
        Input(Ids.SELECTED, "data"),
        Input(Ids.LAYERS, "value"),
        Input(AREAS_REV, "data"),  # the live push of a grid import: the areas changed, fetch again
        State(GRID_LAYER, "hideout"),
    )
    def _grid(
        zoom: int | None,
        bounds: list[list[float]] | None,
        mode: str | None,
        selected: Selection | None,
        shown: list[str] | None,
        rev: int | None,
        hideout: dict[str, Any] | None,
    ) -> tuple[str | NoUpdate | None, dict[str, Any] | NoUpdate | None, dict[str, Any]]:
        code = selected["code"] if selected else None
        url, level = grid_url(zoom, bounds, code is not None and queries.level_of(in_scope(code)) == 0, rev)
        hideout = grid_hideout(get(), level, mode or "none", code, zoom, hideout)
        if [t["prop_id"] for t in ctx.triggered] == [f"{Ids.SELECTED}.data"]:
            # A drill-down: _fly sets the map on the area at once, and its new zoom and bounds call
            # this again; a grid fetched now for the view being left would be thrown away (a
            # league's banner drill-down fetched the root's towns first).
            return no_update, no_update, hideout
        layer_url, data = switched(url, grids.LAYER.name in (shown or []))
        return layer_url, data, hideout

    others = switchable()  # the registry's wall layers as this app was made

    @app.callback(
        [Output(group_id(layer.id), "children") for layer in others],
        Input(Ids.LAYERS, "value"),
        State(Ids.URLS, "data"),
        State(Ids.HIDEOUTS, "data"),
        prevent_initial_call=True,
    )
    def _switch(
        shown: list[str] | None, urls: dict[str, str], hideouts: dict[str, dict[str, Any]]
    ) -> list[list[Component]]:
        return [
            [point_layer(layer.id, urls[layer.id], hideouts[layer.id])] if layer.name in (shown or []) else []
            for layer in others
        ]

    @app.callback(
        Output(Ids.SELECTED, "data"),
        Input(GRID_LAYER, "clickData"),
        Input({"type": CRUMB, "code": ALL}, "n_clicks"),
        Input(Ids.DRILL, "data"),
        State(Ids.SELECTED, "data"),
        prevent_initial_call=True,
    )
    def _select(
        click: dict[str, Any] | None, _crumbs: list[int | None], drill: dict[str, Any] | None, selected: Selection
    ) -> Selection | NoUpdate:
        trig = ctx.triggered_id
        if trig == Ids.DRILL:  # a banner's ranking row, drilled into on the page (no page load)
            code = (drill or {}).get("code")
            return {**selected, "code": code} if isinstance(code, str) and queries.digits(code) else no_update
        if isinstance(trig, dict) and trig.get("type") == CRUMB:
            if not ctx.triggered[0]["value"]:  # a re-rendered crumb (n_clicks 0), not a click
                return no_update
            return {**selected, "code": trig["code"]}
        if click and click.get("properties", {}).get("code"):
            return {**selected, "code": click["properties"]["code"]}
        return no_update

    # What the numbers are of: the area, the period and its dates (the page's callback and its view)
    chosen = [
        Input(Ids.SELECTED, "data"),
        Input(Ids.PERIOD, "value"),
        Input(Ids.PERIOD_DATES, "start_date"),
        Input(Ids.PERIOD_DATES, "end_date"),
    ]

    @app.callback(
        [Output(i, "children") for i in NUMBERS_OUTPUTS],
        Output(Ids.SHOWN, "data"),
        *chosen,
        State("lang", "data"),
        State(LiveIds.EVENTS, "data"),
    )
    def _numbers(
        selected: Selection,
        period_name: str | None,
        start_date: str | None,
        end_date: str | None,
        lang: str,
        batch: object,
    ) -> NumbersRound:
        """The numbers of the area and period the page chose (opening, a click, a period), read after
        the newest event the page was told of (``batch``: the last live batch): every part and its
        digest — a pushed round may land while this answer travels, so it says all the page will
        show, never "as before". The live rounds after that come by the push (:func:`numbers_push`)."""
        upto = batch.get("upto") if isinstance(batch, dict) and not batch.get("resync") else None
        period = period_of(period_name, start_date, end_date)
        code = in_scope(selected["code"])
        return numbers_for(get(), code, lang, period, upto if isinstance(upto, int) else None, None)

    # What the live push needs to send this page its numbers: the view it shows (the frame's store,
    # emptied when the page is left: callbacks/live.py), and a pushed round applied while the page
    # still shows the view it was made for (yitu_map.js yitu.live.numbers).
    app.clientside_callback(
        "function(s, p, a, b, shown, lang) { return window.yitu.live.numbersView(s, p, a, b, shown, lang); }",
        Output(LiveIds.VIEW, "data", allow_duplicate=True),
        *chosen,
        Input(Ids.SHOWN, "data"),
        State("lang", "data"),
        prevent_initial_call="initial_duplicate",
    )
    app.clientside_callback(
        "function(push, view, shown) { return window.yitu.live.numbers(push, view, shown); }",
        [Output(i, "children", allow_duplicate=True) for i in NUMBERS_OUTPUTS],
        Output(InboxIds.WALL_WARNINGS, "children", allow_duplicate=True),
        Output(Ids.SHOWN, "data", allow_duplicate=True),
        Input(LiveIds.NUMBERS, "data"),
        State(LiveIds.VIEW, "data"),
        State(Ids.SHOWN, "data"),
        prevent_initial_call=True,
    )

    app.clientside_callback(
        "function(p) { return p === 'dates' ? {} : {display: 'none'}; }",
        Output(Ids.PERIOD_DATES_BOX, "style"),
        Input(Ids.PERIOD, "value"),
    )

    cases_group = group_id(cases.LAYER.id)

    @app.callback(
        Output(Ids.URLS, "data"),
        Output(cases_group, "children", allow_duplicate=True),
        Input(Ids.FILTER_STEP, "value"),
        Input(Ids.FILTER_TYPE, "value"),
        Input(Ids.FILTER_LEVEL, "value"),
        Input(Ids.FILTER_SEVERITY, "value"),
        Input(Ids.FILTER_OVERDUE, "value"),
        State(Ids.URLS, "data"),
        State(Ids.HIDEOUTS, "data"),
        State(Ids.LAYERS, "value"),
        prevent_initial_call=True,
    )
    def _filter(
        step: str | None,
        type_: str | None,
        level: str | None,
        severity: str | None,
        overdue: list[str] | None,
        urls: dict[str, str],
        hideouts: dict[str, dict[str, Any]],
        shown: list[str] | None,
    ) -> tuple[dict[str, str], list[Component] | NoUpdate]:
        lid = cases.LAYER.id
        url = filtered_url(
            urls[lid], step=step, type=type_, level=level, severity=severity, overdue="overdue" in (overdue or [])
        )
        pins = [point_layer(lid, url, hideouts[lid])] if cases.LAYER.name in (shown or []) else no_update
        return {**urls, lid: url}, pins

    @app.callback(
        Output(Ids.FILTER_LEVEL, "value"),
        Output(Ids.FILTER_OVERDUE, "value"),
        Output(Ids.FILTER_STEP, "value"),
        Output(Ids.FILTER_TYPE, "value"),
        Output(Ids.FILTER_SEVERITY, "value"),
        Input({"type": LEVEL_CHIP, "level": ALL}, "n_clicks"),
        Input(Ids.FILTER_CLEAR, "n_clicks"),
        prevent_initial_call=True,
    )
    def _chip(_chips: list[int | None], _clear: int | None) -> tuple[Any, ...]:
        """Level, overdue, step, type, severity: an overdue-by-level chip shows that level's overdue
        cases whatever their step, type or severity; the clear button shows every pin again."""
        trig = ctx.triggered_id
        nothing = (no_update,) * 5
        if not ctx.triggered or not ctx.triggered[0]["value"]:  # a re-rendered chip (n_clicks 0), not a click
            return nothing
        if trig == Ids.FILTER_CLEAR:
            return None, [], None, None, None
        if isinstance(trig, dict) and trig.get("level") in workflow.LEVELS:
            return str(trig["level"]), ["overdue"], None, None, None
        return nothing

    @app.callback(Output(Ids.FILTER_TYPE, "options"), Input(Ids.SELECTED, "data"), State("lang", "data"))
    def _types(_selected: object, lang: str) -> list[dict[str, str]]:
        with get().pool.connection() as conn:
            return case_types(conn, lang)

    @app.callback(
        Output(Ids.MAP, "viewport", allow_duplicate=True),
        Output(Ids.DETAIL, "children", allow_duplicate=True),
        Input(Ids.VAN_FOCUS, "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def _focus_van(
        focus: dict[str, Any] | None, lang: str
    ) -> tuple[dict[str, Any] | NoUpdate, list[Component] | NoUpdate]:
        """A van's row clicked (yitu_wall.js sets the store, with the time, so a second click on
        the same row counts too): the map flies to the van and its card shows."""
        if not focus or not focus.get("van"):
            return no_update, no_update
        return van_focus(get(), str(focus["van"]), lang)

    @app.callback(Output(Ids.MAP, "viewport"), Input(Ids.SELECTED, "data"), prevent_initial_call=True)
    def _fly(selected: Selection) -> dict[str, Any] | NoUpdate:
        return fly_to(get(), selected["code"]) or no_update

    @app.callback(
        Output(Ids.DETAIL, "children"),
        Input({"type": POINT, "layer": ALL}, "clickData"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def _detail(_clicks: list[dict[str, Any] | None], lang: str) -> list[Component] | NoUpdate:
        trig = ctx.triggered_id
        if not isinstance(trig, dict) or not ctx.triggered or not ctx.triggered[0]["value"]:
            return no_update
        return detail_for(get(), trig["layer"], ctx.triggered[0]["value"].get("properties") or {}, lang)

    app.clientside_callback(
        "function(n, lang) { return window.yitu.clock(n, lang); }",
        Output(Ids.CLOCK, "children"),
        Input(Ids.TICK, "n_intervals"),
        State("lang", "data"),
    )

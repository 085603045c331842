"""Wall-screen callbacks: zoom → grid level, clicks → drill-down and cards, the numbers around.

The work is in plain module-level functions taking the services first, so tests call them
directly; ``register`` wires them to Dash. Big data never goes through a callback: they change
layer URLs and ``hideout`` only.

Who reads is ``identity.who_is_asking()`` (the principal Dash's callback runs for): a reader
scoped to an area sees its area's figures, cards and ranking only (an area outside it is shown as
its own area; a case outside it shows no card); case cards show the parties as a room screen may
see them (masking.ROOM_READER), camera links follow the reader's role (geodata/masking.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from dash import ALL, Dash, Input, NoUpdate, Output, State, ctx, dcc, html, no_update
from dash.development.base_component import Component
from dash_svg import G, Line, Polyline, Svg, Text

from dashboard.i18n import translator
from dashboard.pages.wall import CRUMB, LIVE_TICK, POINT, Ids, group_id, point_layer, switchable
from geodata import kpi, masking, queries
from layers import cameras, cases, grids, registry, vans
from layers.base import level_for_zoom
from layers.registry import Layer
from services import identity
from services.runtime import Services

GRID_LAYER = grids.LAYER.id


class Selection(TypedDict):
    """The wall screen's selection store: the area shown and the banner it is in."""

    code: str
    banner: str


def grid_url(zoom: int | None, bounds: list[list[float]] | None) -> tuple[str, int]:
    """The grid layer's URL for a view: the level follows the zoom, the box is the view padded by
    half its size and rounded (so small pans reuse the same URL)."""
    z = int(zoom if zoom is not None else 9)
    level = level_for_zoom(z)
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
    return url, level


EMPTY: dict[str, Any] = {"type": "FeatureCollection", "features": []}


def switched(url: str, on: bool) -> tuple[str | None, dict[str, Any] | None]:
    """A layer switched on fetches its URL; switched off it holds no features (url and data)."""
    return (url, None) if on else (None, EMPTY)


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


def kpi_tiles(svc: Services, code: str, lang: str) -> list[Component]:
    t = translator(lang)
    with svc.pool.connection() as conn:
        k = kpi.cached(svc.redis, f"tiles:{code}", lambda: kpi.tiles(conn, code))
    overdue_total = sum(k["overdue"].values())
    tiles = [
        ("new_today", k["new_today"], "yitu-kpi-blue"),
        ("in_progress", k["in_progress"], "yitu-kpi-violet"),
        ("resolved", k["resolved_ytd"], "yitu-kpi-green"),
        ("rate", _pct(k["rate_ytd"]), "yitu-kpi-green"),
        ("overdue", overdue_total, "yitu-kpi-red" if overdue_total else "yitu-kpi-green"),
        ("village_share", _pct(k["village_share"]), "yitu-kpi-cyan"),
    ]
    boxes = [
        html.Div(
            className=f"yitu-kpi {cls}",
            id=f"kpi-{key}",
            children=[
                html.Div(str(value), className="yitu-kpi-value"),
                html.Div(t(f"kpi.{key}"), className="yitu-kpi-label"),
            ],
        )
        for key, value, cls in tiles
    ]
    by_level = html.Div(
        className="yitu-kpi-levels",
        children=[
            html.Span(t("kpi.overdue_by_level"), className="yitu-kpi-levels-title"),
            *[
                html.Span(f"{t(f'level.{lv}')} {n}", className="yitu-chip" + (" yitu-chip-red" if n else ""))
                for lv, n in k["overdue"].items()
            ],
        ],
    )
    return [*boxes, by_level]


def top_types_chart(svc: Services, code: str, lang: str) -> list[Component]:
    with svc.pool.connection() as conn:
        rows = kpi.cached(svc.redis, f"types:{code}", lambda: kpi.top_types(conn, code))
    if not rows:
        return [html.Div("—", className="yitu-muted")]
    top = max(r["n"] for r in rows)
    name = "name_zh" if lang == "zh-CN" else "name_en"
    return [
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
    t = translator(lang)
    with svc.pool.connection() as conn:
        rows = kpi.cached(svc.redis, f"trend:{code}", lambda: kpi.trend(conn, code, 30))
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


def ranking_table(svc: Services, banner: str, lang: str) -> html.Table:
    """The quarter's ranking of the children of ``banner`` (a scoped reader: of its own area)."""
    t = translator(lang)
    parent = in_scope(banner)
    with svc.pool.connection() as conn:
        rows = kpi.cached(svc.redis, f"ranking:{parent}", lambda: kpi.town_ranking(conn, parent))
    head = html.Tr(
        [
            html.Th("#"),
            html.Th(t("level.2")),
            html.Th(t("ranking.score")),
            html.Th(t("ranking.rate")),
            html.Th(t("ranking.overdue")),
        ]
    )
    body = [
        html.Tr(
            [
                html.Td(i),
                html.Td(r["name"]),
                html.Td(f"{float(r['score']):.1f}"),
                html.Td(_pct(r["resolved"] / r["reported"]) if r["reported"] else "—"),
                html.Td(r["overdue"]),
            ]
        )
        for i, r in enumerate(rows, start=1)
    ]
    return html.Table(className="yitu-table", children=[html.Thead(head), html.Tbody(body)])


def van_board(svc: Services, lang: str) -> list[Component]:
    t = translator(lang)
    with svc.pool.connection() as conn:
        rows = vans.board(conn, svc.settings.van_offline_seconds)
    return [
        html.Div(
            className=f"yitu-van-row yitu-van-{r['status']}",
            children=[
                html.Span(r["id"], className="yitu-van-id"),
                html.Span(r["name"]),
                html.Span(t(f"van.{r['status']}"), className="yitu-van-status"),
                html.Span(f"{r['odometer_km']:.0f} km", className="yitu-muted"),
            ],
        )
        for r in rows
    ]


def crumbs(svc: Services, code: str, lang: str) -> list[Component]:
    with svc.pool.connection() as conn:
        chain = list(reversed(queries.area_ancestors(conn, code)))
        here = queries.area_summary(conn, code)
    items = [*chain, here] if here else chain
    out: list[Component] = []
    for i, a in enumerate(items):
        if i:
            out.append(html.Span("›", className="yitu-crumb-sep"))
        out.append(html.Button(a["name"], id={"type": CRUMB, "code": a["code"]}, className="yitu-crumb", n_clicks=0))
    return out


def area_panel(svc: Services, code: str, lang: str) -> list[Component]:
    t = translator(lang)
    with svc.pool.connection() as conn:
        area = queries.area_summary(conn, code)
        if area is None:
            return [html.P(t("panel.hint"), className="yitu-muted")]
        k = kpi.cached(svc.redis, f"tiles:{code}", lambda: kpi.tiles(conn, code))
        steps = kpi.cached(svc.redis, f"steps:{code}", lambda: kpi.steps(conn, code))
        types = kpi.cached(svc.redis, f"types:{code}", lambda: kpi.top_types(conn, code))
    name = "name_zh" if lang == "zh-CN" else "name_en"
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
        html.H4(t("panel.by_type")),
        html.Div(
            className="yitu-chips",
            children=[html.Span(f"{r[name]} {r['n']}", className="yitu-chip") for r in types[:6]],
        ),
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
        html.Div(f"{t('case.reported')} {c['reported_at']:%Y-%m-%d %H:%M}", className="yitu-muted"),
        html.Div(f"{t('case.deadline')} {c['deadline']:%Y-%m-%d %H:%M}" if c["deadline"] else ""),
        html.Div(f"{t('case.grid')} {c['grid_name'] or '—'} ({c['grid_code'] or '—'})"),
        html.Div(
            f"{t('case.parties')} " + masking.parties_line(masking.ROOM_READER, c["parties"]), className="yitu-parties"
        ),
        *_attachments_line(c, t),
    ]


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
    with svc.pool.connection() as conn:
        data = layer.card(conn, props, layer.configured(svc.settings))
    if data is None:
        return no_update
    view = CARD_VIEWS.get(layer.name)
    return view(data, lang) if view else feature_view(layer, data, lang)


def fly_to(svc: Services, code: str) -> dict[str, Any] | None:
    with svc.pool.connection() as conn:
        area = queries.area_summary(conn, code)
    if area is None:
        return None
    minx, miny, maxx, maxy = area["bounds"]
    return {"bounds": [[miny, minx], [maxy, maxx]], "transition": "flyToBounds"}


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
        State(GRID_LAYER, "hideout"),
    )
    def _grid(
        zoom: int | None,
        bounds: list[list[float]] | None,
        mode: str | None,
        selected: Selection | None,
        shown: list[str] | None,
        hideout: dict[str, Any] | None,
    ) -> tuple[str | None, dict[str, Any] | None, dict[str, Any]]:
        url, level = grid_url(zoom, bounds)
        layer_url, data = switched(url, grids.LAYER.name in (shown or []))
        code = selected["code"] if selected else None
        return layer_url, data, grid_hideout(get(), level, mode or "none", code, zoom, hideout)

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
        State(Ids.SELECTED, "data"),
        prevent_initial_call=True,
    )
    def _select(click: dict[str, Any] | None, _crumbs: list[int | None], selected: Selection) -> Selection | NoUpdate:
        trig = ctx.triggered_id
        if isinstance(trig, dict) and trig.get("type") == CRUMB:
            if not ctx.triggered[0]["value"]:  # a re-rendered crumb (n_clicks 0), not a click
                return no_update
            return {**selected, "code": trig["code"]}
        if click and click.get("properties", {}).get("code"):
            return {**selected, "code": click["properties"]["code"]}
        return no_update

    @app.callback(
        [
            Output(i, "children")
            for i in (Ids.KPIS, Ids.TOP_TYPES, Ids.TREND, Ids.PANEL, Ids.CRUMBS, Ids.RANKING, Ids.VANS)
        ],
        Input(Ids.SELECTED, "data"),
        Input(LIVE_TICK, "data"),  # the live push: cases changed, recompute
        State("lang", "data"),
    )
    def _numbers(
        selected: Selection, _tick: object, lang: str
    ) -> tuple[list[Component], list[Component], Svg, list[Component], list[Component], html.Table, list[Component]]:
        svc, code = get(), in_scope(selected["code"])
        return (
            kpi_tiles(svc, code, lang),
            top_types_chart(svc, code, lang),
            trend_chart(svc, code, lang),
            area_panel(svc, code, lang),
            crumbs(svc, code, lang),
            ranking_table(svc, selected["banner"], lang),
            van_board(svc, lang),
        )

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

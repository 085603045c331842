"""Dispatch-page callbacks: the queue, a case's candidates, one-click send.

The work is in module-level functions taking the services first (tests call them directly);
``register`` wires them. Who asks is the signed-in person of the request (``identity.current()``,
bound by the guard, api/guard.py, from the session cookie): a disabled user or an ended session
is refused before any callback runs, and only a dispatcher or an admin sees the queue or sends a
van (the guard's policy table says so for ``_send`` too). Sending goes through the same function as
``POST /api/v1/dispatches`` (``services.dispatching.send_van``): one transaction, the same refusals,
the same events on the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Required, TypedDict

import dash_leaflet as dl
import psycopg
from dash import ALL, Dash, Input, NoUpdate, Output, State, ctx, dcc, html, no_update
from dash.development.base_component import Component
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from callbacks.shown import only_changed
from callbacks.wall import case_card, van_board
from dashboard.i18n import refusal, translator
from dashboard.pages.dispatch import LIVE_TICK, POINT, QUEUE_ITEM, QUEUE_VIEWS, SEND, VISIT_ACTION, Ids, new_send_key
from geodata import dispatch, masking, queries
from geodata.clock import shown
from geodata.db import database_unavailable
from geodata.errors import OutcomeUnknown, YituError
from geodata.queries import query
from geodata.resource_import import VAN_ID
from geodata.search import is_case_code
from layers import cases as cases_layer
from services import dispatching
from services import identity as auth
from services.runtime import Services
from services.scheduler import CasesRuntime

DISPATCHERS = dispatching.DISPATCHERS
QUEUE_LIMIT = 200  # the most urgent listed (the queue scrolls); a league may have more: the page says so
CAMERA_RADIUS_M = 500


class SendOutcome(TypedDict, total=False):
    """What a send from the page came to (the ``sent`` store): ok and a message, the dispatch's id
    and time when it went, the refused field when it did not."""

    ok: Required[bool]
    message: Required[str]
    field: str | None
    id: int
    at: str


def _now() -> datetime:
    return datetime.now(UTC)


def signed_in(who: auth.Principal | None = None) -> auth.Principal | None:
    """The dispatcher asking (``who``, or the request's principal), or None when nobody is signed in
    or they may not dispatch (only a dispatcher or an admin may)."""
    who = who if who is not None else auth.current()
    return who if who is not None and who.role in DISPATCHERS else None


def who_line(who: auth.Principal | None, lang: str) -> str:
    """The header's "who is signed in" line."""
    if who is None:
        return ""
    t = translator(lang)
    return f"{who.name} · {t('role.' + who.role)}" + (f" · {who.area}" if who.area else "")


def _hours(seconds: float) -> str:
    h, m = divmod(int(abs(seconds)) // 60, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m"


# The steps of each view of the queue: waiting to be sent, or sent and not yet closed (to chase).
VIEW_STEPS: dict[str, list[str]] = {"waiting": ["reported", "accepted"], "active": ["dispatched", "handling"]}


def waiting(svc: Services, who: auth.Principal, now: datetime, view: str = "waiting") -> list[dict[str, Any]]:
    """The queue's cases in ``who``'s area: ``waiting`` to be sent (the default) or ``active``
    (dispatched or in handling), the most urgent first."""
    steps = VIEW_STEPS.get(view, VIEW_STEPS["waiting"])
    with svc.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            query("dispatch_queue"), {"area": who.area, "now": now, "limit": QUEUE_LIMIT, "steps": steps}
        ).fetchall()


def queue_items(
    svc: Services,
    who: auth.Principal | None,
    selected: str | None,
    lang: str,
    now: datetime | None = None,
    view: str = "waiting",
) -> list[Component]:
    t = translator(lang)
    if who is None:
        return [html.P(t("dispatch.no_right"), className="yitu-muted")]
    now = now or _now()
    rows = waiting(svc, who, now, view)
    if not rows:
        empty = "dispatch.queue_active_empty" if view == "active" else "dispatch.queue_empty"
        return [html.P(t(empty), className="yitu-muted")]
    name = "type_zh" if lang == "zh-CN" else "type_en"
    out: list[Component] = []
    for r in rows:
        left = (r["deadline"] - now).total_seconds() if r["deadline"] else None
        due = "" if left is None else t("dispatch.over" if left < 0 else "dispatch.left").format(h=_hours(left))
        out.append(
            html.Button(
                id={"type": QUEUE_ITEM, "code": r["code"]},
                **{"data-code": r["code"]},  # a click picks the case through yitu_wall.js (Ids.PICK)
                className="yitu-queue-item"
                + (" yitu-overdue" if r["overdue"] else "")
                + (" yitu-selected" if r["code"] == selected else ""),
                children=[
                    dcc.Link(r["code"], href=f"/cases/{r['code']}", className="yitu-queue-code"),  # the case page
                    html.Span(r[name], className="yitu-chip"),
                    html.Span(t(f"step.{r['step']}"), className=f"yitu-chip yitu-step-{r['step']}"),
                    html.Span(t(f"level.{r['level']}"), className="yitu-chip"),
                    html.Span(due, className="yitu-due" + (" yitu-red" if r["overdue"] else "")),
                    html.Span(r["grid_name"] or "", className="yitu-muted"),
                    *(
                        [html.Span(f"{t('dispatch.assignee')} {_assignee(r)}", className="yitu-assignee")]
                        if r["assignee_name"] or r["assignee_id"]
                        else []
                    ),
                ],
            )
        )
    total = int(rows[0]["total"])
    if total > len(rows):  # the rest are less urgent; the area page lists them all
        out.append(html.P(t("dispatch.queue_more").format(shown=len(rows), total=total), className="yitu-muted"))
    return out


def _assignee(r: dict[str, Any]) -> str:
    """Who a case was sent to: a van by its number and name, a mediator or a unit by name."""
    if r["assignee_kind"] == "van":
        return f"{r['assignee_id']} {r['assignee_name'] or ''}".strip()
    return str(r["assignee_name"] or r["assignee_id"])


def _why(reason: str | None, status: str, t: Callable[[str], str]) -> str:
    """Why a van cannot go, unless its status already says it (an offline van is just offline)."""
    if reason is None:
        return t("dispatch.busy")
    return "" if reason == status else t(f"dispatch.reason.{reason}")


def _candidate_row(r: dict[str, Any], t: Callable[[str], str]) -> html.Tr:
    reason = dispatch.not_dispatchable_because(r)
    km = f"{r['distance_m'] / 1000:.1f}" if r["distance_m"] is not None else "—"
    eta = f"{r['eta_s'] / 60:.0f}" if r["eta_s"] is not None else "—"
    action: Component = (
        html.Button(
            t("dispatch.send"), id={"type": SEND, "van": r["id"]}, n_clicks=0, className="yitu-button yitu-send"
        )
        if r["dispatchable"]
        else html.Span(_why(reason, r["status"], t), className="yitu-muted")
    )
    return html.Tr(
        className=f"yitu-van-{r['status']}",
        children=[
            html.Td(f"{r['id']} {r['name']}"),
            html.Td(t(f"van.{r['status']}")),
            html.Td(f"{km} {t('dispatch.km')}"),
            html.Td(f"{eta} {t('dispatch.min')}"),
            html.Td(t(f"dispatch.{r['method']}") if r["method"] else "—", className="yitu-muted"),
            html.Td(action),
        ],
    )


Panels = tuple[list[Component], Component, list[Component], list[Component]]


def case_panels(svc: Services, who: auth.Principal | None, code: str | None, lang: str) -> Panels:
    """The selected case's card, its candidate vans, its cameras, and its marker on the map."""
    t = translator(lang)
    if who is None or not is_case_code(code):  # the selection's store, as the browser sends it: any JSON
        hint = html.P(t("dispatch.pick" if who else "dispatch.no_right"), className="yitu-muted")
        return [], hint, [], []
    with svc.pool.connection() as conn:
        card = cases_layer.card(conn, code, masking.ROOM_READER, who.area)  # None outside the reader's area
        if card is None:
            return [], html.P(t("dispatch.pick"), className="yitu-muted"), [], []
        rows = dispatch.candidates(conn, code, dispatching.routing(svc.settings), _now(), scope=who.area)
        where = conn.execute("SELECT ST_X(geom), ST_Y(geom) FROM cases WHERE code = %s", (code,)).fetchone()
        if where is None:  # the card was read a moment ago: a case is never deleted
            return [], html.P(t("dispatch.pick"), className="yitu-muted"), [], []
        lon, lat = where
        cams = queries.cameras_near(conn, lon, lat, CAMERA_RADIUS_M, scope=who.area)
    table = html.Table(
        className="yitu-table yitu-candidates", children=[html.Tbody([_candidate_row(r, t) for r in rows])]
    )

    def camera_name(c: dict[str, Any]) -> Component:
        url = masking.stream_url_for(who.role, c["stream_url"])  # admin and dispatcher, no credentials
        return html.A(c["name"], href=url, target="_blank", className="yitu-link") if url else html.Span(c["name"])

    cameras: list[Component] = [
        html.Div(
            className="yitu-camera-row",
            children=[
                camera_name(c),
                html.Span(
                    f"{t('camera.' + c['kind'])} · {t('camera.' + c['status'])} · {c['distance_m']:.0f} m",
                    className="yitu-muted",
                ),
            ],
        )
        for c in cams
    ] or [html.P(t("dispatch.no_cameras"), className="yitu-muted")]
    focus = [
        dl.Circle(center=[lat, lon], radius=CAMERA_RADIUS_M, color="#ffe066", weight=2, fill=False, dashArray="6 6"),
        dl.CircleMarker(center=[lat, lon], radius=14, color="#ffe066", weight=3, fill=False),
    ]
    return case_card(svc, code, lang, who), table, cameras, focus


def visits_panel(svc: Services, who: auth.Principal | None, code: str | None, lang: str) -> list[Component]:
    """The selected case's vans on their way or on site, each with what may be done now: call it
    back (on its way: 撤回) or end the visit (on site: 结束走访). Empty without a case."""
    t = translator(lang)
    if who is None or not is_case_code(code):
        return []
    with svc.pool.connection() as conn:
        rows = dispatch.dispatches(conn, active=True, case=code, area=who.area, limit=20, offset=0)
    items: list[Component] = [html.H3(t("dispatch.visits"))]
    if not rows:
        return [*items, html.P(t("dispatch.no_visits"), className="yitu-muted")]
    for d in rows:
        since = t("dispatch.since").format(t=_clock(d["created_at"]))
        if d["arrived_at"]:
            since += " · " + t("dispatch.arrived").format(t=_clock(d["arrived_at"]))
        action = "cancel" if d["status"] == "en_route" else "end"
        button = html.Button(
            t(f"dispatch.{action}"),
            id={"type": VISIT_ACTION, "id": d["id"], "action": action},
            n_clicks=0,
            className="yitu-button yitu-visit-" + action,
        )
        setattr(button, "data-action", action)  # tests and people find it by what it does
        items.append(
            html.Div(
                className=f"yitu-visit yitu-van-{d['status']}",
                children=[
                    html.Span(f"{d['van_id']} {d['van_name']}", className="yitu-van-id"),
                    html.Span(t(f"van.{d['status']}"), className="yitu-van-status"),
                    html.Span(since, className="yitu-muted"),
                    button,
                ],
            )
        )
    return items


def _clock(at: datetime | None) -> str:
    return shown(at, "%H:%M")


def act_on_visit(
    svc: Services,
    rt: CasesRuntime,
    who: auth.Principal | None,
    dispatch_id: int,
    action: str,
    lang: str,
    key: str | None = None,
) -> SendOutcome:
    """Call back a van (``cancel``) or end its visit (``end``) from the page, as ``who``: the same
    functions as ``POST /api/v1/dispatches/{id}/cancel`` and ``/end``, the same refusals. ``key``
    is the page's send key (a double click acts once)."""
    t = translator(lang)
    who = signed_in(who)
    if who is None:
        return {"ok": False, "message": t("dispatch.no_right")}
    idem = f"page-{key or new_send_key()}-{action}-{dispatch_id}"[:200]
    try:
        if action == "cancel":
            out, _ = dispatching.cancel_van(svc, who, dispatch_id, key=idem)
        elif action == "end":
            out, _ = dispatching.end_visit(svc, rt, who, dispatch_id, key=idem)
        else:
            return {"ok": False, "message": t("error.invalid"), "field": "action"}
    except OutcomeUnknown as exc:
        return {"ok": False, "message": refusal(exc, lang), "field": exc.field}
    except YituError as exc:
        return {"ok": False, "message": refusal(exc, lang), "field": exc.field}
    except (psycopg.Error, PoolTimeout) as exc:
        return {"ok": False, "message": refusal(database_unavailable(exc), lang)}
    van = f"{out['van']} {out.get('van_name') or ''}".strip()
    done = "dispatch.cancelled" if action == "cancel" else "dispatch.ended"
    return {"ok": True, "id": out["id"], "at": _now().isoformat(), "message": t(done).format(van=van, case=out["case"])}


def send(
    svc: Services,
    rt: CasesRuntime,
    who: auth.Principal | None,
    code: str | None,
    van: str,
    lang: str,
    key: str | None = None,
) -> SendOutcome:
    """Send ``van`` to case ``code`` as ``who``; the outcome as {"ok", "message", ...} for the page.

    ``key``: the page's send key (``Ids.SEND_KEY``); the Idempotency-Key is it and the van, so a
    double click sends that van once (the second click gets the first one's answer) and a click on
    another van is a request of its own. Without one (a caller outside the page) a fresh key is made.
    """
    t = translator(lang)
    who = signed_in(who)
    if who is None:
        return {"ok": False, "message": t("dispatch.no_right")}
    if not is_case_code(code):  # none picked, or not a code (the page's store: any JSON back)
        return {"ok": False, "message": t("dispatch.pick")}
    if not VAN_ID.fullmatch(str(van)):  # the button's id, as the browser sends it: any JSON
        return {"ok": False, "message": t("error.invalid"), "field": "van"}
    van = str(van)
    try:
        idem = f"page-{key or new_send_key()}-{van}"[:200]
        out, _ = dispatching.send_van(svc, rt, who, code, van, None, accept_first=True, key=idem)
    except OutcomeUnknown as exc:  # perhaps sent: the dispatcher looks before sending again
        return {"ok": False, "message": t("dispatch.outcome_unknown").format(van=van, case=code), "field": exc.field}
    except YituError as exc:
        return {"ok": False, "message": refusal(exc, lang), "field": exc.field}
    except (psycopg.Error, PoolTimeout) as exc:  # no connection, or lost before the COMMIT: nothing sent
        return {"ok": False, "message": refusal(database_unavailable(exc), lang)}
    eta = f"{out['eta_s'] / 60:.0f}" if out.get("eta_s") is not None else "—"
    return {
        "ok": True,
        "id": out["id"],
        "at": _now().isoformat(),
        "message": t("dispatch.sent").format(van=f"{van} {out.get('van_name') or ''}".strip(), case=code, eta=eta),
    }


def register(app: Dash, get: Callable[[], Services], get_runtime: Callable[[], CasesRuntime]) -> None:
    @app.callback(
        Output(Ids.QUEUE, "children"),
        Output(Ids.QUEUE_SHOWN, "data"),
        Input(LIVE_TICK, "data"),
        Input(Ids.SENT, "data"),
        Input(Ids.SELECTED, "data"),
        Input(Ids.QUEUE_VIEW, "value"),
        State("lang", "data"),
        State(Ids.QUEUE_SHOWN, "data"),
    )
    def _queue(
        _tick: object, _sent: object, selected: str | None, view: str | None, lang: str, shown: object
    ) -> tuple[Any, ...]:
        items = queue_items(get(), signed_in(), selected, lang, view=view if view in QUEUE_VIEWS else "waiting")
        return only_changed([items], shown)  # a live round that changed nothing leaves the queue alone

    @app.callback(
        Output(Ids.SELECTED, "data"),
        Input(Ids.PICK, "data"),
        Input({"type": POINT, "layer": ALL}, "clickData"),
        prevent_initial_call=True,
    )
    def _select(pick: dict[str, Any] | None, _points: list[dict[str, Any] | None]) -> str | NoUpdate:
        # A queue item's click comes through a store that yitu_wall.js sets from the clicked
        # button's data-code: the queue is drawn again by the live push, and a click on an item
        # being replaced was lost through its n_clicks (the test of the visits caught it, 1 in 5).
        if ctx.triggered_id == Ids.PICK:
            code = (pick or {}).get("code")
            return code if isinstance(code, str) and code else no_update
        trig = ctx.triggered_id
        if not isinstance(trig, dict) or not ctx.triggered or not ctx.triggered[0]["value"]:
            return no_update
        props = (ctx.triggered[0]["value"] or {}).get("properties") or {}
        if trig.get("layer") == cases_layer.LAYER.id and props.get("code") and not props.get("cluster"):
            return str(props["code"])
        return no_update

    @app.callback(
        [Output(i, "children") for i in (Ids.CASE, Ids.CANDIDATES, Ids.CAMERAS, Ids.FOCUS, Ids.VANS, Ids.VISITS)],
        Output(Ids.PANELS_SHOWN, "data"),
        Input(Ids.SELECTED, "data"),
        Input(LIVE_TICK, "data"),
        Input(Ids.SENT, "data"),
        State("lang", "data"),
        State(Ids.PANELS_SHOWN, "data"),
    )
    def _panels(code: str | None, _tick: object, _sent: object, lang: str, shown: object) -> tuple[Any, ...]:
        svc, who = get(), signed_in()
        card, candidates, cameras, focus = case_panels(svc, who, code, lang)
        board = van_board(svc, lang, who=who or auth.who_is_asking())  # the reader's banner's vans
        # Only what changed goes: a live round redrew every panel, and a click on 撤回 or 结束走访
        # while its button was being replaced was lost.
        return only_changed([card, candidates, cameras, focus, board, visits_panel(svc, who, code, lang)], shown)

    # On a phone the case card is below the map: the page scrolls to it when a case is picked.
    app.clientside_callback(
        "function(code) { return window.yitu.dispatch.showCase(code); }",
        Input(Ids.SELECTED, "data"),
        prevent_initial_call=True,
    )

    @app.callback(Output(Ids.MAP, "viewport"), Input(Ids.SELECTED, "data"), prevent_initial_call=True)
    def _fly(code: str | None) -> dict[str, Any] | NoUpdate:
        if not is_case_code(code):
            return no_update
        scope = auth.scope_of(auth.who_is_asking())  # a case outside the reader's area is not flown to
        with get().pool.connection() as conn:
            row = conn.execute(
                """SELECT ST_X(geom), ST_Y(geom) FROM cases
                   WHERE code = %s AND yitu_in_scope(%s::text, grid_code, village_code, town_code, banner_code)""",
                (code, scope),
            ).fetchone()
        if row is None:
            return no_update
        return {"center": [row[1], row[0]], "zoom": 13, "transition": "flyTo"}

    @app.callback(
        Output(Ids.SENT, "data"),
        Output(Ids.MESSAGE, "children"),
        Input({"type": SEND, "van": ALL}, "n_clicks"),
        State(Ids.SELECTED, "data"),
        State("lang", "data"),
        State(Ids.SEND_KEY, "data"),
        prevent_initial_call=True,
    )
    def _send(
        _clicks: list[int | None], code: str | None, lang: str, key: str | None
    ) -> tuple[SendOutcome | NoUpdate, str | NoUpdate]:
        trig = ctx.triggered_id
        if not isinstance(trig, dict) or not ctx.triggered or not ctx.triggered[0]["value"]:
            return no_update, no_update  # a re-rendered button (n_clicks 0), not a click
        out = send(get(), get_runtime(), auth.current(), code, trig["van"], lang, key)
        return out, out["message"]

    @app.callback(
        Output(Ids.SENT, "data", allow_duplicate=True),
        Output(Ids.MESSAGE, "children", allow_duplicate=True),
        Input({"type": VISIT_ACTION, "id": ALL, "action": ALL}, "n_clicks"),
        State("lang", "data"),
        State(Ids.SEND_KEY, "data"),
        prevent_initial_call=True,
    )
    def _visit(_clicks: list[int | None], lang: str, key: str | None) -> tuple[SendOutcome | NoUpdate, str | NoUpdate]:
        trig = ctx.triggered_id
        if not isinstance(trig, dict) or not ctx.triggered or not ctx.triggered[0]["value"]:
            return no_update, no_update  # a re-rendered button (n_clicks 0), not a click
        if type(trig.get("id")) is not int:  # the button's id, as the browser sends it: any JSON
            return no_update, no_update
        out = act_on_visit(get(), get_runtime(), auth.current(), trig["id"], str(trig["action"]), lang, key)
        return out, out["message"]

    @app.callback(
        Output(Ids.SEND_KEY, "data"), Input(Ids.SELECTED, "data"), Input(Ids.SENT, "data"), prevent_initial_call=True
    )
    def _next_send_key(_code: str | None, _sent: object) -> str:
        return new_send_key()

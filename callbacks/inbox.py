"""我的待办 (``/inbox``) and the wall's deadline warnings: their callbacks.

The work is in module-level functions taking the services first (tests call them directly);
``register`` wires them. Who asks is the request's principal (``identity.current()``, bound by the
guard): the inbox is theirs (geodata/warnings.py decides in SQL what waits on them, inside their
area scope). The inbox refreshes when the live push says the numbers are stale (its live-tick store,
callbacks/live.py): a case reported, dispatched, escalated or closed, a warning raised; the wall's
badge comes with the wall's numbers, pushed (callbacks/wall.py ``numbers_push``).
Nothing shown carries personal data: codes, types, steps, levels, deadlines, places.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from dash import Dash, Input, Output, State, dcc, html
from dash.development.base_component import Component

from dashboard.i18n import translator
from dashboard.pages import wall as wall_page
from dashboard.pages.inbox import LIVE_TICK, Ids
from geodata import queries, warnings
from geodata.clock import shown
from geodata.warnings import Inbox, InboxQuery
from services import identity
from services.identity import Principal
from services.runtime import Services

WALL_SHOWN = 5  # warnings listed under the wall's badge


def _now() -> datetime:
    return datetime.now(UTC)


def left(deadline: datetime | None, now: datetime, t: Callable[[str], str]) -> tuple[str, bool]:
    """The time left before ``deadline`` (or how long it is overdue) and whether it is overdue."""
    if deadline is None:
        return "—", False
    seconds = (deadline - now).total_seconds()
    minutes = int(abs(seconds)) // 60
    d, rest = divmod(minutes, 24 * 60)
    h, m = divmod(rest, 60)
    span = f"{d}d{h}h" if d else f"{h}h{m:02d}m" if h else f"{m}m"
    return t("dispatch.over" if seconds < 0 else "dispatch.left").format(h=span), seconds < 0


def query_of(who: Principal) -> InboxQuery:
    return InboxQuery.of(who.kind, who.token_id, who.role, who.area)


def load(svc: Services, who: Principal, now: datetime) -> Inbox:
    with svc.pool.connection() as conn:
        return warnings.inbox(conn, query_of(who), now)


def _tile(value: int, key: str, colour: str, t: Callable[[str], str]) -> html.Div:
    return html.Div(
        className=f"yitu-kpi yitu-kpi-{colour}",
        id=f"inbox-count-{key}",
        children=[
            html.Div(str(value), className="yitu-kpi-value"),
            html.Div(t(f"inbox.{key}"), className="yitu-kpi-label"),
        ],
    )


def counts(box: Inbox, t: Callable[[str], str]) -> list[Component]:
    return [
        _tile(box.overdue, "overdue", "red", t),
        _tile(box.due_today, "due_today", "cyan", t),
        _tile(box.due_24h, "due_24h", "blue", t),
        _tile(box.warned, "warned", "amber", t),
        _tile(box.total, "total", "violet", t),
    ]


def _row(r: Mapping[str, Any], now: datetime, lang: str, t: Callable[[str], str]) -> html.Tr:
    due, overdue = left(r["deadline"], now, t)
    warned = r["warned_at"] is not None and not overdue
    deadline = shown(r["deadline"], "%m-%d %H:%M")
    return html.Tr(
        className="yitu-inbox-row" + (" yitu-overdue" if overdue else "") + (" yitu-warned" if warned else ""),
        **{"data-code": r["code"], "data-why": r["why"]},
        children=[
            html.Td(dcc.Link(r["code"], href=f"/cases/{r['code']}", className="yitu-case-link")),
            html.Td(r["type_zh"] if lang == "zh-CN" else r["type_en"]),
            html.Td(html.Span(t(f"step.{r['step']}"), className=f"yitu-chip yitu-step-{r['step']}")),
            html.Td(t(f"level.{r['level']}")),
            html.Td(deadline, className="yitu-num"),
            html.Td(
                [
                    html.Span(due, className="yitu-due" + (" yitu-red" if overdue else "")),
                    html.Span(t("inbox.warned_chip"), className="yitu-chip yitu-chip-amber") if warned else None,
                ]
            ),
            html.Td(r["place"] or "", className="yitu-muted"),
            html.Td(t(f"inbox.why.{r['why']}"), className="yitu-muted"),
        ],
    )


def table(box: Inbox, now: datetime, lang: str) -> list[Component]:
    t = translator(lang)
    if not box.cases:
        return [html.P(t("inbox.empty"), className="yitu-muted yitu-inbox-empty")]
    head = html.Tr(
        [html.Th(t(f"inbox.col.{c}")) for c in ("code", "type", "step", "level", "deadline", "left", "place", "why")]
    )
    out: list[Component] = [
        html.Table(
            className="yitu-table yitu-inbox-table",
            children=[html.Thead(head), html.Tbody([_row(r, now, lang, t) for r in box.cases])],
        )
    ]
    if box.total > len(box.cases):
        out.append(html.P(t("inbox.more").format(n=len(box.cases), total=box.total), className="yitu-muted"))
    return out


def view(svc: Services, who: Principal | None, lang: str, now: datetime | None = None) -> tuple[Any, Any]:
    """(the counts, the list) of the inbox of ``who``."""
    t = translator(lang)
    if who is None or who.role == identity.SCREEN_ROLE:  # a wall screen is a room, not a person
        return [], [html.P(t("inbox.no_person"), className="yitu-muted yitu-inbox-empty")]
    now = now or _now()
    box = load(svc, who, now)
    return counts(box, t), table(box, now, lang)


def _below_root(code: str) -> bool:
    """A banner or an area in one (the root, or no area code at all, stands for the whole territory)."""
    try:
        return queries.level_of(code) > 0
    except ValueError:
        return False


def wall_view(
    svc: Services, who: Principal | None, lang: str, now: datetime | None = None, area: str | None = None
) -> list[Component]:
    """The wall's badge: how many deadline warnings are running in the area the wall shows (``area``,
    the one drilled into, when the reader may see it; else the reader's scope), and the soonest few
    (a case code each, its type and time left) under it; nothing when there are none."""
    t = translator(lang)
    now = now or _now()
    scope = identity.scope_of(who)
    if area and who is not None and who.sees_area(area) and _below_root(area):
        scope = area
    with svc.pool.connection() as conn:
        total, rows = warnings.current(conn, scope, now, WALL_SHOWN)
    if not total:
        return []
    items = []
    for r in rows:
        due, _ = left(r["deadline"], now, t)
        kind = r["type_zh"] if lang == "zh-CN" else r["type_en"]
        items.append(
            html.Li(
                title=kind,
                children=[
                    dcc.Link(r["code"], href=f"/cases/{r['code']}", className="yitu-case-link"),
                    html.Span(f" {t('level.' + r['level'])} · {due}", className="yitu-muted"),
                ],
            )
        )
    return [
        html.Details(
            className="yitu-warnings",
            children=[
                html.Summary(
                    [html.Span("⚠", className="yitu-warnings-icon"), f" {t('wall.warnings')} ", html.B(str(total))],
                    title=t("wall.warnings_hint"),
                ),
                html.Ul(items),
            ],
        )
    ]


def register(app: Dash, get: Callable[[], Services]) -> None:
    @app.callback(
        Output(Ids.COUNTS, "children"), Output(Ids.LIST, "children"), Input(LIVE_TICK, "data"), State("lang", "data")
    )
    def _inbox(_tick: object, lang: str | None) -> tuple[Any, Any]:
        return view(get(), identity.current(), lang or get().settings.lang)

    @app.callback(Output(Ids.WALL_WARNINGS, "children"), Input(wall_page.Ids.SELECTED, "data"), State("lang", "data"))
    def _wall_warnings(selected: dict[str, Any] | None, lang: str | None) -> list[Component]:
        """The area the wall shows was chosen (opening, a click): its warnings. The live rounds
        after that come with the numbers, by the push (callbacks/wall.py numbers_push)."""
        area = (selected or {}).get("code")
        return wall_view(
            get(), identity.current(), lang or get().settings.lang, area=area if isinstance(area, str) else None
        )

"""The case page's callbacks: the case drawn for its reader, the action forms, the actions sent.

The work is in module-level functions taking the services first (tests call them directly);
``register`` wires them. Who asks is the signed-in person of the request (``identity.current()``);
what they see of the parties is geodata/masking.py's (the one policy), which actions they get is
geodata/workflow.py's ``allowed_actions`` for their role, and an action goes through
``services.casework.move`` — the very path of ``POST /api/v1/cases/{code}/transitions``: one
transaction with its audit row and its event in the outbox, so every other open screen follows.
A van is sent through ``services.dispatching.send_van``, as from the dispatch page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Required, TypedDict

import dash_leaflet as dl
import psycopg
from dash import ALL, Dash, Input, NoUpdate, Output, State, ctx, dcc, html, no_update
from dash.development.base_component import Component
from psycopg_pool import PoolTimeout

from dashboard.i18n import refusal, translator
from dashboard.pages.case import ACTION, CELL, CELL_PICK, CONFIRM, FIELD, TICK, Ids, button, data_action, new_key
from geodata import attachments, casefile, dispatch, idempotency, masking, queries, suggest, workflow
from geodata import cases as store
from geodata.clock import shown
from geodata.db import database_unavailable
from geodata.errors import Invalid, OutcomeUnknown, YituError
from geodata.search import is_case_code
from geodata.workflow import DeadlineRules, Rules
from services import casework, dispatching
from services import identity as auth
from services.runtime import Services
from services.scheduler import CasesRuntime

CAMERA_RADIUS_M = 500
NOTE_MAX = 2000
FIELDS_OF: Mapping[str, tuple[str, ...]] = {
    "accept": ("note",),
    "reject": ("reason", "duplicate_of", "note"),
    "dispatch": ("target", "note"),
    "start": ("note",),
    "attempt": ("result", "note"),
    "escalate": ("note",),
    "close": ("outcome", "agreement_no", "note"),
    "evaluate": ("satisfaction", "followup_note"),
    "reopen": ("note",),
}
NEEDS_NOTE = frozenset({"escalate", "reopen"})  # the reason is the note: an escalation or a reopening says why


class Outcome(TypedDict, total=False):
    """What an action from the page came to (the ``done`` store)."""

    ok: Required[bool]
    message: Required[str]
    field: str | None
    at: str


def _now() -> datetime:
    return datetime.now(UTC)


def _span(seconds: float) -> str:
    """A duration as a person reads it: 2d3h, 5h12m, 40m, 25s."""
    if abs(seconds) < 60:
        return f"{int(abs(seconds))}s"
    m = int(abs(seconds)) // 60
    d, rest = divmod(m, 24 * 60)
    h, mm = divmod(rest, 60)
    if d:
        return f"{d}d{h}h"
    return f"{h}h{mm:02d}m" if h else f"{mm}m"


def _money(v: Any) -> str:
    return "—" if v is None else f"{v:,.2f}"


def _or_dash(v: Any) -> str:
    return "—" if v is None or v == "" else str(v)


def case_link(code: str, className: str = "yitu-link yitu-case-link") -> dcc.Link:
    """A case code as a link to its page (every case code in the UI is one)."""
    return dcc.Link(code, href=f"/cases/{code}", className=className)


def _chip(text: str, extra: str = "") -> html.Span:
    return html.Span(text, className=f"yitu-chip {extra}".strip())


def _deadline_line(c: Mapping[str, Any], now: datetime, t: Callable[[str], str]) -> Component:
    if c["deadline"] is None:
        return html.Div(f"{t('case.deadline')} —")
    left = (c["deadline"] - now).total_seconds()
    line = f"{t('case.deadline')} {shown(c['deadline'])}"
    if c["step"] not in workflow.OPEN_STEPS:
        return html.Div(line)
    due = t("dispatch.over" if left < 0 else "dispatch.left").format(h=_span(left))
    return html.Div(
        [line, " · ", html.Span(due, className="yitu-due" + (" yitu-red" if left < 0 else ""))], id="case-deadline"
    )


def _assignee(a: Mapping[str, Any] | None, t: Callable[[str], str]) -> str:
    if not a:
        return "—"
    kind = t(f"casepage.kind.{a.get('kind')}")
    return f"{kind} · {a.get('name') or a.get('id')}"


def facts(
    c: Mapping[str, Any], rules: DeadlineRules, now: datetime, lang: str, cells: Sequence[Mapping[str, Any]] = ()
) -> list[Component]:
    """The case's facts: what, where, which step and level, due when, who has it, the triage; with
    ``cells`` (a dispatcher, a case flagged near an edge or outside), the cell to confirm or move it to."""
    t = translator(lang)
    name = "type_zh" if lang == "zh-CN" else "type_en"
    overdue = workflow.is_overdue(c["step"], c["deadline"], now)
    flags = [f for f in c["flags"] if f != "overdue"]
    rows: list[Component] = [
        html.Div(
            className="yitu-chips",
            children=[
                _chip(c[name], "yitu-case-type"),
                _chip(t(f"step.{c['step']}"), f"yitu-step-{c['step']} yitu-case-step"),
                _chip(t(f"level.{c['level']}"), "yitu-case-level"),
                *([_chip(t("case.overdue"), "yitu-chip-red")] if overdue else []),
                *[_chip(t(f"casepage.flag.{f}"), "yitu-chip-amber yitu-flag") for f in flags],
            ],
        ),
        _deadline_line(c, now, t),
        html.Div(f"{t('casepage.attempts')} {c['attempts']}/{rules.max_attempts}"),
        html.Div(f"{t('casepage.assignee')} {_assignee(c['assignee'], t)}", id="case-assignee"),
        html.Div(f"{t('case.grid')} {c['grid_name'] or '—'} ({c['grid_code'] or '—'})"),
        html.Div(f"{t('casepage.channel')} {t('channel.' + c['channel'])}"),
        html.Div(f"{t('case.reported')} {shown(c['reported_at'])}"),
        html.Div(
            className="yitu-triage",
            children=[
                html.Span(
                    f"{t('casepage.severity')} {t('severity.' + c['severity']) if c['severity'] else '—'}",
                    id="case-severity",
                ),
                html.Span(f"{t('casepage.people')} {_or_dash(c['people_involved'])}", id="case-people"),
                html.Span(f"{t('casepage.amount')} {_money(c['amount_yuan'])}", id="case-amount"),
            ],
        ),
    ]
    if c["outcome"]:
        rows.append(html.Div(f"{t('casepage.outcome')} {t('outcome.' + c['outcome'])}"))
    if c["satisfaction"]:
        rows.append(html.Div(f"{t('casepage.satisfaction')} {c['satisfaction']}/5"))
    if c["duplicate_of"]:
        rows.append(html.Div([t("casepage.duplicate_of") + " ", case_link(c["duplicate_of"])], id="case-dup-of"))
    if c["duplicates"]:
        links: list[Component | str] = [t("casepage.duplicates") + " "]
        for i, d in enumerate(c["duplicates"]):
            links += ([" "] if i else []) + [case_link(d)]
        rows.append(html.Div(links, id="case-duplicates"))
    return [html.H3(t("casepage.facts")), *rows, *cell_picker(c, cells, t)]


def cell_picker(c: Mapping[str, Any], cells: Sequence[Mapping[str, Any]], t: Callable[[str], str]) -> list[Component]:
    """For a case flagged near a cell's edge or outside the territory: the nearby cells to choose
    from, a button to confirm the cell intake found (near an edge) and one to move it to the chosen."""
    if not cells or not set(casefile.CELL_FLAGS) & set(c["flags"]):
        return []
    opts = [
        {"label": f"{x['name']} ({x['code']}) · {x['distance_m']:.0f} m", "value": x["code"]}
        for x in cells
        if x["code"] != c["grid_code"]
    ]
    buttons: list[Component] = []
    if "near_boundary" in c["flags"]:
        buttons.append(
            html.Button(
                t("casepage.cell.confirm"),
                id={"type": CELL, "do": "confirm"},
                n_clicks=0,
                className="yitu-button yitu-action",
                **data_action("confirm_cell"),
            )
        )
    if opts:
        buttons.append(
            html.Button(
                t("casepage.cell.move"),
                id={"type": CELL, "do": "move"},
                n_clicks=0,
                className="yitu-button yitu-action",
                **data_action("move_cell"),
            )
        )
    return [
        html.Div(
            className="yitu-cell-picker",
            children=[
                html.H4(t("casepage.cell.title")),
                *(
                    [
                        dcc.RadioItems(
                            id={"type": CELL_PICK, "i": 0},
                            options=opts,
                            value=opts[0]["value"],
                            className="yitu-radio",
                            labelClassName="yitu-radio-label yitu-cell-option",
                        )
                    ]
                    if opts
                    else []
                ),
                html.Div(buttons, className="yitu-action-bar"),
            ],
        )
    ]


def parties(c: Mapping[str, Any], role: str, lang: str) -> list[Component]:
    """The parties and the description as ``role`` may see them (geodata/masking.py)."""
    t = translator(lang)
    shown = masking.parties_for(role, c["parties"])
    people = [
        html.Li(" · ".join(x for x in (p.get("name"), p.get("phone"), p.get("role")) if x), className="yitu-party")
        for p in shown
    ] or [html.Li("—", className="yitu-muted")]
    return [
        html.H3(t("case.parties")),
        html.Ul(people, className="yitu-parties", id="case-party-list"),
        html.H3(t("casepage.description")),
        html.P(masking.text_for(role, c["description"], c["parties"]), className="yitu-description"),
    ]


def attachment_list(rows: Sequence[Mapping[str, Any]], role: str, lang: str) -> list[Component]:
    """The case's photos and documents: thumbnails for the roles that may see content, names else."""
    t = translator(lang)
    if not rows:
        return [html.H3(t("casepage.attachments")), html.P(t("casepage.no_attachments"), className="yitu-muted")]
    content = masking.sees_attachment_content(role)
    items: list[Component] = []
    for a in rows:
        url = f"/api/v1/attachments/{a['id']}"
        # the client's name for the file may name the parties: only for the readers of the content
        label = (a["filename"] if content else None) or t(f"casepage.kind.{a['kind']}")
        if content and a["thumb_sha256"]:
            items.append(
                html.A(
                    html.Img(src=url + "/thumbnail", alt=label, className="yitu-thumb"),
                    href=url,
                    target="_blank",
                    className="yitu-attachment",
                )
            )
        elif content:
            items.append(html.A(label, href=url, target="_blank", className="yitu-link yitu-attachment"))
        else:
            items.append(html.Span(label, className="yitu-muted yitu-attachment"))
    return [html.H3(t("casepage.attachments")), html.Div(items, className="yitu-attachment-list")]


def _event_note(e: Mapping[str, Any], t: Callable[[str], str]) -> str:
    """What an audit row says besides its steps: the reason, the result, the assignee, the outcome."""
    data = e.get("data") or {}
    bits = []
    if data.get("reason"):
        bits.append(t(f"reason.{data['reason']}"))
    if data.get("duplicate_of"):
        bits.append(f"{t('casepage.duplicate_of')} {data['duplicate_of']}")
    if data.get("assignee"):
        bits.append(_assignee(data["assignee"], t))
    if data.get("result"):
        bits.append(t(f"result.{data['result']}"))
    if data.get("outcome"):
        bits.append(t(f"outcome.{data['outcome']}"))
    if data.get("agreement_no"):
        bits.append(f"{t('casepage.agreement_no')} {data['agreement_no']}")
    if data.get("satisfaction"):
        bits.append(f"{t('casepage.satisfaction')} {data['satisfaction']}/5")
    if e.get("note"):
        bits.append(str(e["note"]))
    return " · ".join(bits)


def timeline_view(
    events: Sequence[Mapping[str, Any]], c: Mapping[str, Any], role: str, now: datetime, lang: str
) -> list[Component]:
    """Every audit row (who, role, when, step → step, level, note, how long until the next), then
    the time spent in each step and at each level."""
    t = translator(lang)
    closed = c["step"] not in workflow.OPEN_STEPS
    masked = masking.case_for(role, {"parties": c["parties"], "timeline": [dict(e) for e in events]})["timeline"]
    rows: list[Component] = []
    for i, e in enumerate(masked):
        nxt = events[i + 1]["occurred_at"] if i + 1 < len(events) else (None if closed else now)
        stay = _span((nxt - e["occurred_at"]).total_seconds()) if nxt else ""
        steps = t(f"step.{e['from_step']}") + " → " if e["from_step"] else ""
        steps += t(f"step.{e['to_step']}") if e["to_step"] else ""
        rows.append(
            html.Tr(
                className="yitu-event",
                children=[
                    html.Td(shown(e["occurred_at"], "%m-%d %H:%M")),
                    html.Td(f"{e['actor']} · {t('role.' + e['role']) if e['role'] else ''}"),
                    html.Td(t(f"caseaction.{e['action']}")),
                    html.Td(steps),
                    html.Td(t(f"level.{e['level']}") if e["level"] else ""),
                    html.Td(_event_note(e, t), className="yitu-event-note"),
                    html.Td(stay, className="yitu-muted"),
                ],
            )
        )
    spent = workflow.time_in(list(events), now, closed=closed)
    totals = [
        html.Div(
            className="yitu-chips yitu-time-in",
            children=[
                *[_chip(f"{t('step.' + s)} {_span(v)}") for s, v in spent["steps"].items()],
                *[_chip(f"{t('level.' + lv)} {_span(v)}", "yitu-chip-level") for lv, v in spent["levels"].items()],
            ],
        )
    ]
    return [*totals, html.Table(className="yitu-table yitu-timeline", children=[html.Tbody(rows)])]


def visits_view(rows: Sequence[Mapping[str, Any]], lang: str) -> list[Component]:
    """The case's van visits: van, sent, arrived, ended, how far and by what route."""
    t = translator(lang)
    if not rows:
        return [html.P(t("casepage.no_dispatches"), className="yitu-muted")]

    def at(v: datetime | None) -> str:
        return shown(v, "%m-%d %H:%M")

    out: list[Component] = []
    for d in rows:
        km = f"{d['distance_m'] / 1000:.1f} {t('dispatch.km')}" if d["distance_m"] is not None else "—"
        how = t("dispatch." + d["method"]) if d["method"] else "—"
        out.append(
            html.Div(
                className=f"yitu-visit yitu-van-{d['status']}",
                children=[
                    html.Div([html.B(f"{d['van_id']} {d['van_name']}"), " · ", t(f"casepage.visit.{d['status']}")]),
                    html.Div(
                        f"{t('casepage.sent')} {at(d['created_at'])} · {t('casepage.arrived')} {at(d['arrived_at'])}"
                        f" · {t('casepage.ended')} {at(d['ended_at'])} · {km} · {how}",
                        className="yitu-muted",
                    ),
                ],
            )
        )
    return out


def focus(
    c: Mapping[str, Any], cams: Sequence[Mapping[str, Any]], visits: Sequence[Mapping[str, Any]]
) -> list[Component]:
    """The map's case layers: its cell's outline, the 500 m ring, the cameras in it, the vans' routes,
    the case itself on top."""
    lat, lon = c["lat"], c["lon"]
    out: list[Component] = []
    if c["cell"]:
        out.append(
            dl.GeoJSON(
                data={"type": "Feature", "geometry": c["cell"], "properties": {}},
                style={"color": "#7fe3ff", "weight": 3, "fillColor": "#5ec8ff", "fillOpacity": 0.14},
                id="case-cell",
            )
        )
    out.append(
        dl.Circle(center=[lat, lon], radius=CAMERA_RADIUS_M, color="#ffe066", weight=1, fill=False, dashArray="6 6")
    )
    for cam in cams:
        out.append(
            dl.CircleMarker(
                center=[cam["lat"], cam["lon"]],
                radius=6,
                color="#9be15d" if cam["status"] == "online" else "#8a94a6",
                fillOpacity=0.8,
                children=[dl.Tooltip(f"{cam['name']} · {cam['distance_m']:.0f} m")],
            )
        )
    for d in visits:
        if len(d["route"]) > 1:
            out.append(dl.Polyline(positions=d["route"], color="#ff9f43", weight=3))
    out.append(dl.CircleMarker(center=[lat, lon], radius=11, color="#ffe066", weight=3, fillOpacity=0.5))
    return out


class Page(TypedDict):
    """Everything the page's panels show, as one callback's outputs."""

    facts: list[Component]
    parties: list[Component]
    attachments: list[Component]
    focus: list[Component]
    timeline: list[Component]
    dispatches: list[Component]
    actions: list[Component]
    allowed: list[str]
    version: int | None


def actions_bar(allowed: Sequence[str], lang: str) -> list[Component]:
    """A button for each action the reader may take now, or a line saying they may take none."""
    t = translator(lang)
    if not allowed:
        return [html.P(t("casepage.no_actions"), className="yitu-muted", id="case-no-actions")]
    return [button(a, t(f"caseaction.{a}")) for a in allowed]


def view(svc: Services, rules: Rules, who: auth.Principal | None, code: str, lang: str) -> Page | None:
    """The page's panels for ``who`` (None: nothing; a case outside their area: None too)."""
    if who is None or who.role == "van":  # a van crew's token sees its visit's case through the API only
        return None
    if not is_case_code(code):  # the page's store, as the browser sends it back: any JSON
        return None
    now = _now()
    role = auth.reader_role(who)
    with svc.pool.connection() as conn:
        c = casefile.case(conn, code, auth.scope_of(who))
        if c is None:
            return None
        events = casefile.timeline(conn, c["id"])
        files = attachments.of_case(conn, c["id"])
        visits = casefile.visits(conn, code, auth.scope_of(who), now)
        cams = queries.cameras_near(conn, c["lon"], c["lat"], CAMERA_RADIUS_M, scope=auth.scope_of(who))
        flagged = set(casefile.CELL_FLAGS) & set(c["flags"])
        cells = casefile.cells_near(conn, code, limit=5) if flagged and who.role in casework.PLACERS else []
    own = rules.of(c["banner_code"])  # the case's banner's deadlines and attempts (geodata/deadlines.py)
    allowed = workflow.allowed_actions(store.state_of(c), own, who.role) if who.role in workflow.ROLES else []
    return {
        "facts": facts(c, own, now, lang, cells),
        "parties": parties(c, role, lang),
        "attachments": attachment_list(files, role, lang),
        "focus": focus(c, cams, visits),
        "timeline": timeline_view(events, c, role, now, lang),
        "dispatches": visits_view(visits, lang),
        "actions": actions_bar(allowed, lang),
        "allowed": allowed,
        "version": c["version"],
    }


def _field(name: str, component: Component, label: str) -> html.Label:
    return html.Label(className="yitu-field", children=[html.Span(label), component])


def _radio(name: str, options: list[dict[str, Any]], value: Any = None) -> dcc.RadioItems:
    return dcc.RadioItems(
        id={"type": FIELD, "name": name},
        options=options,
        value=value,
        className="yitu-radio",
        inputClassName="yitu-radio-input",
        labelClassName=f"yitu-radio-label yitu-{name}-option",
    )


def _text(name: str, placeholder: str = "", area: bool = False) -> Component:
    ident = {"type": FIELD, "name": name}
    if area:
        return dcc.Textarea(id=ident, value="", placeholder=placeholder, className="yitu-textarea", maxLength=NOTE_MAX)
    return dcc.Input(id=ident, value="", placeholder=placeholder, className="yitu-input", debounce=False)


def targets(svc: Services, code: str, now: datetime | None = None, scope: str | None = None) -> list[dict[str, Any]]:
    """Whom the case could go to, best first: the roster's mediators and units (geodata/suggest.py),
    then the vans that could go now (geodata/dispatch.py, by road) of those a reader scoped to
    ``scope`` may send (its banner's and the league's)."""
    with svc.pool.connection() as conn:
        people = suggest.candidates(conn, code)
        vans = dispatch.candidates(conn, code, dispatching.routing(svc.settings), now or _now(), scope=scope)
    return [*people, *({"kind": "van", **v} for v in vans if v["dispatchable"])]


def _target_label(r: Mapping[str, Any], t: Callable[[str], str]) -> str:
    km = f"{r['distance_m'] / 1000:.1f}{t('dispatch.km')}" if r.get("distance_m") is not None else "—"
    if r["kind"] == "van":
        return f"{t('casepage.kind.van')} · {r['id']} {r['name']} · {km}"
    bits = [t(f"casepage.kind.{r['kind']}"), r["name"], t(f"level.{r['level']}")]
    if r["specialty"]:
        bits.append(t("casepage.specialist"))
    bits += [t("casepage.load").format(n=r["load"]), km]
    return " · ".join(bits)


def form(svc: Services, rules: Rules, who: auth.Principal | None, code: str, action: str, lang: str) -> list[Component]:
    """The form of ``action`` on case ``code``: its fields, and its send button
    (``button[data-action=confirm]``). Nothing for a case outside the reader's area or an action the
    reader may not take on it now (the code and the action come from the browser: a form made for
    any code told whether the case existed, and its mediators, units and how far each van was)."""
    t = translator(lang)
    if who is None or who.role == "van" or action not in workflow.ACTIONS or not is_case_code(code):
        return []
    with svc.pool.connection() as conn:
        c = casefile.case(conn, code, auth.scope_of(who))
    if c is None or who.role not in workflow.ROLES:
        return []
    if action not in workflow.allowed_actions(store.state_of(c), rules.of(c["banner_code"]), who.role):
        return []
    fields: list[Component] = []
    opts: list[dict[str, Any]]
    for name in FIELDS_OF[action]:
        label = t(f"casepage.field.{name}")
        if name == "note":
            fields.append(_field(name, _text(name, area=True), t(f"casepage.field.note.{action}")))
        elif name == "followup_note":
            fields.append(_field(name, _text(name, area=True), label))
        elif name in ("duplicate_of", "agreement_no"):
            fields.append(_field(name, _text(name), label))
        elif name == "reason":
            opts = [{"label": t(f"reason.{r}"), "value": r} for r in workflow.REJECT_REASONS]
            fields.append(_field(name, _radio(name, opts), label))
        elif name == "result":
            fields.append(
                _field(
                    name, _radio(name, [{"label": t(f"result.{r}"), "value": r} for r in ("success", "failed")]), label
                )
            )
        elif name == "outcome":
            opts = [{"label": t(f"outcome.{o}"), "value": o} for o in workflow.OUTCOMES]
            fields.append(_field(name, _radio(name, opts), label))
        elif name == "satisfaction":
            opts = [{"label": str(n), "value": n} for n in range(1, 6)]
            fields.append(_field(name, _radio(name, opts), label))
        elif name == "target":
            rows = targets(svc, code, scope=who.area)
            opts = [{"label": _target_label(r, t), "value": f"{r['kind']}:{r['id']}"} for r in rows]
            if not opts:
                fields.append(html.P(t("casepage.no_targets"), className="yitu-muted"))
            else:
                fields.append(_field(name, _radio(name, opts, opts[0]["value"]), label))
    return [
        html.H4(t(f"caseaction.{action}"), className="yitu-form-title"),
        *fields,
        html.Div(
            className="yitu-form-buttons",
            children=[
                html.Button(
                    t("casepage.confirm"),
                    id={"type": CONFIRM, "action": action},
                    n_clicks=0,
                    className="yitu-button yitu-confirm",
                    **data_action("confirm"),
                )
            ],
        ),
    ]


def _allowed_line(exc: YituError, lang: str) -> str:
    allowed = getattr(exc, "allowed", None)
    if allowed is None:
        return ""
    t = translator(lang)
    names = "、".join(t(f"caseaction.{a}") for a in allowed) or t("casepage.none")
    return t("casepage.allowed_now").format(actions=names)


def refused(exc: YituError, lang: str) -> str:
    """A refusal as the page shows it: what went wrong, in the page's language, and what is allowed now."""
    return " ".join(x for x in (refusal(exc, lang), _allowed_line(exc, lang)) if x)


def _params(action: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The action's inputs from the form's fields (blank ones left out), trimmed like the API's."""
    out: dict[str, Any] = {}
    for name in FIELDS_OF.get(action, ()):
        v = values.get(name)
        if isinstance(v, str):
            v = v.strip()[:NOTE_MAX]
        if v not in (None, ""):
            out[name] = v
    if action == "close" and out.get("outcome") == "mediated" and not out.get("agreement_no"):
        raise workflow.MissingInput("a mediated close needs the agreement's number", field="agreement_no")
    if action in NEEDS_NOTE and not out.get("note"):
        raise workflow.MissingInput(f"{action} needs a reason", field="note")
    if action == "reject" and out.get("reason") != "duplicate":
        out.pop("duplicate_of", None)
    return out


def act(
    svc: Services,
    rt: CasesRuntime,
    who: auth.Principal | None,
    code: str,
    action: str,
    values: Mapping[str, Any],
    lang: str,
    *,
    version: int | None = None,
    key: str | None = None,
) -> Outcome:
    """Take ``action`` on case ``code`` as ``who`` with the form's ``values``; the outcome for the page.

    ``key``: the page's action key; the Idempotency-Key is it and the action, so a double click
    moves the case once. ``version``: the version the page showed (a change since is refused).
    """
    t = translator(lang)

    def do(who: auth.Principal) -> str:
        _a_code(code)
        params = _params(action, values)
        if action == "dispatch" and str(params.get("target", "")).startswith("van:"):
            van = params["target"].removeprefix("van:")
            idem = f"page-{key or new_key()}-{van}"[:200]
            dispatching.send_van(svc, rt, who, code, van, params.get("note"), key=idem)
        else:
            if action == "dispatch":
                kind, _, ident = str(params.pop("target", "")).partition(":")
                with svc.pool.connection() as conn:
                    params["assignee"] = suggest.assignee(conn, kind, ident)
                if params["assignee"] is None:
                    raise Invalid("choose a mediator, a unit or a van", field="assignee")
            body = {"action": action, "version": version, **params}
            idem_key = idempotency.Key.of(
                who.actor.key_scope,
                f"page-{key or new_key()}-{action}"[:200],
                f"POST /api/v1/cases/{code}/transitions",
                body,
            )
            casework.move(svc, rt, who, code, action, params, version=version, key=idem_key)
        return t("casepage.done").format(action=t(f"caseaction.{action}"))

    return _attempt(who, lang, do)


def place(
    svc: Services,
    rt: CasesRuntime,
    who: auth.Principal | None,
    code: str,
    cell: str | None,
    lang: str,
    *,
    version: int | None = None,
    key: str | None = None,
) -> Outcome:
    """Confirm case ``code``'s cell (``cell`` None) or move it to ``cell``, as ``who``; the outcome
    for the page (services.casework.place: the API's path, audited)."""

    def do(who: auth.Principal) -> str:
        _a_code(code)
        given = None if cell is None else str(cell)  # the radio's value, as the browser sends it
        if given is not None and not (queries.digits(given) and len(given) <= 15):
            raise Invalid("pick one of the cells offered", field="cell")
        body = {"cell": given, "version": version}
        idem = idempotency.Key.of(
            who.actor.key_scope, f"page-{key or new_key()}-cell"[:200], f"POST /api/v1/cases/{code}/cell", body
        )
        casework.place(svc, rt, who, code, given, version=version, key=idem)
        done = "casepage.cell.confirmed" if given is None else "casepage.cell.moved"
        return translator(lang)(done).format(cell=given or "")

    return _attempt(who, lang, do)


def _a_code(code: object) -> None:
    """The page's case code, as the browser sends it back (any JSON): a case code, or no such case."""
    if not is_case_code(code):
        raise store.CaseNotFound(f"no case with code {str(code)[:40]!r}", field="code")


def _attempt(who: auth.Principal | None, lang: str, do: Callable[[auth.Principal], str]) -> Outcome:
    """A write of the page as ``who``: ``do`` returns the line to show when it is done; a refusal
    names its field, a lost COMMIT says the outcome is unknown, no database says so (nothing done)."""
    if who is None:
        return {"ok": False, "message": translator(lang)("error.unauthorized")}
    try:
        message = do(who)
    except OutcomeUnknown as exc:
        return {"ok": False, "message": refusal(exc, lang), "field": exc.field}
    except YituError as exc:
        return {"ok": False, "message": refused(exc, lang), "field": exc.field, "at": _now().isoformat()}
    except (psycopg.Error, PoolTimeout) as exc:  # no connection, or lost before the COMMIT: nothing done
        return {"ok": False, "message": refusal(database_unavailable(exc), lang)}
    return {"ok": True, "message": message, "at": _now().isoformat()}


def _clicked() -> dict[str, Any] | None:
    """The pattern id of the button clicked; None for a re-rendered one (n_clicks 0), not a click."""
    trig = ctx.triggered_id
    if not isinstance(trig, dict) or not ctx.triggered or not ctx.triggered[0]["value"]:
        return None
    return trig


def register(app: Dash, get: Callable[[], Services], get_runtime: Callable[[], CasesRuntime]) -> None:
    outputs = [
        Output(Ids.FACTS, "children"),
        Output(Ids.PARTIES, "children"),
        Output(Ids.ATTACHMENTS, "children"),
        Output(Ids.FOCUS, "children"),
        Output(Ids.TIMELINE, "children"),
        Output(Ids.DISPATCHES, "children"),
        Output(Ids.ACTIONS, "children"),
        Output(Ids.VERSION, "data"),
        Output(Ids.ALLOWED, "data"),
    ]

    @app.callback(
        *outputs,
        Input(Ids.CODE, "data"),
        Input({"type": TICK, "code": ALL}, "data"),
        Input(Ids.DONE, "data"),
        State(Ids.ALLOWED, "data"),
        State("lang", "data"),
    )
    def _panels(code: str, _tick: object, _done: object, shown: list[str] | None, lang: str) -> tuple[Any, ...]:
        page = view(get(), get_runtime().rules, auth.current(), code, lang)
        if page is None:
            return ([],) * 7 + (None, [])
        # The buttons are redrawn only when the actions change: a redraw while someone clicks would
        # swallow the click (the newer callback round supersedes the one the click started).
        actions = no_update if shown is not None and page["allowed"] == shown else page["actions"]
        keys = ("facts", "parties", "attachments", "focus", "timeline", "dispatches")
        return (*(page[k] for k in keys), actions, page["version"], page["allowed"])  # type: ignore[literal-required]

    @app.callback(
        Output(Ids.FORM, "children"),
        Output(Ids.CHOSEN, "data"),
        Input({"type": ACTION, "action": ALL}, "n_clicks"),
        State(Ids.CODE, "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def _form(_clicks: list[int | None], code: str, lang: str) -> tuple[Any, Any]:
        trig = _clicked()
        if trig is None:
            return no_update, no_update
        action = str(trig["action"])
        return form(get(), get_runtime().rules, auth.current(), code, action, lang), action

    @app.callback(
        Output(Ids.DONE, "data"),
        Output(Ids.MESSAGE, "children"),
        Output(Ids.KEY, "data"),
        Output(Ids.FORM, "children", allow_duplicate=True),  # a form that did its work closes
        Input({"type": CONFIRM, "action": ALL}, "n_clicks"),
        State({"type": FIELD, "name": ALL}, "value"),
        State({"type": FIELD, "name": ALL}, "id"),
        State(Ids.CODE, "data"),
        State(Ids.VERSION, "data"),
        State(Ids.KEY, "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def _act(
        _clicks: list[int | None],
        values: list[Any],
        ids: list[dict[str, str]],
        code: str,
        version: int | None,
        key: str | None,
        lang: str,
    ) -> tuple[Outcome | NoUpdate, str | NoUpdate, str | NoUpdate, list[Component] | NoUpdate]:
        trig = _clicked()
        if trig is None:
            return no_update, no_update, no_update, no_update
        fields = {i["name"]: v for i, v in zip(ids, values, strict=True)}
        out = act(
            get(), get_runtime(), auth.current(), code, str(trig["action"]), fields, lang, version=version, key=key
        )
        return out, out["message"], new_key(), ([] if out["ok"] else no_update)

    @app.callback(
        Output(Ids.DONE, "data", allow_duplicate=True),
        Output(Ids.MESSAGE, "children", allow_duplicate=True),
        Output(Ids.KEY, "data", allow_duplicate=True),
        Input({"type": CELL, "do": ALL}, "n_clicks"),
        State({"type": CELL_PICK, "i": ALL}, "value"),
        State(Ids.CODE, "data"),
        State(Ids.VERSION, "data"),
        State(Ids.KEY, "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def _place(
        _clicks: list[int | None], picks: list[str | None], code: str, version: int | None, key: str | None, lang: str
    ) -> tuple[Outcome | NoUpdate, str | NoUpdate, str | NoUpdate]:
        trig = _clicked()
        if trig is None:
            return no_update, no_update, no_update
        cell = None if trig["do"] == "confirm" else next(iter(picks), None)
        if trig["do"] == "move" and not cell:
            return no_update, no_update, no_update
        out = place(get(), get_runtime(), auth.current(), code, cell, lang, version=version, key=key)
        return out, out["message"], new_key()

    # The live push: an event of this case (another screen acted) redraws the page (the vans' layer
    # reloads in callbacks/live.py, as on the other pages).
    app.clientside_callback(
        """function(batch, ids, ticks) {
            var nu = window.dash_clientside.no_update;
            return (ids || []).map(function (id, i) {
                var hit = batch && (batch.resync
                    || (batch.events || []).some(function (e) { return e.code === id.code; }));
                return hit ? (ticks[i] || 0) + 1 : nu;
            });
        }""",
        Output({"type": TICK, "code": ALL}, "data"),
        Input("live-events", "data"),
        State({"type": TICK, "code": ALL}, "id"),
        State({"type": TICK, "code": ALL}, "data"),
        prevent_initial_call=True,
    )

"""The admin page's roster sections: the mediators and the units, listed, added, changed, deactivated.

As the rest of the admin page (callbacks/admin.py): the work is in module-level functions that take
the services, the admin and the client address first (tests call them directly), each change goes
through services/roster.py (the change and its admin_events row in one transaction), a refusal is one
line in the page's language naming the field. Each mediator shows their open cases beside the name:
how many, and the first codes, each a link to the case page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from dash import Dash, Input, Output, dcc, html
from dash.exceptions import PreventUpdate

from callbacks.admin import (
    Buttons,
    Outcome,
    _admin,
    _head,
    _refused,
    _run,
    _table,
    client_address,
    pick_id,
    wire_section,
)
from dashboard.i18n import translator
from dashboard.pages.admin import Ids
from geodata import roster, tracking
from geodata.errors import Invalid, YituError
from services import identity
from services import roster as changes
from services.identity import Principal
from services.runtime import Services

ROWS = 25  # rows a section lists at once (each row is a dozen components to render); the filter finds the others
MAX_FILTER = 100


def _filter(q: str | None) -> str | None:
    q = (q or "").strip()
    if len(q) > MAX_FILTER or not q.isprintable():
        raise Invalid("at most 100 printable characters", field="filter")
    return q or None


def _open(n: int, codes: list[str], t: Callable[[str], str]) -> html.Span:
    """The open cases beside a name: a count, then the first codes as links to the case page."""
    if not n:
        return html.Span(t("admin.roster.idle"), className="yitu-roster-load yitu-muted")
    links: list[Any] = [html.Span(t("admin.roster.open_cases").format(n=n), className="yitu-roster-count")]
    links += [dcc.Link(code, href=f"/cases/{code}", className="yitu-roster-case") for code in codes]
    return html.Span(links, className="yitu-roster-load")


def _state(active: bool, t: Callable[[str], str]) -> html.Span:
    return _short(t("admin.state.active") if active else t("admin.state.disabled"))


def _short(text: str) -> html.Span:
    """A short value kept on one line (a phone number, a level, a state): the table's long columns
    (open cases, unit, centre) wrap instead, not an 11-digit number before its last digit."""
    return html.Span(text, className="yitu-roster-short")


def _types(svc: Services) -> tuple[dict[str, str], list[dict[str, str]]]:
    with svc.pool.connection() as conn:
        types = roster.case_types(conn)
    return dict(types), [{"label": name, "value": code} for code, name in types]


def _count(t: Callable[[str], str], rows: list[dict[str, Any]]) -> str:
    total = int(rows[0]["total"]) if rows else 0
    return t("admin.roster.shown").format(shown=len(rows), total=total)


# --- mediators --------------------------------------------------------------------------------------


def mediators_view(svc: Services, lang: str, who: Principal | None, q: str | None = None) -> tuple[Any, ...]:
    """The mediators' table (open cases beside each name), the pick's choices, the form's choices
    (units, vans, case types) and the count line."""
    t = translator(lang)
    try:
        flt = roster.MediatorFilter(active=None, limit=ROWS, q=_filter(q))
    except YituError as exc:
        return _refused(exc, lang), [], [], [], [], ""
    names, type_options = _types(svc)
    with svc.pool.connection() as conn:
        area = _admin(who).area  # its area's rows and those above it (services/roster.py)
        rows = roster.list_mediators(conn, area, flt)
        codes = roster.open_case_codes(conn, "mediator", [r["id"] for r in rows], area)
        units = roster.list_units(conn, area, roster.UnitFilter(limit=2000))
        vans = tracking.device_counts(conn, area)
    table = _table(
        t,
        _head(t, "name", "open_cases", "phone", "level", "area", "unit", "centre", "van", "specialties", "state"),
        [
            [
                html.Span(r["name"], className="yitu-roster-name"),
                _open(r["open_cases"], codes.get(r["id"], []), t),
                _short(r["phone"] or "—"),
                _short(t(f"level.{r['level']}")),
                f"{r['area_name'] or ''} {r['area_code']}".strip(),
                r["unit_name"] or "—",
                r["centre_name"] or "—",
                _short(r["van_id"] or "—"),
                "、".join(names.get(s, s) for s in r["specialties"]) or "—",
                _state(r["active"], t),
            ]
            for r in rows
        ],
    )
    picks = [{"label": f"#{r['id']} {r['name']}（{r['area_name'] or r['area_code']}）", "value": r["id"]} for r in rows]
    unit_options = [{"label": f"{u['name']}（{u['area_name'] or u['area_code']}）", "value": u["id"]} for u in units]
    van_options = [{"label": f"{van} {name}", "value": van} for van, name, _ in vans]
    # a unit or a van a listed mediator has already (another area's, the league's) stays a choice: an
    # admin who cannot give it keeps it on a change (the dropdown drops a value not among its options)
    listed = {u["id"] for u in units}
    units_kept = {r["unit_id"]: r["unit_name"] for r in rows if r["unit_id"] and r["unit_id"] not in listed}
    unit_options += [{"label": name or f"#{i}", "value": i} for i, name in sorted(units_kept.items())]
    kept = sorted({r["van_id"] for r in rows if r["van_id"]} - {o["value"] for o in van_options})
    van_options += [{"label": van, "value": van} for van in kept]
    return table, picks, unit_options, van_options, type_options, _count(t, rows)


_MEDIATOR_FORM = ("name", "phone", "area_code", "level", "unit", "centre", "van", "specialties", "user")


def _form(fields: Mapping[str, Any], keys: tuple[str, ...], patch: bool) -> dict[str, Any]:
    """The form as the roster's fields: blanks are empty (left out of a new row; clearing on a change)."""
    out: dict[str, Any] = {}
    for key in keys:
        value = fields.get(key)
        if isinstance(value, str):
            value = value.strip() or None
        if key == "unit" and value is not None:
            value = str(value)
        if key == "specialties":
            value = list(value or [])
        if value is not None or patch:
            out[key] = value
    return out


def _pick_id(pick: Any) -> int:
    return pick_id(pick)


def roster_action(
    svc: Services,
    who: Principal | None,
    address: str | None,
    table: changes.Table,
    action: str,
    fields: dict[str, Any],
    lang: str,
) -> Outcome:
    """``create`` (the form), ``apply`` (pick + the form), ``deactivate`` / ``activate`` (pick)."""
    t = translator(lang)
    keys = _MEDIATOR_FORM if table == "mediators" else _UNIT_FORM

    def change(conn: psycopg.Connection, me: Principal) -> Outcome:
        if action == "create":
            given = _form(fields, keys, patch=False)
            changes.create(conn, me, address, table, given)
            return Outcome(True, t("admin.done.roster_create").format(name=given.get("name")))
        ident = _pick_id(fields.get("pick"))
        if action == "apply":
            row = changes.update(conn, me, address, table, ident, _form(fields, keys, patch=True))
            return Outcome(True, t("admin.done.roster_update").format(name=row["name"]))
        if action in ("deactivate", "activate"):
            done = changes.set_active(conn, me, address, table, ident, action == "activate")
            if not done:
                return Outcome(False, t("admin.done.unchanged").format(name=f"#{ident}"))
            return Outcome(True, t(f"admin.done.roster_{action}").format(name=f"#{ident}"))
        raise Invalid(f"unknown action {action!r}")

    return _run(svc, who, lang, change)


def mediator_form(svc: Services, who: Principal | None, pick: Any) -> tuple[Any, ...]:
    """A picked mediator's values, into the form (to change them)."""
    with svc.pool.connection() as conn:
        r = roster.get_mediator(conn, _admin(who).area, _pick_id(pick))
    return (
        r["name"],
        r["phone"] or "",
        r["area_code"],
        r["level"],
        r["unit_id"],
        r["centre_code"] or "",
        r["van_id"],
        list(r["specialties"]),
        r["user_name"] or "",
    )


# --- units ------------------------------------------------------------------------------------------

_UNIT_FORM = ("name", "kind", "area_code", "level", "phone", "specialties")


def units_view(svc: Services, lang: str, who: Principal | None, q: str | None = None) -> tuple[Any, ...]:
    """The units' table, the pick's choices, the case types to choose from and the count line."""
    t = translator(lang)
    try:
        flt = roster.UnitFilter(active=None, limit=ROWS, q=_filter(q))
    except YituError as exc:
        return _refused(exc, lang), [], [], ""
    names, type_options = _types(svc)
    with svc.pool.connection() as conn:
        area = _admin(who).area
        rows = roster.list_units(conn, area, flt)
        codes = roster.open_case_codes(conn, "unit", [r["id"] for r in rows], area)
    table = _table(
        t,
        _head(t, "name", "open_cases", "kind", "level", "area", "phone", "mediators", "specialties", "state"),
        [
            [
                html.Span(r["name"], className="yitu-roster-name"),
                _open(r["open_cases"], codes.get(r["id"], []), t),
                t(f"unit_kind.{r['kind']}"),
                _short(t(f"level.{r['level']}")),
                f"{r['area_name'] or ''} {r['area_code']}".strip(),
                _short(r["phone"] or "—"),
                _short(str(r["mediators"])),
                "、".join(names.get(s, s) for s in r["specialties"]) or "—",
                _state(r["active"], t),
            ]
            for r in rows
        ],
    )
    picks = [{"label": f"#{r['id']} {r['name']}", "value": r["id"]} for r in rows]
    return table, picks, type_options, _count(t, rows)


def unit_form(svc: Services, who: Principal | None, pick: Any) -> tuple[Any, ...]:
    with svc.pool.connection() as conn:
        r = roster.get_unit(conn, _admin(who).area, _pick_id(pick))
    return r["name"], r["kind"], r["area_code"], r["level"], r["phone"] or "", list(r["specialties"])


# --- wiring -----------------------------------------------------------------------------------------


_MEDIATOR_IDS = (
    Ids.MED_NAME,
    Ids.MED_PHONE,
    Ids.MED_AREA,
    Ids.MED_LEVEL,
    Ids.MED_UNIT,
    Ids.MED_CENTRE,
    Ids.MED_VAN,
    Ids.MED_SPECIALTIES,
    Ids.MED_USER,
)
_UNIT_IDS = (Ids.UNIT_NAME, Ids.UNIT_KIND, Ids.UNIT_AREA, Ids.UNIT_LEVEL, Ids.UNIT_PHONE, Ids.UNIT_SPECIALTIES)


def _buttons(keys: tuple[str, ...], ids: tuple[str, ...], pick: str, buttons: tuple[str, str, str, str]) -> Buttons:
    """A roster section's four buttons (create, apply, deactivate, activate) and the fields each reads."""
    form = dict(zip(keys, ids, strict=True))
    create, apply, deactivate, activate = buttons
    return {
        create: ("create", form),
        apply: ("apply", {**form, "pick": pick}),
        deactivate: ("deactivate", {"pick": pick}),
        activate: ("activate", {"pick": pick}),
    }


def register(app: Dash, get: Callable[[], Services]) -> None:
    def lang() -> str:
        return get().settings.lang

    def section(table: changes.Table) -> Callable[[str, dict[str, Any]], Outcome]:
        return lambda action, fields: roster_action(
            get(), identity.current(), client_address(), table, action, fields, lang()
        )

    def form(name: str, pick: str, ids: tuple[str, ...], fill: Callable[..., tuple[Any, ...]]) -> None:
        """The form filled with the row picked (nothing when none is, or it cannot be read)."""

        def run(chosen: Any) -> tuple[Any, ...]:
            if chosen is None:
                raise PreventUpdate
            try:
                return fill(get(), identity.current(), chosen)
            except YituError:
                raise PreventUpdate from None

        run.__name__ = run.__qualname__ = name  # the guard's CALLBACKS table names it
        app.callback(*(Output(i, "value") for i in ids), Input(pick, "value"), prevent_initial_call=True)(run)

    wire_section(
        app,
        "callbacks.roster._mediators",
        (Ids.MEDIATORS, Ids.MED_PICK, Ids.MED_MESSAGE),
        _buttons(
            _MEDIATOR_FORM,
            _MEDIATOR_IDS,
            Ids.MED_PICK,
            (Ids.MED_CREATE, Ids.MED_APPLY, Ids.MED_DEACTIVATE, Ids.MED_ACTIVATE),
        ),
        section("mediators"),
        lambda q: mediators_view(get(), lang(), identity.current(), q),
        filters=(Ids.MED_FILTER,),
        more=(
            Output(Ids.MED_UNIT, "options"),
            Output(Ids.MED_VAN, "options"),
            Output(Ids.MED_SPECIALTIES, "options"),
            Output(Ids.MED_COUNT, "children"),
        ),
    )
    form("_mediator_form", Ids.MED_PICK, _MEDIATOR_IDS, mediator_form)
    wire_section(
        app,
        "callbacks.roster._units",
        (Ids.UNITS, Ids.UNIT_PICK, Ids.UNIT_MESSAGE),
        _buttons(
            _UNIT_FORM,
            _UNIT_IDS,
            Ids.UNIT_PICK,
            (Ids.UNIT_CREATE, Ids.UNIT_APPLY, Ids.UNIT_DEACTIVATE, Ids.UNIT_ACTIVATE),
        ),
        section("units"),
        lambda q: units_view(get(), lang(), identity.current(), q),
        filters=(Ids.UNIT_FILTER,),
        more=(Output(Ids.UNIT_SPECIALTIES, "options"), Output(Ids.UNIT_COUNT, "children")),
    )
    form("_unit_form", Ids.UNIT_PICK, _UNIT_IDS, unit_form)

"""The roster's changes with their ``admin_events`` row, in the caller's transaction.

One implementation for the two faces that change the roster by hand — the API (api/roster.py) and the
admin page (callbacks/admin.py) — as services/admin.py is for users and tokens: the change
(geodata/roster.py judges and writes it) and its audit row commit together or not at all.
``yitu import units|mediators`` writes its own row (cli/data.py).

An admin scoped to an area changes only the rows of its area, and puts none outside it (403 naming
``area_code``; services/admin.py: an admin's reach is its area). It still reads the units above it,
which serve its area too (403 on a change to one), and a row it cannot read is to it as one that does
not exist (404). A mediator it changes is linked only to what it reaches: a user and a van of its
own, a unit or a centre of its area or above it (each refused as unknown, naming the field); a link
the row has already is kept as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import psycopg

from geodata import queries, roster
from geodata.errors import Invalid, NotFound
from services import audit, identity
from services.admin import require_reach, van_in_reach
from services.identity import Principal

Table = Literal["units", "mediators"]
_WHAT = {"units": "unit", "mediators": "mediator"}


def _shown(fields: Mapping[str, object]) -> dict[str, Any]:
    """The audit's detail: what was given, phones left out (the log is read more widely than the roster)."""
    return {k: v for k, v in fields.items() if k != "phone"}


def create(
    conn: psycopg.Connection[Any],
    who: Principal | None,
    address: str | None,
    table: Table,
    fields: Mapping[str, object],
) -> int:
    """A new unit or mediator; Invalid / Conflict naming the field."""
    require_reach(who, str(fields.get("area_code") or "") or None, "area_code")
    if table == "mediators":
        _links_in_reach(conn, who, fields, {})
    make = roster.create_unit if table == "units" else roster.create_mediator
    ident = make(conn, fields)
    what = _WHAT[table]
    audit.record(conn, who, f"{what}.create", f"{what}:{ident}", _shown(fields), address)
    return ident


def update(
    conn: psycopg.Connection[Any],
    who: Principal | None,
    address: str | None,
    table: Table,
    ident: int,
    changes: Mapping[str, object],
) -> dict[str, Any]:
    """Some fields of a unit or mediator changed (``active`` false deactivates it); NotFound, Invalid."""
    _row_in_reach(conn, who, table, ident)
    if "area_code" in changes:
        require_reach(who, str(changes["area_code"] or "") or None, "area_code")
    if table == "mediators" and who is not None and who.area is not None:
        now = roster.get_mediator(conn, None, ident)
        had = {"user": now["user_name"], "van": now["van_id"], "unit": now["unit_id"], "centre": now["centre_code"]}
        _links_in_reach(conn, who, changes, had)
    change = roster.update_unit if table == "units" else roster.update_mediator
    row = change(conn, ident, changes)
    what = _WHAT[table]
    action = "deactivate" if changes.get("active") is False and len(changes) == 1 else "update"
    audit.record(conn, who, f"{what}.{action}", f"{what}:{ident}", _shown(changes), address)
    return row


def set_active(
    conn: psycopg.Connection[Any], who: Principal | None, address: str | None, table: Table, ident: int, active: bool
) -> bool:
    """Deactivate (never delete: old timelines name the row) or reactivate; True when it changed."""
    _row_in_reach(conn, who, table, ident)
    changed = roster.set_active(conn, table, ident, active)
    if changed:
        what = _WHAT[table]
        audit.record(conn, who, f"{what}.{'activate' if active else 'deactivate'}", f"{what}:{ident}", {}, address)
    return changed


def _row_in_reach(conn: psycopg.Connection[Any], who: Principal | None, table: Table, ident: int) -> None:
    """403 naming ``area_code`` for a row above ``who``'s area (it reads those, changes none of them);
    404 for one of another area (as for a missing one, which the change answers 404 too)."""
    if who is None or who.area is None:
        return
    query = (
        "SELECT area_code FROM units WHERE id = %s"
        if table == "units"
        else "SELECT area_code FROM mediators WHERE id = %s"
    )
    row = conn.execute(query, (ident,)).fetchone()
    if row is None or row[0].startswith(who.area):
        return
    if who.area.startswith(row[0]):
        require_reach(who, row[0], "area_code")
    raise NotFound(f"no {_WHAT[table]} with id {ident}", field="id")


def _links_in_reach(
    conn: psycopg.Connection[Any], who: Principal | None, fields: Mapping[str, object], had: Mapping[str, object]
) -> None:
    """A mediator's links that ``who`` gives (those it had already are kept): each in its reach, or
    refused as unknown naming the field."""
    if who is None or who.area is None:
        return

    def given(key: str) -> str | None:
        value = fields.get(key)
        text = str(value).strip() if value is not None else ""
        if not text or text == str(had.get(key) or ""):  # none, or the link the row has: kept
            return None
        if not queries.plain(text, 200):
            raise Invalid(f"no {key} {text[:40]!r}", field=key)
        return text

    reach = {"reach": who.area}
    if (user := given("user")) is not None:
        query = "SELECT 1 FROM users u WHERE u.name = %(v)s AND " + identity.USER_IN_REACH
        if conn.execute(query, {**reach, "v": user}).fetchone() is None:
            raise Invalid(f"no user named {user!r}", field="user")
    if (van := given("van")) is not None:
        van_in_reach(conn, who, van)
    if (unit := given("unit")) is not None:
        row = conn.execute("SELECT area_code FROM units WHERE id::text = %s", (unit,)).fetchone()
        if row is None or not _here_or_above(who.area, row[0]):
            raise Invalid(f"no unit with id {unit!r}", field="unit")
    if (centre := given("centre")) is not None:
        row = conn.execute("SELECT area_code FROM mediation_centers WHERE code = %s", (centre,)).fetchone()
        if row is None or not _here_or_above(who.area, row[0]):
            raise Invalid(f"no centre with code {centre!r}", field="centre")


def _here_or_above(area: str, code: str) -> bool:
    """Is ``code`` the admin's ``area``, inside it, or above it (a unit or a centre that serves it)?"""
    return code.startswith(area) or area.startswith(code)

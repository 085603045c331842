"""The roster's changes with their ``admin_events`` row, in the caller's transaction.

One implementation for the two faces that change the roster by hand — the API (api/roster.py) and the
admin page (callbacks/admin.py) — as services/admin.py is for users and tokens: the change
(geodata/roster.py judges and writes it) and its audit row commit together or not at all.
``yitu import units|mediators`` writes its own row (cli/data.py).

An admin scoped to an area changes only the rows of its area, and puts none outside it (403 naming
``area_code``; services/admin.py: an admin's reach is its area). It still reads the units above it,
which serve its area too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import psycopg

from geodata import roster
from services import audit
from services.admin import require_reach
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
    """403 naming ``area_code`` when the row is outside ``who``'s reach (a missing row is left to the
    change, which answers 404)."""
    if who is None or who.area is None:
        return
    query = (
        "SELECT area_code FROM units WHERE id = %s"
        if table == "units"
        else "SELECT area_code FROM mediators WHERE id = %s"
    )
    row = conn.execute(query, (ident,)).fetchone()
    if row is not None:
        require_reach(who, row[0], "area_code")

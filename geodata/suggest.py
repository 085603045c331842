"""Who a case could be dispatched to: the roster's mediators and units, best first.

The order is the dispatcher's rule of thumb, in this order of weight: someone whose specialty is
the case's type; at the level the case is at (a village case to the village's people); with the
fewest open cases; nearest. Only those serving the case's area are candidates (a mediator of
another town is not one). The ranking is one SQL statement (``roster_candidates.sql``) so the
page and any later API read the same list; vans are ranked by road distance elsewhere
(geodata/dispatch.py ``candidates``), since a van's availability is a different question.
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from geodata.errors import Invalid
from geodata.queries import digits, query

Kind = Literal["mediator", "unit"]
KINDS: tuple[str, ...] = ("mediator", "unit")


def candidates(conn: psycopg.Connection, code: str, kind: Kind | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The active mediators and units (``kind``: only those) serving case ``code``'s area, best first.

    Each row: kind, id (text, as a case's assignee names it), name, phone, level, area_code,
    specialties, unit_name (a mediator's unit), specialty (bool), level_gap, load (open cases),
    distance_m (None when neither side has a place). An unknown case gives an empty list.
    """
    if kind is not None and kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}, not {kind!r}", field="kind")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("roster_candidates"), {"code": code, "kind": kind, "limit": limit}).fetchall()


def assignee(conn: psycopg.Connection, kind: str, ident: str) -> dict[str, str] | None:
    """The assignee a dispatch writes for roster entry (``kind``, ``ident``): {"kind", "id", "name"};
    None when there is no such active entry (the page offers only active ones; a row deactivated
    meanwhile is refused rather than assigned)."""
    if kind not in KINDS or not digits(ident):
        return None
    table = "mediators" if kind == "mediator" else "units"
    stmt = sql.SQL("SELECT name FROM {} WHERE id = %s AND active").format(sql.Identifier(table))
    row = conn.execute(stmt, (int(ident),)).fetchone()
    return {"kind": kind, "id": ident, "name": row[0]} if row else None

"""What the case page (``/cases/{code}``) reads of one case: the case with its type, cell and
triage, its audit trail, its van visits and the route each van drove.

Reads only; the area scope is applied in the SQL (``case_page.sql``), so a reader outside the
case's area gets None, never a row filtered afterwards.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from geodata import cases as store
from geodata import dispatch, tracking
from geodata.queries import query

ROUTE_POINTS = 2000  # the pings of one visit drawn at most (a visit of hours at one ping in 10 s)


def case(conn: psycopg.Connection, code: str, scope: str | None) -> dict[str, Any] | None:
    """The case ``code`` as its page shows it, or None (no such case, or outside ``scope``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("case_page"), {"code": code, "scope": scope}).fetchone()


def timeline(conn: psycopg.Connection, case_id: int) -> list[dict[str, Any]]:
    """Every audit row of the case, oldest first."""
    return store.timeline(conn, case_id)


def visits(conn: psycopg.Connection, code: str, scope: str | None, now: datetime) -> list[dict[str, Any]]:
    """The case's van dispatches, newest first, each with ``route``: the van's pings from its
    dispatch to its end (or now), as [[lat, lon], ...] for the map."""
    rows = dispatch.dispatches(conn, case=code, area=scope, limit=20)
    for d in rows:
        pings = tracking.track(conn, d["van_id"], d["created_at"], d["ended_at"] or now, ROUTE_POINTS)
        d["route"] = [[p["lat"], p["lon"]] for p in pings]
    return rows

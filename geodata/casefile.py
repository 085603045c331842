"""What the case page (``/cases/{code}``) reads of one case: the case with its type, cell and
triage, its audit trail, its van visits and the route each van drove.

Reads only; the area scope is applied in the SQL (``case_page.sql``), so a reader outside the
case's area gets None, never a row filtered afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from geodata import cases as store
from geodata import dispatch, tracking, workflow
from geodata.errors import Invalid, TransitionConflict
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


CELL_RADIUS_M = 3000  # a case flagged near an edge or outside: the cells this near are offered
CELL_FLAGS = ("near_boundary", "outside_territory")


class NotACell(Invalid):
    """The code given is not a grid cell near the case."""


class NothingToConfirm(TransitionConflict):
    """Only a case flagged near a cell's edge has a cell to confirm."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="cell", extra={"allowed": []})
        self.allowed: list[str] = []


def cells_near(conn: psycopg.Connection, code: str, limit: int = 8) -> list[dict[str, Any]]:
    """The grid cells within CELL_RADIUS_M of case ``code``, nearest first (distance 0: it lies in it)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("case_cells_near"), {"code": code, "radius": CELL_RADIUS_M, "limit": limit}).fetchall()


def place(
    conn: psycopg.Connection,
    code: str,
    cell: str | None,
    actor: store.Actor,
    now: datetime,
    *,
    version: int | None = None,
    authorize: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Confirm a case's cell (``cell`` None: a case flagged ``near_boundary`` stays where intake put
    it) or put it in ``cell`` (one of :func:`cells_near`): its grid chain changes, the edge and
    outside flags go, and an audit row (``confirm_cell`` / ``move_cell``, from and to) is written
    in the caller's transaction. Returns the case as stored now; the caller writes its event."""
    row = store.get_case(conn, code, lock=True)
    if row is None:
        raise store.CaseNotFound(f"no case with code {code}", field="code")
    if authorize:
        authorize(row)
    if version is not None and version != row["version"]:
        raise store.StaleVersion(f"case {code} changed since version {version} (now {row['version']})", [])
    state = store.state_of(row)
    flags = [f for f in row["flags"] if f not in CELL_FLAGS]
    if cell is None:
        if "near_boundary" not in row["flags"]:
            raise NothingToConfirm(f"case {code} is not flagged near a cell's edge; nothing to confirm")
        change = workflow.Change(
            "confirm_cell", state.step, state.step, state.level, {"flags": flags}, {"cell": row["grid_code"]}
        )
        return store._write(conn, row, change, actor, now, None)  # the audited write path of every change
    near = {c["code"]: c for c in cells_near(conn, code, limit=50)}
    if cell not in near:
        raise NotACell(f"{cell} is not a grid cell within {CELL_RADIUS_M} m of case {code}", field="cell")
    to = near[cell]
    conn.execute(
        "UPDATE cases SET grid_code = %s, village_code = %s, town_code = %s, banner_code = %s WHERE id = %s",
        (to["code"], to["village_code"], to["town_code"], to["banner_code"], row["id"]),
    )
    change = workflow.Change(
        "move_cell", state.step, state.step, state.level, {"flags": flags}, {"from": row["grid_code"], "to": cell}
    )
    return store._write(conn, row, change, actor, now, None)

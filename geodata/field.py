"""What the grid worker's phone page (/m, api/mobile.py) reads: my reports, my tasks, who I mediate as.

"My reports" are found by identity, not by name: the trail's intake row (``case_events``, action
``report``) carries the actor's kind and id (016), so two workers called 王芳 never see each other's
reports. "My tasks" are the cases dispatched to the mediator the person is (``mediators.user_id``,
025). Both apply the reader's area scope in the SQL, like every list of cases (018).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from geodata.queries import query

MAX_LISTED = 50  # rows of each list: a phone shows a shift's work, not the archive


def my_reports(
    conn: psycopg.Connection, actor_kind: str, actor_id: int, area: str | None, limit: int = MAX_LISTED
) -> list[dict[str, Any]]:
    """The cases this identity reported, newest first (rows in the shape of case_get.sql)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            query("field_reports"), {"kind": actor_kind, "id": actor_id, "area": area, "limit": limit}
        ).fetchall()


def my_tasks(conn: psycopg.Connection, user_id: int, area: str | None, limit: int = MAX_LISTED) -> list[dict[str, Any]]:
    """The open cases dispatched to this user's mediator row (by deadline), then its closed ones
    waiting for the follow-up visit; empty for a user who is no mediator."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("field_tasks"), {"user": user_id, "area": area, "limit": limit}).fetchall()


def mediator_of(conn: psycopg.Connection, user_id: int) -> dict[str, Any] | None:
    """The mediator row (id, name) a signed-in person is, if any."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT id, name, active FROM mediators WHERE user_id = %s", (user_id,)).fetchone()


def case_types(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The active case types, in their order (the report form's choice)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT code, name_zh, name_en FROM case_types WHERE active ORDER BY sort_order, code"
        ).fetchall()

"""Deadline warnings and 我的待办 (the inbox): what waits on a person, and what is about to be late.

A warning is raised once per (case, level, deadline), ``warn_hours[level]`` before that deadline
passes (2 h before a grid-level deadline, 24 h before the others by default), by the scheduler's
``warnings`` job (services/scheduler.py): :func:`raise_due` inserts the rows of table
``deadline_warnings`` (027) and returns their ``case.warning`` events for the caller's outbox, in
the same transaction. An escalation or a reopening sets a new deadline, and so earns a new warning.
The unique key makes a second raise impossible; the advisory lock only saves the work of a sweep two
processes would run at once. The webhook's delivery state lives on the same rows (:func:`claim`,
:func:`mark_sent`, :func:`mark_failed`; the HTTP side is services/notify.py).

The inbox (:func:`inbox`) is the open cases waiting on one person: assigned to their mediator row
(``mediators.user_id``), its unit or its van; or, for the roles that act on cases, waiting to be
verified or dispatched (reported, accepted) with nobody assigned at their level (from the length of
their area code: 6 banner, 9 town, 12 village, 15 grid) inside their area — an admin or a dispatcher
without an area sees every such case of the banner. The area scope is applied in the SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from geodata.cases import event_of
from geodata.clock import CST, day_start
from geodata.queries import level_of, query
from geodata.workflow import LEVELS

# The advisory lock of the raise sweep (transaction-level: one process sweeps at a time).
WARN_LOCK = "yitu:deadline-warnings"
RAISE_LIMIT = 1000  # warnings raised per sweep at most; the rest on the next one
INBOX_LIMIT = 200  # rows the inbox shows (the counts are of the whole list)
QUEUE_ROLES = frozenset({"admin", "dispatcher", "grid_worker"})  # who has a level's queue of unassigned cases
WHOLE_BANNER = frozenset({"admin", "dispatcher"})  # without an area: the banner's unassigned cases
WARNING_EVENT = "case.warning"


def level_name(code: str) -> str:
    """The workflow level of an area code: 6 digits banner, 9 town, 12 village, 15 grid."""
    return LEVELS[len(LEVELS) - level_of(code)]


@dataclass(frozen=True)
class WarnRules:
    """How long before a deadline its warning is raised, per level (0: no warnings at that level)."""

    grid: timedelta
    other: timedelta

    @classmethod
    def hours(cls, grid: float, other: float) -> WarnRules:
        return cls(timedelta(hours=grid), timedelta(hours=other))

    def before(self, level: str) -> timedelta:
        return self.grid if level == "grid" else self.other


def raise_due(
    conn: psycopg.Connection, now: datetime, rules: WarnRules, *, notify: bool, limit: int = RAISE_LIMIT
) -> list[dict[str, Any]]:
    """Raise the warnings due at ``now`` in the caller's transaction; returns their events (for the
    outbox, in the same transaction). ``notify``: a webhook is configured, so each new warning is
    to be delivered (services/notify.py). Nothing when another process holds the sweep's lock."""
    got = conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (WARN_LOCK,)).fetchone()
    if not got or not got[0]:
        return []
    params = {
        "now": now,
        "grid": rules.grid,
        "other": rules.other,
        "widest": max(rules.grid, rules.other),
        "notify": notify,
        "limit": limit,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query("warnings_raise"), params).fetchall()
    return [event_of(WARNING_EVENT, row, now, action="warning", warning=row["warning_id"]) for row in rows]


@dataclass(frozen=True)
class InboxQuery:
    """Whose inbox: the user row (None for a token or a screen: no mediator row can name it), the
    queue of unassigned cases (and at which level: None for any) and the area scope."""

    user_id: int | None
    queue: bool
    level: str | None
    scope: str | None

    @classmethod
    def of(cls, kind: str, ident: int, role: str, area: str | None) -> InboxQuery:
        """The inbox of an identity (services/identity.py Principal's kind, id, role and area)."""
        user_id = ident if kind == "user" else None
        if role not in QUEUE_ROLES or (area is None and role not in WHOLE_BANNER):
            return cls(user_id, False, None, area)
        return cls(user_id, True, level_name(area) if area else None, area)


@dataclass(frozen=True)
class Inbox:
    """The cases waiting (the first ``INBOX_LIMIT``, by deadline) and the counts of the whole list."""

    cases: list[dict[str, Any]]
    total: int
    overdue: int
    due_today: int
    due_24h: int
    warned: int


def inbox(conn: psycopg.Connection, who: InboxQuery, now: datetime, limit: int = INBOX_LIMIT) -> Inbox:
    """What waits on ``who`` at ``now``: the cases by deadline, with the counts (overdue, due today
    in China time, due within 24 hours, warned)."""
    day_end = day_start(now.astimezone(CST).date(), end=True)  # today ends at midnight China time
    params = {
        "user_id": who.user_id,
        "queue": who.queue,
        "level": who.level,
        "scope": who.scope,
        "now": now,
        "day_end": day_end,
        "limit": limit,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query("inbox_cases"), params).fetchall()
    first: Mapping[str, Any] = rows[0] if rows else {}
    counts = {k: int(first.get(k, 0)) for k in ("total", "overdue", "due_today", "due_24h", "warned")}
    for row in rows:
        for k in counts:
            del row[k]
    return Inbox(rows, **counts)


def current(
    conn: psycopg.Connection, scope: str | None, now: datetime, limit: int = 5
) -> tuple[int, list[dict[str, Any]]]:
    """The warnings still running inside ``scope`` (deadline not passed, case open): how many, and
    the ``limit`` soonest."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query("warnings_current"), {"now": now, "scope": scope, "limit": limit}).fetchall()
    total = int(rows[0]["total"]) if rows else 0
    for row in rows:
        del row["total"]
    return total, rows


# --- the webhook's delivery state ---------------------------------------------------------------------


def claim(conn: psycopg.Connection, now: datetime, lease: timedelta, limit: int = 1) -> list[dict[str, Any]]:
    """Claim up to ``limit`` deliveries due at ``now`` for this process until ``now + lease``
    (committed by the caller before it sends: another process skips them)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("warnings_claim"), {"now": now, "lease": lease, "limit": limit}).fetchall()


def mark_sent(conn: psycopg.Connection, warning_id: int, now: datetime) -> bool:
    """The receiver took it: never sent again. False when the claim was lost meanwhile (the lease ran
    out and another process claimed it)."""
    cur = conn.execute(
        "UPDATE deadline_warnings SET notify = 'sent', sent_at = %s, next_attempt_at = NULL, last_error = NULL "
        "WHERE id = %s AND notify = 'sending'",
        (now, warning_id),
    )
    return cur.rowcount == 1


def mark_failed(conn: psycopg.Connection, warning_id: int, error: str, retry_at: datetime | None) -> None:
    """A delivery failed: again at ``retry_at``, or never (``failed``) when it is None."""
    conn.execute(
        "UPDATE deadline_warnings SET notify = CASE WHEN %(at)s::timestamptz IS NULL THEN 'failed' ELSE 'pending' END, "
        "next_attempt_at = %(at)s, last_error = left(%(error)s, 300) WHERE id = %(id)s AND notify = 'sending'",
        {"at": retry_at, "error": error, "id": warning_id},
    )

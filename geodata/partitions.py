"""The history tables' monthly partitions, kept ahead of time and pruned behind.

``case_events`` (the audit of every case) and ``van_positions`` (every GPS fix) are partitioned
by month. A row whose month has no partition lands in the DEFAULT partition, and once the default
holds rows of a month, that month can no longer get a partition of its own (PostgreSQL refuses to
carve it out). So the app creates the partitions ahead (:func:`ensure_ahead`, from the scheduler
at start and every hour): this month, the day before it and ``MONTHS_AHEAD`` more. Old GPS
months may be dropped (:func:`drop_old_gps`, ``YITU_VAN_POSITIONS_KEEP_MONTHS``); the case audit
never is. Both go through SECURITY DEFINER functions (019_housekeeping.sql), so the app's role
needs no right to create or drop tables.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import psycopg

HISTORY_TABLES = ("case_events", "van_positions")
MONTHS_AHEAD = 2
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('yitu_ensure_month_partitions'))"


def _first_of_month(day: date, months_later: int = 0) -> date:
    index = day.year * 12 + day.month - 1 + months_later
    return date(index // 12, index % 12 + 1, 1)


def ensure_ahead(conn: psycopg.Connection, now: datetime, months_ahead: int = MONTHS_AHEAD) -> int:
    """Create the partitions from yesterday's month to ``months_ahead`` months after this one, in
    their own transaction (serialised with the GPS path's creation); returns how many were new."""
    first = (now - timedelta(days=1)).date()
    last = _first_of_month(now.date(), months_ahead)
    made = 0
    with conn.transaction():
        conn.execute(_LOCK)
        for table in HISTORY_TABLES:
            row = conn.execute(
                "SELECT yitu_ensure_month_partitions(%s::regclass, %s, %s)", (table, first, last)
            ).fetchone()
            made += int(row[0]) if row else 0
    return made


def drop_old_gps(conn: psycopg.Connection, now: datetime, keep_months: int) -> list[str]:
    """Drop the GPS months that ended more than ``keep_months`` whole months before this one
    (0 keeps everything); returns the partitions dropped."""
    if keep_months <= 0:
        return []
    before = _first_of_month(now.date(), -keep_months)
    with conn.transaction():
        conn.execute(_LOCK)
        return [str(r[0]) for r in conn.execute("SELECT yitu_drop_van_position_months(%s)", (before,))]


def rows_in_default(conn: psycopg.Connection) -> dict[str, int]:
    """Rows that fell into each history table's DEFAULT partition, up to 1000 (should stay 0;
    shown by /healthz)."""
    return {str(r[0]): int(r[1]) for r in conn.execute("SELECT parent, n FROM yitu_rows_in_default()")}

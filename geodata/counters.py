"""The KPI counters (033_counters.sql: ``case_counters`` by day, ``case_counters_month``,
``case_counters_open``, ``case_counters_area_month``, ``case_counters_area_day``): rebuild
them from the cases, and check them.

The triggers on ``cases`` keep the counters in the transaction of every change, so a rebuild is
for a database restored from elsewhere, a hand edit done with the triggers off, or to compact the
shards and the rows that came down to zero. The check compares them with a full count of the
cases in one snapshot, so it holds on a live database while cases change.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from geodata.queries import query

# The five grains (033_counters.sql), every one emptied and refilled by a rebuild.
TABLES = (
    "case_counters",
    "case_counters_month",
    "case_counters_open",
    "case_counters_area_month",
    "case_counters_area_day",
)


def rebuild(conn: psycopg.Connection) -> int:
    """Recompute every counter from the cases in one transaction; the number of counter rows.

    The cases are locked against writes (SHARE) for the while, so no change falls between the
    count and the commit; reads go on.
    """
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("LOCK TABLE cases IN SHARE MODE")
        row = cur.execute(query("counters_rebuild")).fetchone()
        return int(row[0]) if row else 0


def differences(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The keys where the counters and a full count disagree (empty when they agree): the daily
    counters against a recount of the cases, the coarser ones against the daily ones."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return cur.execute(query("counters_diff")).fetchall()

"""The transactional outbox (``outbox``, 020_outbox.sql): the live events of a change, written in
the change's own transaction, and what the relay (services/relay.py) does with them.

A writer calls :func:`append` (or :func:`append_async`) on the connection of its transaction,
before COMMIT: the events then exist exactly when the change does — a crash between the commit
and the publish, a Redis outage or a restart loses nothing, it only delays. The intake statement
writes its ``case.created`` rows in a CTE of its own (case_intake.sql): one statement, one round trip.

The relay, the one process holding the advisory lock, numbers the rows it can see (``outbox_id``:
1, 2, 3 … gapless, in their insert order), commits the numbers, publishes, then marks them sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg

from geodata.queries import query

# The advisory lock the relay's leader holds (pg_try_advisory_lock; per database): 'yitu' 'ob'.
RELAY_LOCK = 0x7969_7475_6F62
# family (an event type up to its first dot: case, dispatch, van, areas; ``*`` for all) → the
# outbox id of its newest event in the stream, set by the relay in the same atomic step as the XADD
# (services/events.py): a map layer's generation (services/layer_answers.py), and what a figure
# read from a replica must hold to be cached (geodata/kpi.py), read without scanning the stream.
LAST_KEY = "yitu:events:last"

# The two arrays go in binary (%b): psycopg writes a text array's elements one by one in Python,
# each event's quotes escaped by a regular expression — 2.3 ms for a GPS batch's 50 van moves, against
# 0.05 ms in binary (a thousand moves a second under the command centre's mix, bench/bench_mix.py).
_APPEND = (
    "INSERT INTO outbox (type, event) "
    "SELECT e.type, e.event::json FROM unnest(%b::text[], %b::text[]) WITH ORDINALITY AS e(type, event, n) "
    "ORDER BY e.n"
)


@dataclass(frozen=True)
class Row:
    """One numbered event for the stream: its outbox id, type and JSON text (as written)."""

    outbox_id: int
    type: str
    event: str


def _columns(events: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    types, texts = [], []
    for event in events:
        types.append(str(event.get("type", "")))
        texts.append(orjson.dumps(event, default=str).decode())
    return types, texts


def append(conn: psycopg.Connection, events: Iterable[Mapping[str, Any]]) -> int:
    """Write ``events`` (each with its ``type``) to the outbox in the caller's transaction, in order.

    Nothing is published here: the rows go out once the transaction commits (services/relay.py).
    Returns how many were written.
    """
    types, texts = _columns(events)
    if types:
        conn.execute(_APPEND, (types, texts))
    return len(types)


async def append_async(conn: psycopg.AsyncConnection, events: Iterable[Mapping[str, Any]]) -> int:
    """:func:`append` on an asyncio connection."""
    types, texts = _columns(events)
    if types:
        await conn.execute(_APPEND, (types, texts))
    return len(types)


# --- the relay's side -----------------------------------------------------------------------------


def try_lead(conn: psycopg.Connection) -> bool:
    """Take the relay's lock on ``conn`` (a session lock, freed when the connection or its process dies)."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,)).fetchone()
    return bool(row and row[0])


def mark_sent_through(conn: psycopg.Connection, outbox_id: int, now: datetime | None = None) -> int:
    """Mark the rows numbered up to ``outbox_id`` sent (they are in the stream); returns how many."""
    cur = conn.execute(
        "UPDATE outbox SET sent_at = coalesce(%s, now()) WHERE sent_at IS NULL AND outbox_id <= %s", (now, outbox_id)
    )
    return cur.rowcount


def resend(conn: psycopg.Connection, after: int, through: int) -> int:
    """Mark the rows numbered in (``after``, ``through``] unsent again, so the relay publishes them
    once more under the same ids: the stream lost them (a Redis failover promoted a replica that
    had not received them yet). Returns how many (rows already pruned are gone for good)."""
    return conn.execute(
        "UPDATE outbox SET sent_at = NULL WHERE outbox_id > %s AND outbox_id <= %s AND sent_at IS NOT NULL",
        (after, through),
    ).rowcount


def claim(conn: psycopg.Connection, floor: int, limit: int) -> list[Row]:
    """The next rows to publish, in outbox-id order: those numbered but not yet sent (a publish
    that failed), then the unnumbered rows this transaction can see, numbered after the last id
    given (and after ``floor``, the stream's last outbox id: a stream that is ahead of the
    database is never answered with an id it already holds). The numbers are committed when this
    returns, before anything is published, so a crash after the XADD republishes nothing."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT outbox_id, type, event::text FROM outbox "
            "WHERE sent_at IS NULL AND outbox_id IS NOT NULL ORDER BY outbox_id LIMIT %s",
            (limit,),
        ).fetchall()
        room = limit - len(rows)
        if room > 0:
            (last,) = conn.execute("SELECT last_id FROM outbox_counter FOR UPDATE").fetchone() or (0,)
            base = max(int(last), floor)
            fresh = conn.execute(query("outbox_number"), {"room": room, "base": base}).fetchall()
            if fresh:
                conn.execute("UPDATE outbox_counter SET last_id = %s", (base + len(fresh),))
            rows += sorted(fresh)
    return [Row(int(i), t, e) for i, t, e in rows]


def waiting(conn: psycopg.Connection) -> bool:
    """Is anything to publish (the relay's poll: two probes of partial indexes, no transaction)?"""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE outbox_id IS NULL)"
        " OR EXISTS (SELECT 1 FROM outbox WHERE sent_at IS NULL AND outbox_id IS NOT NULL)",
        prepare=True,
    ).fetchone()
    return bool(row and row[0])


def pending(conn: psycopg.Connection) -> int:
    """Committed events not yet in the stream (numbered or not)."""
    row = conn.execute(  # two counts, each along its partial index
        "SELECT (SELECT count(*) FROM outbox WHERE outbox_id IS NULL)"
        " + (SELECT count(*) FROM outbox WHERE sent_at IS NULL AND outbox_id IS NOT NULL)"
    ).fetchone()
    return int(row[0]) if row else 0


def prune(conn: psycopg.Connection, before: datetime) -> int:
    """Delete the rows sent before ``before`` (the stream has them; the record is in the tables)."""
    return conn.execute("DELETE FROM outbox WHERE sent_at < %s", (before,)).rowcount

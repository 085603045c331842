"""Attachments of a case in PostGIS: the rows naming the blobs, the audit row of each upload, the scope.

The bytes are in the blob store (geodata/blobs.py); here are the rows (``attachments``, migration
023) and the rules that need the database:

- **Scope in the SQL.** A reader with an area sees the attachments of the cases whose grid chain
  holds it, by the WHERE clause of the query (``yitu_in_scope``, as every list of cases): an
  attachment outside it is not found at all. The rows carry their case's grid chain and assignee
  for Principal.sees_case (a van crew: its van's case only), which the API applies to the one case.
- **At most :data:`MAX_PER_CASE` per case**, counted while the case's row is locked (uploads to
  one case take turns), so two phones sending at once cannot pass it together.
- **One audit row per upload** on the case (``case_events``, action ``attachment``: the step and
  level stay what they are, so the time-in-step reading of the trail is not cut), in the same
  transaction as the rows.
- **Retries** (Idempotency-Key): the rows an upload made carry its key, caller scope and request
  hash; :func:`by_key` finds them for a replay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from geodata import outbox
from geodata.cases import Actor, chain_of
from geodata.queries import query

MAX_PER_CASE = 20
MAX_FILE_BYTES = 10 * 1024 * 1024  # each file: 10 MiB
MAX_FILES_PER_REQUEST = 10
# The body cap of one upload (api/budgets.py): every file at its largest, and the multipart framing.
UPLOAD_BODY_MAX = MAX_FILES_PER_REQUEST * MAX_FILE_BYTES + 1024 * 1024
AUDIT_ACTION = "attachment"
ATTACHED_EVENT = "case.attached"  # its live event (no personal data: the case, its place in the grid, how many files)


@dataclass(frozen=True)
class NewAttachment:
    """One judged file with its stored blobs, ready for its row."""

    sha256: str
    served_sha256: str
    thumb_sha256: str | None
    kind: str
    media_type: str
    served_type: str
    size: int
    served_size: int
    width: int | None
    height: int | None
    filename: str | None


# The reader's area scope: the one rule every query uses (yitu_in_scope, 018_scope.sql). A van
# crew's narrower rule (its van's case only) is Principal.sees_case's, on the rows these return.
SCOPE = sql.SQL("yitu_in_scope(%(area)s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)")


def case_for(conn: psycopg.Connection, code: str, area: str | None, *, lock: bool = False) -> dict[str, Any] | None:
    """The case ``code`` (id, code, step, level, grid chain, assignee) if it lies in ``area`` (None:
    the whole territory); locked for an upload."""
    stmt = sql.SQL(query("attachment_case")).format(scope=SCOPE)
    if lock:
        stmt = sql.Composed([stmt, sql.SQL(" FOR UPDATE OF c")])
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(stmt, {"area": area, "code": code}).fetchone()


def _select(conn: psycopg.Connection, where: sql.Composable, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    stmt = sql.SQL(query("attachments_select")).format(where=where)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(stmt, params).fetchall()


def of_case(conn: psycopg.Connection, case_id: int) -> list[dict[str, Any]]:
    """The attachments of a case (the caller found the case in the reader's scope), oldest first."""
    return _select(conn, sql.SQL("a.case_id = %(case_id)s"), {"case_id": case_id})


def count(conn: psycopg.Connection, case_id: int) -> int:
    row = conn.execute("SELECT count(*) FROM attachments WHERE case_id = %s", (case_id,)).fetchone()
    return int(row[0]) if row else 0


def get(conn: psycopg.Connection, attachment_id: int, area: str | None) -> dict[str, Any] | None:
    """One attachment (with its case's grid chain and assignee) if its case lies in ``area``; else None."""
    rows = _select(conn, sql.SQL("a.id = %(id)s AND {}").format(SCOPE), {"id": attachment_id, "area": area})
    return rows[0] if rows else None


def by_key(conn: psycopg.Connection, key_scope: int, key: str) -> list[dict[str, Any]]:
    """The rows an upload with this Idempotency-Key made for this caller (empty: none yet)."""
    where = sql.SQL("a.idem_scope = %(scope)s AND a.idem_key = %(key)s")
    rows = _select(conn, where, {"scope": key_scope, "key": key})
    return sorted(rows, key=lambda r: r["idem_position"])


_INSERT = """INSERT INTO attachments (case_id, sha256, served_sha256, thumb_sha256, kind, media_type, served_type,
    size, served_size, width, height, filename, actor_kind, actor_id, actor_name, actor_role,
    idem_scope, idem_key, idem_position, request_hash)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
RETURNING id"""


def add(
    conn: psycopg.Connection,
    case: Mapping[str, Any],
    files: Sequence[NewAttachment],
    actor: Actor,
    *,
    key: str | None,
    request_hash: str,
    note: str | None = None,
) -> list[dict[str, Any]]:
    """Write the rows of one upload and its audit row on the case, in the caller's transaction.

    ``case`` comes from :func:`case_for` with ``lock=True``: the caller has checked the limit.
    """
    ids: list[int] = []
    for position, f in enumerate(files):
        row = conn.execute(
            _INSERT,
            (
                case["id"],
                f.sha256,
                f.served_sha256,
                f.thumb_sha256,
                f.kind,
                f.media_type,
                f.served_type,
                f.size,
                f.served_size,
                f.width,
                f.height,
                f.filename,
                actor.kind,
                actor.audit_id,
                actor.name,
                actor.role,
                actor.key_scope if key is not None else None,
                key,
                position if key is not None else None,
                request_hash if key is not None else None,
            ),
        ).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    detail = {
        "attachments": [
            {"id": i, "sha256": f.sha256, "kind": f.kind, "media_type": f.media_type, "size": f.size}
            for i, f in zip(ids, files, strict=True)
        ],
        "count": len(files),
    }
    conn.execute(
        """INSERT INTO case_events (case_id, actor, role, actor_kind, actor_id, action, from_step, to_step, level,
                                    note, data)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            case["id"],
            actor.name,
            actor.role,
            actor.kind,
            actor.audit_id,
            AUDIT_ACTION,
            case["step"],
            case["step"],
            case["level"],
            note,
            Jsonb(detail),
        ),
    )
    # the live push: a screen showing the case (its page, a phone's task) redraws it with the files
    outbox.append(
        conn,
        [
            {
                "type": ATTACHED_EVENT,
                "code": case["code"],
                "step": case["step"],
                "level": case["level"],
                "grid": chain_of(case),
                "count": len(files),
                "at": datetime.now(UTC).isoformat(),
            }
        ],
    )
    return _select(conn, sql.SQL("a.id = ANY(%(ids)s)"), {"ids": ids})


def referenced(conn: psycopg.Connection, addresses: Sequence[str]) -> set[str]:
    """Which of ``addresses`` a row names (as original, served copy or thumbnail)."""
    if not addresses:
        return set()
    rows = conn.execute(
        """SELECT x FROM unnest(%(a)s::text[]) x
           WHERE EXISTS (SELECT 1 FROM attachments
                         WHERE sha256 = x OR served_sha256 = x OR thumb_sha256 = x)""",
        {"a": list(addresses)},
    ).fetchall()
    return {str(r[0]) for r in rows}

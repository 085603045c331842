"""Idempotency-Key for the writes besides intake: a retry gets the first answer, never a second write.

A phone on a bad connection, a double click, a client that lost the answer to a timeout: each
sends the same request again. With a key (``Idempotency-Key``, scoped to the caller) the write's
own transaction first *claims* the key (:func:`claim`, its first statement) and, before COMMIT,
*records* the answer it gives (:func:`record`). So the stored answer exists exactly when the write
committed: a retry after the commit replays it; a retry after a rollback (a refusal, a crash)
does the write as if it were the first; a retry arriving while the first is still running waits
on the key's primary key until that one ends, then does one or the other. Same key with a
different request (another route, other path parameters, another body): 422 naming the header.

Refusals are not stored (their transaction rolls back with the claim): a retry of a refused
request is asked again, and gets the answer the state gives now. Reports keep their own keys
(``case_idempotency_keys``, written by the intake statement, geodata/cases.py); both tables are
pruned after ``YITU_IDEMPOTENCY_DAYS`` (:func:`prune`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Json

from geodata.errors import Conflict, Invalid

HEADER = "Idempotency-Key"
PATTERN = r"^[\x21-\x7e]{1,200}$"  # printable ASCII without spaces, 1 to 200 characters
_VALID = re.compile(PATTERN)


class KeyMismatch(Invalid):
    """The key was used before for a different request (route, path or body): nothing was done."""


def request_hash(body: Any) -> str:
    """sha256 of the canonical JSON of a request's validated body (keys sorted, no spaces), so a
    retry that spells the same request differently (key order, whitespace) is the same request."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)).hexdigest()


@dataclass(frozen=True)
class Key:
    """One request's key: who (``scope``: Actor.key_scope), the client's ``key``, the
    ``operation`` (method, route, path parameters) and the hash of its body."""

    scope: int
    key: str
    operation: str
    request_hash: str

    @classmethod
    def of(cls, scope: int, key: str | None, operation: str, body: Any) -> Key | None:
        """The key of a request (None without one: the write simply runs). Raises Invalid for a
        key outside :data:`PATTERN` (the API's header validation refuses those before this)."""
        if key is None:
            return None
        if not _VALID.match(key):
            raise Invalid("Idempotency-Key must be 1 to 200 printable ASCII characters without spaces", field=HEADER)
        return cls(scope, key, operation, request_hash(body))


@dataclass(frozen=True)
class Answer:
    """The answer a keyed write gave: its HTTP status and JSON body (an object)."""

    status: int
    body: dict[str, Any]


_CLAIM = """
INSERT INTO idempotency_keys (scope, key, operation, request_hash) VALUES (%s, %s, %s, %s)
ON CONFLICT (scope, key) DO NOTHING RETURNING 1
"""
_STORED = "SELECT operation, request_hash, status, answer FROM idempotency_keys WHERE scope = %s AND key = %s"
_RECORD = "UPDATE idempotency_keys SET status = %s, answer = %s WHERE scope = %s AND key = %s"


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def claim(conn: psycopg.Connection, key: Key | None) -> Answer | None:
    """Claim ``key`` in ``conn``'s transaction: None to go ahead with the write (then
    :func:`record` its answer before COMMIT), or the stored answer to replay instead.

    Call it before the write takes any lock: a request with the same key waits here, holding none.
    Raises :class:`KeyMismatch` when the key was used for a different request.
    """
    if key is None:
        return None
    params = (key.scope, key.key, key.operation, key.request_hash)
    while True:
        if conn.execute(_CLAIM, params).fetchone() is not None:
            return None
        row = conn.execute(_STORED, (key.scope, key.key)).fetchone()
        if row is not None:
            break
        # Pruned (or rolled back) between the two statements: claim again.
    operation, hashed, status, answer = row
    if operation != key.operation or hashed != key.request_hash:
        raise KeyMismatch(
            f"this Idempotency-Key was used for a different request ({operation}); use a new key for a new request",
            field=HEADER,
        )
    if status is None:  # pragma: no cover - claim and record share one transaction: a path that forgot to record
        raise Conflict("the request with this Idempotency-Key left no answer", field=HEADER)
    return Answer(status, answer)


def record(conn: psycopg.Connection, key: Key | None, status: int, body: dict[str, Any]) -> None:
    """Store the answer of the write that claimed ``key``, in its transaction (before COMMIT)."""
    if key is not None:
        conn.execute(_RECORD, (status, Json(body, dumps=_dumps), key.scope, key.key))


def once(
    conn: psycopg.Connection, key: Key | None, status: int, write: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], bool]:
    """A keyed write in ``conn``'s transaction: (its answer, replayed?). The one shape every keyed
    write shares, so none can forget a step: :func:`claim` first (a retry running now waits there,
    holding no lock), then either the stored answer, or ``write()`` and its answer :func:`record`-ed
    as ``status`` before the caller's COMMIT. Without a key ``write()`` simply runs."""
    stored = claim(conn, key)
    if stored is not None:
        return stored.body, True
    body = write()
    record(conn, key, status, body)
    return body, False


def prune(conn: psycopg.Connection, before: datetime) -> dict[str, int]:
    """Forget the keys (reports' too) made before ``before``: a retry after that is a new request."""
    n = conn.execute("DELETE FROM idempotency_keys WHERE created_at < %s", (before,)).rowcount
    m = conn.execute("DELETE FROM case_idempotency_keys WHERE created_at < %s", (before,)).rowcount
    return {"keys": n, "report_keys": m}

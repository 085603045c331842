"""``Idempotency-Key`` on the API's writes: the header, the replay and what the schema says of both.

The store is geodata/idempotency.py (reports: their intake statement, geodata/cases.py). Each
writing route takes :data:`OptionalKey` (a report: :data:`RequiredKey`, 428 without it), builds a
:class:`~geodata.idempotency.Key` with :func:`key_of` and hands it to the write's transaction; a
stored answer comes back through :func:`replay`, with ``Idempotency-Replayed: true``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Response

from geodata import idempotency
from geodata.idempotency import HEADER, Answer, Key
from services.identity import Principal

REPLAYED = "Idempotency-Replayed"

_ABOUT = (
    "A key the client makes for this one request (a UUID, say), sent again unchanged on every retry "
    "of it: a retry of a request that was done gets the first answer again (with `Idempotency-Replayed: "
    "true`) and does nothing twice; the same key with a different request is refused (422 naming this "
    "header). 1 to 200 printable ASCII characters without spaces; kept for YITU_IDEMPOTENCY_DAYS (7) days, "
    "per caller."
)
_HEADER = {"alias": HEADER, "min_length": 1, "max_length": 200, "pattern": idempotency.PATTERN}

OptionalKey = Annotated[str | None, Header(**_HEADER, description=_ABOUT)]
RequiredKey = Annotated[
    str, Header(**_HEADER, description=_ABOUT + " Required: a report without one is refused with 428.")
]


def key_of(who: Principal, key: str | None, operation: str, body: Any) -> Key | None:
    """The key of ``who``'s request (None without a header): scoped to the caller (Actor.key_scope),
    the operation (method, route with its path parameters filled in) and the body as validated."""
    return Key.of(who.actor.key_scope, key, operation, body)


def replay(response: Response, answer: Answer) -> dict[str, Any]:
    """The stored answer as this request's: its status and body, marked as a replay."""
    response.status_code = answer.status
    response.headers[REPLAYED] = "true"
    return answer.body


def answered(response: Response, body: dict[str, Any], replayed: bool, status: int = 200) -> dict[str, Any]:
    """A keyed write's answer: ``body`` as it is, or, when it is a stored answer (``replayed``), the
    first request's (``status``: the route's success status, what the first one got) marked so."""
    return replay(response, Answer(status, body)) if replayed else body


def keyed(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """``ok=`` of :func:`api.openapi.answers` for a keyed write: its success, and the replay header."""
    return {
        status: {
            "description": description,
            "headers": {
                REPLAYED: {
                    "description": "`true` when this is the stored answer of an earlier request with the same "
                    "Idempotency-Key (nothing was done again).",
                    "required": False,
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        }
    }

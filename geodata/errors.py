"""yitu's one error family.

Every refusal anywhere in yitu is a :class:`YituError`: a **kind** (``code``: what sort of refusal,
which api/errors.py maps to an HTTP status in its one table), the **field** at fault when there is
one, an English **message** for logs and API clients, and a **message key** (``error.<name>``) from
which a page shows the refusal in its own language. The domain's errors (workflow, dispatch,
tracking, import, identity) derive from the kind they are, so nothing translates one family into
another: raise the domain error, and the API and the pages both know what to do with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class YituError(Exception):
    """The base of every refusal: kind ``code``, ``field`` at fault, ``message``, message ``key``."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, field: str | None = None, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra: dict[str, Any] = dict(extra or {})  # more keys for an API body (e.g. ``allowed`` actions)

    @property
    def key(self) -> str:
        """The i18n key of this refusal: ``error.<class name in snake case>`` (``error.van_busy``);
        a page without that key falls back to the kind's, ``error.<code>``."""
        return "error." + _CAMEL.sub("_", type(self).__name__).lower()


# --- the kinds (one status each, in api/errors.py) ------------------------------------------------


class BadRequest(YituError):
    code = "bad_request"


class Invalid(BadRequest):
    """An input that parses but makes no sense (the request validation errors' kind)."""

    code = "invalid"


class UnsupportedMediaType(BadRequest):
    """The body is not in a format the endpoint reads (JSON endpoints want application/json)."""

    code = "unsupported_media_type"


class PreconditionRequired(YituError):
    """A header the route requires is missing (a report's Idempotency-Key): ``field`` names it."""

    code = "precondition_required"


class Unauthorized(YituError):
    code = "unauthorized"


class Forbidden(YituError):
    code = "forbidden"


class TooManyAttempts(YituError):
    """Too many failed sign-ins or guessed credentials: ``extra["retry_after"]`` says when to try again."""

    code = "too_many_attempts"


class NotFound(YituError):
    code = "not_found"


class Conflict(YituError):
    code = "conflict"


class TransitionConflict(Conflict):
    """An action that does not apply to the case as it is now; ``extra["allowed"]`` lists what does."""

    code = "illegal_transition"


class Unavailable(YituError):
    """A server yitu needs (PostGIS, Redis) is down: nothing was written, try again."""

    code = "service_unavailable"


class OutcomeUnknown(YituError):
    """The connection to the database was lost after a write was sent to be committed (a COMMIT,
    or an autocommit statement in flight), or the server shut down at that moment: the change may
    or may not have been written, and nobody here can tell. Not :class:`Unavailable` (whose promise
    is "nothing was written"): the client sends the request again with the same Idempotency-Key,
    which answers what the first attempt made if it was committed and writes it once if not."""

    code = "outcome_unknown"


class PayloadTooLarge(BadRequest):
    """A request body over its cap (api/budgets.py): refused while it streams, before the rest is read."""

    code = "payload_too_large"


class TooManyConnections(YituError):
    """A WebSocket over the process's or the caller's connection cap: close another screen first."""

    code = "too_many_connections"


class TimedOut(Unavailable):
    """A statement ran past its statement_timeout and was cancelled: nothing was written; narrow the
    request (a smaller area, fewer days) or try again when the server is less busy."""

    code = "timeout"

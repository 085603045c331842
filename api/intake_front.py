"""The intake front: a well-formed report from a known token skips the framework's layers.

``POST /api/v1/cases`` is the hot path (a thousand reports a second at peak, on two cores). Going
through Starlette's and FastAPI's layers — error, telemetry and body-limit middleware, Dash's
and GZip's middleware, routing, dependency solving, the answer's re-encoding — costs about
0.4 ms of CPU per request before the route does anything (measured: a 401 from the full stack
costs 0.49 ms, the same answer from a bare ASGI app under the same uvicorn 0.08 ms), as much as
PostgreSQL spends on a case written in a batch. So this ASGI middleware, outermost in the app,
answers the one request it is sure of: a POST to exactly that path, with a JSON content type, a
bearer token this process has looked up lately (api/auth.py's cache), a well-formed
Idempotency-Key if any, and a body that validates as :class:`api.cases.CaseIn`. It runs the
same code as the route (:func:`api.cases.report`) and answers with the same JSON, errors
included (api/errors.py's ``payload``).

Everything else — any other path, a form body, a missing, unknown or uncached token, a body
that does not validate, more than one of a header, a body over ``MAX_BODY`` — goes on to the
app unchanged (the body that was read is handed on as it came), so every error a client can
provoke is answered by the route and its validation, in one place.
"""

from __future__ import annotations

import gzip
import re
from typing import Any

import orjson
import psycopg
import pydantic
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import auth, errors
from api.cases import IDEMPOTENCY_KEY, CaseIn, report

PATH = "/api/v1/cases"
MAX_BODY = 64 * 1024  # far above the largest valid report (4,000 characters and 10 parties)
GZIP_MIN = 1024  # as the app's GZipMiddleware
_KEY = re.compile(IDEMPOTENCY_KEY)
_ONE_OF = (b"authorization", b"content-type", b"idempotency-key")


class IntakeFront:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in headers:
                if name in _ONE_OF:  # two of them: let the framework decide
                    await self.app(scope, receive, send)
                    return
                continue  # as Starlette's Headers.get: the first one counts
            headers[name] = value
        app: Starlette | None = scope.get("app")
        who = auth.cached(app, headers.get(b"authorization", b"").decode("latin-1")) if app is not None else None
        key = headers.get(b"idempotency-key")
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        main, _, sub = ctype.partition(b"/")
        if (
            who is None
            or app is None
            or getattr(app.state, "intake", None) is None
            or not (main == b"application" and (sub == b"json" or sub.endswith(b"+json")))  # as FastAPI reads JSON
            or (key is not None and not (len(key) <= 200 and _KEY.match(key.decode("latin-1"))))
        ):
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
            if size > MAX_BODY:
                break
        body = b"".join(chunks)
        case = None
        if not more and size <= MAX_BODY:
            try:
                case = CaseIn.model_validate(orjson.loads(body))
            except (ValueError, pydantic.ValidationError):  # malformed JSON, a bad field: the route says which
                case = None
        if case is None:
            await self.app(scope, _replay(body, more, receive), send)
            return

        try:
            status, out = await report(app, case, who, key.decode("ascii") if key is not None else None)
            extra = None
        except errors.YituError as exc:
            status, out, extra = errors.payload(exc)
        except (psycopg.OperationalError, PoolTimeout) as exc:  # as the app's handler answers them
            status, out, extra = errors.payload(errors.database_unavailable(exc))
        app.state.intake.front_served += 1
        await _answer(send, status, out, extra, headers.get(b"accept-encoding", b""))


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """The request's body for the app: what the front read, then the rest as it comes."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return again


async def _answer(
    send: Send, status: int, out: dict[str, Any], extra: dict[str, str] | None, accept_encoding: bytes
) -> None:
    # The JSON JSONResponse renders (compact, UTF-8, no NaN), four times faster.
    content = orjson.dumps(out)
    headers = [(b"content-type", b"application/json")]
    if len(content) >= GZIP_MIN:  # as GZipMiddleware: Vary on every answer it could compress
        headers.append((b"vary", b"Accept-Encoding"))
        if b"gzip" in accept_encoding:
            content = gzip.compress(content, compresslevel=6)
            headers.append((b"content-encoding", b"gzip"))
    headers.append((b"content-length", str(len(content)).encode()))
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})

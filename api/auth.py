"""The API's side of identities (services/identity.py): the ``principal`` dependency.

The dependency is ``async``: a cached token is checked on the event loop, and only a lookup goes
to the thread pool (a plain ``def`` dependency would take a thread-pool hop on every request).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from geodata.errors import Invalid, Unauthorized
from services.identity import Principal, TokenCache, hash_token, lookup_digest
from services.runtime import Services

SCOPE_KEY = "yitu.principal"  # where the guard (api/guard.py) leaves the principal in the ASGI scope

__all__ = ["Principal", "principal"]


async def principal(request: Request) -> Principal:
    """The dependency: the caller's principal — the one the guard (api/guard.py) resolved from the
    session cookie or the bearer token — or 401. Without the guard (an app built without it), the
    bearer token is checked here as before."""
    if SCOPE_KEY in request.scope:
        who: Principal | None = request.scope[SCOPE_KEY]
        if who is None:
            raise Unauthorized("sign in first (or send Authorization: Bearer <token>)", field="Authorization")
        return who
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "missing bearer token: send Authorization: Bearer <token> (see `yitu token create`)", field="Authorization"
        )
    if len(token) > 200:
        raise Invalid("the bearer token is too long", field="Authorization")
    app = request.app
    cache = getattr(app.state, "token_cache", None)
    if cache is None:
        cache = app.state.token_cache = TokenCache()
    digest = hash_token(token.strip())
    found, cached_who = cache.get(digest)
    who = cached_who
    if not found:
        svc: Services = app.state.services
        who = await run_in_threadpool(lookup_digest, svc, digest)
        cache.put(digest, who, svc.settings.auth_cache_seconds)
    if who is None:
        raise Unauthorized("unknown or revoked token", field="Authorization")
    return who

"""Identities: bearer tokens → a principal with a role and an area scope.

Shared by the API (api/auth.py, the FastAPI dependency), the pages (callbacks) and the CLI
(``yitu token``). Tokens are random (``yitu_`` + 32 bytes, URL-safe) and stored as their SHA-256 only: a copy of
the table grants nothing, and a token is shown once, when it is made. Looking a token up costs a
round trip, so each process trusts what it found for ``auth_cache_seconds`` (the revocation lag).

Scope: a token with an area (a code of any level) sees only what lies inside it — a case whose
grid chain contains the code, an area whose code starts with it.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from geodata import masking
from geodata.cases import Actor, chain_of
from geodata.errors import Forbidden, Unauthorized
from geodata.workflow import ROLES, ROLES_THAT_REPORT
from services.runtime import Services

TOKEN_PREFIX = "yitu_"


Kind = Literal["token", "user", "screen"]


@dataclass(frozen=True)
class Principal:
    """Who asks: a bearer token (devices, integrations), a signed-in person, or a paired wall screen.

    ``token_id`` is the id of the row that identifies the caller in its own table (api_tokens,
    users or screens, by ``kind``); ``session_id`` is the server-side session behind a cookie.
    """

    token_id: int
    name: str
    role: str
    area: str | None
    kind: Kind = "token"
    session_id: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.name, self.role, self.token_id, self.kind)

    @property
    def ident(self) -> str:
        """``token:7``, ``user:3``, ``screen:2``: one identity across the three tables."""
        return f"{self.kind}:{self.token_id}"

    @property
    def sees_personal_data(self) -> bool:
        """Whether this caller sees the parties as reported (the one policy: geodata/masking.py)."""
        return masking.sees_personal_data(self.role)

    def sees_case(self, row: Mapping[str, Any]) -> bool:
        return self.area is None or self.area in chain_of(row)

    def sees_area(self, code: str) -> bool:
        return self.area is None or code.startswith(self.area)

    def require_case(self, row: Mapping[str, Any]) -> None:
        if not self.sees_case(row):
            raise Forbidden(f"case {row['code']} is outside your area {self.area}", field="code")

    def require_area(self, code: str) -> None:
        if not self.sees_area(code):
            raise Forbidden(f"area {code} is outside your area {self.area}", field="area")

    def require_reporter(self) -> None:
        if self.role not in ROLES_THAT_REPORT:
            raise Forbidden(f"a {self.role} token cannot report cases")


# The caller of the request being served, bound by the guard (api/guard.py) for every request and
# WebSocket; Dash runs callbacks in a copy of the request's context, so callbacks read it too.
CURRENT: ContextVar[Principal | None] = ContextVar("yitu_principal", default=None)


def current() -> Principal | None:
    """The principal of the request (or WebSocket message) being served, None when anonymous."""
    return CURRENT.get()


@contextmanager
def acting_as(who: Principal | None) -> Iterator[None]:
    """Bind ``who`` as the current principal for a block (the guard, tests, the CLI)."""
    token = CURRENT.set(who)
    try:
        yield
    finally:
        CURRENT.reset(token)


# ---------------------------------------------------------------------------------------------
# WHO IS ASKING (the callbacks, the layer and CSV routes, the live push). Until the guard of part
# "signin" (api/guard.py) binds a principal for every request, a page's callback or a layer URL
# fetched by the browser comes without one: None then means today's behaviour — the whole
# territory, masked as a room screen (masking.SCREEN). When the guard lands, set GUARDED = True:
# an unbound principal is then refused (401) instead.
GUARDED = False


def who_is_asking() -> Principal | None:
    """The principal of the request, callback or WebSocket being served; None when anonymous
    (only while not GUARDED: then it raises Unauthorized)."""
    who = current()
    if who is None and GUARDED:
        raise Unauthorized("sign in first", field="Authorization")
    return who


def scope_of(who: Principal | None) -> str | None:
    """The area code a reader is scoped to (None: the whole territory)."""
    return who.area if who is not None else None


def reader_role(who: Principal | None) -> str:
    """The role masking reads for ``who`` (geodata/masking.py); nobody known reads as a room screen."""
    return who.role if who is not None else masking.SCREEN


# ---------------------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(conn: psycopg.Connection, *, name: str, role: str, area: str | None) -> tuple[int, str]:
    """Store a new token's hash; returns (id, the token), the only time the token is seen."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if area is not None and conn.execute("SELECT 1 FROM areas WHERE code = %s", (area,)).fetchone() is None:
        raise ValueError(f"no area with code {area!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        "INSERT INTO api_tokens (name, role, area_code, token_hash) VALUES (%s, %s, %s, %s) RETURNING id",
        (name, role, area, hash_token(token)),
    ).fetchone()
    assert row is not None
    return int(row[0]), token


def list_tokens(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, name, role, area_code, created_at, revoked_at FROM api_tokens ORDER BY id"
        ).fetchall()


def revoke_token(conn: psycopg.Connection, ident: str) -> int:
    """Revoke by id or by name; returns how many tokens were revoked."""
    cur = conn.execute(
        """UPDATE api_tokens SET revoked_at = now()
           WHERE revoked_at IS NULL AND (name = %(ident)s OR id::text = %(ident)s)""",
        {"ident": ident},
    )
    return cur.rowcount


class TokenCache:
    """hash → (principal or None, expiry): a few seconds of trust per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[Principal | None, float]] = {}

    def get(self, key: str) -> tuple[bool, Principal | None]:
        with self._lock:
            hit = self._items.get(key)
        if hit and hit[1] > time.monotonic():
            return True, hit[0]
        return False, None

    def put(self, key: str, value: Principal | None, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[key] = (value, time.monotonic() + ttl)


def lookup_digest(svc: Services, digest: str) -> Principal | None:
    with svc.pool.connection() as conn:
        row = conn.execute(
            "SELECT id, name, role, area_code FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL",
            (digest,),
            prepare=True,
        ).fetchone()
    return Principal(int(row[0]), row[1], row[2], row[3]) if row else None


def lookup(svc: Services, token: str) -> Principal | None:
    """The principal of a raw token, or None (for callers that are not requests: the dispatch page)."""
    token = (token or "").strip()
    if not token or len(token) > 200:
        return None
    return lookup_digest(svc, hash_token(token))

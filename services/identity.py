"""Identities: who asks, as one principal with a role and an area scope, whatever the credential.

Three kinds, one :class:`Principal` (shared by the guard, api/guard.py; the API's dependency,
api/auth.py; the pages' callbacks through :func:`current`; and the CLI):

- **Bearer tokens** (devices, integrations; ``yitu token``): random (``yitu_`` + 32 bytes, URL-safe),
  stored as their SHA-256 only, shown once. Looking one up costs a round trip, so each process
  trusts what it found for ``auth_cache_seconds`` (the revocation lag).
- **People** (``yitu user``): a name, a role, an area, an Argon2id password hash (argon2-cffi). Signing
  in starts a server-side **session** (table ``sessions``): the cookie ``yitu_session`` carries a random
  value whose SHA-256 names the row; it ends after ``session_idle_minutes`` without a request, 12 h
  after it began, at sign-out, and at once when the user is disabled or gets a new password.
- **Wall screens** (``yitu screen``): read-only and masked (role ``screen``); a one-time pairing code
  (10 minutes) gives a browser a session with no idle timeout, until the screen is revoked.

Guessing is throttled (``signin_attempts``, in PostgreSQL so all processes agree): 5 failed sign-ins
for an account or 20 failures of a kind from an address in 15 minutes, and the next attempt waits.

Scope: an identity with an area (a code of any level) sees only what lies inside it — a case whose
grid chain contains the code, an area whose code starts with it.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from psycopg import sql
from psycopg.rows import dict_row

from geodata import masking
from geodata.cases import Actor, CaseNotFound, chain_of
from geodata.dispatch import ACTIVE as ACTIVE_VISIT
from geodata.errors import Conflict, Forbidden, Invalid, NotFound, TooManyAttempts, Unauthorized
from geodata.queries import ROOT_DIGITS, plain, query
from geodata.tracking import VAN_IN_REACH
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
    van: str | None = None  # the van a ``van`` role acts for: a van token's name, a crew member's users.van_id

    def __post_init__(self) -> None:
        # The root's area (the league or city: a 4-digit code, queries.ROOT_DIGITS) holds every banner
        # of the deployment (the grid importer keeps it so): scoped to it is scoped to nothing.
        if self.area is not None and len(self.area) == ROOT_DIGITS:
            object.__setattr__(self, "area", None)

    @property
    def actor(self) -> Actor:
        """The actor of the audit rows (the identity's kind and id); Actor.key_scope scopes its Idempotency-Keys."""
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
        """Inside its area; and a van crew (its token or a signed-in crew member) only the case its
        van is sent to (the case's assignee while the visit lasts), never the others' parties."""
        if self.role == "van":
            assignee = row.get("assignee") or {}
            if self.van is None or assignee.get("kind") != "van" or assignee.get("id") != self.van:
                return False
        return self.area is None or self.area in chain_of(row)

    def sees_dispatch(self, row: Mapping[str, Any]) -> bool:
        """A van's visit (a row of geodata/sql/dispatch_list.sql): a crew sees its own van's while it
        lasts (the case it is sent to), never another van's nor a past one; anyone else, the visits
        to the cases of its area."""
        if self.role == "van":
            return self.van is not None and row["van_id"] == self.van and row["status"] in ACTIVE_VISIT
        return self.sees_case(row)

    def sees_area(self, code: str) -> bool:
        return self.area is None or code.startswith(self.area)

    def require_case(self, row: Mapping[str, Any]) -> None:
        """NotFound unless the caller sees the case: one outside its area (or, for a van crew, not its
        van's) is to it as one that does not exist — a 403 told a scoped caller that the code exists,
        and the codes run banner-day-number (attachments and the case page answered 404 already)."""
        if not self.sees_case(row):
            raise CaseNotFound(f"no case with code {row['code']}", field="code")  # the unknown code's answer

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
# WHO IS ASKING (the callbacks, the layer and CSV routes, the live push). The guard (api/guard.py)
# binds a principal for every request and WebSocket and refuses anonymous ones before they reach
# any of these; should one still arrive unbound (a code path the guard does not cover), it is
# refused (401) here too, never served as "everyone".
def who_is_asking() -> Principal:
    """The principal of the request, callback or WebSocket being served; Unauthorized when none."""
    who = current()
    if who is None:
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
    area = _league_wide(area)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        "INSERT INTO api_tokens (name, role, area_code, token_hash) VALUES (%s, %s, %s, %s) RETURNING id",
        (name, role, area, hash_token(token)),
    ).fetchone()
    assert row is not None
    return int(row[0]), token


# An admin's reach (services/admin.py): the SQL of "in the reach %(reach)s" (NULL: everything) for a
# row's area — the readers' own rule, yitu_area_in_scope (a row of no area, the whole territory, is
# outside any area) —, for a van (geodata/tracking.py VAN_IN_REACH), for a user (its area, and a crew
# member's van too) and for a token (its area, and a van token's van: it acts for the van it is named
# after). Unscoped, every row: a van token of no known van too.
AREA_IN_REACH = "yitu_area_in_scope(%(reach)s::text, {area})"
USER_IN_REACH = (
    "("
    + AREA_IN_REACH.format(area="u.area_code")
    + " AND (%(reach)s::text IS NULL OR u.van_id IS NULL OR EXISTS (SELECT 1 FROM vans rv WHERE rv.id = u.van_id"
    + " AND "
    + VAN_IN_REACH.format(van="rv")
    + ")))"
)
TOKEN_IN_REACH = (
    "("
    + AREA_IN_REACH.format(area="t.area_code")
    + " AND (%(reach)s::text IS NULL OR t.role <> 'van' OR EXISTS (SELECT 1 FROM vans rv WHERE rv.id = t.name"
    + " AND "
    + VAN_IN_REACH.format(van="rv")
    + ")))"
)


def list_tokens(conn: psycopg.Connection, reach: str | None = None) -> list[dict[str, Any]]:
    """The tokens (never a hash) whose area lies in ``reach`` (None: all; services/admin.py ``reach``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT t.id, t.name, t.role, t.area_code, t.created_at, t.revoked_at FROM api_tokens t"
            " WHERE " + TOKEN_IN_REACH + " ORDER BY t.id",
            {"reach": reach},
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
        return lookup_digest_on(conn, digest)


def lookup_digest_on(conn: psycopg.Connection, digest: str) -> Principal | None:
    """The live token with this SHA-256, on a connection the caller holds."""
    row = conn.execute(
        "SELECT id, name, role, area_code FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL",
        (digest,),
        prepare=True,
    ).fetchone()
    if row is None:
        return None
    # A van token reports for the van it is named after (``yitu token create --role van --name V01``).
    return Principal(int(row[0]), row[1], row[2], row[3], van=row[1] if row[2] == "van" else None)


def lookup(svc: Services, token: str) -> Principal | None:
    """The principal of a raw token, or None (for callers that are not requests: the dispatch page)."""
    token = (token or "").strip()
    if not token or len(token) > 200:
        return None
    return lookup_digest(svc, hash_token(token))


# --- people: users with passwords (Argon2id) ---------------------------------------------------

PEOPLE_ROLES: tuple[str, ...] = ("admin", "dispatcher", "grid_worker", "viewer")
# A van's crew member (/m/van): a person who signs in for one van (users.van_id, 028_van_crew.sql).
# Not among PEOPLE_ROLES, which the admin page's role pickers offer: a crew member needs a van,
# given with ``yitu user create NAME --role van --van V01``.
CREW_ROLE = "van"
USER_ROLES: tuple[str, ...] = (*PEOPLE_ROLES, CREW_ROLE)
SCREEN_ROLE = "screen"
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # Argon2 hashes any length; this bounds the work a hostile body can ask for
MAX_NAME = 100
_hasher = PasswordHasher()  # argon2-cffi's defaults: Argon2id, RFC 9106's low-memory profile
# Checked against when the name is unknown, so an unknown name costs as long as a wrong password:
# a hash made with the hasher's parameters of a random password nobody kept (it was made at every
# import until 2026-12-07: a quarter to half a second of CPU at the start of every ``yitu`` process).
# tests/test_signin.py checks that its parameters are the hasher's (argon2-cffi's defaults may change).
DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$fgOjbF94B9bYV4SCruRIpA$wQkHycCn01wrOn7xt2cRqBFax6FERe2eCtOAPEdhiZQ"


def _check_name(name: str, field: str = "name") -> str:
    name = (name or "").strip()
    if not name or not plain(name, MAX_NAME):
        raise Invalid(f"give a {field} of 1 to {MAX_NAME} printable characters", field=field)
    return name


def check_password_rules(password: str, field: str = "password") -> str:
    """A new password: at least MIN_PASSWORD characters (and at most MAX_PASSWORD)."""
    if len(password or "") < MIN_PASSWORD:
        raise Invalid(f"the password needs at least {MIN_PASSWORD} characters", field=field)
    if len(password) > MAX_PASSWORD:
        raise Invalid(f"the password may have at most {MAX_PASSWORD} characters", field=field)
    return password


def _check_area(conn: psycopg.Connection, area: str | None) -> str | None:
    if area is None:
        return None
    if conn.execute("SELECT 1 FROM areas WHERE code = %s", (area,)).fetchone() is None:
        raise Invalid(f"no area with code {area!r}", field="area")
    return _league_wide(area)


def _league_wide(area: str | None) -> str | None:
    """An identity given the league/city root's area is stored unscoped: the root holds every banner
    of the deployment (geodata/league.py), so it sees what an unscoped one sees."""
    return None if area is not None and len(area) == ROOT_DIGITS else area


def hash_password(password: str) -> str:
    return _hasher.hash(check_password_rules(password))


def _check_van(conn: psycopg.Connection, role: str, van: str | None) -> str | None:
    """The van of a crew member (required, and known), None for every other role (refused if given)."""
    van = (van or "").strip() or None
    if role != CREW_ROLE:
        if van is not None:
            raise Invalid(f"only a van crew member (role {CREW_ROLE}) rides in a van", field="van")
        return None
    if van is None:
        raise Invalid("a van crew member needs the van they ride in (e.g. --van V01)", field="van")
    if conn.execute("SELECT 1 FROM vans WHERE id = %s", (van,)).fetchone() is None:
        raise Invalid(f"no van with id {van!r}", field="van")
    return van


def create_user(
    conn: psycopg.Connection, *, name: str, role: str, password: str, area: str | None = None, van: str | None = None
) -> int:
    """A new person who signs in (a crew member: with ``van``); Invalid (naming the field) or
    Conflict (the name is taken)."""
    name = _check_name(name)
    if role not in USER_ROLES:
        raise Invalid(f"unknown role {role!r}; one of {', '.join(USER_ROLES)}", field="role")
    area = _check_area(conn, area)
    van = _check_van(conn, role, van)
    digest = hash_password(password)
    if conn.execute("SELECT 1 FROM users WHERE name = %s", (name,)).fetchone():
        raise Conflict(f"a user named {name!r} exists already", field="name")
    row = conn.execute(
        "INSERT INTO users (name, role, area_code, password_hash, van_id) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (name, role, area, digest, van),
    ).fetchone()
    assert row is not None
    return int(row[0])


def list_users(conn: psycopg.Connection, reach: str | None = None) -> list[dict[str, Any]]:
    """The users (never a hash) whose area lies in ``reach`` (None: all), with when they last used a session."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT u.id, u.name, u.role, u.area_code, u.van_id, u.created_at, u.disabled_at,
                      (SELECT max(s.last_seen_at) FROM sessions s WHERE s.user_id = u.id) AS last_seen_at
               FROM users u WHERE """
            + USER_IN_REACH
            + " ORDER BY u.id",
            {"reach": reach},
        ).fetchall()


def _user_id(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM users WHERE name = %s", (name.strip(),)).fetchone()
    if row is None:
        raise NotFound(f"no user named {name!r}", field="name")
    return int(row[0])


def end_sessions_of(conn: psycopg.Connection, kind: Literal["user", "screen"], owner_id: int) -> int:
    """End every live session of a user or a screen (disabled, revoked, new password)."""
    column = "user_id" if kind == "user" else "screen_id"
    cur = conn.execute(
        sql.SQL("UPDATE sessions SET ended_at = now() WHERE {} = %s AND ended_at IS NULL").format(
            sql.Identifier(column)
        ),
        (owner_id,),
    )
    return cur.rowcount


def set_user_disabled(conn: psycopg.Connection, name: str, disabled: bool) -> bool:
    """Disable (ending the user's sessions at once) or enable a user; False when nothing changed."""
    uid = _user_id(conn, name)
    if disabled:
        cur = conn.execute("UPDATE users SET disabled_at = now() WHERE id = %s AND disabled_at IS NULL", (uid,))
        end_sessions_of(conn, "user", uid)
    else:
        cur = conn.execute("UPDATE users SET disabled_at = NULL WHERE id = %s AND disabled_at IS NOT NULL", (uid,))
    return cur.rowcount > 0


def set_password(conn: psycopg.Connection, name: str, password: str) -> None:
    """A new password; the user's sessions end (whoever knew the old one is signed out)."""
    uid = _user_id(conn, name)
    conn.execute(
        "UPDATE users SET password_hash = %s, password_changed_at = now() WHERE id = %s", (hash_password(password), uid)
    )
    end_sessions_of(conn, "user", uid)


def set_user_role(conn: psycopg.Connection, name: str, role: str, area: str | None, van: str | None = None) -> None:
    """Change a user's role and area scope (the admin page; a crew member's van with it: any other
    role leaves the van); their sessions end so the change holds at once."""
    if role not in USER_ROLES:
        raise Invalid(f"unknown role {role!r}; one of {', '.join(USER_ROLES)}", field="role")
    uid = _user_id(conn, name)
    conn.execute(
        "UPDATE users SET role = %s, area_code = %s, van_id = %s WHERE id = %s",
        (role, _check_area(conn, area), _check_van(conn, role, van), uid),
    )
    end_sessions_of(conn, "user", uid)


def verify_user(conn: psycopg.Connection, name: str, password: str) -> Principal | None:
    """The user ``name`` if ``password`` is theirs and they are not disabled; None otherwise
    (an unknown name costs a hash check too, so timing does not tell which names exist)."""
    row = conn.execute(
        "SELECT id, name, role, area_code, password_hash, disabled_at, van_id FROM users WHERE name = %s",
        (name.strip(),),
    ).fetchone()
    try:
        _hasher.verify(row[4] if row else DUMMY_HASH, password)
    except (VerifyMismatchError, InvalidHashError):
        return None
    if row is None or row[5] is not None:
        return None
    if _hasher.check_needs_rehash(row[4]):
        conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (_hasher.hash(password), row[0]))
    return Principal(int(row[0]), row[1], row[2], row[3], kind="user", van=row[6])


# --- sessions: server-side, behind the cookie yitu_session ------------------------------------

SESSION_COOKIE = "yitu_session"
SESSION_ABSOLUTE = timedelta(hours=12)
SCREEN_SESSION = timedelta(days=365)  # a wall screen stays paired until revoked (or a year)
TOUCH_SECONDS = 30  # last_seen_at is written at most this often per session


def start_session(
    conn: psycopg.Connection, who: Principal, *, address: str | None = None, user_agent: str | None = None
) -> tuple[Principal, str]:
    """A new session for a user or a screen; returns the principal with its session id and the
    cookie value (random, 32 bytes; only its SHA-256 is stored)."""
    if who.kind not in ("user", "screen"):
        raise ValueError(f"sessions are for users and screens, not {who.kind}")
    cookie = secrets.token_urlsafe(32)
    lifetime = SESSION_ABSOLUTE if who.kind == "user" else SCREEN_SESSION
    row = conn.execute(
        """INSERT INTO sessions (token_hash, kind, user_id, screen_id, expires_at, address, user_agent)
           VALUES (%s, %s, %s, %s, now() + %s, %s, %s) RETURNING id""",
        (
            hash_token(cookie),
            who.kind,
            who.token_id if who.kind == "user" else None,
            who.token_id if who.kind == "screen" else None,
            lifetime,
            (address or "")[:100] or None,
            (user_agent or "")[:300] or None,
        ),
    ).fetchone()
    assert row is not None
    return replace(who, session_id=str(row[0])), cookie


def session_principal(
    conn: psycopg.Connection, cookie: str, idle_minutes: float, field_idle_minutes: float | None = None
) -> Principal | None:
    """The principal of a live session cookie, or None (unknown, ended, expired, idle, disabled, revoked).

    Idle: after ``idle_minutes`` without a request; a grid worker's after ``field_idle_minutes``
    (default: the same), whose phone may go hours without network (yitu_session_fresh, 029)."""
    cookie = (cookie or "").strip()
    if not cookie or len(cookie) > 200:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            query("session_principal"),
            {
                "hash": hash_token(cookie),
                "idle_seconds": idle_minutes * 60,
                "field_idle_seconds": (field_idle_minutes if field_idle_minutes is not None else idle_minutes) * 60,
                "touch_seconds": TOUCH_SECONDS,
            },
            prepare=True,
        ).fetchone()
    if row is None:
        return None
    return Principal(
        int(row["owner_id"]),
        row["name"],
        row["role"],
        row["area"],
        kind=row["kind"],
        session_id=str(row["session_id"]),
        van=row["van_id"],
    )


def session_alive(
    conn: psycopg.Connection, session_id: str, idle_minutes: float, field_idle_minutes: float | None = None
) -> bool:
    """Is this session still good (for an open WebSocket, which checks it again every few seconds)?

    Reading does not count as activity here: only requests the person makes keep a session from idling.
    The idle rule is session_principal's (yitu_session_fresh).
    """
    row = conn.execute(
        """SELECT 1 FROM sessions s
           LEFT JOIN users u ON u.id = s.user_id AND u.disabled_at IS NULL
           LEFT JOIN screens sc ON sc.id = s.screen_id AND sc.revoked_at IS NULL
           WHERE s.id = %(id)s AND s.ended_at IS NULL AND s.expires_at > now()
             AND yitu_session_fresh(s.kind, u.role, s.last_seen_at, %(idle)s, %(field_idle)s)
             AND (u.id IS NOT NULL OR sc.id IS NOT NULL)""",
        {
            "id": int(session_id),
            "idle": idle_minutes * 60,
            "field_idle": (field_idle_minutes if field_idle_minutes is not None else idle_minutes) * 60,
        },
        prepare=True,
    ).fetchone()
    return row is not None


def token_alive(conn: psycopg.Connection, token_id: int) -> bool:
    """Is this bearer token still good (for an open WebSocket opened with it, checked as a session is)?"""
    row = conn.execute(
        "SELECT 1 FROM api_tokens WHERE id = %s AND revoked_at IS NULL", (token_id,), prepare=True
    ).fetchone()
    return row is not None


def end_session(conn: psycopg.Connection, cookie: str) -> bool:
    """Sign out: the session behind this cookie ends (True when there was a live one)."""
    if not cookie or len(cookie) > 200:
        return False
    cur = conn.execute(
        "UPDATE sessions SET ended_at = now() WHERE token_hash = %s AND ended_at IS NULL", (hash_token(cookie),)
    )
    return cur.rowcount > 0


# --- wall screens: paired once through a one-time link ----------------------------------------

PAIRING_LIFETIME = timedelta(minutes=10)
PAIR_PATH = "/pair/"


def _new_pairing(conn: psycopg.Connection, screen_id: int) -> str:
    code = secrets.token_urlsafe(24)
    conn.execute(
        "INSERT INTO screen_pairings (code_hash, screen_id, expires_at) VALUES (%s, %s, now() + %s)",
        (hash_token(code), screen_id, PAIRING_LIFETIME),
    )
    return code


def create_screen(conn: psycopg.Connection, name: str, area: str | None = None) -> tuple[int, str]:
    """A new wall screen and its one-time pairing code (for ``/pair/<code>``, valid 10 minutes)."""
    name = _check_name(name)
    area = _check_area(conn, area)
    if conn.execute("SELECT 1 FROM screens WHERE name = %s", (name,)).fetchone():
        raise Conflict(
            f"a screen named {name!r} exists already (`yitu screen pair {name}` for a new link)", field="name"
        )
    row = conn.execute("INSERT INTO screens (name, area_code) VALUES (%s, %s) RETURNING id", (name, area)).fetchone()
    assert row is not None
    return int(row[0]), _new_pairing(conn, int(row[0]))


def pair_again(conn: psycopg.Connection, name: str) -> str:
    """A new one-time pairing code for an existing, unrevoked screen (another browser, a lost link)."""
    row = conn.execute("SELECT id FROM screens WHERE name = %s AND revoked_at IS NULL", (name.strip(),)).fetchone()
    if row is None:
        raise NotFound(f"no live screen named {name!r}", field="name")
    return _new_pairing(conn, int(row[0]))


def redeem_pairing(conn: psycopg.Connection, code: str) -> Principal | None:
    """The screen of a pairing code that is unused, unexpired and of a live screen, marking it used
    (once only: two browsers racing for one code, one wins); None otherwise."""
    code = (code or "").strip()
    if not code or len(code) > 100:
        return None
    row = conn.execute(
        """UPDATE screen_pairings p SET used_at = now()
           FROM screens s
           WHERE p.code_hash = %s AND p.used_at IS NULL AND p.expires_at > now()
             AND s.id = p.screen_id AND s.revoked_at IS NULL
           RETURNING s.id, s.name, s.area_code""",
        (hash_token(code),),
    ).fetchone()
    return Principal(int(row[0]), row[1], SCREEN_ROLE, row[2], kind="screen") if row else None


def list_screens(conn: psycopg.Connection, reach: str | None = None) -> list[dict[str, Any]]:
    """The wall screens whose area lies in ``reach`` (None: all), with their live sessions."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT sc.id, sc.name, sc.area_code, sc.created_at, sc.revoked_at,
                      (SELECT count(*) FROM sessions s WHERE s.screen_id = sc.id AND s.ended_at IS NULL
                         AND s.expires_at > now()) AS sessions,
                      (SELECT max(s.last_seen_at) FROM sessions s WHERE s.screen_id = sc.id) AS last_seen_at
               FROM screens sc WHERE """
            + AREA_IN_REACH.format(area="sc.area_code")
            + " ORDER BY sc.id",
            {"reach": reach},
        ).fetchall()


def revoke_screen(conn: psycopg.Connection, name: str) -> bool:
    """Revoke a screen: its sessions end and its pairing links die; False when it was not live."""
    row = conn.execute(
        "UPDATE screens SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL RETURNING id", (name.strip(),)
    ).fetchone()
    if row is None:
        return False
    end_sessions_of(conn, "screen", int(row[0]))
    conn.execute("UPDATE screen_pairings SET expires_at = now() WHERE screen_id = %s AND used_at IS NULL", (row[0],))
    return True


# --- the throttle: guessed passwords, tokens, device identifiers and pairing codes -------------

AttemptKind = Literal["password", "token", "device", "pairing", "welcome"]
THROTTLE_WINDOW = timedelta(minutes=15)
ACCOUNT_LIMIT = 5  # failed sign-ins of one account in the window
ADDRESS_LIMIT = 20  # failed attempts of one kind from one address in the window


def _wait_for(conn: psycopg.Connection, kind: AttemptKind, column: str, key: str, limit: int) -> int | None:
    stmt = sql.SQL(query("throttle_failures")).format(column=sql.Identifier(column))
    rows = conn.execute(
        stmt,
        {
            "key": key,
            "kind": kind,
            "limit": limit,
            "window_seconds": THROTTLE_WINDOW.total_seconds(),
            "reset_on_success": column == "account",
        },
    ).fetchall()
    if len(rows) < limit:
        return None
    now_row = conn.execute("SELECT now()").fetchone()
    assert now_row is not None
    oldest: datetime = rows[-1][0]
    left: timedelta = oldest + THROTTLE_WINDOW - now_row[0]
    return max(1, math.ceil(left.total_seconds()))


def throttled(
    conn: psycopg.Connection, kind: AttemptKind, *, account: str | None = None, address: str | None = None
) -> int | None:
    """Seconds until another attempt is allowed (the Retry-After), or None when it is allowed now:
    after ACCOUNT_LIMIT failures for one account or ADDRESS_LIMIT from one address in 15 minutes."""
    waits = []
    if account:
        waits.append(_wait_for(conn, kind, "account", account[:200], ACCOUNT_LIMIT))
    if address:
        waits.append(_wait_for(conn, kind, "address", address[:100], ADDRESS_LIMIT))
    found = [w for w in waits if w is not None]
    return max(found) if found else None


def refuse_if_throttled(
    conn: psycopg.Connection,
    kind: AttemptKind,
    what: str,
    field: str,
    *,
    account: str | None = None,
    address: str | None = None,
) -> None:
    """TooManyAttempts naming ``what`` was tried too often (and the Retry-After) while :func:`throttled`
    holds another attempt back; the sign-in, pairing, welcome and credential checks all ask here."""
    wait = throttled(conn, kind, account=account, address=address)
    if wait is not None:
        raise TooManyAttempts(f"too many {what}; try again later", field=field, extra={"retry_after": wait})


T = TypeVar("T")


def unless_guessing(
    conn: psycopg.Connection,
    kind: AttemptKind,
    address: str | None,
    find: Callable[[psycopg.Connection], T | None],
    *,
    what: str,
    field: str,
) -> T | None:
    """``find`` a credential (a token, a device identifier) unless ``address`` has guessed too often:
    then TooManyAttempts with the Retry-After. What ``find`` does not know counts as a failed guess."""
    refuse_if_throttled(conn, kind, f"unknown {what} from this address", field, address=address)
    found = find(conn)
    if found is None:
        record_attempt(conn, kind, False, address=address)
    return found


def record_attempt(
    conn: psycopg.Connection, kind: AttemptKind, ok: bool, *, account: str | None = None, address: str | None = None
) -> None:
    conn.execute(
        "INSERT INTO signin_attempts (kind, account, address, ok) VALUES (%s, %s, %s, %s)",
        (kind, (account or "")[:200] or None, (address or "")[:100] or None, ok),
    )

"""The administrative changes (users, wall screens, API tokens, van devices) and the logs, each change
with its ``admin_events`` row in the same transaction.

**An admin's reach is its area.** An admin scoped to an area (a banner's, a town's) manages only the
identities inside it — users, screens and tokens whose area lies in its own —, the devices of its
banner's vans, and reads only the log rows of those; it cannot make an identity of the whole territory
or of another area (403 naming ``area``), and an identity outside its reach is to it as one that does
not exist (404: its name is not confirmed). Otherwise an admin of one town could make an unscoped
admin, or set the league admin's password and sign in as them. An unscoped admin, and the command
line (``who`` None: whoever runs it on the host), reach everything. services/roster.py applies the
same rule to the roster.

One implementation for both faces: the admin page (callbacks/admin.py, ``who`` the signed-in admin,
``address`` the browser's) and the command line (cli/users.py, ``who`` None: actor_kind ``cli``).
Each function works on the caller's connection and leaves the commit to it, so the change and its
audit row commit together or not at all. Refusals are :mod:`geodata.errors` kinds naming the field.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from geodata import queries, tracking
from geodata.errors import Forbidden, Invalid, NotFound
from geodata.resource_import import VAN_ID
from geodata.workflow import ROLES
from services import audit, identity
from services.identity import Principal

MIN_DEVICE_LEN = 8
MAX_DEVICE_LEN = 200
PAGE_SIZE = 20
MAX_FILTER = 100


# --- an admin's reach ---------------------------------------------------------------------------------


def reach(who: Principal | None) -> str | None:
    """The area ``who`` manages (None: everything — an unscoped admin, or the command line)."""
    return None if who is None else who.area


def require_reach(who: Principal | None, area: str | None, field: str = "area") -> None:
    """403 naming ``field`` unless an identity or row of ``area`` (None: the whole territory) lies in
    ``who``'s reach."""
    scope = reach(who)
    if scope is not None and not (area or "").startswith(scope):
        where = f"area {area}" if area else "the whole territory"
        raise Forbidden(f"{where} is outside your area {scope}: an admin manages its own area only", field=field)


# The row of ``name`` in reach, by table (constants: never input); services/identity.py has the rules.
_IN_REACH = {
    "users": "SELECT 1 FROM users u WHERE u.name = %(v)s AND " + identity.USER_IN_REACH,
    "screens": "SELECT 1 FROM screens WHERE name = %(v)s AND " + identity.AREA_IN_REACH.format(area="area_code"),
}


def _in_reach(conn: psycopg.Connection, who: Principal | None, table: str, name: str, what: str) -> None:
    """NotFound naming ``name`` (as for one that does not exist) unless the user or screen called
    ``name`` lies in ``who``'s reach (a crew member: its van too)."""
    scope = reach(who)
    if scope is None:
        return
    if not queries.plain(name, identity.MAX_NAME):
        raise NotFound(f"no {what} named {str(name)[:40]!r}", field="name")
    if conn.execute(_IN_REACH[table], {"v": name, "reach": scope}).fetchone() is None:
        raise NotFound(f"no {what} named {name!r}", field="name")


def van_in_reach(conn: psycopg.Connection, who: Principal | None, van: str, field: str = "van") -> None:
    """Invalid naming ``field`` (as for a van that does not exist) unless ``van`` is one ``who`` manages."""
    scope = reach(who)
    if scope is None:
        return
    if not VAN_ID.fullmatch(van):  # not a van's id (a NUL would reach PostgreSQL: a 500)
        raise Invalid(f"no van with id {str(van)[:40]!r}", field=field)
    row = conn.execute(
        "SELECT 1 FROM vans v WHERE v.id = %(v)s AND " + tracking.VAN_IN_REACH.format(van="v"),
        {"v": van, "reach": scope},
    ).fetchone()
    if row is None:
        raise Invalid(f"no van with id {van!r}", field=field)


def check_area(conn: psycopg.Connection, area: str | None) -> str | None:
    """An area code given in a form: empty is none; else digits of a known area (Invalid naming ``area``)."""
    area = (area or "").strip() or None
    if area is None:
        return None
    if not queries.digits(area) or len(area) > 15:
        raise Invalid(f"an area code is 6 to 15 digits, not {area[:20]!r}", field="area")
    if conn.execute("SELECT 1 FROM areas WHERE code = %s", (area,)).fetchone() is None:
        raise Invalid(f"no area with code {area!r}", field="area")
    return area


def check_device(device: str) -> str:
    device = (device or "").strip()
    if not MIN_DEVICE_LEN <= len(device) <= MAX_DEVICE_LEN or not device.isprintable():
        raise Invalid(
            f"a device identifier has {MIN_DEVICE_LEN} to {MAX_DEVICE_LEN} printable characters", field="device"
        )
    return device


# --- users --------------------------------------------------------------------------------------------


def create_user(
    conn: psycopg.Connection,
    who: Principal | None,
    address: str | None,
    *,
    name: str,
    role: str,
    password: str,
    area: str | None = None,
    van: str | None = None,
) -> int:
    area = check_area(conn, area)
    require_reach(who, area)
    if van:
        van_in_reach(conn, who, van.strip())  # a crew member of its banner's van only
    uid = identity.create_user(conn, name=name, role=role, password=password, area=area, van=van)
    details = {"name": name.strip(), "role": role, "area": area, **({"van": van.strip()} if van else {})}
    audit.record(conn, who, "user.create", f"user:{uid}", details, address)
    return uid


def set_user_disabled(
    conn: psycopg.Connection, who: Principal | None, address: str | None, name: str, disabled: bool
) -> bool:
    """Disable (their sessions end at once) or enable; the row is written when something changed."""
    _in_reach(conn, who, "users", name.strip(), "user")
    changed = identity.set_user_disabled(conn, name, disabled)
    if changed:
        action = "user.disable" if disabled else "user.enable"
        audit.record(conn, who, action, f"user:{_user_id(conn, name)}", {"name": name.strip()}, address)
    return changed


def reset_password(
    conn: psycopg.Connection, who: Principal | None, address: str | None, name: str, password: str
) -> None:
    """A new password (never logged); the user's sessions end."""
    _in_reach(conn, who, "users", name.strip(), "user")
    identity.set_password(conn, name, password)
    audit.record(conn, who, "user.password", f"user:{_user_id(conn, name)}", {"name": name.strip()}, address)


def set_user_role(
    conn: psycopg.Connection, who: Principal | None, address: str | None, name: str, role: str, area: str | None
) -> None:
    """A new role and area scope; the user's sessions end so the change holds at once."""
    _in_reach(conn, who, "users", name.strip(), "user")
    area = check_area(conn, area)
    require_reach(who, area)
    before = conn.execute("SELECT role, area_code FROM users WHERE name = %s", (name.strip(),)).fetchone()
    identity.set_user_role(conn, name, role, area)
    assert before is not None  # set_user_role raised NotFound otherwise
    audit.record(
        conn,
        who,
        "user.role",
        f"user:{_user_id(conn, name)}",
        {"name": name.strip(), "role": role, "area": area, "was": {"role": before[0], "area": before[1]}},
        address,
    )


def _user_id(conn: psycopg.Connection, name: str) -> int:
    return _id_by_name(conn, "users", "user", name)


def _id_by_name(conn: psycopg.Connection, table: str, what: str, name: str) -> int:
    """The id of the user or screen called ``name`` (the audit row names it by id); 404 naming ``name``."""
    row = conn.execute(
        sql.SQL("SELECT id FROM {} WHERE name = %s").format(sql.Identifier(table)), (name.strip(),)
    ).fetchone()
    if row is None:
        raise NotFound(f"no {what} named {name!r}", field="name")
    return int(row[0])


# --- wall screens ----------------------------------------------------------------------------------------


def create_screen(
    conn: psycopg.Connection, who: Principal | None, address: str | None, name: str, area: str | None
) -> tuple[int, str]:
    """A new screen and its one-time pairing code (the code is never logged)."""
    area = check_area(conn, area)
    require_reach(who, area)
    sid, code = identity.create_screen(conn, name, area)
    audit.record(conn, who, "screen.create", f"screen:{sid}", {"name": name.strip(), "area": area}, address)
    return sid, code


def pair_screen(conn: psycopg.Connection, who: Principal | None, address: str | None, name: str) -> str:
    _in_reach(conn, who, "screens", name.strip(), "screen")
    code = identity.pair_again(conn, name)
    audit.record(conn, who, "screen.pair", f"screen:{_screen_id(conn, name)}", {"name": name.strip()}, address)
    return code


def revoke_screen(conn: psycopg.Connection, who: Principal | None, address: str | None, name: str) -> bool:
    _in_reach(conn, who, "screens", name.strip(), "screen")
    done = identity.revoke_screen(conn, name)
    if done:
        audit.record(conn, who, "screen.revoke", f"screen:{_screen_id(conn, name)}", {"name": name.strip()}, address)
    return done


def _screen_id(conn: psycopg.Connection, name: str) -> int:
    return _id_by_name(conn, "screens", "screen", name)


# --- API tokens ---------------------------------------------------------------------------------------------


def create_token(
    conn: psycopg.Connection, who: Principal | None, address: str | None, name: str, role: str, area: str | None
) -> tuple[int, str]:
    """A new bearer token: (id, the token), the only time it is seen (only its hash is stored or logged)."""
    name = (name or "").strip()
    if not name or len(name) > identity.MAX_NAME or not name.isprintable():
        raise Invalid(f"give a name of 1 to {identity.MAX_NAME} printable characters", field="name")
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}; one of {', '.join(ROLES)}", field="role")
    area = check_area(conn, area)
    require_reach(who, area)
    if role == "van":
        van_in_reach(conn, who, name, "name")  # a van token acts for the van it is named after
    token_id, token = identity.create_token(conn, name=name, role=role, area=area)
    audit.record(conn, who, "token.create", f"token:{token_id}", {"name": name, "role": role, "area": area}, address)
    return token_id, token


def revoke_token(conn: psycopg.Connection, who: Principal | None, address: str | None, token_id: int) -> bool:
    """Revoke the live token with this id (by id only: a token may be named like another's number), if
    it is in ``who``'s reach (one outside is left as it is, as one that does not exist)."""
    row = conn.execute(
        "UPDATE api_tokens t SET revoked_at = now() WHERE t.id = %(id)s AND t.revoked_at IS NULL AND "
        + identity.TOKEN_IN_REACH
        + " RETURNING t.name",
        {"id": int(token_id), "reach": reach(who)},
    ).fetchone()
    if row is not None:
        audit.record(conn, who, "token.revoke", f"token:{int(token_id)}", {"name": row[0], "revoked": 1}, address)
    return row is not None


# --- van devices ------------------------------------------------------------------------------------------------


def register_device(
    conn: psycopg.Connection, who: Principal | None, address: str | None, van: str, device: str
) -> str | None:
    """Let ``device`` report for ``van``; returns the van it reported for before, if another.
    The log names the device by the start of its hash, never the identifier."""
    device = check_device(device)
    van_in_reach(conn, who, (van or "").strip())
    now_for = tracking.van_of_device(conn, device)
    if now_for is not None:
        try:
            van_in_reach(conn, who, now_for)  # not taken from another banner's van by its admin
        except Invalid:
            raise Forbidden("this device reports for a van outside your area", field="device") from None
    try:
        before = tracking.register_device(conn, (van or "").strip(), device)
    except ValueError:
        raise Invalid(f"no van with id {van!r}", field="van") from None
    _device_event(conn, who, address, "van.device.register", van.strip(), device, {"moved_from": before})
    return before


def unregister_device(conn: psycopg.Connection, who: Principal | None, address: str | None, device: str) -> str:
    """Forget a device; returns the van it reported for (NotFound naming ``device`` when unknown)."""
    device = (device or "").strip()
    if not device or len(device) > MAX_DEVICE_LEN:
        raise Invalid("give the device identifier to forget", field="device")
    known = tracking.van_of_device(conn, device)
    if known is not None:
        try:
            van_in_reach(conn, who, known)
        except Invalid:  # another banner's van's device: as one not registered
            known = None
    van = tracking.unregister_device(conn, device) if known is not None else None
    if van is None:
        raise NotFound("no such device is registered", field="device")
    _device_event(conn, who, address, "van.device.unregister", van, device, {})
    return van


def _device_event(
    conn: psycopg.Connection,
    who: Principal | None,
    address: str | None,
    action: str,
    van: str,
    device: str,
    detail: dict[str, Any],
) -> None:
    audit.record(conn, who, action, f"van:{van}", {**detail, "device": tracking.device_hash(device)[:12]}, address)


# --- the logs -------------------------------------------------------------------------------------------------


def _filter(value: str | None) -> str | None:
    value = (value or "").strip()
    if not queries.plain(value, MAX_FILTER):
        raise Invalid(f"a filter has at most {MAX_FILTER} printable characters", field="filter")
    return value or None


_R = identity.AREA_IN_REACH.format(area="area_code")
# A sign-in attempt in reach: a password typed for a user in it (only those name an account that is
# one: a screen's name may be any user's, and a token's guess names nobody).
_SIGNIN_IN_REACH = f"""(%(reach)s::text IS NULL OR (kind = 'password' AND account IN (
    SELECT u.name FROM users u WHERE {identity.USER_IN_REACH})))"""
# A change in reach: made by a user or token in it, or made to an identity, van, roster row or area in it.
_CHANGE_IN_REACH = f"""(%(reach)s::text IS NULL
    OR (actor_kind = 'user' AND actor_id IN (SELECT u.id FROM users u WHERE {identity.USER_IN_REACH}))
    OR (actor_kind = 'token' AND actor_id IN (SELECT t.id FROM api_tokens t WHERE {identity.TOKEN_IN_REACH}))
    OR target IN (SELECT 'user:' || u.id FROM users u WHERE {identity.USER_IN_REACH}
                  UNION ALL SELECT 'screen:' || id FROM screens WHERE {_R}
                  UNION ALL SELECT 'token:' || t.id FROM api_tokens t WHERE {identity.TOKEN_IN_REACH}
                  UNION ALL SELECT 'unit:' || id FROM units WHERE {_R}
                  UNION ALL SELECT 'mediator:' || id FROM mediators WHERE {_R}
                  UNION ALL SELECT 'van:' || v.id FROM vans v WHERE {tracking.VAN_IN_REACH.format(van="v")})
    OR starts_with(target, %(reach)s))"""


def signin_log(
    conn: psycopg.Connection,
    account: str | None = None,
    page: int = 0,
    size: int = PAGE_SIZE,
    who: Principal | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The sign-in attempts in ``who``'s reach, newest first, a page of them, optionally of accounts
    containing ``account``: (rows, how many match)."""
    columns = "id, at, kind, account, address, ok"
    return _log_page(conn, columns, "signin_attempts", "account", account, page, size, _SIGNIN_IN_REACH, who)


def change_log(
    conn: psycopg.Connection,
    actor: str | None = None,
    page: int = 0,
    size: int = PAGE_SIZE,
    who: Principal | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The admin_events rows in ``who``'s reach, newest first, a page of them, optionally of actors
    whose name contains ``actor``: (rows, how many match)."""
    columns = "id, at, client_at, actor_kind, actor_id, actor_name, action, target, detail, host(address) AS address"
    return _log_page(conn, columns, "admin_events", "actor_name", actor, page, size, _CHANGE_IN_REACH, who)


def _log_page(
    conn: psycopg.Connection,
    columns: str,
    table: str,
    column: str,
    contains: str | None,
    page: int,
    size: int,
    in_reach: str,
    who: Principal | None,
) -> tuple[list[dict[str, Any]], int]:
    """One page of a log table, newest first, of the rows in ``who``'s reach (``in_reach``) whose
    ``column`` contains ``contains`` (literally: LIKE's wildcards escaped), and how many rows match.
    ``columns`` and ``in_reach`` are constants of this module, never input."""
    where = sql.SQL("FROM {} WHERE (%(p)s::text IS NULL OR {} ILIKE %(p)s) AND ").format(
        sql.Identifier(table), sql.Identifier(column)
    ) + sql.SQL(in_reach)  # a constant of this module
    params = {"p": _like(_filter(contains)), "size": size, "offset": max(0, page) * size, "reach": reach(who)}
    with conn.cursor(row_factory=dict_row) as cur:
        total = cur.execute(sql.SQL("SELECT count(*) AS n ") + where, params).fetchone()
        rows = cur.execute(
            sql.SQL("SELECT {} ").format(sql.SQL(columns))
            + where
            + sql.SQL(" ORDER BY at DESC, id DESC LIMIT %(size)s OFFSET %(offset)s"),
            params,
        ).fetchall()
    return rows, int(total["n"]) if total else 0


def _like(value: str | None) -> str | None:
    if value is None:
        return None
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"

"""The admin log (``admin_events``): who did what, when and from where, append-only.

Every administrative change (users, screens, tokens, devices, ``import … --replace``, ``seed demo
--replace``) and every read of unmasked personal data writes one row here, in the caller's
transaction, so the change and its record commit together or not at all. The table is
append-only for the app's database role (grants and a trigger: geodata/sql/016_audit.sql), and
its time ``at`` is the database server's clock: a time the client claims goes to ``client_at``,
beside it, never instead.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from services.identity import Principal

PERSONAL_DATA_READ = "personal_data.read"

_INSERT = """INSERT INTO admin_events (client_at, actor_kind, actor_id, actor_name, action, target, detail, address)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""


def os_user() -> str:
    """Who runs the CLI: the login name, or the uid when the system has no name for it."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _address(address: str | None) -> tuple[str | None, str | None]:
    """(the address as an IP for the ``inet`` column, or None; what was given when it is not one)."""
    if not address:
        return None, None
    try:
        return str(ipaddress.ip_address(address)), None
    except ValueError:
        return None, address[:200]


def record(
    conn: psycopg.Connection,
    who: Principal | None,
    action: str,
    target: str,
    detail: Mapping[str, Any] | None = None,
    address: str | None = None,
    client_at: datetime | None = None,
) -> None:
    """Write one admin_events row in the caller's transaction.

    ``who`` None is the command line (actor_kind ``cli``, the OS user). ``action`` is a dotted
    lower-case name (``token.create``, ``seed.replace``); ``target`` what it acted on. An address
    that is not an IP (a test client, a Unix socket) is kept in ``detail`` as ``address_text``.
    """
    ip, other = _address(address)
    body = dict(detail or {})
    if other is not None:
        body["address_text"] = other
    if who is None:
        kind, ident, name = "cli", None, os_user()
    else:
        kind, ident, name = who.kind, who.token_id, who.name
    conn.execute(_INSERT, (client_at, kind, ident, name, action, target[:500], Jsonb(body), ip))


def personal_data_read(
    conn: psycopg.Connection, who: Principal, case_codes: Iterable[str], route: str, address: str | None = None
) -> None:
    """Log one read of unmasked personal data: the cases whose parties ``who`` was shown, and where.

    Writes nothing when the caller sees the parties masked (the one policy: geodata/masking.py)
    or was shown no case. One row per read, listing every case of it (a page of 50 is one row).
    An intake's answer is no read: it returns what the reporter has just sent.
    """
    codes = list(dict.fromkeys(case_codes))
    if not codes or not who.sees_personal_data:
        return
    record(conn, who, PERSONAL_DATA_READ, route, {"cases": codes, "count": len(codes)}, address)

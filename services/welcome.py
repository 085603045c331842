"""Bring a banner's people in from a spreadsheet (``yitu import users``) and let each set their own
password through a one-time welcome link.

Nobody types a password into a file that travels by e-mail: each imported account gets an
Argon2id hash of a random secret nobody is shown (the ``users.password_hash`` CHECK wants a hash,
and no password verifies against it), and a link ``/welcome/<code>`` valid WELCOME_LIFETIME. The
code is stored only as its SHA-256, as screen pairing codes are (015_people.sql, 032_welcome.sql);
opening the link shows a form, and the first password set through it uses it up. A used or expired
link, or one of a disabled account, is refused; unknown codes are throttled per address like
pairing codes.

The file is judged as the roster's are (geodata/roster_import.py ``read_sheet``): every problem at
once, naming the row and the field, and nothing written unless the whole file is good.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from tqdm import tqdm

from geodata import roster
from geodata.import_report import ImportRejected, ImportReport, Problem
from geodata.roster_import import cell_problems, read_sheet
from services import audit, identity

WELCOME_LIFETIME = timedelta(hours=72)
WELCOME_PATH = "/welcome/"
MAX_CODE = 100

# Roles as a bureau writes them.
ROLE_NAMES: Mapping[str, str] = {
    **{r: r for r in identity.USER_ROLES},
    "管理员": "admin",
    "调度员": "dispatcher",
    "调度": "dispatcher",
    "网格员": "grid_worker",
    "查看": "viewer",
    "只读": "viewer",
    "领导": "viewer",
    "车组": identity.CREW_ROLE,
    "调解车": identity.CREW_ROLE,
}


@dataclass(frozen=True)
class UserIn:
    name: str
    role: str
    area_code: str | None
    van_id: str | None


@dataclass(frozen=True)
class Welcome:
    """An imported account and its one-time code (shown once; only its hash is kept)."""

    name: str
    role: str
    code: str


def _check_row(unit: str, n: int, cells: Mapping[str, Any], known: roster.Known) -> tuple[UserIn | None, list[Problem]]:
    problems: list[Problem] = []
    name = roster.text_of(cells.get("name"))
    label = (name[:40],) if name else ()
    if name is None or len(name) > identity.MAX_NAME:
        problems.append(Problem("bad-name", label, f"{unit} {n}, name", f"1 to {identity.MAX_NAME} characters"))
        name = None
    elif name in known.users:
        problems.append(Problem("exists", label, f"{unit} {n}, name", f"a user named {name!r} exists already"))
    role_text = roster.text_of(cells.get("role"))
    role = ROLE_NAMES.get((role_text or "").lower())
    if role is None:
        shown = repr(role_text[:20]) if role_text else "missing"
        problems.append(
            Problem("bad-role", label, f"{unit} {n}, role", f"{shown}: one of {', '.join(identity.USER_ROLES)}")
        )
    area = roster.text_of(cells.get("area_code"))
    if area is not None and area not in known.areas:
        problems.append(Problem("bad-area_code", label, f"{unit} {n}, area_code", f"no area with code {area[:20]!r}"))
    van = roster.text_of(cells.get("van"))
    if role == identity.CREW_ROLE and van is None:
        problems.append(Problem("bad-van", label, f"{unit} {n}, van", "a van crew member needs the van they ride in"))
    elif role is not None and role != identity.CREW_ROLE and van is not None:
        problems.append(
            Problem(
                "bad-van",
                label,
                f"{unit} {n}, van",
                f"only a van crew member (role {identity.CREW_ROLE}) rides in a van",
            )
        )
    elif van is not None and van not in known.vans:
        problems.append(Problem("bad-van", label, f"{unit} {n}, van", f"no van with id {van[:32]!r}"))
    if problems or name is None or role is None:
        return None, problems
    return UserIn(name, role, area, van), problems


def _new_welcome(conn: psycopg.Connection, user_id: int) -> str:
    code = secrets.token_urlsafe(24)
    conn.execute(
        "INSERT INTO user_welcomes (code_hash, user_id, expires_at) VALUES (%s, %s, now() + %s)",
        (identity.hash_token(code), user_id, WELCOME_LIFETIME),
    )
    return code


def import_users(
    dsn: str,
    path: str | Path,
    *,
    layer: str | None = None,
    encoding: str | None = None,
    check: bool = False,
    progress: bool = False,
) -> tuple[ImportReport, list[Welcome]]:
    """Create the file's accounts (none may exist yet), each with a welcome code; in one transaction."""
    sheet = read_sheet(path, "users", layer=layer, encoding=encoding)
    with psycopg.connect(dsn) as conn:
        conn.execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        known = roster.Known.read(conn)
        good: list[UserIn] = []
        problems: list[Problem] = []
        first: dict[str, int] = {}
        for n, cells in sheet.rows:
            bad = cell_problems(n, sheet.unit, cells)
            problems += bad
            if bad:
                continue
            user, found = _check_row(sheet.unit, n, cells, known)
            problems += found
            if user is None:
                continue
            if user.name in first:
                problems.append(
                    Problem(
                        "duplicate",
                        (user.name,),
                        f"{sheet.unit} {n}",
                        f"the same name as {sheet.unit} {first[user.name]}",
                    )
                )
                continue
            first[user.name] = n
            good.append(user)
        if problems:
            raise ImportRejected(problems, sheet.warnings)
        welcomes: list[Welcome] = []
        counts: dict[str, int] = {}
        for user in tqdm(good, disable=not progress, file=sys.stderr, unit="user", leave=False):
            counts[user.role] = counts.get(user.role, 0) + 1
            if check:
                continue
            unusable = identity.hash_password(secrets.token_urlsafe(32))  # nobody is ever shown it
            row = conn.execute(
                """INSERT INTO users (name, role, area_code, password_hash, van_id)
                   VALUES (%s, %s, %s, %s, %s) RETURNING id""",
                (user.name, user.role, user.area_code, unusable, user.van_id),
            ).fetchone()
            assert row is not None
            welcomes.append(Welcome(user.name, user.role, _new_welcome(conn, int(row[0]))))
        report = ImportReport("users", len(good), 0, 0, dict(sorted(counts.items())), sheet.warnings)
        if check:
            conn.rollback()
        else:
            audit.record(
                conn, None, "import.users", "users", {"file": Path(path).name, "names": [u.name for u in good]}
            )
    return report, welcomes


# --- the welcome link ----------------------------------------------------------------------------


def welcome_user(conn: psycopg.Connection, code: str) -> str | None:
    """The name of the account a live welcome code is for (unused, unexpired, not disabled), or None."""
    code = (code or "").strip()
    if not code or len(code) > MAX_CODE:
        return None
    row = conn.execute(
        """SELECT u.name FROM user_welcomes w JOIN users u ON u.id = w.user_id
           WHERE w.code_hash = %s AND w.used_at IS NULL AND w.expires_at > now() AND u.disabled_at IS NULL""",
        (identity.hash_token(code),),
    ).fetchone()
    return str(row[0]) if row else None


def redeem_welcome(conn: psycopg.Connection, code: str, password: str) -> str | None:
    """Set the password of a live welcome code's account and use the code up (once: two tabs racing,
    one wins); the account's name, or None when the code is not live. Invalid when the password
    breaks the rules (the code is then left unused)."""
    digest = identity.hash_password(password)  # Invalid before anything is used up
    code = (code or "").strip()
    if not code or len(code) > MAX_CODE:
        return None
    row = conn.execute(
        """UPDATE user_welcomes w SET used_at = now()
           FROM users u
           WHERE w.code_hash = %s AND w.used_at IS NULL AND w.expires_at > now()
             AND u.id = w.user_id AND u.disabled_at IS NULL
           RETURNING u.id, u.name""",
        (identity.hash_token(code),),
    ).fetchone()
    if row is None:
        return None
    conn.execute("UPDATE users SET password_hash = %s, password_changed_at = now() WHERE id = %s", (digest, row[0]))
    identity.end_sessions_of(conn, "user", int(row[0]))
    # the account's other links die with this one: one person, one first password
    conn.execute("UPDATE user_welcomes SET expires_at = now() WHERE user_id = %s AND used_at IS NULL", (row[0],))
    return str(row[1])


__all__ = [
    "ROLE_NAMES",
    "WELCOME_LIFETIME",
    "WELCOME_PATH",
    "Welcome",
    "import_users",
    "redeem_welcome",
    "welcome_user",
]

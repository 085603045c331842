"""Several banners in one deployment: the level-0 root (the league or city, 盟/市) above them.

The root's code is the 4-digit NBS prefix of its banners' codes (鄂尔多斯市 150600 → ``1506``), so
codes keep nesting by prefix and a reader's area scope stays a prefix test. There is at most one
root, and while there is one every banner lies under it: the grid importer refuses a banner
outside it and :func:`set_root` refuses a root that would leave a banner out. A reader scoped to
the root therefore sees the whole territory (services/identity.py treats it as unscoped).

The root is made explicitly (``yitu area root CODE NAME``, ``yitu import grids --root``), or by
the import that brings a second banner with the same prefix (named by its code until renamed).
Its outline is always the union of its banners' (``yitu_root_refresh``, 034_league_root.sql),
refreshed in the transaction of every grid import.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from geodata import outbox
from geodata.errors import Conflict, Invalid
from geodata.queries import ROOT_DIGITS, root_code

AREAS_CHANGED = "areas.changed"  # the live event of a grid import: open screens redraw the grid


def root(conn: psycopg.Connection[Any]) -> tuple[str, str] | None:
    """(code, name) of the root, or None in a deployment without one."""
    row = conn.execute("SELECT code, name FROM areas WHERE level = 0").fetchone()
    return (row[0], row[1]) if row else None


def banners(conn: psycopg.Connection[Any]) -> list[str]:
    return [r[0] for r in conn.execute("SELECT code FROM areas WHERE level = 1 ORDER BY code")]


def outside(codes: Iterable[str], root_at: str) -> list[str]:
    """The banner codes of ``codes`` that do not lie under the root ``root_at``."""
    return sorted(c for c in codes if not c.startswith(root_at))


def set_root(conn: psycopg.Connection[Any], code: str, name: str) -> str:
    """Make (or rename) the root, in the caller's transaction; returns its stored code.

    Invalid: not a league code or no name; Conflict: another root exists, or a banner already in the
    database would lie outside this one (the root must hold them all).
    """
    try:
        at = root_code(code)
    except ValueError as exc:
        raise Invalid(str(exc), field="code") from None
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("a root needs a name of 1 to 200 characters", field="name")
    conn.execute("LOCK TABLE areas IN SHARE ROW EXCLUSIVE MODE")
    have = root(conn)
    if have is not None and have[0] != at:
        raise Conflict(f"the root is already {have[0]} ({have[1]}); a deployment has one", field="code")
    left_out = outside(banners(conn), at)
    if left_out:
        raise Conflict(f"banner(s) {', '.join(left_out)} would lie outside the root {at}", field="code")
    conn.execute(
        """INSERT INTO areas (code, name, level, parent_code, geom)
           VALUES (%s, %s, 0, NULL, 'SRID=4326;MULTIPOLYGON EMPTY'::geometry)
           ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, updated_at = now()""",
        (at, name),
    )
    refresh(conn)
    return at


def refresh(conn: psycopg.Connection[Any]) -> None:
    """The root's banners and outline as the banners are now (nothing without a root)."""
    conn.execute("SELECT yitu_root_refresh()")


def settle(conn: psycopg.Connection[Any], root_at: str | None = None, root_name: str | None = None) -> list[str]:
    """After a grid import, in its transaction: the root asked for (``root_at``) is made; without one,
    a second banner of the same prefix makes it (named by its code: a warning says how to name it);
    then the root's outline is refreshed. Returns the warnings for the importer's report."""
    warnings: list[str] = []
    have = root(conn)
    if root_at is not None:
        keep = have[1] if have is not None and have[0] == root_code(root_at) else root_code(root_at) + "00"
        set_root(conn, root_at, root_name or keep)
    elif have is None:
        codes = banners(conn)
        prefixes = {c[:ROOT_DIGITS] for c in codes}
        if len(codes) >= 2 and len(prefixes) == 1:
            (prefix,) = prefixes
            set_root(conn, prefix, root_name or prefix + "00")
            if not root_name:
                warnings.append(
                    f"{len(codes)} banners: made their league/city root {prefix} named {prefix}00; "
                    f"name it with `yitu area root {prefix}00 NAME`"
                )
        elif len(codes) >= 2:
            warnings.append(
                f"{len(codes)} banners with no common league/city prefix ({', '.join(sorted(prefixes))}): "
                "no root was made, the wall opens at the first banner"
            )
    refresh(conn)
    return warnings


def announce(conn: psycopg.Connection[Any], touched: Iterable[str]) -> None:
    """The ``areas.changed`` live event of an import, written to the outbox in its transaction:
    every open screen redraws its grid layer and numbers once the import commits."""
    outbox.append(conn, [{"type": AREAS_CHANGED, "banners": sorted(set(touched))}])

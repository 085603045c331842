"""Deadlines per banner or for the whole league (issue 16 item 2): the one place that answers
"the deadline rules of this banner".

The settings (``YITU_DEADLINE_*_HOURS``, ``YITU_MAX_ATTEMPTS_PER_LEVEL``) are the deployment's
default; a row of ``deadline_overrides`` (037_deadlines.sql) for the root (the league or city, its
4-digit code) overrides them for every banner, and a banner's row overrides the league's, field by
field (a NULL inherits). :class:`RulesBook` holds the table as loaded with the defaults and answers
``of(banner)`` in memory, so the hot paths (intake, transitions) pay nothing for it; the app
processes keep theirs current by the table's generation (services/deadlines.py).

With the table empty every banner gets the settings' rules: one banner, nothing changes.
The triage's start levels and the group threshold stay the settings' alone (a deployment-wide
policy), as do the warnings' lead times (geodata/warnings.py).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from geodata.errors import Invalid
from geodata.queries import ROOT_DIGITS, digits
from geodata.workflow import LEVELS, DeadlineRules

# The settings' bounds (services/settings.py reads them from here), and the table's CHECKs.
MAX_HOURS: Mapping[str, float] = {"grid": 24 * 30, "village": 24 * 90, "town": 24 * 90, "banner": 24 * 90}
MAX_ATTEMPTS = 20
Source = Literal["settings", "league", "banner"]
COLUMNS: Mapping[str, str] = {lv: f"{lv}_hours" for lv in LEVELS}


@dataclass(frozen=True)
class Override:
    """One row of ``deadline_overrides``: the hours of the levels it sets, and its max attempts."""

    area: str
    hours: Mapping[str, float] = field(default_factory=dict)
    max_attempts: int | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None

    def over(self, rules: DeadlineRules) -> DeadlineRules:
        """``rules`` with what this row sets put over them."""
        return replace(
            rules,
            hours={**rules.hours, **self.hours},
            max_attempts=self.max_attempts if self.max_attempts is not None else rules.max_attempts,
        )


@dataclass(frozen=True)
class RulesBook:
    """The deadline rules of every banner: the defaults, with the league's and the banners' rows over them."""

    defaults: DeadlineRules
    overrides: Mapping[str, Override] = field(default_factory=dict)
    root: str | None = None
    generation: int = 0
    _memo: dict[str | None, DeadlineRules] = field(default_factory=dict, compare=False, repr=False)

    def rows_for(self, banner: str | None) -> list[Override]:
        """The rows that apply to ``banner`` (None: the league's default), the league's first."""
        league = self.root if banner is None else banner[:ROOT_DIGITS]
        rows = [self.overrides.get(league)] if league else []
        if banner is not None:
            rows.append(self.overrides.get(banner))
        return [r for r in rows if r is not None]

    def of(self, banner: str | None) -> DeadlineRules:
        """The rules of a case in ``banner`` (its code; None or unknown: the league's, or the settings')."""
        got = self._memo.get(banner)
        if got is None:
            got = self.defaults
            for row in self.rows_for(banner):
                got = row.over(got)
            self._memo[banner] = got
        return got

    def own_banners(self) -> Collection[str]:
        """The banners with a row of their own (the others all follow :meth:`of` ``(None)``)."""
        return [code for code in self.overrides if len(code) != ROOT_DIGITS]

    def source(self, banner: str | None, what: str) -> Source:
        """Where ``banner``'s value of ``what`` (a level, or ``max_attempts``) comes from."""
        found: Source = "settings"
        for row in self.rows_for(banner):
            sets = row.max_attempts is not None if what == "max_attempts" else what in row.hours
            if sets:
                found = "league" if len(row.area) == ROOT_DIGITS else "banner"
        return found

    def described(self, code: str) -> dict[str, Any]:
        """``code``'s effective rules (a banner's, or with the root's code the league's) and their sources."""
        banner = None if len(code) == ROOT_DIGITS else code
        rules = self.of(banner)
        own = self.overrides.get(code)
        return {
            "area_code": code,
            "hours": {lv: rules.hours[lv] for lv in LEVELS},
            "max_attempts": rules.max_attempts,
            "source": {what: self.source(banner, what) for what in (*LEVELS, "max_attempts")},
            "updated_at": own.updated_at if own else None,
            "updated_by": own.updated_by if own else None,
        }


def generation(conn: psycopg.Connection[Any]) -> int:
    """The overrides' generation: bumped in the transaction of every change (037_deadlines.sql)."""
    row = conn.execute("SELECT generation FROM deadline_state").fetchone()
    return int(row[0]) if row else 0


def _override(row: Mapping[str, Any]) -> Override:
    hours = {lv: float(row[col]) for lv, col in COLUMNS.items() if row[col] is not None}
    return Override(row["area_code"], hours, row["max_attempts"], row["updated_at"], row["updated_by"])


def load(conn: psycopg.Connection[Any], defaults: DeadlineRules) -> RulesBook:
    """The book as the database holds it now. The generation is read first: a change committed
    meanwhile is in the rows read, and the next look at the generation reloads them once more."""
    gen = generation(conn)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM deadline_overrides ORDER BY area_code").fetchall()
        root = cur.execute("SELECT code FROM areas WHERE level = 0").fetchone()
    return RulesBook(defaults, {r["area_code"]: _override(r) for r in rows}, root["code"] if root else None, gen)


# --- changes -------------------------------------------------------------------------------------------


def target(conn: psycopg.Connection[Any], code: str) -> tuple[str, int]:
    """(the stored code, its level) of the area a rule is set for: the root or a banner.

    Invalid (field ``area``) for anything else: not a code, an unknown area, a town, village or cell.
    The root may be named as its 4 digits or as its 6-digit form (150600 → 1506).
    """
    code = (code or "").strip()
    if not digits(code) or len(code) not in (ROOT_DIGITS, 6, 9, 12, 15):
        raise Invalid(f"{code!r} is not an area code: a banner's 6 digits or the league's 4", field="area")
    asked = [code, code[:ROOT_DIGITS]] if len(code) == 6 and code.endswith("00") else [code]
    row = conn.execute(
        "SELECT code, level FROM areas WHERE code = ANY(%s) ORDER BY level DESC LIMIT 1", (asked,)
    ).fetchone()
    if row is None:
        raise Invalid(f"no area {code} in the database (see yitu area list)", field="area")
    if row[1] > 1:
        raise Invalid(
            f"{code} is a level-{row[1]} area: deadlines are set for a banner or for the whole league", field="area"
        )
    return str(row[0]), int(row[1])


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise Invalid(f"unknown level {level!r}; one of {', '.join(LEVELS)}", field="level")
    return level


def check_hours(level: str, hours: Any) -> float:
    """``hours`` for ``level`` within the settings' bounds (0: by the end of the day it started)."""
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not math.isfinite(hours):
        raise Invalid(f"hours must be a number, not {hours!r}", field="hours")
    if not 0 <= hours <= MAX_HOURS[level]:
        raise Invalid(f"hours for the {level} level must lie between 0 and {MAX_HOURS[level]:g}", field="hours")
    return float(hours)


def check_attempts(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPTS:
        raise Invalid(
            f"max_attempts must be a whole number from 1 to {MAX_ATTEMPTS}, not {value!r}", field="max_attempts"
        )
    return value


@dataclass(frozen=True)
class Change:
    """What to change in one area's row: hours per level and/or max attempts to set, and what to
    ``clear`` (levels and/or ``max_attempts``: the row stops setting them, they inherit again)."""

    area: str
    hours: Mapping[str, float] = field(default_factory=dict)
    max_attempts: int | None = None
    clear: frozenset[str] = frozenset()  # levels and/or "max_attempts"

    def checked(self) -> Change:
        """The change with every value checked (Invalid naming the field), before any lookup."""
        hours = {check_level(lv): check_hours(lv, h) for lv, h in self.hours.items()}
        for what in self.clear:
            if what != "max_attempts":
                check_level(what)
        attempts = None if self.max_attempts is None else check_attempts(self.max_attempts)
        if not hours and attempts is None and not self.clear:
            raise Invalid("nothing to change: give a level's hours or max_attempts", field="hours")
        return replace(self, hours=hours, max_attempts=attempts)


def apply(conn: psycopg.Connection[Any], change: Change, by: str | None) -> tuple[Override | None, Override | None]:
    """Write ``change`` in the caller's transaction: (the row before, the row after; None: none).

    The values are checked first, then the area (:func:`target`); a row left setting nothing is
    deleted, and clearing what no row sets writes nothing.
    """
    change = change.checked()
    code, _ = target(conn, change.area)
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('yitu:deadlines'), hashtext(%s))", (code,))
    before = _row(conn, code)
    hours = {**(before.hours if before else {}), **change.hours}
    attempts = change.max_attempts if change.max_attempts is not None else (before.max_attempts if before else None)
    for what in change.clear:
        if what == "max_attempts":
            attempts = None
        else:
            hours.pop(what, None)
    if not hours and attempts is None:
        if before is not None:
            conn.execute("DELETE FROM deadline_overrides WHERE area_code = %s", (code,))
        return before, None
    values: dict[str, Any] = {col: hours.get(lv) for lv, col in COLUMNS.items()}
    values["max_attempts"] = attempts
    cols = list(values)
    stmt = sql.SQL(
        """INSERT INTO deadline_overrides (area_code, {cols}, updated_by) VALUES (%(area)s, {vals}, %(by)s)
           ON CONFLICT (area_code) DO UPDATE SET {sets}, updated_at = now(), updated_by = EXCLUDED.updated_by"""
    ).format(
        cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        vals=sql.SQL(", ").join(sql.Placeholder(c) for c in cols),
        sets=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in cols),
    )
    conn.execute(stmt, {**values, "area": code, "by": by})
    return before, _row(conn, code)


def _row(conn: psycopg.Connection[Any], code: str) -> Override | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM deadline_overrides WHERE area_code = %s", (code,)).fetchone()
    return _override(row) if row else None


def areas(conn: psycopg.Connection[Any], scope: str | None) -> list[tuple[str, str, int]]:
    """(code, name, level) of the root and the banners inside ``scope`` (None: all), in code order."""
    rows = conn.execute(
        """SELECT code, name, level FROM areas
           WHERE level <= 1 AND (%(scope)s::text IS NULL OR starts_with(code, %(scope)s::text)
                                 OR (level = 1 AND starts_with(%(scope)s::text, code)))
           ORDER BY level, code""",
        {"scope": scope},
    ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


def described(book: RulesBook, listed: Iterable[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """Each area's effective rules and where each value comes from, with its name and level."""
    return [{**book.described(code), "name": name, "level": level} for code, name, level in listed]

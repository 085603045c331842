"""The roster: the units (人民调解委员会, 司法所, 派出所 …) and the mediators a case is dispatched to.

One set of rules for every way a roster row arrives — a form on /admin, ``POST /api/v1/mediators``,
a row of ``yitu import mediators FILE`` — so a row the importer takes is a row the page takes too.
:func:`check_unit` and :func:`check_mediator` judge one row against what the database knows
(:class:`Known`, read once per import or request) and answer every problem of the row at once, each
naming its field; the single-row writes raise the first as :class:`~geodata.errors.Invalid`.

Rows are deactivated, never deleted (025_roster.sql): an old case's timeline names them. A
mediator's open cases are the cases whose assignee is ``{"kind": "mediator", "id": "<id>"}`` and
whose step is still open, counted with the predicate of ``cases_assignee_open_idx`` so the index
answers. The reader's area scope is applied in the SQL: a reader scoped to an area sees the roster
inside it and the units and mediators of the areas above it (who serve it too), nothing beside it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from geodata.errors import Conflict, Invalid, NotFound
from geodata.queries import digits, query

# The unit kinds as the importer and the forms accept them: the codes and their Chinese names.
UNIT_KINDS: Mapping[str, str] = {
    "committee": "人民调解委员会",
    "professional": "行业性专业性调解委员会",
    "justice_office": "司法所",
    "police_station": "派出所",
    "court": "人民法庭",
    "petition": "信访",
    "hotline": "12345",
    "department": "部门",
}
_KIND_BY_NAME = {**{v: k for k, v in UNIT_KINDS.items()}, **{k: k for k in UNIT_KINDS}}

# The grid levels, outermost first; an area code's length says its level (6/9/12/15 digits).
LEVELS = ("banner", "town", "village", "grid")
LEVEL_NAMES: Mapping[str, str] = {"banner": "旗", "town": "镇", "village": "村", "grid": "网格"}
_LEVEL_BY_NAME = {
    **{k: k for k in LEVELS},
    **{v: k for k, v in LEVEL_NAMES.items()},
    "旗级": "banner",
    "旗县": "banner",
    "镇级": "town",
    "苏木": "town",
    "乡": "town",
    "街道": "town",
    "村级": "village",
    "社区": "village",
    "嘎查": "village",
    "网格级": "grid",
    **{str(i): LEVELS[i - 1] for i in range(1, 5)},
}

NAME_MAX = {"unit": 100, "mediator": 50}  # the tables' CHECKs
PHONE = re.compile(r"^\+?[0-9][0-9 \-]{3,18}[0-9]$")  # the tables' CHECK
AREA_CODE = re.compile(r"^[0-9]{6}([0-9]{3}){0,3}$")
SPECIALTY_SPLIT = re.compile(r"[,，、;；/|]+")
MAX_SPECIALTIES = 20
# Text a spreadsheet would run as a formula when the roster is exported and opened again (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TRUE = {"true", "1", "yes", "y", "t", "是", "在岗", "启用", "有效"}
_FALSE = {"false", "0", "no", "n", "f", "否", "停用", "离岗", "无效"}
OPEN_STEPS_EXCLUDED = ("closed", "evaluated", "rejected")  # cases_assignee_open_idx's predicate


@dataclass(frozen=True)
class Problem:
    """One defect of one roster row: the field at fault and why (in English, for logs and the CLI)."""

    field: str
    message: str


@dataclass
class Known:
    """What a roster row is judged against, read once: areas, case types, units, centres, vans, users."""

    areas: set[str]
    types: dict[str, str]  # a code or a Chinese name (with and without 纠纷) → the code
    unit_ids: dict[int, tuple[str, str]]  # id → (area_code, name)
    units_by_name: dict[tuple[str, str], int]  # (area_code, name) → id
    centres: dict[str, int]  # code → id
    vans: set[str]
    users: dict[str, int]  # name → id

    @classmethod
    def read(cls, conn: psycopg.Connection[Any]) -> Known:
        types: dict[str, str] = {}
        for code, name_zh in conn.execute("SELECT code, name_zh FROM case_types WHERE active"):
            types[code] = types[name_zh] = code
            if name_zh.endswith("纠纷") and len(name_zh) > 2:
                types[name_zh[:-2]] = code
        units = conn.execute("SELECT id, area_code, name FROM units").fetchall()
        return cls(
            areas={r[0] for r in conn.execute("SELECT code FROM areas")},
            types=types,
            unit_ids={int(i): (a, n) for i, a, n in units},
            units_by_name={(a, n): int(i) for i, a, n in units},
            centres={c: int(i) for i, c in conn.execute("SELECT id, code FROM mediation_centers")},
            vans={r[0] for r in conn.execute("SELECT id FROM vans")},
            users={n: int(i) for i, n in conn.execute("SELECT id, name FROM users")},
        )


@dataclass
class UnitIn:
    """A unit as written: every value checked and in the table's terms."""

    name: str
    kind: str
    level: str
    area_code: str
    phone: str | None = None
    specialties: list[str] = field(default_factory=list)
    active: bool = True


@dataclass
class MediatorIn:
    """A mediator as written: references resolved to ids."""

    name: str
    level: str
    area_code: str
    phone: str | None = None
    unit_id: int | None = None
    center_id: int | None = None
    van_id: str | None = None
    specialties: list[str] = field(default_factory=list)
    active: bool = True
    user_id: int | None = None


# --- one value at a time --------------------------------------------------------------------------


def text_of(value: object) -> str | None:
    """A cell as text: None, NaN and blanks are empty; numbers as their digits (Excel's 13800000000.0)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    return text or None


def hostile(text: str) -> str | None:
    """Why a text may not be stored as it is, or None: control characters, or a spreadsheet formula."""
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029\ufeff" for c in text):
        return "contains control characters"
    if text.startswith(FORMULA_START):
        return f"starts with {text[0]!r}: a spreadsheet would run it as a formula"
    return None


def _name(value: object, what: str, problems: list[Problem]) -> str | None:
    text = text_of(value)
    if text is None:
        problems.append(Problem("name", "the name is missing"))
        return None
    why = hostile(text)
    if why:
        problems.append(Problem("name", f"the name {why}"))
        return None
    if len(text) > NAME_MAX[what]:
        problems.append(Problem("name", f"the name has {len(text)} characters; at most {NAME_MAX[what]}"))
        return None
    return text


def _phone(value: object, problems: list[Problem]) -> str | None:
    text = text_of(value)
    if text is None:
        return None
    if not PHONE.fullmatch(text):
        shown = text if text.isprintable() else repr(text)
        problems.append(Problem("phone", f"{shown[:30]!r} is not a phone number (digits, spaces, hyphens, a +)"))
        return None
    return text


def _area(value: object, known: Known, problems: list[Problem]) -> str | None:
    text = text_of(value)
    if text is None:
        problems.append(Problem("area_code", "the area code is missing"))
        return None
    if not AREA_CODE.fullmatch(text):
        problems.append(Problem("area_code", f"{text[:20]!r} is not an area code (6, 9, 12 or 15 digits)"))
        return None
    if text not in known.areas:
        problems.append(Problem("area_code", f"no area with code {text}"))
        return None
    return text


def level_of_code(code: str) -> str:
    """The level an area code is at: 6 digits the banner, then town, village, grid cell."""
    return LEVELS[(len(code) - 6) // 3]


def _level(value: object, area: str | None, problems: list[Problem]) -> str | None:
    """Given, or the area code's; a level that is not the area's is a mistake in the row."""
    text = text_of(value)
    implied = level_of_code(area) if area else None
    if text is None:
        if implied is None and area is None:
            return None
        return implied
    level = _LEVEL_BY_NAME.get(text.lower())
    if level is None:
        problems.append(Problem("level", f"{text[:20]!r} is not a level ({', '.join(LEVELS)} or 旗/镇/村/网格)"))
        return None
    if implied is not None and level != implied:
        problems.append(Problem("level", f"level {level} does not fit area {area}, which is a {implied}"))
        return None
    return level


def _specialties(value: object, known: Known, problems: list[Problem]) -> list[str]:
    if isinstance(value, (list, tuple)):
        parts = [text_of(v) for v in value]
    else:
        text = text_of(value)
        parts = SPECIALTY_SPLIT.split(text) if text else []
    out: list[str] = []
    unknown: list[str] = []
    for part in (p.strip() for p in parts if p):
        if not part:
            continue
        code = known.types.get(part) or known.types.get(part.lower())
        if code is None:
            unknown.append(part if part.isprintable() else repr(part))
        elif code not in out:
            out.append(code)
    if unknown:
        problems.append(Problem("specialties", f"unknown case type(s): {', '.join(u[:20] for u in unknown[:5])}"))
    if len(out) > MAX_SPECIALTIES:
        problems.append(Problem("specialties", f"{len(out)} specialties; at most {MAX_SPECIALTIES}"))
    return out


def _active(value: object, problems: list[Problem]) -> bool:
    if isinstance(value, bool):
        return value
    text = text_of(value)
    if text is None:
        return True
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    problems.append(Problem("active", f"{text[:20]!r} is not yes or no (true/false, 1/0, 是/否)"))
    return True


def _kind(value: object, problems: list[Problem]) -> str | None:
    text = text_of(value)
    kind = _KIND_BY_NAME.get(text.lower()) if text else None
    if text is None:
        problems.append(Problem("kind", "the kind is missing"))
    elif kind is None:
        shown = text if text.isprintable() else repr(text)
        problems.append(Problem("kind", f"{shown[:30]!r} is not a unit kind ({', '.join(UNIT_KINDS.values())})"))
    return kind


# --- one row --------------------------------------------------------------------------------------


def check_unit(row: Mapping[str, object], known: Known) -> tuple[UnitIn | None, list[Problem]]:
    """A unit row (name, kind, level, area_code, phone, specialties, active): the row or its problems."""
    problems: list[Problem] = []
    name = _name(row.get("name"), "unit", problems)
    kind = _kind(row.get("kind"), problems)
    area = _area(row.get("area_code"), known, problems)
    level = _level(row.get("level"), area, problems)
    phone = _phone(row.get("phone"), problems)
    specialties = _specialties(row.get("specialties"), known, problems)
    active = _active(row.get("active"), problems)
    if problems or name is None or kind is None or area is None or level is None:
        return None, problems
    return UnitIn(name, kind, level, area, phone, specialties, active), problems


def _unit_ref(value: object, area: str | None, known: Known, problems: list[Problem]) -> int | None:
    """A unit by its id, or by its name in the mediator's area or the nearest area above it."""
    text = text_of(value)
    if text is None:
        return None
    if digits(text):
        if int(text) in known.unit_ids:
            return int(text)
        problems.append(Problem("unit", f"no unit with id {text}"))
        return None
    if area is not None:
        for end in range(len(area), 5, -3):  # the area itself, then its parent, … up to the banner
            found = known.units_by_name.get((area[:end], text))
            if found is not None:
                return found
    shown = text if text.isprintable() else repr(text)
    problems.append(Problem("unit", f"no unit named {shown[:40]!r} in area {area or '?'} or above it"))
    return None


def _lookup(value: object, table: Mapping[str, int] | set[str], what: str, problems: list[Problem]) -> Any:
    text = text_of(value)
    if text is None:
        return None
    if text in table:
        return table[text] if isinstance(table, Mapping) else text
    shown = text if text.isprintable() else repr(text)
    problems.append(Problem(what, f"no {what} {shown[:40]!r}"))
    return None


def check_mediator(row: Mapping[str, object], known: Known) -> tuple[MediatorIn | None, list[Problem]]:
    """A mediator row (name, phone, unit, centre, van, level, area_code, specialties, active, user)."""
    problems: list[Problem] = []
    name = _name(row.get("name"), "mediator", problems)
    phone = _phone(row.get("phone"), problems)
    area = _area(row.get("area_code"), known, problems)
    level = _level(row.get("level"), area, problems)
    unit = _unit_ref(row.get("unit"), area, known, problems)
    centre = _lookup(row.get("centre"), known.centres, "centre", problems)
    van = _lookup(row.get("van"), known.vans, "van", problems)
    user = _lookup(row.get("user"), known.users, "user", problems)
    specialties = _specialties(row.get("specialties"), known, problems)
    active = _active(row.get("active"), problems)
    if problems or name is None or area is None or level is None:
        return None, problems
    return MediatorIn(name, level, area, phone, unit, centre, van, specialties, active, user), problems


def _raise_first(problems: Sequence[Problem]) -> None:
    if problems:
        p = problems[0]
        raise Invalid(p.message, field=p.field)


# --- reads --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediatorFilter:
    """``GET /api/v1/mediators``'s filters: an area (inside it), a level, a specialty, active or not."""

    area: str | None = None
    level: str | None = None
    specialty: str | None = None
    active: bool | None = True
    limit: int = 500
    offset: int = 0
    q: str | None = None  # a part of the name, or the start of the area code (the admin page's filter)


def _rows(
    conn: psycopg.Connection[Any],
    statement: str,
    scope: str | None,
    flt: MediatorFilter | UnitFilter,
    ident: int | None,
) -> list[dict[str, Any]]:
    """A roster query's rows: the list (``ident`` None) and one row (its id) read through the same SQL."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query(statement), {"scope": scope, "id": ident, **asdict(flt)}).fetchall()


def list_mediators(conn: psycopg.Connection[Any], scope: str | None, flt: MediatorFilter) -> list[dict[str, Any]]:
    """The mediators the reader's ``scope`` allows, each with its unit's and centre's names and its
    open cases' count, by area then name."""
    return _rows(conn, "roster_mediators", scope, flt, None)


def get_mediator(conn: psycopg.Connection[Any], scope: str | None, mediator_id: int) -> dict[str, Any]:
    """One mediator (NotFound outside the scope, as for one that does not exist), with its open cases."""
    rows = _rows(conn, "roster_mediators", scope, MediatorFilter(active=None, limit=1), mediator_id)
    if not rows:
        raise NotFound(f"no mediator with id {mediator_id}", field="id")
    return {**rows[0], "cases": open_cases(conn, "mediator", mediator_id, scope)}


def open_cases(
    conn: psycopg.Connection[Any], kind: str, ident: int, scope: str | None, limit: int = 50
) -> list[dict[str, Any]]:
    """The open cases assigned to a mediator or a unit that a reader scoped to ``scope`` sees (one
    above its area works other areas' too), soonest deadline first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT code, type, step, level, deadline FROM cases
               WHERE assignee ->> 'kind' = %(kind)s AND assignee ->> 'id' = %(id)s
                 AND step NOT IN ('closed', 'evaluated', 'rejected')
                 AND yitu_in_scope(%(scope)s::text, grid_code, village_code, town_code, banner_code)
               ORDER BY deadline NULLS LAST, code LIMIT %(limit)s""",
            {"kind": kind, "id": str(ident), "scope": scope, "limit": limit},
        ).fetchall()


def open_case_codes(
    conn: psycopg.Connection[Any], kind: str, ids: Sequence[int], scope: str | None, per: int = 3
) -> dict[int, list[str]]:
    """The codes of the open cases of each of ``ids`` (mediators or units) that a reader scoped to
    ``scope`` sees, soonest deadline first."""
    rows = conn.execute(
        """SELECT id, codes[1:%(per)s] FROM (
               SELECT (assignee ->> 'id') AS id, array_agg(code ORDER BY deadline NULLS LAST, code) AS codes
               FROM cases
               WHERE assignee ->> 'kind' = %(kind)s AND assignee ->> 'id' = ANY(%(ids)s)
                 AND step NOT IN ('closed', 'evaluated', 'rejected')
                 AND yitu_in_scope(%(scope)s::text, grid_code, village_code, town_code, banner_code)
               GROUP BY 1) k""",
        {"per": per, "kind": kind, "ids": [str(i) for i in ids], "scope": scope},
    ).fetchall()
    return {int(i): list(codes) for i, codes in rows if digits(str(i))}


def case_types(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """The active case types (code, Chinese name), in their order: the specialties to choose from."""
    return [(c, n) for c, n in conn.execute("SELECT code, name_zh FROM case_types WHERE active ORDER BY sort_order")]


@dataclass(frozen=True)
class UnitFilter:
    area: str | None = None
    kind: str | None = None
    level: str | None = None
    active: bool | None = True
    limit: int = 500
    offset: int = 0
    q: str | None = None


def list_units(conn: psycopg.Connection[Any], scope: str | None, flt: UnitFilter) -> list[dict[str, Any]]:
    """The units the reader's ``scope`` allows, with their active mediators' and open cases' counts."""
    return _rows(conn, "roster_units", scope, flt, None)


def get_unit(conn: psycopg.Connection[Any], scope: str | None, unit_id: int) -> dict[str, Any]:
    rows = _rows(conn, "roster_units", scope, UnitFilter(active=None, limit=1), unit_id)
    if not rows:
        raise NotFound(f"no unit with id {unit_id}", field="id")
    return rows[0]


# --- writes (in the caller's transaction) ----------------------------------------------------------

UNIT_COLUMNS = ("name", "kind", "level", "area_code", "phone", "specialties", "active")
MEDIATOR_COLUMNS = (
    "name",
    "phone",
    "unit_id",
    "center_id",
    "van_id",
    "level",
    "area_code",
    "specialties",
    "active",
    "user_id",
)
_UNIT_FIELDS = {"name", "kind", "level", "area_code", "phone", "specialties", "active"}
_MEDIATOR_FIELDS = {"name", "phone", "unit", "centre", "van", "level", "area_code", "specialties", "active", "user"}


def _unknown_fields(given: Mapping[str, object], allowed: set[str]) -> None:
    extra = sorted(set(given) - allowed)
    if extra:
        raise Invalid(f"unknown field {extra[0]!r}", field=extra[0])


def _values(item: UnitIn | MediatorIn, columns: Sequence[str]) -> dict[str, Any]:
    return {c: getattr(item, c) for c in columns}


def _insert(conn: psycopg.Connection[Any], table: str, values: Mapping[str, Any]) -> int:
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(map(sql.Placeholder, values)),
    )
    try:
        row = conn.execute(statement, values).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise _taken(table, exc) from None
    assert row is not None, "INSERT … RETURNING answers its row"
    return int(row[0])


def _taken(table: str, exc: psycopg.errors.UniqueViolation) -> Conflict:
    """A row that would be a second of its kind: the same unit in an area, the same person, one user twice."""
    if "user_id" in (exc.diag.constraint_name or ""):
        return Conflict("that user is already another mediator", field="user")
    if table == "units":
        return Conflict("a unit of that name already serves that area", field="name")
    return Conflict("a mediator of that name and phone is already in that area", field="name")


def _update(conn: psycopg.Connection[Any], table: str, ident: int, values: Mapping[str, Any]) -> bool:
    statement = sql.SQL("UPDATE {} SET {}, updated_at = now() WHERE id = {} RETURNING id").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in values),
        sql.Placeholder("_id"),
    )
    try:
        return conn.execute(statement, {**values, "_id": ident}).fetchone() is not None
    except psycopg.errors.UniqueViolation as exc:
        raise _taken(table, exc) from None


def create_unit(conn: psycopg.Connection[Any], fields: Mapping[str, object]) -> int:
    """A new unit from a form or an API body; Invalid naming the field."""
    _unknown_fields(fields, _UNIT_FIELDS)
    unit, problems = check_unit(fields, Known.read(conn))
    _raise_first(problems)
    assert unit is not None, "a row without problems is a row"
    return _insert(conn, "units", _values(unit, UNIT_COLUMNS))


def _current(conn: psycopg.Connection[Any], table: str, ident: int) -> dict[str, Any]:
    statement = sql.SQL("SELECT * FROM {} WHERE id = %s FOR UPDATE").format(sql.Identifier(table))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(statement, (ident,)).fetchone()
    if row is None:
        raise NotFound(f"no {table[:-1]} with id {ident}", field="id")
    return row


def update_unit(conn: psycopg.Connection[Any], unit_id: int, changes: Mapping[str, object]) -> dict[str, Any]:
    """Change some of a unit's fields (the others stay); the whole row is judged again."""
    _unknown_fields(changes, _UNIT_FIELDS)
    row: dict[str, Any] = _current(conn, "units", unit_id)
    merged = {**{c: row[c] for c in UNIT_COLUMNS}, **changes}
    if "area_code" in changes and "level" not in changes:
        merged["level"] = None  # the new area says the level
    unit, problems = check_unit(merged, Known.read(conn))
    _raise_first(problems)
    assert unit is not None, "a row without problems is a row"
    values = _values(unit, UNIT_COLUMNS)
    _update(conn, "units", unit_id, values)
    return {"id": unit_id, **values}


def create_mediator(conn: psycopg.Connection[Any], fields: Mapping[str, object]) -> int:
    _unknown_fields(fields, _MEDIATOR_FIELDS)
    mediator, problems = check_mediator(fields, Known.read(conn))
    _raise_first(problems)
    assert mediator is not None, "a row without problems is a row"
    return _insert(conn, "mediators", _values(mediator, MEDIATOR_COLUMNS))


def _mediator_refs(conn: psycopg.Connection[Any], row: Mapping[str, Any]) -> dict[str, object]:
    """A stored mediator in the form's terms (unit by id, centre by code, user by name)."""
    centre = conn.execute("SELECT code FROM mediation_centers WHERE id = %s", (row["center_id"],)).fetchone()
    user = conn.execute("SELECT name FROM users WHERE id = %s", (row["user_id"],)).fetchone()
    return {
        "name": row["name"],
        "phone": row["phone"],
        "unit": str(row["unit_id"]) if row["unit_id"] is not None else None,
        "centre": centre[0] if centre else None,
        "van": row["van_id"],
        "level": row["level"],
        "area_code": row["area_code"],
        "specialties": list(row["specialties"]),
        "active": row["active"],
        "user": user[0] if user else None,
    }


def update_mediator(conn: psycopg.Connection[Any], mediator_id: int, changes: Mapping[str, object]) -> dict[str, Any]:
    """Change some of a mediator's fields; the whole row is judged again. Empty text clears a link."""
    _unknown_fields(changes, _MEDIATOR_FIELDS)
    row = _current(conn, "mediators", mediator_id)
    merged = {**_mediator_refs(conn, row), **changes}
    if "area_code" in changes and "level" not in changes:
        merged["level"] = None
    mediator, problems = check_mediator(merged, Known.read(conn))
    _raise_first(problems)
    assert mediator is not None, "a row without problems is a row"
    values = _values(mediator, MEDIATOR_COLUMNS)
    _update(conn, "mediators", mediator_id, values)
    return {"id": mediator_id, **values}


def set_active(conn: psycopg.Connection[Any], table: str, ident: int, active: bool) -> bool:
    """Deactivate (or reactivate) a unit or a mediator; True when it changed."""
    if table not in ("units", "mediators"):
        raise ValueError(table)
    row = _current(conn, table, ident)
    if row["active"] == active:
        return False
    _update(conn, table, ident, {"active": active})
    return True


__all__ = [
    "LEVELS",
    "UNIT_KINDS",
    "Known",
    "MediatorFilter",
    "MediatorIn",
    "Problem",
    "UnitFilter",
    "UnitIn",
    "check_mediator",
    "check_unit",
    "create_mediator",
    "create_unit",
    "get_mediator",
    "get_unit",
    "hostile",
    "list_mediators",
    "list_units",
    "open_cases",
    "set_active",
    "update_mediator",
    "update_unit",
]

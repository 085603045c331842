"""Search (issue 14, item 4): what one box finds — cases by code prefix, by a party's name or phone,
by a word of the description, and areas by name or code — each group as the reader may see it.

One implementation for the API (``GET /api/v1/search``) and the pages' search box (callbacks/search.py).
The rules that decide what a reader finds live where the rest of them do:

- **the area scope** in the SQL (a grid-chain column = the reader's area, as geodata/cases.py's
  ``search``; ``yitu_area_in_scope`` for areas), never by filtering rows afterwards;
- **personal data** by geodata/masking.py: the party group is searched only for readers who see the
  parties; the description group never matches a case through its parties' names or phones (it
  reads the description with them taken out, ``search_description`` of 024_search.sql), and for
  the other readers only through what their masked text still shows (another number written into
  a description is masked on their screen); every case comes back through :func:`masking.case_for`.

Queries are literal: no LIKE pattern is ever built from them (%, _ and \\ are characters like any
other), and they go to PostgreSQL as parameters, planned with their values (``prepare=False``:
a generic plan would not know whether a word is in one case or in every one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from geodata import masking
from geodata.queries import area_scope, iso, query

MAX_QUERY = 100  # characters of a query
MAX_LIMIT = 50  # results per group
MIN_TEXT = 2  # a party or description search needs this many characters (one character is no word)
CASE_CODE = re.compile(r"^[0-9]{6}-[0-9]{8}-[0-9]{6,9}$")  # 一案一码: banner-day-number


def is_case_code(value: object) -> TypeGuard[str]:
    """Is ``value`` a case code? A page's store comes back from the browser as any JSON."""
    return isinstance(value, str) and CASE_CODE.fullmatch(value) is not None


CODE_PREFIX = re.compile(r"^[0-9][0-9-]*$")  # what may begin a case code
# What can only be a case code's beginning (six digits and a hyphen: no phone is written so, an area
# code has three or four digits), so nothing else is searched.
CODE_ONLY = re.compile(r"^[0-9]{6}-[0-9-]*$")
# The texts a query is looked for in (columns kept by 024_search.sql), by group.
TEXT_COLUMNS = {"party": "search_parties", "description": "search_description"}
# How many of the newest cases in scope are checked one by one, per result wanted, before the gram
# index is asked (search_cases_by_text.sql): a word in one case of WINDOW_PER_RESULT is found there.
WINDOW_PER_RESULT = 300


@dataclass(frozen=True)
class Reader:
    """Who searches: the role (what of a case they see) and the area they are scoped to (None: all)."""

    role: str | None
    area: str | None

    @property
    def sees_parties(self) -> bool:
        return masking.sees_personal_data(self.role)


def case_href(code: str) -> str:
    """The case page of a code (``/cases/{code}``)."""
    return f"/cases/{code}"


def area_href(code: str) -> str:
    return f"/area/{code}"


def _rows(
    conn: psycopg.Connection, name: str, params: Mapping[str, Any], area: str | None, column: str | None = None
) -> list[dict[str, Any]]:
    """``column`` (of :data:`TEXT_COLUMNS` only) is the text ``search_cases_by_text`` reads."""
    parts: dict[str, sql.Composable] = {"scope": area_scope(area)}
    if column is not None:
        parts["column"] = sql.Identifier(TEXT_COLUMNS[column])
    stmt = sql.SQL(query(name)).format(**parts)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(stmt, {**params, "area": area}, prepare=False).fetchall()


def _case(row: Mapping[str, Any], reader: Reader) -> dict[str, Any]:
    out = {
        "code": row["code"],
        "href": case_href(row["code"]),
        "type": row["type"],
        "type_zh": row["type_zh"],
        "type_en": row["type_en"],
        "step": row["step"],
        "level": row["level"],
        "village": row["village_name"],
        "grid": [row["grid_code"], row["village_code"], row["town_code"], row["banner_code"]],
        "reported_at": iso(row["reported_at"]),
        "deadline": iso(row["deadline"]),
        "description": row["description"],
        "parties": row["parties"],
    }
    return masking.case_for(reader.role, out)


def _still_shown(row: Mapping[str, Any], q: str, reader: Reader) -> bool:
    """Whether the reader's own view of the description still contains the query: for a reader who
    sees the parties, always; for the others, not when the match ran through a masked name or number."""
    shown = masking.text_for(reader.role, row["description"], row["parties"]) or ""
    return q.lower() in shown.lower()


def search(conn: psycopg.Connection, q: str, reader: Reader, limit: int = 10) -> dict[str, Any]:
    """Everything ``q`` finds for ``reader``, in groups of at most ``limit``.

    ``q`` is taken as it is (the caller validates length and characters: :func:`check_query`);
    ``open`` is the case page when ``q`` is a whole case code the reader may open.
    """
    q = q.strip(" ")
    limit = max(1, min(limit, MAX_LIMIT))
    out: dict[str, Any] = {
        "q": q,
        "limit": limit,
        "open": None,
        "by_code": [],
        "by_party": [],
        "by_description": [],
        "areas": [],
        "party_search": reader.sees_parties,
    }
    if not q:
        return out
    params = {"q": q, "limit": limit, "window": limit * WINDOW_PER_RESULT}
    with conn.transaction():
        _quick(conn)
        _find(conn, q, reader, params, out)
    return out


def _quick(conn: psycopg.Connection) -> None:
    """For the rest of this transaction: no JIT and no parallel workers. The gram index's step is
    costed for every case holding a common word (it never runs for one: the newest cases answer
    first), and that estimate alone would compile the query (150 ms) and start workers (50 ms).
    The app's pools have JIT off already (geodata/db.py ``session_options``); a connection of
    another's making (a script's) may not."""
    conn.execute("SET LOCAL jit = off")
    conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")


def _find(conn: psycopg.Connection, q: str, reader: Reader, params: Mapping[str, Any], out: dict[str, Any]) -> None:
    if CODE_PREFIX.match(q):
        rows = _rows(conn, "search_cases_by_code", params, reader.area)
        out["by_code"] = [_case(r, reader) for r in rows]
        if CASE_CODE.match(q) and rows and rows[0]["code"] == q:
            out["open"] = case_href(q)
        if CODE_ONLY.match(q):
            return
    if len(q) >= MIN_TEXT:
        if reader.sees_parties:
            rows = _rows(conn, "search_cases_by_text", params, reader.area, "party")
            out["by_party"] = [_case(r, reader) for r in rows]
        rows = _rows(conn, "search_cases_by_text", params, reader.area, "description")
        out["by_description"] = [_case(r, reader) for r in rows if _still_shown(r, q, reader)]
    with conn.cursor(row_factory=dict_row) as cur:
        areas = cur.execute(query("search_areas"), {**params, "area": reader.area}, prepare=False).fetchall()
    out["areas"] = [{**a, "href": area_href(a["code"])} for a in areas]


def cases_shown(found: Mapping[str, Any]) -> list[str]:
    """The codes of every case in a search's answer (for the audit of personal data read)."""
    return [c["code"] for key in ("by_code", "by_party", "by_description") for c in found.get(key, [])]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_query(q: str) -> str | None:
    """What is wrong with a query, or None: 1 to MAX_QUERY characters, no control characters
    (PostgreSQL's text cannot hold NUL; a tab or a newline in a search box is a paste gone wrong)."""
    if not q.strip(" "):
        return "empty"
    if len(q) > MAX_QUERY:
        return f"longer than {MAX_QUERY} characters"
    if _CONTROL.search(q):
        return "control characters"
    return None

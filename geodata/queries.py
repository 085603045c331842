"""Named spatial queries: ``geodata/sql/<name>.sql`` files (the unnumbered ones), loaded once.

Values always go in as parameters; the one identifier that varies (the chain column of
cases_in_area) goes through ``psycopg.sql.Identifier`` from a fixed table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

SQL_DIR = Path(__file__).resolve().parent / "sql"
NEAR_BOUNDARY_M = 50.0
CHAIN_COLUMN = {4: "grid_code", 3: "village_code", 2: "town_code", 1: "banner_code"}


@cache
def query(name: str) -> str:
    """The text of ``geodata/sql/<name>.sql``; unknown names raise KeyError."""
    path = SQL_DIR / f"{name}.sql"
    if name[:1].isdigit() or not path.is_file():
        raise KeyError(f"no named query {name!r} in {SQL_DIR}")
    return path.read_text(encoding="utf-8")


ROOT_DIGITS = 4  # the league's / city's code: the 4-digit NBS prefix of its banners' (150600 → 1506)


def van_in_scope(scope: str | None, banner: str | None) -> bool:
    """Is a van of ``banner`` (None: the league's own, 市级) inside a reader's ``scope`` (None: the
    whole territory)? The rule of the SQL function ``yitu_van_in_scope`` (039_van_banner.sql), for
    the vans' live events, which are filtered per screen in the hub rather than in a query: yes
    when the scope lies in the van's banner (a van roams its whole banner, so a town's reader
    sees it), when the scope holds the banner (the root), or when the van is the league's."""
    return scope is None or banner is None or scope.startswith(banner) or banner.startswith(scope)


def digits(text: str) -> bool:
    """Only the ASCII digits 0-9 (and at least one). ``str.isdigit`` also takes ² and ١٢, which
    ``int()`` or PostgreSQL then refuse: a hostile value got past the check and answered 500."""
    return text.isascii() and text.isdigit()


def plain(text: str, limit: int) -> bool:
    """At most ``limit`` characters and none a control character: what a name, a filter or a form's
    text may be (a NUL reaches PostgreSQL, which refuses it: a 500)."""
    return len(text) <= limit and not any(ord(c) < 32 for c in text)


def level_of(code: str) -> int:
    """The grid level a code belongs to (4/6/9/12/15 digits → 0 root/1/2/3/4); ValueError otherwise."""
    if not digits(code) or len(code) not in (ROOT_DIGITS, 6, 9, 12, 15):
        raise ValueError(f"{code!r} is not an area code (4, 6, 9, 12 or 15 digits)")
    return 0 if len(code) == ROOT_DIGITS else (len(code) - 3) // 3


def root_code(code: str) -> str:
    """The level-0 code a league or city is stored under: its 4-digit prefix (150600 and 1506 → 1506)."""
    if digits(code) and (len(code) == ROOT_DIGITS or (len(code) == 6 and code.endswith("00"))):
        return code[:ROOT_DIGITS]
    raise ValueError(f"{code!r} is not a league or city code (4 digits, or 6 ending in 00, e.g. 150600)")


def chain_column(level: int, table: str | None = None) -> sql.Composable:
    """The cases' grid-chain column of ``level`` as SQL (``table``: the alias to qualify it with).

    The root (level 0) has no column of its own: its code is the prefix of every banner code under
    it, so its cases are those whose banner code starts with it (``left(banner_code, 4)``).
    """
    qualify = (table,) if table else ()
    if level == 0:
        return sql.SQL("left({}, {})").format(sql.Identifier(*qualify, "banner_code"), sql.Literal(ROOT_DIGITS))
    return sql.Identifier(*qualify, CHAIN_COLUMN[level])


def area_column(code: str) -> sql.Composable:
    """The column of ``cases c`` that holds the area ``code`` at its level (the grid chain intake
    wrote): an area's cases are an indexed equality on it, never a polygon test (the root's: the
    prefix of the banner code, see :func:`chain_column`)."""
    return chain_column(level_of(code), "c")


def area_scope(area: str | None) -> sql.Composable:
    """The WHERE part keeping the cases inside ``area`` (parameter ``%(area)s``), or TRUE for none."""
    if not area:
        return sql.SQL("TRUE")
    return sql.SQL("{} = %(area)s::text").format(area_column(area))


@dataclass(frozen=True)
class ChainLink:
    code: str
    name: str
    level: int


@dataclass(frozen=True)
class GridChain:
    """Where a point falls: ``links`` deepest first; empty when outside the territory."""

    links: tuple[ChainLink, ...]
    boundary_m: float | None

    @property
    def outside(self) -> bool:
        return not self.links

    @property
    def near_boundary(self) -> bool:
        return self.boundary_m is not None and self.boundary_m < NEAR_BOUNDARY_M

    def code_at(self, level: int) -> str | None:
        return next((link.code for link in self.links if link.level == level), None)


def grid_chain(conn: psycopg.Connection, lon: float, lat: float) -> GridChain:
    rows = conn.execute(query("grid_chain"), {"lon": lon, "lat": lat}).fetchall()
    if not rows:
        return GridChain((), None)
    return GridChain(tuple(ChainLink(r[0], r[1], r[2]) for r in rows), float(rows[0][3]))


def cases_in_area(
    conn: psycopg.Connection,
    code: str,
    *,
    step: str | None = None,
    type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    stmt = sql.SQL(query("cases_in_area")).format(column=area_column(code))
    params = {
        "code": code,
        "step": step,
        "type": type,
        "since": since,
        "until": until,
        "limit": limit,
        "offset": offset,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(stmt, params).fetchall()


# --- figures read together ----------------------------------------------------------------------


def _rows(rows: list[dict[str, Any]]) -> Any:
    return rows


@dataclass(frozen=True)
class Figure:
    """One read among those a screen's numbers make together (callbacks/wall.py): its statement and
    parameters, what its rows become (``shape``: the same function whether the rows come as the
    statement's own or as JSON gives them back, :func:`read_together`), and whether it may be kept
    in the figures' cache (geodata/kpi.py; the van board and the area's names are read every time:
    the events that drop that cache do not say when they change)."""

    stmt: sql.SQL | sql.Composed
    params: Mapping[str, Any] = field(default_factory=dict)
    shape: Callable[[list[dict[str, Any]]], Any] = _rows
    kept: bool = True


def read_figure(conn: psycopg.Connection, figure: Figure) -> Any:
    """One figure alone, from its statement's own rows (dates as dates, numerics as Decimals)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return figure.shape(cur.execute(figure.stmt, figure.params).fetchall())


_PLACEHOLDER = re.compile(r"(?<!%)%\((\w+)\)s")


def read_together(conn: psycopg.Connection, figures: Mapping[str, Figure]) -> dict[str, Any]:
    """Every figure of ``figures`` by one statement: a column each, its rows as a JSON array (dates
    as ISO text, numerics as numbers: as the figures' cache gives them back), in its statement's
    order (an aggregate over an ordered subquery keeps its order in PostgreSQL). A wall's round of
    numbers read nine statements one after the other, each a round trip to the server and a wait for
    the GIL under load (docs/scaling.md); it is one now. Each statement's placeholders are renamed
    for its column (``%(code)s`` → ``%(code__3)s``), so two figures may give one name two values.
    The statement timeout now bounds their sum: the wall's figures read counters (tens of ms at
    league scale, docs/performance.md); the ``*_scan`` variants, for periods that are not whole
    days, are made by no page."""
    if not figures:
        return {}
    columns: list[str] = []
    params: dict[str, Any] = {}
    for i, f in enumerate(figures.values()):
        text = _PLACEHOLDER.sub(rf"%(\1__{i})s", f.stmt.as_string(conn))
        # (the row's alias is one no figure's column takes: json_agg(alias) of a column so named
        # would aggregate that column instead of the rows)
        columns.append(f"(SELECT coalesce(json_agg(yitu_row), '[]'::json) FROM (\n{text}\n) yitu_row) AS f{i}")
        params.update({f"{k}__{i}": v for k, v in f.params.items()})
    # our own files' text and the fixed identifiers of chain_column; every value goes as a parameter
    row = conn.execute("SELECT " + ",\n".join(columns), params).fetchone()
    assert row is not None  # a SELECT of scalar subqueries has one row
    return {name: f.shape(rows) for (name, f), rows in zip(figures.items(), row, strict=True)}


def areas_figure(name: str, code: str) -> Figure:
    """The areas a named query lists for ``code`` (its ancestors, children, neighbours), read every time."""
    return Figure(sql.SQL(query(name)), {"code": code}, kept=False)


def _areas(conn: psycopg.Connection, name: str, code: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = read_figure(conn, areas_figure(name, code))
    return rows


def area_children(conn: psycopg.Connection, code: str) -> list[dict[str, Any]]:
    return _areas(conn, "area_children", code)


def area_ancestors(conn: psycopg.Connection, code: str) -> list[dict[str, Any]]:
    return _areas(conn, "area_ancestors", code)


def area_neighbours(conn: psycopg.Connection, code: str) -> list[dict[str, Any]]:
    return _areas(conn, "area_neighbours", code)


def cameras_near(
    conn: psycopg.Connection, lon: float, lat: float, radius_m: float, *, scope: str | None
) -> list[dict[str, Any]]:
    """The cameras within ``radius_m`` of a point that a reader scoped to ``scope`` sees, nearest first."""
    params = {"lon": lon, "lat": lat, "radius": radius_m, "scope": scope}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("cameras_near"), params).fetchall()


def vans_nearest(
    conn: psycopg.Connection, lon: float, lat: float, k: int = 4, status: str | None = None, scope: str | None = None
) -> list[dict[str, Any]]:
    """The ``k`` located vans nearest to a point, of those a reader scoped to ``scope`` sees."""
    params = {"lon": lon, "lat": lat, "k": k, "status": status, "scope": scope}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("vans_nearest"), params).fetchall()


SORTABLE = {
    "code": "code",
    "type": "type",
    "step": "step",
    "level": "level",
    "reported_at": "reported_at",
    "deadline": "deadline",
    "grid": "grid_code",
}


@dataclass(frozen=True)
class CaseFilter:
    """The area view's filters; ``until`` is exclusive."""

    step: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def params(self) -> dict[str, Any]:
        return {"step": self.step, "type": self.type, "since": self.since, "until": self.until}


def _area_stmt(name: str, code: str, **extra: sql.Composable) -> sql.Composed:
    return sql.SQL(query(name)).format(column=area_column(code), **extra)


def area_cases_page(
    conn: psycopg.Connection,
    code: str,
    flt: CaseFilter,
    *,
    sort: str = "reported_at",
    descending: bool = True,
    limit: int = 20,
    offset: int = 0,
    scope: str | None = None,
) -> list[dict[str, Any]]:
    """One page of an area's cases; ``scope`` is the reader's area (None: everywhere), in the WHERE."""
    if sort not in SORTABLE:
        raise ValueError(f"cannot sort by {sort!r}; one of {', '.join(SORTABLE)}")
    stmt = _area_stmt(
        "area_cases_page",
        code,
        order=sql.Identifier("c", SORTABLE[sort]),
        direction=sql.SQL("DESC" if descending else "ASC"),
    )
    with conn.cursor(row_factory=dict_row) as cur:
        params = {"code": code, **flt.params(), "limit": limit, "offset": offset, "scope": scope}
        return cur.execute(stmt, params).fetchall()


def area_cases_all(
    conn: psycopg.Connection, code: str, flt: CaseFilter, *, scope: str | None = None, batch: int = 2000
) -> Iterator[dict[str, Any]]:
    """Every case of an area (as :func:`area_cases_page`, newest first, no limit) from a server-side
    cursor, ``batch`` rows a fetch: memory stays flat whatever the area's size. The caller holds a
    transaction open while it iterates (a named cursor lives in one)."""
    stmt = _area_stmt(
        "area_cases_page", code, order=sql.Identifier("c", SORTABLE["reported_at"]), direction=sql.SQL("DESC")
    )
    with conn.cursor(name="yitu_area_cases", row_factory=dict_row) as cur:
        cur.itersize = batch
        cur.execute(stmt, {"code": code, **flt.params(), "limit": None, "offset": 0, "scope": scope})
        yield from cur


def area_cases_count(conn: psycopg.Connection, code: str, flt: CaseFilter, scope: str | None = None) -> int:
    row = conn.execute(_area_stmt("area_cases_count", code), {"code": code, **flt.params(), "scope": scope}).fetchone()
    return int(row[0]) if row else 0


def _first(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    return rows[0] if rows else None


def area_summary_figure(code: str) -> Figure:
    """Name, level, parent and bounds (minx, miny, maxx, maxy) of one area (None: no such area)."""
    stmt = sql.SQL(
        """SELECT code, name, level, parent_code,
                  ARRAY[ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom)] AS bounds
           FROM areas WHERE code = %(code)s"""
    )
    return Figure(stmt, {"code": code}, _first, kept=False)


def area_summary(conn: psycopg.Connection, code: str) -> dict[str, Any] | None:
    """Name, level, parent and bounds (minx, miny, maxx, maxy) of one area."""
    summary: dict[str, Any] | None = read_figure(conn, area_summary_figure(code))
    return summary


def banner(conn: psycopg.Connection) -> dict[str, Any] | None:
    """The top of the territory, where the wall opens: the root (league or city) when it holds two
    banners or more, else the one banner (the first by code). One banner: nothing changes."""
    row = conn.execute(query("territory_top")).fetchone()
    return area_summary(conn, row[0]) if row else None


def is_league(conn: psycopg.Connection) -> bool:
    """Whether the territory is several banners under a root (the wall then opens at the root)."""
    top = banner(conn)
    return top is not None and top["level"] == 0


# --- rows as JSON ------------------------------------------------------------------------------------


def iso(v: datetime | None) -> str | None:
    """A timestamp column as ISO 8601 text (None stays None)."""
    return v.isoformat() if v else None


def rounded(v: float | None, nd: int = 1) -> float | None:
    """A measured column rounded for display (None stays None)."""
    return None if v is None else round(v, nd)


def pick(row: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The columns ``names`` of a row, as they are: the plain part of an API shape."""
    return {n: row[n] for n in names}

"""An area's case statistics and the ranking of areas (月通报、季排名), from named SQL.

Definitions (shared with the wall screen's KPI tiles): resolved = mediated or judicially
confirmed; resolution rate = resolved ÷ reported; village share (村级化解占比) = the share of the
resolved cases settled at grid or village level; overdue = open and past the deadline.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from geodata.clock import CST, day_of
from geodata.queries import Figure, chain_column, level_of, query, read_figure
from geodata.workflow import LEVELS

RANKING_FORMULA = (
    "score = 60 × R + 25 × (1 − O) + 15 × (S − 1) / 4; R = resolved ÷ reported in the period, "
    "O = overdue ÷ open now, S = mean satisfaction (1–5) of the period's cases (3 with none)"
)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def area_stats(
    conn: psycopg.Connection,
    code: str,
    now: datetime,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    scan: bool = False,
) -> dict[str, Any]:
    """The stats of the area panel: from the KPI counters when the period is whole days (the API's
    always is), else (or with ``scan``: the baseline of the bench and the tests) counted from the
    cases; overdue changes with the clock and is always counted from the open cases."""
    column = chain_column(level_of(code), "c")
    first, after = day_of(since), day_of(until)
    whole_days = (since is None or first is not None) and (until is None or after is not None)
    params = {"code": code, "now": now, "since": since, "until": until}
    with conn.cursor(row_factory=dict_row) as cur:
        if whole_days and not scan:
            rows = cur.execute(query("area_stats"), {**params, "since": first, "until": after}).fetchall()
            late_stmt = sql.SQL(query("area_overdue")).format(column=column)
            late = {r["level"]: r["overdue"] for r in cur.execute(late_stmt, params).fetchall()}
            for r in rows:  # the totals' row (and those by step or type) get the sum
                r["overdue"] = late.get(r["level"], 0) if not r["g_level"] else sum(late.values())
        else:
            rows = cur.execute(sql.SQL(query("area_stats_scan")).format(column=column), params).fetchall()
    total = next(r for r in rows if r["g_step"] and r["g_type"] and r["g_level"])
    by_step = {r["step"]: r["n"] for r in rows if not r["g_step"]}
    by_type = dict(sorted(((r["type"], r["n"]) for r in rows if not r["g_type"]), key=lambda kv: (-kv[1], kv[0])))
    by_level = {lv: {"cases": 0, "open": 0, "overdue": 0, "resolved": 0} for lv in LEVELS}
    for r in rows:
        if not r["g_level"]:
            by_level[r["level"]] = {
                "cases": r["n"],
                "open": r["open"],
                "overdue": r["overdue"],
                "resolved": r["resolved"],
            }
    return {
        "cases": total["n"],
        "open": total["open"],
        "closed": total["closed"],
        "resolved": total["resolved"],
        "resolution_rate": _ratio(total["resolved"], total["n"]),
        "village_share": _ratio(total["resolved_low"], total["resolved"]),
        "overdue": total["overdue"],
        "overdue_by_level": {lv: v["overdue"] for lv, v in by_level.items()},
        "satisfaction": total["satisfaction"],
        "by_step": by_step,
        "by_type": by_type,
        "by_level": by_level,
    }


def period_bounds(period: str, at: date) -> tuple[datetime, datetime]:
    """[start, end) of the month, quarter or year (China time) that contains ``at``."""
    if period == "month":
        start = date(at.year, at.month, 1)
        end = date(at.year + at.month // 12, at.month % 12 + 1, 1)
    elif period == "quarter":
        first = 3 * ((at.month - 1) // 3) + 1
        start = date(at.year, first, 1)
        end = date(at.year + (first + 3 > 12), (first + 2) % 12 + 1, 1)
    elif period == "year":
        start, end = date(at.year, 1, 1), date(at.year + 1, 1, 1)
    else:
        raise ValueError(f"unknown period {period!r}; one of month, quarter, year")
    return (
        datetime.combine(start, datetime.min.time(), tzinfo=CST),
        datetime.combine(end, datetime.min.time(), tzinfo=CST),
    )


def ranking_figure(level: int, parent: str, start: datetime, end: datetime, now: datetime) -> Figure:
    """The areas of ``level`` under ``parent`` ranked by the score of RANKING_FORMULA, as a figure
    (geodata/queries.py: read alone or with the wall's other numbers)."""
    if not level_of(parent) < level <= 4:
        raise ValueError(f"level {level} is not below the level of {parent}")
    first, after = day_of(start), day_of(end)
    name = "ranking" if first is not None and after is not None else "ranking_scan"  # whole days: counters
    text = sql.SQL(query(name))
    stmt = text.format(column=chain_column(level, "c"), parent=chain_column(level_of(parent), "c"))
    bounds = {"start": first, "end": after} if name == "ranking" else {"start": start, "end": end}
    return Figure(stmt, {"level": level, "parent_code": parent, **bounds, "now": now})


def ranking(
    conn: psycopg.Connection, level: int, parent: str, start: datetime, end: datetime, now: datetime
) -> list[dict[str, Any]]:
    """The areas of ``level`` under ``parent`` ranked by the score of RANKING_FORMULA."""
    rows: list[dict[str, Any]] = read_figure(conn, ranking_figure(level, parent, start, end, now))
    return rows

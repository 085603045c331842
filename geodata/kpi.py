"""The numbers around the map: KPI tiles, steps, top types, trend and the town ranking.

Each is one named SQL file over the KPI counters (``case_counters``, 033_counters.sql: per area
of every level, day, type, step and level, kept in the transaction of each case change), plus the
open cases' partial index for "overdue", which changes with the clock; the ``*_scan`` files
compute the same from the cases (the baseline of bench/bench_kpi.py, and periods that are not
whole days). Each is a figure (``*_figure``, geodata/queries.py ``Figure``): read alone, or with the
others of a wall's round in one statement (:func:`figures`). Cached for a few seconds in Redis
because every wall screen asks the same.
:func:`cached` is the one cache of figures: the choropleth's numbers (layers/grids.py) live in
it too, so one drop clears every figure a screen shows and the map agrees with the tiles.

The live hub drops the cache when an event of :data:`FIGURE_FAMILIES` comes (services/live.py).
A figure may lack an event already published — and dropped — if its read began before the event's
change was committed (on the primary), or on a replica that had not replayed it: kept after the
drop, it would outlive the event. So a figure is kept only if the server it was read on had, before
the read, every event of those families published when it is kept (the outbox number the relay
gives an event after its change committed; one atomic step in Redis); else it is answered and not
kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import redis as redis_lib
from psycopg import sql

from geodata import areas_stats, db
from geodata.breaker import Breaker
from geodata.clock import CST, day_of
from geodata.outbox import LAST_KEY
from geodata.queries import Figure, chain_column, level_of, query, read_figure, read_together

log = logging.getLogger("yitu.kpi")
CACHE_SECONDS = 15


def _figure(name: str, code: str, shape: Callable[[list[dict[str, Any]]], Any], **params: Any) -> Figure:
    stmt = sql.SQL(query(name)).format(column=chain_column(level_of(code)))
    return Figure(stmt, {"code": code, **params}, shape)


def _tiles(rows: list[dict[str, Any]]) -> dict[str, Any]:
    row = rows[0]
    rate = row["resolved_of_reported_ytd"] / row["reported_ytd"] if row["reported_ytd"] else None
    share = row["resolved_low_ytd"] / row["resolved_ytd"] if row["resolved_ytd"] else None
    return {
        **row,
        "rate_ytd": rate,
        "village_share": share,
        "overdue": {lv: row[f"overdue_{lv}"] for lv in ("grid", "village", "town", "banner")},
    }


def tiles_figure(code: str, start: datetime | None = None, end: datetime | None = None) -> Figure:
    """The KPI tiles of ``code``; the resolved, rate and village share of the period [start, end)
    (the ``_ytd`` keys; default the year to date), the rest as of now."""
    first, after = day_of(start), day_of(end)
    if (start is None or first is not None) and (end is None or after is not None):
        return _figure("kpi_area", code, _tiles, start=first, end=after)
    # a period that is not whole days: the counters count by day, the cases can say
    return _figure("kpi_area_scan", code, _tiles, start=start, end=end)


def tiles(
    conn: psycopg.Connection, code: str, start: datetime | None = None, end: datetime | None = None
) -> dict[str, Any]:
    """:func:`tiles_figure`, read."""
    figure: dict[str, Any] = read_figure(conn, tiles_figure(code, start, end))
    return figure


def _steps(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {r["step"]: r["n"] for r in rows}


def steps_figure(code: str) -> Figure:
    return _figure("kpi_steps", code, _steps)


def steps(conn: psycopg.Connection, code: str) -> dict[str, int]:
    figure: dict[str, int] = read_figure(conn, steps_figure(code))
    return figure


def top_types_figure(code: str, first: date | None = None, after: date | None = None) -> Figure:
    """The ten most frequent types among the cases reported on the days [first, after) (China
    time); by default this quarter, up to today."""
    if first is None or after is None:
        today = datetime.now(CST).date()
        first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        after = today + timedelta(days=1)
    return _figure("kpi_top_types", code, list, first=first, after=after)


def top_types(
    conn: psycopg.Connection, code: str, first: date | None = None, after: date | None = None
) -> list[dict[str, Any]]:
    """:func:`top_types_figure`, read."""
    figure: list[dict[str, Any]] = read_figure(conn, top_types_figure(code, first, after))
    return figure


def trend_figure(code: str, days: int = 30) -> Figure:
    return _figure("kpi_trend", code, list, days=days)


def trend(conn: psycopg.Connection, code: str, days: int = 30) -> list[dict[str, Any]]:
    figure: list[dict[str, Any]] = read_figure(conn, trend_figure(code, days))
    return figure


def town_ranking_figure(banner: str, start: datetime | None = None, end: datetime | None = None) -> Figure | None:
    """季排名: the banner's towns (the children of any area given) for the period [start, end),
    the current quarter by default (the same formula as /api/v1/stats/ranking); None for a grid
    cell, which has no children to rank."""
    level = level_of(banner) + 1
    if level > 4:
        return None
    now = datetime.now(UTC)
    if start is None or end is None:
        start, end = areas_stats.period_bounds("quarter", now.astimezone(CST).date())
    return areas_stats.ranking_figure(level, banner, start, end, now)


def town_ranking(
    conn: psycopg.Connection, banner: str, start: datetime | None = None, end: datetime | None = None
) -> list[dict[str, Any]]:
    """:func:`town_ranking_figure`, read."""
    figure = town_ranking_figure(banner, start, end)
    rows: list[dict[str, Any]] = [] if figure is None else read_figure(conn, figure)
    return rows


def _default(value: object) -> object:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):  # numeric columns
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# One hash for every cached figure (tiles, charts, ranking, choropleth): field = the figure's key,
# value = {"t": when computed, "v": figures}.
CACHE_KEY = "yitu:cache:kpi"
# The event families whose events drop the cached figures (services/live.py): what they count.
FIGURE_FAMILIES = ("case", "dispatch", "areas")
# Keeps figures only if no event of FIGURE_FAMILIES newer than what their read held is published.
# KEYS: CACHE_KEY, LAST_KEY; ARGV: expiry (s), the outbox id the read held, the number of families,
# the families, then a field and its value for each figure. 1 kept, 0 not.
_KEEP_IF_HELD = """
local held = tonumber(ARGV[2])
local fams = tonumber(ARGV[3])
for i = 4, 3 + fams do
  if tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0') > held then return 0 end
end
for i = 4 + fams, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""
_breaker = Breaker()


def cached(
    redis: redis_lib.Redis,
    key: str,
    compute: Callable[[], Any],
    ttl: int = CACHE_SECONDS,
    conn: psycopg.Connection[Any] | None = None,
) -> Any:
    """``compute()`` through Redis; a Redis outage only costs the query.

    Every figure lives in the one hash ``CACHE_KEY`` with the time it was computed, so dropping
    them all when cases change (the live hub, services/live.py) is one ``DEL``, not a scan of Redis.
    ``conn``: the connection ``compute`` reads; given, the figure is kept only if it holds every
    event published that drops the cache (see the module).
    """
    found = _look(redis, [key], ttl)
    if found is None:  # Redis away: computed, not kept
        return _plain(compute())
    if key in found:
        return found[key]
    held = None if conn is None else _held(conn)  # before the read: the figure holds at least this
    value = _plain(compute())
    _keep(redis, held, {key: value}, ttl)
    return value


def _look(redis: redis_lib.Redis, keys: list[str], ttl: int) -> dict[str, Any] | None:
    """The fresh figures of ``keys`` in the cache (one HMGET), or None when Redis does not answer
    (the breaker open, or tripped now: the callers then compute and keep nothing)."""
    if _breaker.open(redis):  # Redis failed a moment ago: compute without waiting on it again
        return None
    try:
        hits = redis.hmget(CACHE_KEY, keys)
    except redis_lib.RedisError as exc:
        _breaker.trip(redis)
        log.warning("kpi cache unavailable error=%s", type(exc).__name__)
        return None
    found: dict[str, Any] = {}
    for key, hit in zip(keys, hits, strict=True):
        fresh = _fresh(hit, ttl)
        if fresh is not None:
            found[key] = fresh[0]
    return found


def _keep(redis: redis_lib.Redis, held: int | None, values: dict[str, Any], ttl: int) -> None:
    """Keep ``values`` (field → figures) with the time: only if no event that drops them came after
    ``held`` (the outbox id their read held), or, with no ``held`` (no connection to tell), as they are."""
    now = time.time()
    entries = {key: json.dumps({"t": now, "v": value}) for key, value in values.items()}
    try:
        if held is None:
            pipe = redis.pipeline(transaction=False)
            for key, entry in entries.items():
                pipe.hset(CACHE_KEY, key, entry)
            pipe.expire(CACHE_KEY, ttl * 4)  # an idle hash goes away by itself
            pipe.execute()
        else:
            _keep_if_held(redis, held, entries, ttl)
    except redis_lib.RedisError as exc:
        _breaker.trip(redis)
        log.warning("kpi not cached error=%s", type(exc).__name__)
        return
    _breaker.reset(redis)


_KEEP_SHA = hashlib.sha1(_KEEP_IF_HELD.encode()).hexdigest()  # Redis names a script by its SHA-1


def _keep_if_held(redis: redis_lib.Redis, held: int, entries: dict[str, str], ttl: int) -> None:
    """Keep ``entries`` (field → value) if no event that drops them came after ``held``: the keeping
    script by its digest (computed once), loaded when the server lacks it."""
    keys = [CACHE_KEY, LAST_KEY]
    args: list[str | int] = [ttl * 4, held, len(FIGURE_FAMILIES), *FIGURE_FAMILIES]
    for field, value in entries.items():
        args += [field, value]
    try:
        redis.evalsha(_KEEP_SHA, len(keys), *keys, *args)
    except redis_lib.exceptions.NoScriptError:
        redis.eval(_KEEP_IF_HELD, len(keys), *keys, *args)


def figures(
    redis: redis_lib.Redis, conn: psycopg.Connection[Any], wanted: Mapping[str, Figure], ttl: int = CACHE_SECONDS
) -> dict[str, Any]:
    """The figures of ``wanted`` (its keys: their fields in the cache), as :func:`cached` gives one,
    with one look in Redis for all, one statement for those it lacks (geodata/queries.py
    ``read_together``: the van board and the area's names among them, which are never kept) and one
    keeping of what was read — a round of the wall's numbers made some twenty round trips to Redis and
    the database one after the other (docs/scaling.md). Kept only if ``conn``'s read held every event
    published that drops them, as :func:`cached` keeps one."""
    keyed = [k for k, f in wanted.items() if f.kept]
    found = _look(redis, keyed, ttl) if keyed else {}
    missing = {k: f for k, f in wanted.items() if found is None or k not in found}
    to_keep = [k for k, f in missing.items() if f.kept] if found is not None else []
    held = _held_known(conn) if to_keep else None  # before the read: the figures hold at least this
    asked = {**missing, _HELD: _HELD_FIGURE} if to_keep and held is None else missing
    with db.alone(conn):  # one statement, no transaction around it: one round trip
        read = read_together(conn, asked)
    if to_keep:
        if held is None:  # read in the statement itself: its snapshot holds exactly this
            held = _note_held(conn, read.pop(_HELD))
        _keep(redis, held, {k: read[k] for k in to_keep}, ttl)
    return {**(found or {}), **read}


# The newest outbox id a read sees numbered (db.replayed_through), as a column of the figures' statement.
_HELD = "\x00held"  # no figure's field: the wanted keys are the cache's printable fields
_HELD_FIGURE = Figure(sql.SQL(db.REPLAYED_THROUGH), {}, lambda rows: int(rows[0]["last_id"]), kept=False)


def _held(conn: psycopg.Connection[Any]) -> int:
    """The newest outbox id whose event's change a read on ``conn`` from now on holds: on a replica
    the read floor's (services/runtime.py noted how far it had replayed at the checkout), on the
    primary its ``outbox_counter`` — read once per read floor (the wall's numbers: one query, not one
    per figure; an earlier value is still a lower bound), else now."""
    known = _held_known(conn)
    return known if known is not None else _note_held(conn, db.replayed_through(conn))


def _held_known(conn: psycopg.Connection[Any]) -> int | None:
    """:func:`_held` when it needs no query: what the read floor noted; None: to be read."""
    mark = db.floor()
    if mark is None:
        return None
    if conn.info.parameter_status("in_hot_standby") == "on":
        return mark.seen
    return mark.primary


def _note_held(conn: psycopg.Connection[Any], held: int) -> int:
    """``held``, read on ``conn`` now, noted on the read floor for the primary's next reads in it."""
    mark = db.floor()
    if mark is not None and mark.primary is None and conn.info.parameter_status("in_hot_standby") != "on":
        mark.primary = held
    return held


def _plain(value: Any) -> Any:
    """The figures as JSON gives them back (dates as text, Decimals as floats), cached or not."""
    return json.loads(json.dumps(value, default=_default))


def _fresh(hit: str | bytes | None, ttl: int) -> tuple[Any] | None:
    """(figures,) of a cache entry younger than ``ttl``; None if missing, stale or unreadable."""
    if not hit:
        return None
    try:
        entry = json.loads(hit)
        if isinstance(entry, dict) and time.time() - float(entry.get("t", 0)) < ttl:
            return (entry.get("v"),)
    except (ValueError, TypeError):
        log.warning("kpi cache entry unreadable; computed again")
    return None

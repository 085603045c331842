"""The KPI counters (033_counters.sql) agree exactly with a full count of the cases, whatever happens.

A bulk-loaded demo, then a random mix of single and batch intake, transitions, escalations (by
hand and by the overdue sweep), reopens, a bulk UPDATE and a DELETE; after it the counters equal a
recount, and every figure read from them (tiles, ranking, choropleth, area panel) equals the same
figure counted from the cases by the ``*_scan`` queries. ``yitu kpi check`` finds a counter gone
wrong and ``yitu kpi rebuild`` puts it right.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner
from psycopg import sql
from psycopg.rows import dict_row

from cli.main import main
from geodata import areas_stats, cases, counters, kpi, workflow
from geodata.cases import Actor, IntakeRequest, NewCase
from geodata.clock import CST
from geodata.queries import CHAIN_COLUMN, level_of, query
from layers import grids
from services.scheduler import deadline_rules

from .cases_fixtures import inner_point, settings_for

CLERK = Actor("clerk", "dispatcher", 0)
GRAINS = (
    "case_counters",
    "case_counters_month",
    "case_counters_open",
    "case_counters_area_month",
    "case_counters_area_day",
)
TYPES = ("grassland", "land_transfer", "neighbour", "marriage_family", "labour")


def _new(rng: random.Random, dsn: str, now: datetime) -> NewCase:
    lon, lat, _ = inner_point(dsn, level=4, offset=rng.randrange(0, 200, 7))
    return NewCase(
        rng.choice(TYPES),
        "草场边界争议",
        lon,
        lat,
        rng.choice(workflow.CHANNELS),
        [{"name": "巴图", "phone": "13812345678", "role": "申请人"}],
        now - timedelta(days=rng.randrange(0, 400), hours=rng.randrange(24)),
        severity=rng.choice((None, *workflow.SEVERITIES)),
        people_involved=rng.choice((None, 1, 3, 12)),
    )


def _params(rng: random.Random, action: str, step: str) -> dict[str, Any]:
    if action == "reject":
        return {"reason": "not_dispute"}
    if action == "dispatch":
        return {"assignee": {"kind": "unit", "id": 1, "name": "司法所"}}
    if action == "attempt":
        return {"result": rng.choice(("success", "failed"))}
    if action == "close":
        return {"outcome": rng.choice(workflow.OUTCOMES) if step == "handling" else "withdrawn"}
    if action == "evaluate":
        return {"satisfaction": rng.randint(1, 5)}
    return {}


def _random_history(dsn: str, now: datetime) -> set[str]:
    """Cases made and moved at random; the actions taken."""
    rng = random.Random(16)
    rules = deadline_rules(settings_for(dsn, "redis://unused", Path("/tmp")))
    codes: list[str] = []
    done: set[str] = set()
    with psycopg.connect(dsn) as conn:
        for _ in range(25):  # single intakes, each its own transaction
            with conn.transaction():
                row, _ = cases.intake(conn, _new(rng, dsn, now), CLERK, rules, now)
            codes.append(row["code"])
        with conn.transaction():  # one batch: one statement, one delta
            batch = [IntakeRequest(_new(rng, dsn, now), CLERK, None, None) for _ in range(15)]
            codes += [cases.unwrap(r)[0]["code"] for r in cases.intake_many(conn, batch, rules, now)]
        for _ in range(300):
            code = rng.choice(codes)
            with conn.transaction():
                row = cases.get_case(conn, code)
                assert row is not None
                allowed = workflow.allowed_actions(cases.state_of(row), rules, "admin")
                if not allowed:
                    continue
                action = rng.choice(allowed)
                cases.transition(conn, code, action, _params(rng, action, row["step"]), CLERK, rules, now)
                done.add(action)
        with conn.transaction():  # the scheduler: flags and escalates the overdue a week on
            if cases.sweep_overdue(conn, now + timedelta(days=7), rules, escalate=True):
                done.add("sweep")
        with conn.transaction():  # a bulk edit by hand: the triage of many cases at once
            conn.execute("UPDATE cases SET severity = 'major' WHERE id % 11 = 0")
            conn.execute("UPDATE cases SET flags = array_append(flags, 'group') WHERE id % 13 = 0")
        with conn.transaction():
            conn.execute("DELETE FROM cases WHERE code = %s", (codes.pop(),))
    return done


def _scan(conn: psycopg.Connection, name: str, code: str, **params: Any) -> list[dict[str, Any]]:
    stmt = sql.SQL(query(name)).format(column=sql.Identifier(CHAIN_COLUMN[level_of(code)]))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(stmt, {"code": code, **params}).fetchall()


def _figures_match_the_scans(conn: psycopg.Connection) -> None:
    """Every figure read from the counters equals the one the scan of the cases gives."""
    banner, town = conn.execute(
        "SELECT banner_code, town_code FROM cases WHERE town_code IS NOT NULL ORDER BY id LIMIT 1"
    ).fetchone()
    now = datetime.now(UTC)
    start, end = areas_stats.period_bounds("year", now.astimezone(CST).date())
    for code in (banner, town):
        tiles = kpi.tiles(conn, code)
        scan = _scan(conn, "kpi_area_scan", code, start=None, end=None)[0]
        assert {k: tiles[k] for k in scan} == scan
        for first, after in _periods(start, end):  # whole months, ragged ends, within one month
            period = kpi.tiles(conn, code, first, after)
            scan = _scan(conn, "kpi_area_scan", code, start=first, end=after)[0]
            assert {k: period[k] for k in scan} == scan
        assert kpi.steps(conn, code) == {r["step"]: r["n"] for r in _scan(conn, "kpi_steps_scan", code)}
        quarter = areas_stats.period_bounds("quarter", now.astimezone(CST).date())
        assert kpi.top_types(conn, code) == _scan(
            conn, "kpi_top_types_scan", code, first=quarter[0].date(), after=now.astimezone(CST).date() + timedelta(1)
        )  # the default: this quarter
        for first, after in _periods(start, end):  # the wall's period: whole months, ragged ends
            days = {"first": first.astimezone(CST).date(), "after": after.astimezone(CST).date()}
            assert kpi.top_types(conn, code, **days) == _scan(conn, "kpi_top_types_scan", code, **days)
        assert kpi.trend(conn, code, 60) == _scan(conn, "kpi_trend_scan", code, days=60)
        assert areas_stats.area_stats(conn, code, now) == areas_stats.area_stats(conn, code, now, scan=True)
        for since, until in ((start - timedelta(days=400), end), *_periods(start, end)):
            assert areas_stats.area_stats(conn, code, now, since=since, until=until) == areas_stats.area_stats(
                conn, code, now, since=since, until=until, scan=True
            )
    for level, parent in ((2, banner), (3, town), (4, banner)):
        for first, after in _periods(start, end):
            ranked = areas_stats.ranking(conn, level, parent, first, after, now)
            stmt = sql.SQL(query("ranking_scan")).format(
                column=sql.Identifier("c", CHAIN_COLUMN[level]),
                parent=sql.Identifier("c", CHAIN_COLUMN[level_of(parent)]),
            )
            with conn.cursor(row_factory=dict_row) as cur:
                params = {"level": level, "parent_code": parent, "start": first, "end": after, "now": now}
                assert ranked == cur.execute(stmt, params).fetchall()
    for level in (1, 2, 3, 4):
        for scope in (None, banner, town):
            assert grids.stats(conn, level, scope) == _grid_stats_scan(conn, level, scope)


def _periods(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Periods of whole days (China time) that the counters read differently: the year (whole
    months only), one reaching back over a year with ragged ends on both sides (daily rows around
    monthly ones), and one inside a single month (daily rows only)."""
    return [
        (start, end),
        (start - timedelta(days=395), end - timedelta(days=45)),
        (end - timedelta(days=70), end - timedelta(days=55)),
    ]


def _grid_stats_scan(conn: psycopg.Connection, level: int, scope: str | None) -> grids.AreaStats:
    stmt = sql.SQL(query("area_stats_by_level_scan")).format(column=sql.Identifier(CHAIN_COLUMN[level]))
    return {
        code: {"open": o, "overdue": late, "rate": round(res / rep, 4) if rep else None}
        for code, o, late, rep, res in conn.execute(stmt, {"scope": scope})
    }


def test_counters_agree_with_a_full_count_after_a_random_history(demo_db: str) -> None:
    with psycopg.connect(demo_db) as conn:
        assert counters.differences(conn) == []  # the bulk-loaded demo
        assert conn.execute("SELECT count(*) FROM case_counters").fetchone()[0] > 0
    done = _random_history(demo_db, datetime.now(UTC))
    assert {"accept", "reject", "escalate", "close", "evaluate", "reopen", "sweep"} <= done
    with psycopg.connect(demo_db) as conn:
        assert counters.differences(conn) == []
        _figures_match_the_scans(conn)


def test_kpi_check_finds_a_wrong_counter_and_rebuild_mends_it(demo_db: str, redis_url: str) -> None:
    env = {"YITU_DATABASE_URL": demo_db, "YITU_REDIS_URL": redis_url}
    runner = CliRunner()
    ok = runner.invoke(main, ["kpi", "check"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "agree" in ok.output
    for table in GRAINS:  # a wrong row in any grain is found, and the rebuild mends it
        with psycopg.connect(demo_db) as conn:
            stmt = sql.SQL(
                "UPDATE {t} SET n = n + 2 WHERE ctid = (SELECT ctid FROM {t} WHERE area_level = 2 "
                "ORDER BY area_code LIMIT 1) RETURNING area_code"
            ).format(t=sql.Identifier(table))
            key = conn.execute(stmt).fetchone()
        wrong = runner.invoke(main, ["kpi", "check"], env=env)
        assert wrong.exit_code == 1
        assert table in wrong.output and key[0] in wrong.output and "differ" in wrong.output
        rebuilt = runner.invoke(main, ["kpi", "rebuild"], env=env)
        assert rebuilt.exit_code == 0, rebuilt.output
        again = runner.invoke(main, ["kpi", "check"], env=env)
        assert again.exit_code == 0, again.output
    with psycopg.connect(demo_db) as conn:
        for table in GRAINS:  # compacted: one shard, no row that counts nothing
            zero = "n = 0 AND resolved_on_n = 0" if table == "case_counters_area_day" else "n = 0"
            stmt = sql.SQL("SELECT count(*) FROM {} WHERE shard <> 0 OR ({})").format(
                sql.Identifier(table), sql.SQL(zero)
            )
            assert conn.execute(stmt).fetchone()[0] == 0, table


def test_a_bulk_load_skips_the_triggers_and_rebuilds_once(demo_db: str) -> None:
    """The demo seeding sets yitu.counters_bulk for its transaction and rebuilds after: the
    counters agree, and nothing was added to them per COPY batch (every row is shard 0)."""
    with psycopg.connect(demo_db, autocommit=True) as conn:
        assert counters.differences(conn) == []
        for table in GRAINS:
            stmt = sql.SQL("SELECT count(*) FILTER (WHERE shard <> 0), count(*) FROM {}").format(sql.Identifier(table))
            other_shards, rows = conn.execute(stmt).fetchone()
            assert rows > 0 and other_shards == 0, table
        tag = (
            "UPDATE cases SET flags = array_append(flags, 'group') "
            "WHERE id = (SELECT min(id) FROM cases WHERE NOT 'group' = ANY (flags))"
        )
        with conn.transaction():
            conn.execute("SELECT set_config('yitu.counters_bulk', 'on', true)")
            conn.execute(tag)
        assert counters.differences(conn)  # the switch did bypass the triggers
        counters.rebuild(conn)
        assert counters.differences(conn) == []
        with conn.transaction():  # the switch was the transaction's own: a plain write counts again
            conn.execute(tag)
        assert counters.differences(conn) == []

"""Deadlines per banner or for the whole league (issue 16 item 2, its last part).

Two banners in one deployment (the seeded demo's 150623 and a small second one, 150621, imported as
tests/test_banners.py does, which makes the root 1506): with the overrides table empty every case
gets the settings' deadlines exactly as before; a league row overrides the settings and a banner
row the league's, field by field; a report, an escalation (by a clerk or the scheduler) and the
overdue sweep each use the case's banner's rules. ``yitu deadlines`` and ``/api/v1/deadlines`` refuse
bad input naming the field and write nothing; a change made in one app process reaches another
within seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from cli.deadlines import deadlines_group
from dashboard.app import create_app
from geodata import cases, deadlines, io
from geodata.cases import Actor, NewCase
from geodata.clock import CST
from geodata.errors import Forbidden, Invalid
from geodata.workflow import DeadlineRules
from services import deadlines as live
from services.identity import Principal
from services.scheduler import deadline_rules, rules_watcher, run_once

from .cases_fixtures import auth, case_body, inner_point_where, settings_for, token  # noqa: F401
from .helpers import free_port, keyed, wait_for
from .test_banners import FIRST, ROOT, SECOND, SECOND_POINT, second_banner_file
from .test_import_export import cli

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # 10:00 China time: the settings' grid deadline is 23:59:59
CLERK = Actor("clerk", "dispatcher", 0)
END_OF_T0 = datetime.combine(T0.astimezone(CST).date(), time(23, 59, 59), tzinfo=CST).astimezone(UTC)


@pytest.fixture
def two_banners(demo_db: str, tmp_path: Path) -> io.ImportReport:
    return io.import_grids(demo_db, second_banner_file(tmp_path))


@pytest.fixture
def pool(demo_db: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(demo_db, min_size=1, max_size=2) as p:
        yield p


@pytest.fixture
def defaults(demo_db: str) -> DeadlineRules:
    return deadline_rules(settings_for(demo_db, "redis://unused", Path("/tmp")))


def _first_point(dsn: str) -> tuple[float, float]:
    lon, lat, _ = inner_point_where(dsn, lambda code: code.startswith(FIRST))
    return lon, lat


def _report(
    pool: ConnectionPool, rules: Any, at: tuple[float, float], when: datetime = T0, accept: bool = False
) -> dict[str, Any]:
    body = case_body(*at)
    new = NewCase(body["type"], body["description"], at[0], at[1], body["channel"], body["parties"], when)
    with pool.connection() as conn:
        row, _ = cases.intake(conn, new, CLERK, rules, when)
        if accept:
            row, _ = cases.transition(conn, row["code"], "accept", {}, CLERK, rules, when + timedelta(minutes=5))
    return row


def _set(dsn: str, area: str, defaults: DeadlineRules, **hours: float) -> dict[str, Any]:
    attempts = hours.pop("max_attempts", None)
    with psycopg.connect(dsn) as conn:
        return live.change(
            conn, None, None, deadlines.Change(area, hours, None if attempts is None else int(attempts)), defaults
        )


def _book(dsn: str, defaults: DeadlineRules) -> deadlines.RulesBook:
    with psycopg.connect(dsn) as conn:
        return deadlines.load(conn, defaults)


def _written(dsn: str) -> tuple[Any, ...]:
    """What a refused change must leave as it was: the overrides, their generation, the admin log."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT * FROM deadline_overrides ORDER BY area_code").fetchall()
        gen = deadlines.generation(conn)
        log = conn.execute("SELECT count(*) FROM admin_events WHERE action LIKE 'deadline.%'").fetchone()
    return rows, gen, log


# --- the rules ---------------------------------------------------------------------------------------


def test_an_empty_table_is_the_settings_as_before(
    pool: ConnectionPool, demo_db: str, defaults: DeadlineRules, two_banners: io.ImportReport
) -> None:
    book = _book(demo_db, defaults)
    assert book.overrides == {} and book.root == ROOT and list(book.own_banners()) == []
    for banner in (None, FIRST, SECOND, "150699"):
        assert book.of(banner) == defaults
        assert {book.source(banner, w) for w in ("grid", "village", "town", "banner", "max_attempts")} == {"settings"}
    # a report gets exactly what the settings' rules alone give it, in either banner
    for at in (_first_point(demo_db), SECOND_POINT):
        with_book, with_settings = _report(pool, book, at), _report(pool, defaults, at)
        assert with_book["deadline"] == with_settings["deadline"] == END_OF_T0
    assert cases._intake_row(0, cases.IntakeRequest(_new(), CLERK), book, T0)["dl_by"] is None


def _new() -> NewCase:
    body = case_body(*SECOND_POINT)
    return NewCase(
        body["type"], body["description"], SECOND_POINT[0], SECOND_POINT[1], body["channel"], body["parties"]
    )


def test_each_banner_reports_with_its_own_hours(
    pool: ConnectionPool, demo_db: str, defaults: DeadlineRules, two_banners: io.ImportReport
) -> None:
    _set(demo_db, SECOND, defaults, grid=4)
    book = _book(demo_db, defaults)
    assert list(book.own_banners()) == [SECOND]
    second = _report(pool, book, SECOND_POINT)
    first = _report(pool, book, _first_point(demo_db))
    assert (second["banner_code"], second["level"], second["deadline"]) == (SECOND, "grid", T0 + timedelta(hours=4))
    assert (first["banner_code"], first["level"], first["deadline"]) == (FIRST, "grid", END_OF_T0)  # the settings'
    # a report triaged to start higher takes that level's hours of its banner (the settings' here)
    body = case_body(*SECOND_POINT)
    major = NewCase(body["type"], body["description"], *SECOND_POINT, body["channel"], body["parties"], T0, "complex")
    with pool.connection() as conn:
        row, _ = cases.intake(conn, major, CLERK, book, T0)
    assert (row["level"], row["deadline"]) == ("town", T0 + timedelta(hours=120))


def test_escalation_in_a_banner_uses_its_hours(
    pool: ConnectionPool, demo_db: str, defaults: DeadlineRules, two_banners: io.ImportReport
) -> None:
    _set(demo_db, SECOND, defaults, village=10, max_attempts=1)
    book = _book(demo_db, defaults)
    later = T0 + timedelta(hours=2)
    codes = {
        b: _report(pool, book, at, accept=True)["code"]
        for b, at in ((SECOND, SECOND_POINT), (FIRST, _first_point(demo_db)))
    }
    with pool.connection() as conn:
        up = {b: cases.transition(conn, code, "escalate", {}, CLERK, book, later)[0] for b, code in codes.items()}
    assert (up[SECOND]["level"], up[SECOND]["deadline"]) == ("village", later + timedelta(hours=10))
    assert (up[FIRST]["level"], up[FIRST]["deadline"]) == ("village", later + timedelta(hours=72))
    # the banner's attempts too: one failed attempt there proposes escalation, three in the first banner
    with pool.connection() as conn:
        for code in codes.values():
            cases.transition(conn, code, "dispatch", {"assignee": {"kind": "unit", "id": "u"}}, CLERK, book, later)
            cases.transition(conn, code, "start", {}, CLERK, book, later)
        _, change = cases.transition(conn, codes[SECOND], "attempt", {"result": "failed"}, CLERK, book, later)
        assert change.propose == "escalate"
        _, change = cases.transition(conn, codes[FIRST], "attempt", {"result": "failed"}, CLERK, book, later)
        assert change.propose is None


def test_the_sweep_marks_and_escalates_by_each_banners_rules(
    pool: ConnectionPool,
    demo_db: str,
    redis_url: str,
    tmp_path: Path,
    defaults: DeadlineRules,
    two_banners: io.ImportReport,
) -> None:
    _set(demo_db, SECOND, defaults, grid=4, village=6)
    book = _book(demo_db, defaults)
    second = _report(pool, book, SECOND_POINT, accept=True)["code"]
    first = _report(pool, book, _first_point(demo_db), accept=True)["code"]
    settings = settings_for(demo_db, redis_url, tmp_path, auto_escalate=True)
    now = T0 + timedelta(hours=5)  # past the second banner's 4 hours, not the first's end of day
    run_once(pool, settings, now=now)
    with pool.connection() as conn:
        s, f = cases.get_case(conn, second), cases.get_case(conn, first)
    assert s is not None and f is not None
    assert (s["level"], s["deadline"]) == ("village", now + timedelta(hours=6))  # escalated with its own hours
    assert (f["level"], f["deadline"], "overdue" in f["flags"]) == ("grid", END_OF_T0, False)
    with pool.connection() as conn:
        events = [e["action"] for e in cases.timeline(conn, s["id"])]
    assert events[-2:] == ["overdue", "escalate"]


def test_a_banner_row_goes_over_the_league_row_over_the_settings(
    pool: ConnectionPool, demo_db: str, defaults: DeadlineRules, two_banners: io.ImportReport
) -> None:
    _set(demo_db, ROOT, defaults, grid=6, town=100, max_attempts=5)
    _set(demo_db, SECOND, defaults, grid=2)
    book = _book(demo_db, defaults)
    assert book.of(FIRST).hours == {"grid": 6, "village": 72, "town": 100, "banner": 168}
    assert book.of(SECOND).hours == {"grid": 2, "village": 72, "town": 100, "banner": 168}
    assert book.of(SECOND).max_attempts == book.of(FIRST).max_attempts == book.of(None).max_attempts == 5
    assert book.source(SECOND, "grid") == "banner" and book.source(FIRST, "grid") == "league"
    assert book.source(SECOND, "village") == "settings" and book.source(SECOND, "max_attempts") == "league"
    assert _report(pool, book, _first_point(demo_db))["deadline"] == T0 + timedelta(hours=6)
    assert _report(pool, book, SECOND_POINT)["deadline"] == T0 + timedelta(hours=2)
    # the league given as its 6-digit form is the same row; clearing the banner's grid falls back to it
    assert _set(demo_db, "150600", defaults, village=50)["area_code"] == ROOT
    with psycopg.connect(demo_db) as conn:
        live.change(conn, None, None, deadlines.Change(SECOND, clear=frozenset({"grid"})), defaults)
        assert conn.execute("SELECT count(*) FROM deadline_overrides WHERE area_code = %s", (SECOND,)).fetchone() == (
            0,
        )
    book = _book(demo_db, defaults)
    assert book.of(SECOND) == book.of(FIRST) == book.of(None)
    assert book.of(SECOND).hours == {"grid": 6, "village": 50, "town": 100, "banner": 168}


# --- the command line -------------------------------------------------------------------------------


def _env(dsn: str, redis_url: str) -> dict[str, str]:
    return {"YITU_DATABASE_URL": dsn, "YITU_REDIS_URL": redis_url}


def test_the_commands_set_list_and_clear_with_their_audit_row(
    demo_db: str, redis_url: str, two_banners: io.ImportReport
) -> None:
    env = _env(demo_db, redis_url)
    done = cli(deadlines_group, env, "set", "--area", SECOND, "--level", "village", "--hours", "48")
    assert done.exit_code == 0, done.output
    assert f"deadlines of {SECOND}: grid 0 h (settings), village 48 h (banner)" in done.output
    assert cli(deadlines_group, env, "set", "--area", ROOT, "--max-attempts", "4").exit_code == 0
    listed = cli(deadlines_group, env, "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0] == "area\tname\tlevel\tgrid\tvillage\ttown\tbanner\tmax_attempts"
    assert (
        lines[1] == f"{ROOT}\t{ROOT}00\tleague\t0 (settings)\t72 (settings)\t120 (settings)\t168 (settings)\t4 (league)"
    )
    assert (
        lines[2] == f"{SECOND}\t示例二旗\tbanner\t0 (settings)\t48 (banner)\t120 (settings)\t168 (settings)\t4 (league)"
    )
    assert lines[3].startswith(f"{FIRST}\t") and lines[3].endswith(
        "\t72 (settings)\t120 (settings)\t168 (settings)\t4 (league)"
    )
    with psycopg.connect(demo_db) as conn:
        log = conn.execute(
            "SELECT action, target, actor_kind, detail FROM admin_events WHERE action LIKE 'deadline.%' ORDER BY id"
        ).fetchall()
    assert [(a, t, k) for a, t, k, _ in log] == [("deadline.set", SECOND, "cli"), ("deadline.set", ROOT, "cli")]
    assert log[0][3]["after"] == {"hours": {"village": 48.0}, "max_attempts": None} and log[0][3]["before"] is None
    cleared = cli(deadlines_group, env, "clear", "--area", SECOND)
    assert cleared.exit_code == 0 and "village 72 h (settings)" in cleared.output
    assert cli(deadlines_group, env, "clear", "--area", ROOT, "--max-attempts").exit_code == 0
    assert _written(demo_db)[0] == []


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--area", SECOND, "--level", "grid", "--hours", "-1"], "(--hours)"),
        (["--area", SECOND, "--level", "grid", "--hours", "721"], "(--hours)"),
        (["--area", SECOND, "--level", "village", "--hours", "2161"], "(--hours)"),
        (["--area", SECOND, "--level", "county", "--hours", "5"], "'--level'"),
        (["--area", "150699", "--level", "grid", "--hours", "5"], "(--area)"),
        (["--area", SECOND + "100", "--level", "grid", "--hours", "5"], "(--area)"),
        (["--area", "15x", "--level", "grid", "--hours", "5"], "(--area)"),
        (["--area", SECOND, "--max-attempts", "0"], "(--max-attempts)"),
        (["--area", SECOND, "--level", "grid"], "--level and --hours"),
        (["--area", SECOND], "(--hours)"),
    ],
)
def test_the_commands_refuse_bad_input_naming_the_option(
    demo_db: str, redis_url: str, two_banners: io.ImportReport, args: list[str], names: str
) -> None:
    before = _written(demo_db)
    refused = cli(deadlines_group, _env(demo_db, redis_url), "set", *args)
    assert refused.exit_code == 2, refused.output
    assert names in refused.output
    assert _written(demo_db) == before


def test_a_town_is_named_as_such(demo_db: str, defaults: DeadlineRules, two_banners: io.ImportReport) -> None:
    with psycopg.connect(demo_db) as conn, pytest.raises(Invalid) as town:
        live.change(conn, None, None, deadlines.Change(SECOND + "100", {"grid": 5}), defaults)
    assert town.value.field == "area" and "level-2 area" in town.value.message


# --- the API ----------------------------------------------------------------------------------------


@pytest.fixture
def client(demo_db: str, redis_url: str, tmp_path: Path, two_banners: io.ImportReport) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(demo_db, redis_url, tmp_path)), raise_server_exceptions=True) as c:
        yield c


def _put(c: TestClient, who: dict[str, str], **body: Any) -> Any:
    return c.put("/api/v1/deadlines", json=body, headers=keyed(who))


def test_the_api_reads_within_scope_and_an_admin_sets_within_theirs(
    client: TestClient, demo_db: str, token: Callable[..., str]
) -> None:
    admin, second_admin = auth(token("admin")), auth(token("admin", area=SECOND, name="admin-2"))
    got = client.get("/api/v1/deadlines", headers=auth(token("viewer"))).json()
    assert [a["area_code"] for a in got["areas"]] == [ROOT, SECOND, FIRST]
    assert got["settings"] == {"hours": {"grid": 0, "village": 72, "town": 120, "banner": 168}, "max_attempts": 3}
    scoped = client.get("/api/v1/deadlines", headers=auth(token("viewer", area=SECOND, name="v2"))).json()
    assert [a["area_code"] for a in scoped["areas"]] == [SECOND]
    # a banner's admin sets its own banner; the answer is its effective rules with their sources
    r = _put(client, second_admin, area=SECOND, level="grid", hours=3)
    assert r.status_code == 200, r.text
    assert r.json()["hours"]["grid"] == 3 and r.json()["source"]["grid"] == "banner"
    # … and a report there right away, in this process, gets them
    made = client.post("/api/v1/cases", json=case_body(*SECOND_POINT), headers=keyed(auth(token("dispatcher"))))
    assert made.status_code == 201, made.text
    reported = datetime.fromisoformat(made.json()["reported_at"])
    assert datetime.fromisoformat(made.json()["deadline"]) == reported + timedelta(hours=3)
    # the league's admin sets the league's; null clears a field
    assert _put(client, admin, area=ROOT, max_attempts=4).json()["max_attempts"] == 4
    cleared = _put(client, admin, area=SECOND, level="grid", hours=None)
    assert cleared.status_code == 200 and cleared.json()["source"]["grid"] == "settings"
    assert cleared.json()["source"]["max_attempts"] == "league"
    with psycopg.connect(demo_db) as conn:
        log = conn.execute(
            "SELECT action, target, actor_kind, actor_name FROM admin_events WHERE action LIKE 'deadline.%' ORDER BY id"
        ).fetchall()
    assert log == [
        ("deadline.set", SECOND, "token", "admin-2"),
        ("deadline.set", ROOT, "token", "test-admin"),
        ("deadline.clear", SECOND, "token", "test-admin"),
    ]


@pytest.mark.parametrize(
    ("who", "body", "status", "field"),
    [
        ("viewer", {"area": SECOND, "level": "grid", "hours": 3}, 403, "Authorization"),
        ("dispatcher", {"area": SECOND, "level": "grid", "hours": 3}, 403, "Authorization"),
        ("admin-second", {"area": FIRST, "level": "grid", "hours": 3}, 403, "area"),
        ("admin-second", {"area": ROOT, "level": "grid", "hours": 3}, 403, "area"),
        ("admin", {"area": SECOND, "level": "grid", "hours": -1}, 422, "hours"),
        ("admin", {"area": SECOND, "level": "grid", "hours": 721}, 422, "hours"),
        ("admin", {"area": SECOND, "level": "town", "hours": 24 * 91}, 422, "hours"),
        ("admin", {"area": SECOND, "level": "county", "hours": 3}, 422, "level"),
        ("admin", {"area": "150699", "level": "grid", "hours": 3}, 422, "area"),
        ("admin", {"area": SECOND + "100", "level": "grid", "hours": 3}, 422, "area"),
        ("admin", {"area": SECOND, "hours": 3}, 422, "level"),
        ("admin", {"area": SECOND, "level": "grid"}, 422, "hours"),
        ("admin", {"area": SECOND}, 422, "hours"),
        ("admin", {"area": SECOND, "max_attempts": 21}, 422, "max_attempts"),
    ],
)
def test_the_api_refuses_bad_input_and_other_areas_writing_nothing(
    client: TestClient, demo_db: str, token: Callable[..., str], who: str, body: dict[str, Any], status: int, field: str
) -> None:
    role, area = ("admin", SECOND) if who == "admin-second" else (who, None)
    before = _written(demo_db)
    r = _put(client, auth(token(role, area=area, name=who)), **body)
    assert r.status_code == status, r.text
    answer = r.json()
    named = answer.get("field") or " ".join(str(e.get("loc")) for e in answer.get("errors", []))
    assert field in named, answer
    assert _written(demo_db) == before


def test_may_change_says_who_sets_what() -> None:
    root_admin = Principal(1, "a", "admin", ROOT, kind="user")  # scoped to the root: everything
    banner_admin = Principal(2, "b", "admin", SECOND, kind="user")
    for code in (ROOT, FIRST, SECOND):
        live.may_change(root_admin, code)
        live.may_change(None, code)  # the command line
    live.may_change(banner_admin, SECOND)
    for code in (ROOT, FIRST):
        with pytest.raises(Forbidden):
            live.may_change(banner_admin, code)
    with pytest.raises(Forbidden):
        live.may_change(Principal(3, "c", "dispatcher", None, kind="user"), SECOND)


def test_a_second_process_picks_a_change_up(
    demo_db: str, redis_url: str, tmp_path: Path, token: Callable[..., str], two_banners: io.ImportReport
) -> None:
    """Two apps on one database, as two processes behind nginx: a change through the first (and one
    through the command line) is in the second's rules within seconds, and its reports follow them."""
    a_settings = settings_for(demo_db, redis_url, tmp_path / "a")
    b_settings = settings_for(demo_db, redis_url, tmp_path / "b")
    admin, dispatcher = auth(token("admin")), auth(token("dispatcher"))
    with TestClient(create_app(a_settings)) as a, TestClient(create_app(b_settings)) as b:
        rules_b: live.LiveRules = b.app.state.cases_runtime.rules  # type: ignore[attr-defined]
        assert rules_b.of(SECOND).hours["grid"] == 0
        assert _put(a, admin, area=SECOND, level="grid", hours=5).status_code == 200
        wait_for(lambda: rules_b.of(SECOND).hours["grid"] == 5, timeout=10, what="the second process's rules")
        made = b.post("/api/v1/cases", json=case_body(*SECOND_POINT), headers=keyed(dispatcher)).json()
        assert datetime.fromisoformat(made["deadline"]) == datetime.fromisoformat(made["reported_at"]) + timedelta(
            hours=5
        )
        rules_a: live.LiveRules = a.app.state.cases_runtime.rules  # type: ignore[attr-defined]
        done = cli(
            deadlines_group, _env(demo_db, redis_url), "set", "--area", ROOT, "--level", "village", "--hours", "30"
        )
        assert done.exit_code == 0, done.output
        for rules in (rules_a, rules_b):
            wait_for(lambda r=rules: r.of(FIRST).hours["village"] == 30, timeout=10, what="the command's change")


def test_the_rules_watcher_stops_at_once_while_the_database_is_gone() -> None:
    """A process stopping during an outage: its watcher's look waits for a connection at most until
    the next look (1 s), not the pool's timeout (here 30 s), so the thread ends and the stop returns."""
    pool: ConnectionPool[Any] = ConnectionPool(
        f"host=127.0.0.1 port={free_port()} dbname=gone user=nobody connect_timeout=1", timeout=30, open=False
    )
    pool.open(wait=False)  # nothing listens on the port: every connection attempt fails
    try:
        defaults = DeadlineRules()
        rules = live.LiveRules(pool, defaults)
        watcher = rules_watcher(rules)
        watcher.start()
        wait_for(lambda: rules.failing, timeout=10, what="the first look to fail")
        started = datetime.now(UTC)
        watcher.stop()
        stopped_in = (datetime.now(UTC) - started).total_seconds()
        assert watcher.status()["running"] is False
        assert stopped_in < 5, f"the watcher took {stopped_in:.1f} s to stop"
        assert rules.of(None) == defaults  # the settings' rules are kept meanwhile
    finally:
        pool.close()

"""``yitu simulate``: a plan that replays for a seed, roads that are driven, options that are
checked, and real runs against a real ``yitu serve`` on a clone of the seeded demo — cases
reported, vans moving, a dispatch cycle completed, and a server that goes away and comes back.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import psycopg
import pytest
import shapely
from click.testing import CliRunner
from pyproj import Geod

from cli.main import main
from geodata.clock import CST
from geodata.demo.cases import TYPE_WEIGHTS
from sim.plan import Territory, load_territory, plan_reports
from sim.roads import route_between

from .conftest import SUITE_ADMIN
from .helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
GEOD = Geod(ellps="WGS84")
START = datetime(2026, 11, 23, 9, 0, tzinfo=CST)  # a Monday morning, simulated
# Fast enough that a van can drive out, mediate and come back within seconds, at a rate that
# keeps the server busy but not flooded (about 20 reports a simulated hour in office hours).
RUN_ARGS = ["--speedup", "1000", "--rate", "8", "--sim-start", "09:00"]


def _territory(dsn: str) -> Territory:
    with psycopg.connect(dsn) as conn:
        return load_territory(conn)


# --- the plan ------------------------------------------------------------------------------------


def test_the_plan_is_the_same_for_a_seed_and_differs_for_another(demo_dsn: str) -> None:
    first = list(islice(plan_reports(7, _territory(demo_dsn), 30, START), 80))
    again = list(islice(plan_reports(7, _territory(demo_dsn), 30, START), 80))  # a territory read anew
    other = list(islice(plan_reports(8, _territory(demo_dsn), 30, START), 80))
    assert first == again
    assert [r.at_s for r in first] != [r.at_s for r in other]
    assert [(r.lon, r.lat, r.type) for r in first] != [(r.lon, r.lat, r.type) for r in other]
    assert [r.at_s for r in first] == sorted(r.at_s for r in first)


def test_the_plan_reports_inside_the_territory_with_the_demo_mix(demo_dsn: str) -> None:
    territory = _territory(demo_dsn)
    reports = list(islice(plan_reports(3, territory, 30, START), 400))
    assert all(shapely.contains_xy(territory.outline, r.lon, r.lat) for r in reports)
    assert {r.type for r in reports} <= set(TYPE_WEIGHTS)
    assert len({r.type for r in reports}) >= 12
    assert all(len(r.parties) == 2 and r.parties[0].phone.startswith("1") for r in reports)
    seats = {p.code for p in territory.places if p.kind == "town"}
    near_seat = sum(r.place.code in seats for r in reports)
    assert near_seat > 0.1 * len(reports)  # the 4 town seats weigh much more than a gacha
    routes = {r.decisions.route for r in reports}
    assert routes == {"van", "mediator", "grid"}
    assert 0 < sum(r.decisions.reject is not None for r in reports) < 0.1 * len(reports)
    assert 0 < sum(r.decisions.overdue for r in reports) < 0.1 * len(reports)


def test_the_plan_follows_the_rate_and_the_daily_rhythm(demo_dsn: str) -> None:
    two_days = 2 * 86400
    reports = [r for r in islice(plan_reports(5, _territory(demo_dsn), 30, START), 5000) if r.at_s < two_days]
    assert 0.88 * 1440 < len(reports) < 1.12 * 1440  # 30 a simulated hour, over two whole days
    hours = [(START + timedelta(seconds=r.at_s)).hour for r in reports]
    night = sum(h < 6 for h in hours)
    office = sum(9 <= h < 12 for h in hours)
    assert office > 6 * night  # three office hours outnumber six night hours many times


# --- the roads -----------------------------------------------------------------------------------


def test_a_route_follows_the_road_network_from_door_to_door(demo_dsn: str) -> None:
    territory = _territory(demo_dsn)
    base = (territory.vans[0].base_lon, territory.vans[0].base_lat)
    far = max(territory.places, key=lambda p: GEOD.inv(base[0], base[1], p.lon, p.lat)[2])
    target = (far.lon + 0.01, far.lat + 0.005)  # off the road: the last leg is off-road
    with psycopg.connect(demo_dsn) as conn:
        route = route_between(conn, base, target)
    straight = GEOD.inv(base[0], base[1], target[0], target[1])[2]
    assert route.points[0] == base and route.points[-1] == target
    assert straight <= route.length_m < 3 * straight
    assert {"trunk", "village"} & set(route.kinds) and route.kinds[-1] == "offroad"
    lon, lat, heading = route.at(route.length_m / 2)
    assert 0 <= heading < 360 and shapely.contains_xy(territory.outline, lon, lat)


# --- the command ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, option",
    [
        (["--rate", "0"], "--rate"),
        (["--rate", "100000"], "--rate"),
        (["--speedup", "0"], "--speedup"),
        (["--speedup", "1001"], "--speedup"),
        (["--vans", "-1"], "--vans"),
        (["--seed", "-3"], "--seed"),
        (["--duration", "0"], "--duration"),
        (["--url", "ftp://example.org"], "--url"),
        (["--url", "localhost:8050"], "--url"),
        (["--sim-start", "25:00"], "--sim-start"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_option(args: list[str], option: str) -> None:
    result = CliRunner().invoke(main, ["simulate", *args])
    assert result.exit_code == 2, result.output
    assert option in result.output


def test_more_vans_than_the_database_has_is_a_usage_error(demo_dsn: str, redis_url: str) -> None:
    env = {"YITU_DATABASE_URL": demo_dsn, "YITU_REDIS_URL": redis_url}
    result = CliRunner().invoke(main, ["simulate", "--vans", "5", "--duration", "1"], env=env)
    assert result.exit_code == 2, result.output
    assert "--vans" in result.output and "4 van(s)" in result.output
    with psycopg.connect(demo_dsn) as conn:  # refused before anything was written
        # (the one token there is the suite's own admin token: conftest's demo_admin)
        assert conn.execute("SELECT count(*) FROM api_tokens WHERE name <> %s", (SUITE_ADMIN,)).fetchone() == (0,)


def test_help_explains_every_option_and_demo_can_go_without_it() -> None:
    out = CliRunner().invoke(main, ["simulate", "--help"]).output
    for option in ("--rate", "--vans", "--speedup", "--seed", "--url", "--duration", "--sim-start"):
        assert option in out
    assert "simulate" in CliRunner().invoke(main, ["--help"]).output
    assert "--no-simulate" in CliRunner().invoke(main, ["demo", "--help"]).output


# --- real runs -----------------------------------------------------------------------------------


class SimProcess:
    """``yitu simulate`` in a subprocess, as a user runs it; its log in a file."""

    def __init__(self, url: str, db: str, redis_url: str, log_path: Path, *args: str) -> None:
        env = {**os.environ, "YITU_DATABASE_URL": db, "YITU_REDIS_URL": redis_url}
        self.log_path = log_path
        with open(log_path, "wb") as log:  # the simulator keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "simulate", "--url", url, *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=60)
        return self.proc.returncode, out.decode()


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[list[SimProcess]]:
    started: list[SimProcess] = []
    yield started
    for sim in started:
        if sim.proc.poll() is None:
            sim.proc.kill()
            sim.proc.wait()


def _one(dsn: str, sql: str, *params: object) -> object:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def _ended_visit(dsn: str) -> object:
    return _one(
        dsn,
        """SELECT d.case_code FROM dispatches d
                        WHERE d.status = 'ended' AND d.arrived_at IS NOT NULL AND d.result IS NOT NULL
                        ORDER BY d.id LIMIT 1""",
    )


def test_a_short_run_reports_cases_drives_vans_and_completes_a_dispatch(
    live_server, demo_db: str, redis_url: str, tmp_path: Path, simulator: list[SimProcess]
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    began = datetime.now(UTC)
    sim = SimProcess(srv.url, demo_db, redis_url, tmp_path / "sim.log", *RUN_ARGS, "--seed", "11")
    simulator.append(sim)
    code = wait_for(
        lambda: _ended_visit(demo_db),
        timeout=150,
        what=f"a van visit that arrived and ended (simulator log {sim.log_path})",
    )
    rc, out = sim.stop(signal.SIGINT)
    assert rc == 0, sim.log()
    assert "simulated" in out and "cases reported" in out  # the summary, on Ctrl-C

    with psycopg.connect(demo_db) as conn:
        reported = conn.execute("SELECT count(*) FROM cases WHERE reporter = 'sim-dispatcher'").fetchone()[0]
        audited = conn.execute("""SELECT count(*) FROM case_events e JOIN cases c ON c.id = e.case_id
                                  WHERE c.reporter = 'sim-dispatcher' AND e.action = 'report'""").fetchone()[0]
        moved = conn.execute(
            """SELECT van_id, count(*) FROM van_positions WHERE recorded_at >= %s
                                GROUP BY van_id ORDER BY van_id""",
            (began,),
        ).fetchall()
        seen = conn.execute("SELECT min(last_seen_at) FROM vans").fetchone()[0]
        trail = conn.execute(
            """SELECT e.actor, e.role, e.action FROM case_events e JOIN cases c ON c.id = e.case_id
                                WHERE c.code = %s ORDER BY e.occurred_at, e.id""",
            (code,),
        ).fetchall()
        active = conn.execute("SELECT count(*) FROM dispatches WHERE status IN ('en_route', 'on_site')").fetchone()[0]
        live_tokens = conn.execute(
            "SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL AND name <> %s", (SUITE_ADMIN,)
        ).fetchone()[0]
    assert reported >= 3 and audited == reported
    assert [v for v, _ in moved] == ["V01", "V02", "V03", "V04"] and all(n >= 2 for _, n in moved)
    assert seen >= began
    actions = [a for _, _, a in trail]
    assert actions[:3] == ["report", "accept", "dispatch"]
    van = _one(demo_db, "SELECT van_id FROM dispatches WHERE case_code = %s ORDER BY id LIMIT 1", code)
    assert (van, "van", "start") in trail  # the server saw the van arrive and started the case
    assert any(actor == van and role == "van" and action in ("attempt", "close") for actor, role, action in trail)
    assert active == 0  # Ctrl-C ended the visits of the vans it drove
    assert live_tokens == 0  # and revoked its tokens
    assert "dispatched to" in sim.log() and "on site" in sim.log()


def test_the_simulator_survives_the_server_going_away(
    live_server, demo_db: str, redis_url: str, tmp_path: Path, simulator: list[SimProcess]
) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    sim = SimProcess(srv.url, demo_db, redis_url, tmp_path / "sim.log", *RUN_ARGS, "--seed", "12")
    simulator.append(sim)

    def reported() -> int:
        return int(_one(demo_db, "SELECT count(*) FROM cases WHERE reporter = 'sim-dispatcher'") or 0)

    wait_for(lambda: reported() >= 2, timeout=60, what="the first reports")
    srv.stop()
    wait_for(lambda: "server unreachable" in sim.log(), timeout=30, what="the simulator noticing the outage")
    before = reported()
    assert sim.proc.poll() is None, sim.log()

    live_server(demo_db, redis_url, port=srv.port)  # the server comes back on the same address
    wait_for(lambda: "server back" in sim.log(), timeout=60, what="the simulator noticing the server is back")
    wait_for(lambda: reported() > before, timeout=60, what="reports after the outage")
    rc, out = sim.stop(signal.SIGTERM)
    assert rc == 0, sim.log()
    outages = re.search(r"(\d+) outages", out)
    assert outages and int(outages.group(1)) >= 1, out
    assert "Traceback" not in sim.log()

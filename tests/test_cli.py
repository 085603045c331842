"""The yitu command: help, db url/status/migrate, external servers, and the embedded stack."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from cli.main import main
from cli.stack import EmbeddedStack, StackError
from services.settings import Settings

from .helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_help_explains_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for cmd in ("db", "serve", "demo", "seed"):
        assert cmd in out
    db_help = CliRunner().invoke(main, ["db", "--help"]).output
    for cmd in ("up", "down", "status", "url", "migrate"):
        assert f"  {cmd} " in db_help


# What ``yitu serve`` loads before it listens: the app as it serves, built (no connection is made).
_SERVE_LOADS = """
import sys, argon2
def _refuse(*_a, **_k):
    raise AssertionError("a password was hashed while the server loaded")
argon2.PasswordHasher.hash = _refuse
from cli.main import main
from cli import asgi
from dashboard.app import create_app
from services.settings import Settings
create_app(Settings(_env_file=None))
print(" ".join(sorted(m for m in ("pandas", "geopandas", "pyogrio") if m in sys.modules)) or "-")
"""


def test_the_server_starts_without_the_gis_readers_or_a_password_hash(tmp_path: Path) -> None:
    """Every ``yitu`` process (each worker of ``yitu serve``, a restarted one) paid 0.5 s of CPU for
    geopandas and pandas, which only the importers use, and a quarter to half a second for an Argon2
    hash made at import (2026-12-07; geodata/import_report.py, services/identity.py DUMMY_HASH)."""
    env = {**os.environ, "YITU_HOME": str(tmp_path)}
    argv = [sys.executable, "-c", _SERVE_LOADS]
    r = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["-"], f"yitu serve loads {r.stdout.strip()}"


def test_external_servers_are_used_and_nothing_is_started(db_url: str, redis_url: str, tmp_path: Path) -> None:
    env = {"YITU_DATABASE_URL": db_url, "YITU_REDIS_URL": redis_url, "YITU_HOME": str(tmp_path / "h")}
    runner = CliRunner()
    up = runner.invoke(main, ["db", "up"], env=env)
    assert up.exit_code == 0, up.output
    assert "postgresql: external" in up.output and "redis: external" in up.output
    assert not (tmp_path / "h").exists()  # no cluster, no secrets created
    assert runner.invoke(main, ["db", "url"], env=env).output.strip() == db_url
    status = runner.invoke(main, ["db", "status"], env=env).output
    assert "external (YITU_DATABASE_URL)" in status and "external (YITU_REDIS_URL)" in status


def test_db_migrate_on_an_external_database(fresh_db: str, redis_url: str) -> None:
    env = {"YITU_DATABASE_URL": fresh_db, "YITU_REDIS_URL": redis_url}
    first = CliRunner().invoke(main, ["db", "migrate"], env=env)
    assert first.exit_code == 0, first.output
    assert "applied 001_extensions.sql" in first.output
    second = CliRunner().invoke(main, ["db", "migrate"], env=env)
    assert second.output.strip() == "schema up to date"


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "YITU_DATABASE_URL": f"postgresql://u:p@127.0.0.1:{free_port()}/x",
        "YITU_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "db", "migrate"],
        capture_output=True,
        text=True,
        env={**_base_env(), **env},
        cwd=tmp_path,
        check=False,  # the failure is what is tested
    )
    assert result.returncode != 0
    assert "connection" in result.stderr.lower() or "connect" in result.stderr.lower()


def _base_env() -> dict[str, str]:

    return {k: v for k, v in os.environ.items() if not k.startswith("YITU_")}


def test_embedded_stack_up_is_idempotent_and_status_tells(scratch_stack: EmbeddedStack) -> None:
    again = scratch_stack.up()
    assert again.started == [] and sorted(again.already_running) == ["postgresql", "redis"]
    status = scratch_stack.status()
    assert status["postgresql"].startswith("running") and status["redis"].startswith("running")
    with psycopg.connect(scratch_stack.database_url()) as conn:
        assert conn.execute("SELECT current_database(), current_user").fetchone() == ("yitu", "yitu")
    secrets = scratch_stack.secrets_dir
    assert oct(secrets.stat().st_mode & 0o777) == "0o700"
    assert oct((secrets / "pg_password").stat().st_mode & 0o777) == "0o600"

    assert sorted(scratch_stack.down()) == ["postgresql", "redis"]
    assert scratch_stack.status()["postgresql"].startswith("stopped")
    assert scratch_stack.down() == []
    assert sorted(scratch_stack.up().started) == ["postgresql", "redis"]  # restarts on the same data


@pytest.mark.parametrize("running", [True, False])
def test_a_checkout_cloned_again_at_the_same_path_gets_a_working_cluster(
    scratch_stack: EmbeddedStack, running: bool
) -> None:
    """As root the data outlives the checkout (/var/lib/yitu/<hash of the path>); its password does not."""
    import shutil

    with psycopg.connect(scratch_stack.database_url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
    if not running:
        scratch_stack.down()
    shutil.rmtree(scratch_stack.secrets_dir)  # what deleting the checkout leaves behind
    fresh = EmbeddedStack(scratch_stack.settings)
    assert "postgresql" in fresh.up().started
    with psycopg.connect(fresh.database_url()) as conn:  # the new password works: a new cluster
        assert conn.execute("SELECT to_regclass('kept')").fetchone() == (None,)
    aside = list(fresh.run_dir.glob("pg.orphan-*"))
    assert len(aside) == 1 and (aside[0] / "PG_VERSION").exists()  # the old data is kept, set aside


def test_embedded_servers_listen_on_loopback_only_and_need_passwords(scratch_stack: EmbeddedStack) -> None:
    import redis

    port = scratch_stack.settings.redis_port
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port).ping()
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"postgresql://yitu:wrong@127.0.0.1:{scratch_stack.settings.pg_port}/yitu")


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = EmbeddedStack(Settings(home=tmp_path / "h", redis_port=port, pg_port=free_port(), _env_file=None))
        with pytest.raises(StackError, match=f"port {port} is already taken.*YITU_REDIS_PORT"):
            stack.start_redis()


def test_demo_serves_and_ctrl_c_stops_what_it_started(tmp_path: Path) -> None:
    import signal

    import httpx

    from .helpers import wait_for

    ports = {"YITU_PG_PORT": free_port(), "YITU_REDIS_PORT": free_port(), "YITU_PORT": free_port()}
    env = {**_base_env(), "YITU_HOME": str(tmp_path / "demo-home"), **{k: str(v) for k, v in ports.items()}}
    with open(tmp_path / "demo.log", "wb") as log:  # the demo keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "demo"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{ports['YITU_PORT']}"
    try:

        def healthy() -> bool:
            assert proc.poll() is None, (tmp_path / "demo.log").read_text()
            try:
                return httpx.get(base + "/healthz", timeout=5).json()["status"] == "ok"
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=120, what="yitu demo to serve /healthz")
        assert httpx.get(base + "/", timeout=10).status_code == 302  # nothing without signing in
        # The demo printed a sign-in for its local admin and a pairing link for a wall screen.
        printed = (tmp_path / "demo.log").read_text()
        password = re.search(r"sign in: \S+/login  user admin  password (\S+)", printed)
        pairing = re.search(r"wall screen: open (http://\S+/pair/\S+) in", printed)
        assert password and pairing, printed
        with httpx.Client(base_url=base, timeout=10) as person:
            r = person.post("/login", data={"username": "admin", "password": password.group(1)}, follow_redirects=True)
            assert r.status_code == 200 and "<title>一图指挥" in r.text, r.text  # 303 to / followed
        with httpx.Client(timeout=10) as wall:
            r = wall.get(pairing.group(1), follow_redirects=True)
            assert r.status_code == 200 and "<title>一图指挥" in r.text
            assert wall.get(pairing.group(1)).status_code == 404  # once only
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        stack = EmbeddedStack(
            Settings(
                home=tmp_path / "demo-home",
                pg_port=ports["YITU_PG_PORT"],
                redis_port=ports["YITU_REDIS_PORT"],
                _env_file=None,
            )
        )
        running = stack.status()
        stack.purge()
    out = (tmp_path / "demo.log").read_text()
    assert "applied 001_extensions.sql" in out and "stopped: redis, postgresql" in out
    assert "seeded: areas 491" in out  # an empty database gets the demo territory
    assert running["postgresql"].startswith("stopped") and running["redis"].startswith("stopped")
    for port in (ports["YITU_PG_PORT"], ports["YITU_REDIS_PORT"]):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open after Ctrl-C"

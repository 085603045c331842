"""Fixtures on the real PostGIS and Redis.

The session brings up the configured stack (the embedded one under .yitu/ unless
YITU_DATABASE_URL / YITU_REDIS_URL point elsewhere) and stops at the end what it started.
Every test that asks for ``db_url`` gets its own database, cloned from a template migrated once
per session; ``redis_url`` is a Redis database index reserved for tests, flushed per test.
A service that cannot be reached makes the tests fail: nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from psycopg import sql

from cli.stack import EmbeddedStack
from geodata.migrate import migrate
from services.settings import Settings

from .helpers import free_port, wait_for, with_dbname, with_redis_db

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
# Per test session: two runs on one cluster (two checkouts, or a developer beside CI) never collide.
TEMPLATE = f"yitu_test_template_{os.getpid()}"
# Redis database flushed per test; two suites running at once on one Redis each need their own.
TEST_REDIS_DB = int(os.environ.get("YITU_TEST_REDIS_DB", "15"))


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def stack(base_settings: Settings) -> Iterator[EmbeddedStack]:
    s = EmbeddedStack(base_settings)
    report = s.up()
    yield s
    if report.started:
        s.down(only=report.started)


@pytest.fixture(scope="session")
def server_dsn(stack: EmbeddedStack) -> str:
    return stack.database_url()


@pytest.fixture(scope="session")
def template_dsn(server_dsn: str) -> Iterator[str]:
    admin = with_dbname(server_dsn, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    dsn = with_dbname(server_dsn, TEMPLATE)
    migrate(dsn)
    yield dsn
    _drop(server_dsn, TEMPLATE)


DEMO_TEMPLATE = f"yitu_test_demo_template_{os.getpid()}"
DEMO_AS_OF = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
DEMO_SEED = 7


@pytest.fixture(scope="session")
def demo_dsn(server_dsn: str, template_dsn: str) -> Iterator[str]:
    """The banner-scale demo (seed 7, as of 2026-11-22 08:00 UTC), seeded once per session.

    Read-only for tests: a test that writes asks for ``demo_db`` (its own clone) instead.
    """
    from geodata.demo.seed import seed_demo

    admin = with_dbname(server_dsn, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DEMO_TEMPLATE)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(DEMO_TEMPLATE), sql.Identifier(TEMPLATE))
        )
    dsn = with_dbname(server_dsn, DEMO_TEMPLATE)
    seed_demo(dsn, "banner", seed=DEMO_SEED, as_of=DEMO_AS_OF)
    yield dsn
    _drop(server_dsn, DEMO_TEMPLATE)


def _drop(server_dsn: str, name: str) -> None:
    with psycopg.connect(with_dbname(server_dsn, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def demo_db(server_dsn: str, demo_dsn: str) -> Iterator[str]:
    """A clone of the seeded demo of this test's own."""
    yield from _own_database(server_dsn, DEMO_TEMPLATE)


def _own_database(server_dsn: str, template: str | None) -> Iterator[str]:
    """A database for one test (a copy of ``template``, or empty), dropped afterwards."""
    name = f"yitu_test_{uuid.uuid4().hex[:12]}"
    admin = with_dbname(server_dsn, "postgres")
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(create)
    yield with_dbname(server_dsn, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_db(server_dsn: str) -> Iterator[str]:
    """An empty database (no migrations), dropped after the test."""
    yield from _own_database(server_dsn, None)


@pytest.fixture
def db_url(server_dsn: str, template_dsn: str) -> Iterator[str]:
    """A migrated database of this test's own, cloned from the session template."""
    yield from _own_database(server_dsn, TEMPLATE)


@pytest.fixture
def redis_url(stack: EmbeddedStack) -> str:
    url = with_redis_db(stack.redis_url(), TEST_REDIS_DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def app_settings(db_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, redis_url=redis_url, home=tmp_path / "home", _env_file=None)


@pytest.fixture
def scratch_stack(tmp_path: Path) -> Iterator[EmbeddedStack]:
    """A throwaway embedded stack on free ports, for tests that stop and restart servers."""
    settings = Settings(home=tmp_path / "scratch", pg_port=free_port(), redis_port=free_port(), _env_file=None)
    s = EmbeddedStack(settings)
    s.up()
    yield s
    s.purge()


class LiveServer:
    """``yitu serve`` in a subprocess: the real process, as a user runs it."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {**os.environ, **env, "YITU_PORT": str(self.port), "YITU_HOST": "127.0.0.1"}
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve"],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._listening, timeout=60, what=f"yitu serve on port {self.port} (log {log_path})")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"yitu serve exited with {self.proc.returncode}: {self.log()}")
        try:
            return httpx.get(self.url + "/openapi.json", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str, **kw: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kw)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def start(database_url: str, redis_url: str, port: int | None = None, **extra: str) -> LiveServer:
        """A new ``yitu serve``; ``port`` to take over from a stopped one (a restarted process)."""
        env = {"YITU_DATABASE_URL": database_url, "YITU_REDIS_URL": redis_url, **extra}
        srv = LiveServer(env, tmp_path / f"serve-{len(started)}.log", port)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Nothing is skipped: a skipped test fails the run (it would hide a missing service)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        terminalreporter.write_line(f"FAILED: {len(skipped)} test(s) skipped; yitu's suite allows no skips", red=True)

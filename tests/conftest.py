"""Fixtures on the real PostGIS and Redis.

The session brings up the configured stack (the embedded one under .yitu/ unless
YITU_DATABASE_URL / YITU_REDIS_URL point elsewhere) and stops at the end what it started.
Every test that asks for ``db_url`` gets its own database, cloned from a template migrated once
per session (the clones are made ahead and dropped behind, off the tests' path: see ``Clones``);
``redis_url`` is a Redis database index reserved for tests, flushed per test.
A service that cannot be reached makes the tests fail: nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from cli.stack import EmbeddedStack, StackError
from geodata.migrate import migrate
from services.settings import EMBEDDED_DB_NAME, Settings

from .helpers import app_database, as_runtime, free_port, wait_for, with_dbname, with_redis_db

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
# Per test session: two runs on one cluster (two checkouts, or a developer beside CI) never collide.
TEMPLATE = f"yitu_test_template_{os.getpid()}"
# pytest-xdist's worker ("gw0", "gw1", …; "" when the suite runs in one process): each worker is a
# test session of its own (its own template, demo, clones: named by its pid), on the one stack.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_INDEX = int(WORKER[2:]) if WORKER.startswith("gw") and WORKER[2:].isdigit() else 0
# Redis database flushed per test; two suites (or two workers) running at once on one Redis each need
# their own: 15, 14, … (0 is the servers' own default).
TEST_REDIS_DB = int(os.environ.get("YITU_TEST_REDIS_DB", "15")) - WORKER_INDEX
assert TEST_REDIS_DB > 0, f"no Redis database left for worker {WORKER}"


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings()


_STARTED = pytest.StashKey[tuple[EmbeddedStack, list[str]]]()  # the controller's stack, what it started


def _parallel(config: pytest.Config) -> bool:
    """The controlling process of an xdist run (``-n N``): it runs no test, its workers do."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def pytest_configure(config: pytest.Config) -> None:
    """With ``-n N``, the controller brings the stack up once, before any worker starts (two workers
    starting one embedded cluster would race), and stops at the end what it started."""
    if _parallel(config):
        s = EmbeddedStack(Settings())
        config.stash[_STARTED] = (s, s.up().started)


def pytest_unconfigure(config: pytest.Config) -> None:
    s, started = config.stash.get(_STARTED, (None, ()))
    if s is not None and started:
        s.down(only=started)


@pytest.fixture(scope="session")
def stack(base_settings: Settings) -> Iterator[EmbeddedStack]:
    """The stack, brought up if it is not. The workers of an xdist run use the one their controller
    brought up (``up`` on a running stack still sets its roles: two at once collide)."""
    s = EmbeddedStack(base_settings)
    if WORKER:
        yield s
        return
    report = s.up()
    yield s
    if report.started:
        s.down(only=report.started)


@pytest.fixture(scope="session")
def server_dsn(stack: EmbeddedStack) -> str:
    return stack.database_url()


class Clones:
    """Databases cloned from a template ahead of the tests that need them, and dropped behind them.

    A clone of the seeded demo takes a few tenths of a second to make, and its drop forces a
    checkpoint; some 200 tests each need one. Two background threads, each on its own admin
    connection, keep the next clone of each template ready (made while the current test runs)
    and drop the used ones, so a test waits only when it ran faster than a clone is made.
    Nothing but this pool may connect to a template: ``CREATE DATABASE ... TEMPLATE`` refuses a
    template in use.
    """

    def __init__(self, server_dsn: str) -> None:
        self._server_dsn = server_dsn
        self._lock = threading.Condition()
        self._ready: dict[str | None, list[str]] = {}
        self._wanted: list[str | None] = []  # a clone of each of these is to be made, in order
        self._making: set[str | None] = set()
        self._failed: dict[str | None, BaseException] = {}
        self._retired: set[str | None] = set()
        self._drops: list[str] = []
        self._closing = False
        self._broken: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._work, args=(step,), name=f"clones-{step.__name__}", daemon=True)
            for step in (self._make_next, self._drop_next)
        ]
        for thread in self._threads:
            thread.start()

    # --- what the fixtures call ------------------------------------------------------------------
    def take(self, template: str | None) -> str:
        """A new database cloned from ``template`` (empty for None): the test's own."""
        with self._lock:
            assert template not in self._retired, f"no more clones of {template}"
            while not self._ready.get(template):
                if self._broken is not None:
                    raise RuntimeError("the clone pool's connection failed") from self._broken
                if template in self._failed:
                    raise self._failed.pop(template)
                if template not in self._making and template not in self._wanted:
                    self._wanted.append(template)
                    self._lock.notify_all()
                self._lock.wait(timeout=1.0)
            name = self._ready[template].pop(0)
            self._wanted.append(template)  # the next test's, made while this one runs
            self._lock.notify_all()
        return with_dbname(self._server_dsn, name)

    def give_back(self, dsn: str) -> None:
        """Drop a test's database, in the background."""
        with self._lock:
            self._drops.append(conninfo_to_dict(dsn)["dbname"])
            self._lock.notify_all()

    def retire(self, template: str | None) -> None:
        """No more clones of ``template``: none is being made on return, the ready ones are dropped."""
        with self._lock:
            self._retired.add(template)
            self._wanted = [t for t in self._wanted if t != template]
            while template in self._making and self._broken is None:
                self._lock.wait(timeout=1.0)
            self._drops.extend(self._ready.pop(template, []))
            self._lock.notify_all()

    def close(self) -> None:
        """Drop what is left, then stop the threads."""
        with self._lock:
            for template in list(self._ready):
                self._drops.extend(self._ready.pop(template))
            self._wanted.clear()
            self._closing = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join()
        if self._broken is not None:
            raise RuntimeError("the clone pool's connection failed") from self._broken

    # --- the threads ----------------------------------------------------------------------------
    def _work(self, step: Callable[[psycopg.Connection[Any]], bool]) -> None:
        try:
            with psycopg.connect(with_dbname(self._server_dsn, "postgres"), autocommit=True) as conn:
                while step(conn):
                    pass
        except BaseException as exc:  # handed to the test that waits (take) or to close()
            with self._lock:
                self._broken = exc
                self._lock.notify_all()

    def _make_next(self, conn: psycopg.Connection[Any]) -> bool:
        with self._lock:
            while not self._wanted and not self._closing:
                self._lock.wait()
            if self._closing:
                return False
            template = self._wanted.pop(0)
            self._making.add(template)
        name = f"yitu_test_{uuid.uuid4().hex[:12]}"
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        if conn.info.server_version >= 150000:
            # PostgreSQL 15's default (WAL_LOG) writes every page of the copy to the WAL: for a
            # template of a few dozen MB, copying the files is about three times cheaper.
            create += sql.SQL(" STRATEGY FILE_COPY")
        try:
            conn.execute(create)
        except psycopg.DatabaseError as exc:  # e.g. a template someone connected to: the test that waits fails
            with self._lock:
                self._making.discard(template)
                self._failed[template] = exc
                self._lock.notify_all()
            return True
        with self._lock:
            self._making.discard(template)
            if template in self._retired or self._closing:
                self._drops.append(name)
            else:
                self._ready.setdefault(template, []).append(name)
            self._lock.notify_all()
        return True

    def _drop_next(self, conn: psycopg.Connection[Any]) -> bool:
        with self._lock:
            while not self._drops and not (self._closing and not self._making):
                self._lock.wait(timeout=0.5)
            if not self._drops:
                return False
            name = self._drops.pop(0)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        return True


@pytest.fixture(scope="session")
def clones(server_dsn: str) -> Iterator[Clones]:
    pool = Clones(server_dsn)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def template_dsn(server_dsn: str, clones: Clones) -> Iterator[str]:
    admin = with_dbname(server_dsn, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    dsn = with_dbname(server_dsn, TEMPLATE)
    migrate(dsn)
    yield dsn
    clones.retire(TEMPLATE)
    _drop(server_dsn, TEMPLATE)


# The seeded demo, twice: DEMO is read by the tests that only read (``demo_dsn``), DEMO_TEMPLATE
# is the source of every test's own copy (``demo_db``) and nothing else connects to it.
DEMO = f"yitu_test_demo_{os.getpid()}"
DEMO_TEMPLATE = f"yitu_test_demo_template_{os.getpid()}"
DEMO_AS_OF = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
DEMO_SEED = 7
DEMO_FIXTURES = {"demo_dsn", "demo_db", "demo_admin"}
SUITE_ADMIN = "test-suite admin"  # the name of the admin token in the seeded demo (``demo_admin``)


def _module_needs_demo(items: list[pytest.Item]) -> set[str]:
    return {item.nodeid.split("::")[0] for item in items if DEMO_FIXTURES & set(getattr(item, "fixturenames", ()))}


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The modules that use the seeded demo run after the others, which run while it is seeded (with
    two workers too: `make test` keeps this order, ``--no-loadscope-reorder``)."""
    later = _module_needs_demo(items)
    items.sort(key=lambda item: item.nodeid.split("::")[0] in later)  # stable: the order within each part stays


class DemoSeeding:
    """``seed_demo`` into DEMO in a process of its own, started with the session.

    Seeding the banner takes seconds of CPU; the tests that do not need it run meanwhile
    (``pytest_collection_modifyitems`` puts them first).
    """

    def __init__(self, server_dsn: str, log_path: Path) -> None:
        admin = with_dbname(server_dsn, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in (DEMO, DEMO_TEMPLATE):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(DEMO), sql.Identifier(TEMPLATE))
            )
        self.dsn = with_dbname(server_dsn, DEMO)
        self._server_dsn = server_dsn
        self._log_path = log_path
        self._log = log_path.open("wb")
        code = (
            "import sys; from datetime import datetime; from geodata.demo.seed import seed_demo; "
            "seed_demo(sys.argv[1], 'banner', seed=int(sys.argv[2]), as_of=datetime.fromisoformat(sys.argv[3]))"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, self.dsn, str(DEMO_SEED), DEMO_AS_OF.isoformat()],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._done = False
        self.admin_token = ""

    def wait(self) -> str:
        """The seeded DEMO, and DEMO_TEMPLATE cloned from it."""
        if not self._done:
            rc = self._proc.wait()
            self._log.close()
            assert rc == 0, f"seeding the demo failed ({rc}): {self._log_path.read_text(errors='replace')}"
            # The one identity the read-only demo holds (every clone too): an admin token for the tests
            # that only read (``demo_admin``), since nothing is served without one.
            self.admin_token = make_token(self.dsn, "admin", name=SUITE_ADMIN)
            with psycopg.connect(with_dbname(self._server_dsn, "postgres"), autocommit=True) as conn:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(DEMO_TEMPLATE), sql.Identifier(DEMO)
                    )
                )
            self._done = True
        return self.dsn

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
        _drop(self._server_dsn, DEMO_TEMPLATE)
        _drop(self._server_dsn, DEMO)


@pytest.fixture(scope="session", autouse=True)
def _demo_seeding(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoSeeding | None]:
    if not _module_needs_demo(request.session.items):
        yield None
        return
    server_dsn = request.getfixturevalue("server_dsn")
    request.getfixturevalue("template_dsn")
    seeding = DemoSeeding(server_dsn, tmp_path_factory.mktemp("demo") / "seed.log")
    yield seeding
    seeding.stop()


@pytest.fixture(scope="session")
def demo_dsn(clones: Clones, _demo_seeding: DemoSeeding | None) -> Iterator[str]:
    """The banner-scale demo (seed 7, as of 2026-11-22 08:00 UTC), seeded once per session.

    Read-only for tests: a test that writes asks for ``demo_db`` (its own clone) instead.
    """
    assert _demo_seeding is not None
    yield _demo_seeding.wait()
    clones.retire(DEMO_TEMPLATE)  # the databases go with _demo_seeding


@pytest.fixture(scope="session")
def demo_admin(demo_dsn: str, _demo_seeding: DemoSeeding | None) -> dict[str, str]:
    """The headers of an admin token present in the seeded demo and every clone of it."""
    assert _demo_seeding is not None
    return {"Authorization": f"Bearer {_demo_seeding.admin_token}"}


def _drop(server_dsn: str, name: str) -> None:
    with psycopg.connect(with_dbname(server_dsn, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _own_database(clones: Clones, template: str | None) -> Iterator[str]:
    """A database for one test (a copy of ``template``, or empty), dropped afterwards."""
    dsn = clones.take(template)
    yield dsn
    clones.give_back(dsn)


@pytest.fixture
def demo_db(clones: Clones, demo_dsn: str) -> Iterator[str]:
    """A clone of the seeded demo of this test's own."""
    yield from _own_database(clones, DEMO_TEMPLATE)


@pytest.fixture
def fresh_db(clones: Clones) -> Iterator[str]:
    """An empty database (no migrations), dropped after the test."""
    yield from _own_database(clones, None)


@pytest.fixture
def db_url(clones: Clones, template_dsn: str) -> Iterator[str]:
    """A migrated database of this test's own, cloned from the session template."""
    yield from _own_database(clones, TEMPLATE)


@pytest.fixture
def redis_url(stack: EmbeddedStack) -> str:
    url = with_redis_db(stack.redis_url(), TEST_REDIS_DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def app_settings(db_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(**app_database(db_url), redis_url=redis_url, home=tmp_path / "home", _env_file=None)


class ScratchStacks:
    """Throwaway embedded stacks on free ports, one kept from test to test.

    Making one costs an ``initdb`` and removing it a shutdown and a delete; the tests that stop
    and restart servers instead get the one from before, reset: both servers running, database
    ``yitu`` empty again, Redis flushed. A test that replaced the cluster or its passwords
    (a checkout cloned again) leaves one that is purged, and the next test gets a new one.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._made = 0
        self._stack: EmbeddedStack | None = None
        self._passwords: tuple[str, str] | None = None

    def get(self) -> EmbeddedStack:
        if self._stack is not None and not self._reusable(self._stack):
            with contextlib.suppress(StackError, OSError):
                self._repair(self._stack)
        if self._stack is not None and not self._reusable(self._stack):
            self._stack.purge()
            self._stack = None
        if self._stack is None:
            self._made += 1
            settings = Settings(
                home=self._root / f"scratch-{self._made}", pg_port=free_port(), redis_port=free_port(), _env_file=None
            )
            self._stack = EmbeddedStack(settings)
            self._stack.up()
            self._passwords = self._read_passwords(self._stack)
        else:
            self._reset(self._stack)
        return self._stack

    def close(self) -> None:
        if self._stack is not None:
            self._stack.purge()
            self._stack = None

    @staticmethod
    def _read_passwords(stack: EmbeddedStack) -> tuple[str, str] | None:
        try:
            return tuple((stack.secrets_dir / name).read_text() for name in ("pg_password", "redis_password"))  # type: ignore[return-value]
        except FileNotFoundError:
            return None

    def _repair(self, stack: EmbeddedStack) -> None:
        """After a test made a new cluster with new passwords (a checkout cloned again): keep that one.

        The old data it set aside goes, and Redis, still running with the old password, restarts
        with the new one.
        """
        if not (stack.pg_data / "PG_VERSION").exists() or self._read_passwords(stack) is None:
            return
        for aside in stack.run_dir.glob("pg.orphan-*"):
            shutil.rmtree(aside)
        stack.stop_redis()
        stack.up()
        self._passwords = self._read_passwords(stack)

    def _reusable(self, stack: EmbeddedStack) -> bool:
        return (
            self._passwords is not None
            and self._read_passwords(stack) == self._passwords
            and (stack.pg_data / "PG_VERSION").exists()
            and not any(stack.run_dir.glob("pg.orphan-*"))
        )

    @staticmethod
    def _reset(stack: EmbeddedStack) -> None:
        stack.up()
        admin = with_dbname(stack.database_url(), "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(EMBEDDED_DB_NAME)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(EMBEDDED_DB_NAME)))
        client = redis.Redis.from_url(stack.redis_url())
        try:
            client.flushall()
        finally:
            client.close()


@pytest.fixture(scope="session")
def _scratch_stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchStacks]:
    stacks = ScratchStacks(tmp_path_factory.mktemp("scratch"))
    yield stacks
    stacks.close()


@pytest.fixture
def scratch_stack(_scratch_stacks: ScratchStacks) -> EmbeddedStack:
    """A throwaway embedded stack on free ports, for tests that stop and restart servers.

    Both servers run and hold nothing when the test starts; the test may stop, start or replace them.
    """
    return _scratch_stacks.get()


# --- identities: people, wall screens, tokens ------------------------------------------------------

PASSWORD = "correct horse battery staple"  # every test user's password (at least 10 characters)


def create_user(dsn: str, role: str = "admin", area: str | None = None, name: str | None = None) -> str:
    """A user in the database ``dsn`` with the password PASSWORD; returns the name."""
    from services.identity import create_user as create

    name = name or f"{role}-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(dsn) as conn:
        create(conn, name=name, role=role, area=area, password=PASSWORD)
    return name


def make_token(dsn: str, role: str, area: str | None = None, name: str | None = None) -> str:
    """A new bearer token in the database ``dsn``."""
    from services.identity import create_token

    with psycopg.connect(dsn) as conn:
        return create_token(conn, name=name or f"test-{role}", role=role, area=area)[1]


def sign_in(http: httpx.Client, dsn: str, role: str = "admin", area: str | None = None, name: str | None = None) -> str:
    """Sign ``http`` (a TestClient or an httpx.Client with a base URL) in as a new user of ``role``:
    it keeps the session cookie. Returns the cookie's value."""
    name = create_user(dsn, role, area, name)
    r = http.post("/login", data={"username": name, "password": PASSWORD, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    cookie = r.cookies.get("yitu_session")
    assert cookie
    http.cookies.set("yitu_session", cookie)
    return cookie


def pair_screen(http: httpx.Client, dsn: str, name: str | None = None, area: str | None = None) -> str:
    """Pair ``http`` as a new wall screen (yitu screen create + opening the link); returns the cookie."""
    from services.identity import create_screen

    with psycopg.connect(dsn) as conn:
        _, code = create_screen(conn, name or f"screen-{uuid.uuid4().hex[:6]}", area)
    r = http.get(f"/pair/{code}", follow_redirects=False)
    assert r.status_code == 303, r.text
    cookie = r.cookies.get("yitu_session")
    assert cookie
    http.cookies.set("yitu_session", cookie)
    return cookie


@pytest.fixture
def user() -> Callable[..., str]:
    """``user(dsn, role="admin", area=None, name=None)`` → the name of a new user (password PASSWORD)."""
    return create_user


class LiveServer:
    """``yitu serve`` in a subprocess: the real process, as a user runs it.

    ``sign_in()`` makes a user in its database and keeps the session cookie: ``get`` then sends it,
    and ``browser_cookie()`` gives it to a Chromium page.
    """

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None, ready: bool = True) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.dsn = env.get("YITU_DATABASE_URL", "")
        self.cookies: dict[str, str] = {}
        full_env = {**os.environ, **env, "YITU_PORT": str(self.port), "YITU_HOST": "127.0.0.1"}
        with open(log_path, "wb") as log:  # the server keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "serve"],
                cwd=ROOT,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if ready:
            self.ready()

    def ready(self) -> LiveServer:
        """Wait until it answers (a test starting two lets them start side by side)."""
        wait_for(self._listening, timeout=60, what=f"yitu serve on port {self.port} (log {self.log_path})")
        return self

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"yitu serve exited with {self.proc.returncode}: {self.log()}")
        try:
            return httpx.get(self.url + "/login", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def sign_in(self, role: str = "admin", area: str | None = None, name: str | None = None) -> str:
        """Sign in as a new user of ``role`` (made in the server's database); returns the session cookie."""
        with httpx.Client(base_url=self.url, timeout=30) as http:
            cookie = sign_in(http, self.dsn, role, area, name)
        self.cookies = {"yitu_session": cookie}
        return cookie

    def pair(self, name: str | None = None, area: str | None = None) -> str:
        """Pair as a new wall screen; returns the session cookie (kept for ``get``)."""
        with httpx.Client(base_url=self.url, timeout=30) as http:
            cookie = pair_screen(http, self.dsn, name, area)
        self.cookies = {"yitu_session": cookie}
        return cookie

    def browser_cookie(self, cookie: str | None = None) -> list[dict[str, str]]:
        """The session cookie for Playwright's ``context.add_cookies`` (signing in first if need be)."""
        value = cookie or self.cookies.get("yitu_session") or self.sign_in()
        return [{"name": "yitu_session", "value": value, "url": self.url}]

    def get(self, path: str, **kw: object) -> httpx.Response:
        kw.setdefault("cookies", self.cookies)
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
        return self.proc.returncode


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def start(
        database_url: str,
        redis_url: str,
        port: int | None = None,
        ready: bool = True,
        runtime_url: str | None = None,
        **extra: str,
    ) -> LiveServer:
        """A new ``yitu serve``; ``port`` to take over from a stopped one (a restarted process).

        With ``ready=False`` it returns as soon as the process is spawned; ``.ready()`` waits for it.
        The app connects as the runtime role (``runtime_url``, default: the tests' server's runtime
        role on ``database_url``'s database); ``database_url`` is the owner's.
        """
        env = {
            "YITU_DATABASE_URL": runtime_url or as_runtime(database_url),
            "YITU_DATABASE_OWNER_URL": database_url,
            "YITU_REDIS_URL": redis_url,
            **extra,
        }
        srv = LiveServer(env, tmp_path / f"serve-{len(started)}.log", port, ready)
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

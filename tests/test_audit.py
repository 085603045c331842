"""The tamper-proof audit (issue 12, item 9): two roles, an append-only case_events and admin_events.

The app connects as the runtime role (a member of yitu_runtime), which cannot UPDATE, DELETE or
TRUNCATE the audit (grants), and a trigger refuses those to everyone, the owner included, unless
the owner opens the maintenance path in its transaction. Audit rows carry the identity's id and
the server's time; a time the client sent is kept beside it.
"""

from __future__ import annotations

import getpass
import secrets
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cli.main import main
from cli.stack import EmbeddedStack
from services import audit
from services.identity import Principal
from services.settings import EMBEDDED_RUNTIME_USER, RUNTIME_GROUP, Settings

from .cases_fixtures import auth, case_body, cases_settings, client, inner_point, token  # noqa: F401
from .conftest import LiveServer
from .helpers import as_runtime, free_port, keyed, wait_for, with_dbname

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "import"
REFUSED = (psycopg.errors.InsufficientPrivilege,)


def _refused(dsn: str, stmt: str, *, maintenance: bool = False) -> str:
    """The error message ``stmt`` raises on ``dsn`` (the test fails if it succeeds)."""
    with psycopg.connect(dsn) as conn:
        if maintenance:
            conn.execute("SET LOCAL yitu.audit_maintenance = 'on'")
        with pytest.raises(REFUSED) as err:
            conn.execute(stmt)  # type: ignore[arg-type]  # constant test statements
        conn.rollback()
    return str(err.value)


def _one_event_each(owner_dsn: str) -> None:
    """A case_events row in the default partition and in a month partition, and an admin_events row."""
    with psycopg.connect(owner_dsn) as conn:
        conn.execute("SELECT yitu_ensure_month_partitions('case_events'::regclass, '2026-03-01', '2026-03-01')")
        for at in ("2026-03-05T10:00:00Z", "2030-01-01T00:00:00Z"):
            conn.execute(
                "INSERT INTO case_events (case_id, occurred_at, actor, role, action) VALUES (1, %s, 'a', 'admin', 'x')",
                (at,),
            )
        audit.record(conn, None, "test.setup", "x")


def test_the_runtime_role_can_only_append_to_the_audit(db_url: str) -> None:
    _one_event_each(db_url)
    runtime = as_runtime(db_url)
    for stmt in (
        "UPDATE case_events SET note = 'changed'",
        "DELETE FROM case_events",
        "TRUNCATE case_events",
        "UPDATE case_events_default SET note = 'changed'",  # a partition directly
        "DELETE FROM case_events_y2026m03",
        "TRUNCATE case_events_y2026m03",
        "UPDATE admin_events SET target = 'changed'",
        "DELETE FROM admin_events",
        "TRUNCATE admin_events",
        # nor can it choose the server's time
        "INSERT INTO admin_events (at, actor_kind, actor_name, action) VALUES ('2000-01-01', 'cli', 'x', 'a.b')",
        "INSERT INTO case_events (case_id, actor, role, action, recorded_at) VALUES (1, 'a', 'admin', 'x', now())",
    ):
        assert "permission denied" in _refused(runtime, stmt), stmt
    # the maintenance path is the owner's: the runtime role's grants still refuse
    assert "permission denied" in _refused(runtime, "DELETE FROM admin_events", maintenance=True)
    with psycopg.connect(runtime) as conn:
        audit.record(conn, None, "test.append", "y")
        conn.execute("INSERT INTO case_events (case_id, actor, role, action) VALUES (2, 'b', 'viewer', 'y')")
        assert conn.execute("SELECT count(*) FROM admin_events").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM case_events WHERE recorded_at IS NOT NULL").fetchone() == (3,)
        row = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    assert row is not None and row[1] is False


def test_the_trigger_refuses_even_the_owner_unless_maintenance_is_opened(db_url: str) -> None:
    _one_event_each(db_url)
    for stmt in (
        "UPDATE case_events SET note = 'changed'",
        "DELETE FROM case_events_default",
        "TRUNCATE case_events",
        "TRUNCATE case_events_y2026m03",
        "UPDATE admin_events SET target = 'changed'",
        "DELETE FROM admin_events",
        "TRUNCATE admin_events",
    ):
        assert "append-only" in _refused(db_url, stmt), stmt
    with psycopg.connect(db_url) as conn:
        conn.execute("SET LOCAL yitu.audit_maintenance = 'on'")
        conn.execute("DELETE FROM admin_events")
        conn.execute("TRUNCATE case_events")
        conn.rollback()


def test_the_trigger_is_a_second_wall_behind_the_grants(db_url: str) -> None:
    """Should the grants ever be widened by mistake, the trigger still refuses the runtime role,
    and its maintenance switch does not work for a role that does not own the table."""
    _one_event_each(db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute(sql.SQL("GRANT UPDATE, DELETE ON admin_events TO {}").format(sql.Identifier(RUNTIME_GROUP)))
    runtime = as_runtime(db_url)
    assert "append-only" in _refused(runtime, "DELETE FROM admin_events")
    assert "append-only" in _refused(runtime, "UPDATE admin_events SET target = 'x'", maintenance=True)


def test_partitions_the_app_makes_belong_to_the_owner(db_url: str) -> None:
    runtime = as_runtime(db_url)
    with psycopg.connect(runtime) as conn:
        made = conn.execute(
            "SELECT yitu_ensure_month_partitions('case_events'::regclass, '2027-01-01', '2027-02-01')"
        ).fetchone()
    assert made == (2,)
    with psycopg.connect(db_url) as conn:
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables "
            "WHERE tablename IN ('case_events_y2027m01', 'case_events_y2027m02')"
        ).fetchall()
        owner = conn.execute("SELECT current_user").fetchone()
    assert owners == [owner]
    assert "permission denied" in _refused(runtime, "DELETE FROM case_events_y2027m01")
    assert "append-only" in _refused(db_url, "TRUNCATE case_events_y2027m02")


def _db_user(conn: psycopg.Connection[Any], dbname: str) -> set[str]:
    # Sessions of a role only: an autovacuum worker on the database has no user (usename NULL);
    # backend_type would say so too, but a role without pg_read_all_stats reads it NULL.
    rows = conn.execute(
        "SELECT DISTINCT usename FROM pg_stat_activity"
        " WHERE datname = %s AND usename IS NOT NULL AND pid <> pg_backend_pid()",
        (dbname,),
    ).fetchall()
    return {r[0] for r in rows}


def test_the_app_and_its_routes_work_on_the_runtime_role(
    client: TestClient, token: Callable[..., str], demo_db: str, cases_settings: Settings
) -> None:
    assert conninfo_to_dict(cases_settings.database_dsn())["user"] == EMBEDDED_RUNTIME_USER
    with client.app.state.services.pool.connection() as conn:  # type: ignore[attr-defined]
        assert conn.execute("SELECT current_user").fetchone() == (EMBEDDED_RUNTIME_USER,)
    tok = token("dispatcher", name="值班调度")
    lon, lat, cell = inner_point(demo_db, offset=3)
    made = client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(auth(tok)))
    assert made.status_code == 201, made.text
    code = made.json()["code"]
    for path in (
        f"/api/v1/cases/{code}",
        "/api/v1/cases?limit=5",
        f"/api/v1/areas/{cell[:9]}/cases?limit=5",
        f"/api/v1/areas/{cell[:9]}/stats",
        "/api/v1/layers/cases",
        "/api/v1/vans",
        "/healthz",
    ):
        r = client.get(path, headers=auth(tok))
        assert r.status_code == 200, (path, r.text)
    assert client.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept"}, headers=auth(tok)).is_success


def test_case_events_carry_the_identity_and_the_servers_time(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    tok = token("dispatcher", name="调度员甲")
    with psycopg.connect(demo_db) as conn:
        token_id = conn.execute("SELECT id FROM api_tokens WHERE name = '调度员甲'").fetchone()
    claimed = (datetime.now(UTC) - timedelta(hours=5)).replace(microsecond=0)
    lon, lat, _ = inner_point(demo_db, offset=4)
    before = datetime.now(UTC)
    made = client.post(
        "/api/v1/cases", json=case_body(lon, lat, reported_at=claimed.isoformat()), headers=keyed(auth(tok))
    )
    assert made.status_code == 201, made.text
    assert made.json()["reported_at"] == claimed.isoformat()  # the case keeps what the reporter said
    code = made.json()["code"]
    assert client.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept"}, headers=auth(tok)).is_success
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute(
            """SELECT e.action, e.occurred_at, e.client_at, e.recorded_at, e.actor_kind, e.actor_id
               FROM case_events e JOIN cases c ON c.id = e.case_id WHERE c.code = %s ORDER BY e.id""",
            (code,),
        ).fetchall()
    after = datetime.now(UTC)
    assert [r[0] for r in rows] == ["report", "accept"]
    report, accept = rows
    assert before - timedelta(seconds=1) <= report[1] <= after  # the server's time, not the claimed one
    assert report[2] == claimed  # kept beside it
    assert accept[2] is None
    for row in rows:
        assert before - timedelta(seconds=1) <= row[3] <= after + timedelta(seconds=1)  # the database's clock
        assert (row[4], row[5]) == ("token", token_id[0] if token_id else None)


def test_unmasked_reads_of_personal_data_are_logged(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    dispatcher, viewer = token("dispatcher", name="调度员"), token("viewer", name="观察员")
    lon, lat, cell = inner_point(demo_db, offset=6)
    code = client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(auth(dispatcher))).json()["code"]

    def reads() -> list[tuple[Any, ...]]:
        with psycopg.connect(demo_db) as conn:
            return conn.execute(
                """SELECT actor_kind, actor_name, target, detail, address FROM admin_events
                   WHERE action = %s ORDER BY id""",
                (audit.PERSONAL_DATA_READ,),
            ).fetchall()

    assert reads() == []  # the reporter's own intake is no read
    for tok in (viewer, dispatcher):
        assert client.get(f"/api/v1/cases/{code}", headers=auth(tok)).status_code == 200
        assert client.get(f"/api/v1/areas/{cell}/cases", headers=auth(tok)).status_code == 200
        assert client.get(f"/api/v1/cases?area={cell}&limit=3", headers=auth(tok)).status_code == 200
    got = reads()
    assert [(r[0], r[1], r[2]) for r in got] == [
        ("token", "调度员", "GET /api/v1/cases/{code}"),
        ("token", "调度员", "GET /api/v1/areas/{code}/cases"),
        ("token", "调度员", "GET /api/v1/cases"),
    ]
    assert got[0][3]["cases"] == [code]
    assert code in got[1][3]["cases"] and got[1][3]["count"] == len(got[1][3]["cases"])
    assert got[0][4] is None and got[0][3]["address_text"] == "testclient"  # TestClient's peer is no IP


def test_record_writes_who_what_when_and_where(db_url: str) -> None:
    who = Principal(3, "管理员", "admin", None, kind="user")
    claimed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with psycopg.connect(as_runtime(db_url)) as conn:
        audit.record(conn, who, "user.disable", "user:9", {"reason": "left"}, "10.1.2.3", claimed)
        audit.record(conn, None, "token.create", "token:1")
        rows = conn.execute(
            "SELECT actor_kind, actor_id, actor_name, action, target, detail, host(address), client_at, at, now() "
            "FROM admin_events ORDER BY id"
        ).fetchall()
    user, cli = rows
    assert user[:8] == ("user", 3, "管理员", "user.disable", "user:9", {"reason": "left"}, "10.1.2.3", claimed)
    assert user[8] == user[9]  # the server's time, in the caller's transaction
    assert cli[:3] == ("cli", None, audit.os_user())


# --- the CLI -------------------------------------------------------------------------------------------
def _env(owner_dsn: str, redis_url: str) -> dict[str, str]:
    return {
        "YITU_DATABASE_URL": as_runtime(owner_dsn),
        "YITU_DATABASE_OWNER_URL": owner_dsn,
        "YITU_REDIS_URL": redis_url,
    }


def _admin_events(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT actor_kind, actor_name, action, target, detail FROM admin_events ORDER BY id"
        ).fetchall()


def test_db_url_prints_the_runtime_role_and_owner_prints_the_owner(db_url: str, redis_url: str) -> None:
    env = _env(db_url, redis_url)
    runner = CliRunner()
    assert runner.invoke(main, ["db", "url"], env=env).output.strip() == env["YITU_DATABASE_URL"]
    assert runner.invoke(main, ["db", "url", "--owner"], env=env).output.strip() == db_url
    assert runner.invoke(main, ["db", "url", "--redis"], env=env).output.strip() == redis_url
    # one role for both (an older external set-up): --owner falls back to it
    single = {"YITU_DATABASE_URL": db_url, "YITU_REDIS_URL": redis_url}
    assert runner.invoke(main, ["db", "url", "--owner"], env=single).output.strip() == db_url


def test_the_embedded_stack_makes_both_roles(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "h", pg_port=free_port(), redis_port=free_port(), _env_file=None)
    runtime, owner = settings.database_dsn(), settings.database_owner_dsn()
    assert conninfo_to_dict(runtime)["user"] == EMBEDDED_RUNTIME_USER
    assert conninfo_to_dict(owner)["user"] == "yitu"
    assert conninfo_to_dict(runtime)["password"] != conninfo_to_dict(owner)["password"]
    assert (tmp_path / "h" / "secrets" / "pg_app_password").stat().st_mode & 0o077 == 0
    env = {"YITU_HOME": str(tmp_path / "h"), "YITU_PG_PORT": str(settings.pg_port)}
    env.update({"YITU_REDIS_PORT": str(settings.redis_port), "YITU_DATABASE_URL": "", "YITU_REDIS_URL": ""})
    runner = CliRunner()
    assert runner.invoke(main, ["db", "url"], env=env).output.strip() == runtime
    assert runner.invoke(main, ["db", "url", "--owner"], env=env).output.strip() == owner


def test_the_running_stack_has_a_runtime_role_that_is_no_superuser(stack: EmbeddedStack) -> None:
    with psycopg.connect(with_dbname(stack.runtime_url(), "postgres")) as conn:
        row = conn.execute(
            "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, pg_has_role(current_user, %s, 'USAGE') "
            "FROM pg_roles r WHERE r.rolname = current_user",
            (RUNTIME_GROUP,),
        ).fetchone()
    assert row == (False, False, False, True)


def test_token_commands_write_admin_events(db_url: str, redis_url: str) -> None:
    env = _env(db_url, redis_url)
    runner = CliRunner()
    made = runner.invoke(main, ["token", "create", "--role", "viewer", "--name", "大屏"], env=env)
    assert made.exit_code == 0, made.output
    assert runner.invoke(main, ["token", "revoke", "大屏"], env=env).exit_code == 0
    assert runner.invoke(main, ["token", "revoke", "nobody"], env=env).exit_code == 1  # no change, no row
    events = _admin_events(db_url)
    assert [(e[0], e[1], e[2]) for e in events] == [
        ("cli", audit.os_user(), "token.create"),
        ("cli", audit.os_user(), "token.revoke"),
    ]
    assert events[0][3].startswith("token:") and events[0][4] == {"name": "大屏", "role": "viewer", "area": None}
    assert (events[1][3], events[1][4]) == ("大屏", {"revoked": 1})
    assert audit.os_user() == getpass.getuser()


def test_van_device_commands_write_admin_events_without_the_identifier(demo_db: str, redis_url: str) -> None:
    env = _env(demo_db, redis_url)
    device = "audit-device-" + secrets.token_hex(6)
    runner = CliRunner()
    for args in (
        ["van", "register", "V02", "--device", device],
        ["van", "register", "V03", "--device", device],  # moved to another van
        ["van", "unregister", "--device", device],
    ):
        result = runner.invoke(main, args, env=env)
        assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["van", "unregister", "--device", device], env=env).exit_code == 1  # no change
    events = _admin_events(demo_db)
    assert [(e[0], e[2], e[3]) for e in events] == [
        ("cli", "van.device.register", "van:V02"),
        ("cli", "van.device.register", "van:V03"),
        ("cli", "van.device.unregister", "van:V03"),
    ]
    assert events[1][4]["moved_from"] == "V02"
    assert len({e[4]["device"] for e in events}) == 1  # the same device, told apart by its hash's start
    assert device not in str(events)  # the identifier is a credential: never in the log


def test_import_replace_writes_admin_events(db_url: str, redis_url: str) -> None:
    env = _env(db_url, redis_url)
    runner = CliRunner()
    good = runner.invoke(main, ["import", "grids", str(FIXTURES / "good.geojson")], env=env)
    assert good.exit_code == 0, good.output
    assert _admin_events(db_url) == []  # an import that adds is no admin action
    replaced = runner.invoke(main, ["import", "grids", str(FIXTURES / "levels_1_3.geojson"), "--replace"], env=env)
    assert replaced.exit_code == 0, replaced.output
    rejected = runner.invoke(main, ["import", "grids", str(FIXTURES / "level_4.geojson"), "--replace"], env=env)
    assert rejected.exit_code == 1  # rejected: nothing written, no row either
    events = _admin_events(db_url)
    assert [(e[0], e[2], e[3]) for e in events] == [("cli", "import.areas.replace", "areas")]
    assert events[0][4] == {"file": "levels_1_3.geojson", "inserted": 7, "updated": 0, "deleted": 15}


def test_seed_replace_wipes_the_history_through_the_maintenance_path_and_says_so(demo_db: str, redis_url: str) -> None:
    with psycopg.connect(demo_db) as conn:
        audit.record(conn, None, "test.before", "x")
        history = conn.execute("SELECT count(*) FROM case_events").fetchone()
    assert history and history[0] > 1000
    env = _env(demo_db, redis_url)
    args = ["seed", "demo", "--cases", "30", "--cameras", "10", "--as-of", "2026-11-01", "--replace"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    events = _admin_events(demo_db)
    assert [e[2] for e in events] == ["test.before", "seed.demo.replace"]  # the log survives the wipe
    assert events[1][0] == "cli" and events[1][4]["wiped"] is True
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT count(*) FROM cases").fetchone() == (events[1][4]["counts"]["cases"],)
        assert conn.execute("SELECT count(*) FROM case_events").fetchone()[0] < history[0]  # type: ignore[index]
    # the runtime role cannot do the same
    assert "permission denied" in _refused(as_runtime(demo_db), "TRUNCATE cases, case_events")


# --- an external database --------------------------------------------------------------------------
@pytest.fixture
def external_db(server_dsn: str) -> Iterator[tuple[str, str]]:
    """A database with its own owner and runtime login roles, made as the README tells an
    administrator to: (owner DSN, runtime DSN). Dropped afterwards with its roles."""
    tag = uuid.uuid4().hex[:8]
    owner, app, db = f"ext_owner_{tag}", f"ext_app_{tag}", f"yitu_ext_{tag}"
    owner_pw, app_pw = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    admin = with_dbname(server_dsn, "postgres")
    ident = sql.Identifier
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident(owner), sql.Literal(owner_pw)))
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                ident(app), sql.Literal(app_pw), ident(RUNTIME_GROUP)
            )
        )
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(ident(db), ident(owner)))
    with psycopg.connect(with_dbname(server_dsn, db), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION postgis")
        conn.execute("CREATE EXTENSION pgrouting")
    base = with_dbname(server_dsn, db)
    try:
        yield make_conninfo(base, user=owner, password=owner_pw), make_conninfo(base, user=app, password=app_pw)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(db)))
            for role in (app, owner):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident(role)))


def test_an_external_database_migrates_as_owner_and_serves_as_runtime(
    external_db: tuple[str, str], redis_url: str, tmp_path: Path
) -> None:
    owner, runtime = external_db
    env = {"YITU_DATABASE_URL": runtime, "YITU_DATABASE_OWNER_URL": owner, "YITU_REDIS_URL": redis_url}
    runner = CliRunner()
    migrated = runner.invoke(main, ["db", "migrate"], env=env)
    assert migrated.exit_code == 0, migrated.output
    assert "applied 016_audit.sql" in migrated.output
    imported = runner.invoke(main, ["import", "grids", str(FIXTURES / "good.geojson")], env=env)
    assert imported.exit_code == 0, imported.output
    made = runner.invoke(main, ["token", "create", "--role", "dispatcher", "--name", "外部调度"], env=env)
    assert made.exit_code == 0, made.output
    tok = made.stdout.strip().splitlines()[-1]
    with psycopg.connect(owner) as conn:
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'spatial_ref_sys'"
        ).fetchall()
    assert owners == [(conninfo_to_dict(owner)["user"],)]
    srv = LiveServer({**env, "YITU_SCHEDULER_INTERVAL": "0"}, tmp_path / "serve.log")
    try:
        assert srv.get("/api/v1/areas/150623", headers=auth(tok)).status_code == 200
        lon, lat, _ = inner_point(owner, level=4, margin_m=50)
        r = httpx.post(srv.url + "/api/v1/cases", json=case_body(lon, lat), headers=keyed(auth(tok)), timeout=30)
        assert r.status_code == 201, r.text
        code = r.json()["code"]
        assert srv.get(f"/api/v1/cases/{code}", headers=auth(tok)).status_code == 200
        with psycopg.connect(owner) as conn:
            dbname = conninfo_to_dict(owner)["dbname"]
            users = wait_for(lambda: _db_user(conn, dbname) or None, what="the server's connections")
            reads = conn.execute("SELECT count(*) FROM admin_events WHERE action = 'personal_data.read'").fetchone()
        assert users == {conninfo_to_dict(runtime)["user"]}
        assert reads == (1,)
    finally:
        assert srv.stop() in (0, -15)
    assert "permission denied" in _refused(runtime, "DELETE FROM case_events")
    assert "append-only" in _refused(owner, "DELETE FROM case_events")


def test_settings_refuse_an_owner_url_without_a_runtime_url() -> None:
    with pytest.raises(ValueError, match="YITU_DATABASE_URL"):
        Settings(database_owner_url="postgresql://o:p@h/db", _env_file=None)

"""``yitu db backup`` and ``yitu db restore``: the whole database in one file, and back.

A backup is ``pg_dump``'s custom format (compressed, restorable table by table), made by the
PostgreSQL client binaries of the server's major version (the stack's ``pg_bindir``). The schema
version travels inside it, as the ``schema_migrations`` rows, and is read back before anything is
restored: a backup from a newer schema than this yitu knows is refused, since this code would
misread it (migrate the code first). An older one restores as it is; ``yitu db migrate`` brings it up.

A restore never touches a live database half-way: it goes into a database of its own in one
transaction (``pg_restore --single-transaction --exit-on-error``), so a failure leaves nothing
behind. ``--into NAME`` stops there; ``--replace`` then swaps it in for the configured database,
keeping the old one under ``<name>_before_<UTC time>`` (nothing is dropped: drop it yourself once
the restored data is checked).

Passwords go to the client binaries through the environment (``PGPASSWORD``), never on a command
line that ``ps`` shows.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from geodata.migrate import discover

DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# One row of schema_migrations in pg_restore's COPY output: version, filename, ... (tab-separated).
_COPY_ROW = re.compile(r"^(\d{3})\t")


class BackupError(click.ClickException):
    """A backup or restore that cannot go on: one line saying why, exit code 1, nothing half-done."""


@dataclass(frozen=True)
class Backup:
    path: Path
    bytes: int
    schema_version: str
    seconds: float


def _client_env(dsn: str) -> tuple[dict[str, str], dict[str, str | int | None]]:
    """Environment for the PostgreSQL client binaries (PG* variables, the password among them)."""
    params = conninfo_to_dict(dsn)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    names = {
        "host": "PGHOST",
        "port": "PGPORT",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "dbname": "PGDATABASE",
        "sslmode": "PGSSLMODE",
    }
    for key, var in names.items():
        if params.get(key) is not None:
            env[var] = str(params[key])
    env["PGCONNECT_TIMEOUT"] = str(params.get("connect_timeout") or 10)
    return env, params


def _run(argv: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BackupError(f"{what}: {argv[0]} not found (set YITU_PG_BINDIR to PostgreSQL's bin folder)") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise BackupError(f"{what} failed: {last[-1] if last else f'exit code {done.returncode}'}")
    return done


def current_schema_version(dsn: str) -> str:
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
            row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone() if exists == (True,) else None
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot reach the database: {str(exc).strip().splitlines()[-1]}") from None
    if row is None or row[0] is None:
        raise BackupError("the database has no schema yet (run `yitu db migrate` first): nothing to back up")
    return str(row[0])


def backup(dsn: str, bindir: Path, path: Path) -> Backup:
    """Write the database of ``dsn`` to ``path`` (custom format); a file there is refused, not replaced."""
    if path.exists():
        raise BackupError(f"{path} already exists: pick a new file name (a backup never overwrites one)")
    if not path.parent.is_dir():
        raise BackupError(f"no folder {path.parent}")
    version = current_schema_version(dsn)
    env, _ = _client_env(dsn)
    partial = path.with_name(path.name + ".partial")
    started = time.monotonic()
    try:
        _run([str(bindir / "pg_dump"), "--format=custom", "--compress=6", f"--file={partial}"], env, "pg_dump")
        partial.rename(path)  # a file under the asked name is always a whole backup
    finally:
        partial.unlink(missing_ok=True)
    return Backup(path, path.stat().st_size, version, time.monotonic() - started)


def schema_version_of(path: Path, bindir: Path) -> str:
    """The newest migration recorded in a backup (read from the file, nothing restored)."""
    if not path.is_file():
        raise BackupError(f"no file {path}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    listing = subprocess.run(
        [str(bindir / "pg_restore"), "--list", str(path)], env=env, capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        raise BackupError(f"{path} is not a yitu backup (pg_restore cannot read it as a pg_dump custom archive)")
    if " TABLE DATA public schema_migrations " not in listing.stdout:
        raise BackupError(f"{path} is not a yitu backup: it holds no schema_migrations table")
    data = _run(
        [str(bindir / "pg_restore"), "--data-only", "--table=schema_migrations", "--file=-", str(path)],
        env,
        "reading the backup's schema version",
    )
    versions = [m.group(1) for line in data.stdout.splitlines() if (m := _COPY_ROW.match(line))]
    if not versions:
        raise BackupError(f"{path} is not a yitu backup: its schema_migrations table is empty")
    return max(versions)


def _database_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def restore(dsn: str, bindir: Path, path: Path, *, into: str | None, replace: bool) -> tuple[str, str | None]:
    """Restore ``path``; returns (the database it is in now, the name the replaced one was kept under)."""
    if (into is None) == (not replace):
        raise BackupError("say where: --into NAME (a new database) or --replace (the configured one)")
    if into is not None and not DB_NAME.match(into):
        raise BackupError(f"--into: {into!r} is not a database name yitu creates (a-z, 0-9, _; at most 63)")
    ours = discover()[-1].version
    theirs = schema_version_of(path, bindir)
    if theirs > ours:
        raise BackupError(
            f"{path} is from a newer schema ({theirs}) than this yitu knows ({ours}): "
            "restore it with the yitu release that made it"
        )
    env, params = _client_env(dsn)
    target = str(params.get("dbname") or "")
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    fresh = into if into is not None else f"{target}_restore_{stamp}"
    admin_dsn = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        if _database_exists(conn, fresh):
            raise BackupError(f"a database named {fresh} exists already: pick another name (nothing was changed)")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(fresh)))
    try:
        _run(
            [
                str(bindir / "pg_restore"),
                "--single-transaction",
                "--exit-on-error",
                "--no-owner",
                f"--dbname={fresh}",
                str(path),
            ],
            env,
            "pg_restore",
        )
    except BackupError:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(fresh)))
        raise
    if into is not None:
        return fresh, None
    kept = f"{target}_before_{stamp}"[:63]
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        # The swap needs the configured database to itself: the app's connections go (it reconnects
        # to the restored one), renames are instant.
        # No new connection may slip in between (a pool reconnects at once): closed first, then emptied.
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(target)))
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (target,),
        )
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(target), sql.Identifier(kept)))
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(kept)))
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(fresh), sql.Identifier(target)))
    return target, kept

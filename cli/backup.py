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

The blobs (attachments: geodata/blobs.py) are not in the database: they go to a tar beside the
dump, ``FILE.blobs.tar`` (one member ``blobs/<sha256>`` a blob, then ``MANIFEST.json`` listing them:
an archive without its manifest is a cut-off one). It is written after the dump, so it holds every
blob the dump's rows name (blobs never change; they are only added). A restore checks the whole
archive first — every member's bytes hash to its name, the manifest is there and lists exactly
those — and refuses a half or tampered one before it touches anything; then the database is
restored, then the blobs are added to the configured blob store (content-addressed: nothing there
is replaced or removed). A backup of a schema with attachments (023 and later) needs its archive.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from geodata import blobs as blobstore
from geodata.migrate import discover

DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# One row of schema_migrations in pg_restore's COPY output: version, filename, ... (tab-separated).
_COPY_ROW = re.compile(r"^(\d{3})\t")
ATTACHMENTS_SCHEMA = "023"  # from this schema on, a backup has its blobs archive beside it
MANIFEST = "MANIFEST.json"


class BackupError(click.ClickException):
    """A backup or restore that cannot go on: one line saying why, exit code 1, nothing half-done."""


@dataclass(frozen=True)
class Backup:
    path: Path
    bytes: int
    schema_version: str
    seconds: float
    blobs_path: Path | None = None
    blobs: int = 0
    blobs_bytes: int = 0


def blobs_archive(path: Path) -> Path:
    """Where the blobs of the backup ``path`` are: ``<path>.blobs.tar`` beside it."""
    return path.with_name(path.name + ".blobs.tar")


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


def backup(dsn: str, bindir: Path, path: Path, blob_dir: Path | None = None) -> Backup:
    """Write the database of ``dsn`` to ``path`` (custom format) and, with ``blob_dir``, its blobs to
    ``<path>.blobs.tar``; a file at either place is refused, not replaced."""
    if path.exists():
        raise BackupError(f"{path} already exists: pick a new file name (a backup never overwrites one)")
    if blob_dir is not None and blobs_archive(path).exists():
        raise BackupError(f"{blobs_archive(path)} already exists: pick a new file name (a backup never overwrites one)")
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
    if blob_dir is None:
        return Backup(path, path.stat().st_size, version, time.monotonic() - started)
    archive = blobs_archive(path)
    count, size = _write_blobs(blobstore.LocalBlobStore(blob_dir), archive)
    return Backup(path, path.stat().st_size, version, time.monotonic() - started, archive, count, size)


def _write_blobs(store: blobstore.LocalBlobStore, archive: Path) -> tuple[int, int]:
    """Every blob of ``store`` into the tar ``archive``, its manifest last; (blobs, their bytes)."""
    partial = archive.with_name(archive.name + ".partial")
    addresses: list[str] = []
    size = 0
    try:
        with tarfile.open(partial, "w") as tar:
            for address in store.addresses():
                path = store.path_of(address)
                tar.add(path, arcname=f"blobs/{address}", recursive=False)
                addresses.append(address)
                size += path.stat().st_size
            manifest = json.dumps({"blobs": addresses, "count": len(addresses)}).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(manifest)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(manifest))
        with open(partial, "rb+") as f:
            os.fsync(f.fileno())
        partial.rename(archive)
    finally:
        partial.unlink(missing_ok=True)
    return len(addresses), size


def check_blobs(archive: Path) -> list[str]:
    """The addresses in a blobs archive, after reading all of it: BackupError if it is cut off,
    holds a member whose bytes do not hash to its name, or lacks its manifest (or disagrees with it)."""
    if not archive.is_file():
        raise BackupError(f"the backup's blobs archive {archive} is missing (a backup is the dump and its archive)")
    found: list[str] = []
    manifest: dict[str, Any] | None = None
    try:
        with tarfile.open(archive, "r:") as tar:
            for member in tar:
                if manifest is not None:
                    raise BackupError(f"{archive} has members after its manifest: not a yitu blobs archive")
                if member.name == MANIFEST and member.isfile():
                    manifest = json.loads(_read_member(tar, member))
                    continue
                name = member.name.removeprefix("blobs/")
                if not member.isfile() or not member.name.startswith("blobs/") or not blobstore.ADDRESS.match(name):
                    raise BackupError(f"{archive} holds {member.name!r}: not a yitu blobs archive")
                if blobstore.address_of(_read_member(tar, member)) != name:
                    raise BackupError(f"{archive}: blob {name} does not hash to its name (damaged)")
                found.append(name)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BackupError(f"{archive} is cut off or damaged ({exc}): nothing was restored") from None
    if manifest is None:
        raise BackupError(f"{archive} has no manifest: it was cut off (nothing was restored)")
    if manifest.get("blobs") != found:
        raise BackupError(f"{archive}: its manifest does not list the blobs it holds (nothing was restored)")
    return found


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    if f is None:
        raise BackupError(f"cannot read {member.name} from the blobs archive")
    data = f.read()
    if len(data) != member.size:
        raise EOFError(f"{member.name} is cut off")
    return data


def restore_blobs(archive: Path, blob_dir: Path) -> int:
    """Add the blobs of a checked archive to the store at ``blob_dir``; returns how many were new."""
    store = blobstore.LocalBlobStore(blob_dir)
    new = 0
    with tarfile.open(archive, "r:") as tar:
        for member in tar:
            if member.name == MANIFEST:
                continue
            f = tar.extractfile(member)
            assert f is not None  # check_blobs read it already
            address, added = blobstore.copy_into(store, f)
            if address != member.name.removeprefix("blobs/"):
                raise BackupError(f"{archive}: blob {member.name} changed while it was restored")
            new += added
    return new


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


def restore(
    dsn: str, bindir: Path, path: Path, *, into: str | None, replace: bool, blob_dir: Path | None = None
) -> tuple[str, str | None]:
    """Restore ``path`` (and, with ``blob_dir``, its blobs archive into that store); returns (the
    database it is in now, the name the replaced one was kept under)."""
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
    archive = blobs_archive(path)
    if blob_dir is not None and (theirs >= ATTACHMENTS_SCHEMA or archive.exists()):
        check_blobs(archive)  # a missing, cut-off or damaged archive: refused before anything is touched
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
    if blob_dir is not None and archive.exists():
        restore_blobs(archive, blob_dir)
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

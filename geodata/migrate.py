"""Schema migrations: ``geodata/sql/NNN_name.sql`` applied in order, once each.

Each file runs in its own transaction together with its row in ``schema_migrations``, so a
failing file leaves the database exactly as it was and the error names the file. A session
advisory lock serialises concurrent migrators (several app processes starting at once).
A file that changed after it was applied is reported, never silently re-run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

log = logging.getLogger("yitu.migrate")

SQL_DIR = Path(__file__).resolve().parent / "sql"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 7_102_623  # pg_advisory_lock key reserved for yitu migrations


class MigrationError(RuntimeError):
    """A migration could not be applied; ``filename`` names the file."""

    def __init__(self, filename: str, message: str) -> None:
        super().__init__(f"{filename}: {message}")
        self.filename = filename


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """The numbered migration files of ``sql_dir`` in order; duplicate numbers are an error."""
    found: dict[str, Migration] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            continue  # named queries live beside the migrations
        if m.group(1) in found:
            raise MigrationError(path.name, f"number {m.group(1)} also used by {found[m.group(1)].path.name}")
        found[m.group(1)] = Migration(m.group(1), path)
    return [found[k] for k in sorted(found)]


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    filename   text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migrate(dsn: str, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply every pending migration; return the file names applied (empty when up to date)."""
    migrations = discover(sql_dir)
    applied_now: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_CREATE_TABLE)
            done = {
                row[0]: (row[1], row[2])
                for row in conn.execute("SELECT version, filename, checksum FROM schema_migrations")
            }
            for mig in migrations:
                if mig.version in done:
                    filename, checksum = done[mig.version]
                    if checksum != mig.checksum:
                        raise MigrationError(
                            mig.path.name, f"changed after it was applied (as {filename}); add a new migration instead"
                        )
                    continue
                _apply(conn, mig)
                applied_now.append(mig.path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def _apply(conn: psycopg.Connection, mig: Migration) -> None:
    log.info("applying migration file=%s", mig.path.name)
    try:
        with conn.transaction():
            # A migration file is trusted project code holding several statements: it is sent as
            # one simple-protocol query (no parameters), never built from input.
            conn.execute(mig.sql.encode("utf-8"), prepare=False)  # type: ignore[call-overload]
            conn.execute(
                "INSERT INTO schema_migrations (version, filename, checksum) VALUES (%s, %s, %s)",
                (mig.version, mig.path.name, mig.checksum),
            )
    except psycopg.Error as exc:
        detail = (exc.diag.message_primary or str(exc)).strip()
        raise MigrationError(mig.path.name, f"failed and was rolled back: {detail}") from exc


def applied(dsn: str) -> list[tuple[str, str]]:
    """(version, filename) of the applied migrations, oldest first."""
    with psycopg.connect(dsn) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []
        return [tuple(r) for r in conn.execute("SELECT version, filename FROM schema_migrations ORDER BY version")]

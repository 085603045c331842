"""``yitu db backup`` / ``yitu db restore`` (cli/backup.py): a round trip gives the same data, a
restore is all or nothing, and a bad file, name or schema is refused with nothing changed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from cli import backup
from cli.main import main
from cli.stack import _find_pg_bindir
from geodata.blobs import LocalBlobStore, address_of

from .conftest import DEMO, DEMO_TEMPLATE, TEMPLATE
from .helpers import with_dbname

FINGERPRINT = """
SELECT (SELECT count(*) FROM areas), (SELECT count(*) FROM cameras), (SELECT count(*) FROM case_events),
       (SELECT md5(string_agg(code || step || description, ',' ORDER BY code)) FROM cases),
       (SELECT max(version) FROM schema_migrations)
"""


def _fingerprint(dsn: str) -> tuple[object, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(FINGERPRINT).fetchone()
    assert row is not None
    return tuple(row)


def _exists(dsn: str, name: str) -> bool:
    with psycopg.connect(with_dbname(dsn, "postgres")) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


@pytest.fixture
def extra_dbs(server_dsn: str) -> Iterator[list[str]]:
    """Names of databases a test makes; dropped afterwards."""
    names: list[str] = []
    yield names
    with psycopg.connect(with_dbname(server_dsn, "postgres"), autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(autouse=True)
def blob_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The commands' blob store: the test's own folder, never the checkout's .yitu/blobs."""
    folder = tmp_path / "blobs"
    monkeypatch.setenv("YITU_BLOB_DIR", str(folder))
    return folder


def _yitu(dsn: str, redis_url: str, *args: str, blob_dir: Path | None = None) -> Result:
    env = {"YITU_DATABASE_URL": dsn, "YITU_REDIS_URL": redis_url}
    if blob_dir is not None:
        env["YITU_BLOB_DIR"] = str(blob_dir)
    return CliRunner().invoke(main, list(args), env=env)


def _name(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])


def test_a_backup_restores_into_a_new_database_with_the_same_data(
    demo_db: str, redis_url: str, tmp_path: Path, extra_dbs: list[str]
) -> None:
    file = tmp_path / "yitu.dump"
    made = _yitu(demo_db, redis_url, "db", "backup", str(file))
    assert made.exit_code == 0, made.output
    assert f"backup written: {file}" in made.output and "schema 0" in made.output
    assert file.stat().st_size > 100_000 and not list(tmp_path.glob("*.partial"))

    name = _name(demo_db) + "_copy"
    extra_dbs.append(name)
    back = _yitu(demo_db, redis_url, "db", "restore", str(file), "--into", name)
    assert back.exit_code == 0, back.output
    assert f"restored into {name}" in back.output
    copy = with_dbname(demo_db, name)
    assert _fingerprint(copy) == _fingerprint(demo_db)
    assert _yitu(copy, redis_url, "db", "migrate").output.strip() == "schema up to date"


def test_replace_swaps_in_the_backup_and_keeps_the_old_database(
    demo_db: str, redis_url: str, tmp_path: Path, extra_dbs: list[str]
) -> None:
    file = tmp_path / "yitu.dump"
    assert _yitu(demo_db, redis_url, "db", "backup", str(file)).exit_code == 0
    before = _fingerprint(demo_db)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("UPDATE cases SET description = 'changed after the backup' WHERE id IN (1, 2, 3)")
    changed = _fingerprint(demo_db)
    assert changed != before
    holder = psycopg.connect(demo_db, autocommit=True)  # an app's connection, open during the swap
    try:
        back = _yitu(demo_db, redis_url, "db", "restore", str(file), "--replace")
        assert back.exit_code == 0, back.output
        kept = back.output.split("kept as ", 1)[1].split()[0]
        extra_dbs.append(kept)
        assert _fingerprint(demo_db) == before  # the configured name now holds the backup
        assert _fingerprint(with_dbname(demo_db, kept)) == changed  # nothing was dropped
        with pytest.raises(psycopg.OperationalError):
            holder.execute("SELECT 1")  # the old connection went with the swap
    finally:
        holder.close()
    assert not [n for n in _all_names(demo_db) if "_restore_" in n]  # the working copy became the target


def _all_names(dsn: str) -> list[str]:
    with psycopg.connect(with_dbname(dsn, "postgres")) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database")]


def test_a_backup_from_a_newer_schema_is_refused_and_nothing_is_created(
    demo_db: str, redis_url: str, tmp_path: Path, extra_dbs: list[str]
) -> None:
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, filename, checksum) VALUES ('999', '999_future.sql', 'x')"
        )
    file = tmp_path / "future.dump"
    assert _yitu(demo_db, redis_url, "db", "backup", str(file)).exit_code == 0
    name = _name(demo_db) + "_future"
    extra_dbs.append(name)
    back = _yitu(demo_db, redis_url, "db", "restore", str(file), "--into", name)
    assert back.exit_code == 1
    assert "newer schema (999)" in back.output
    assert not _exists(demo_db, name)


def test_bad_files_names_and_options_are_refused_with_nothing_changed(
    demo_db: str, redis_url: str, tmp_path: Path, extra_dbs: list[str]
) -> None:
    junk = tmp_path / "junk.dump"
    junk.write_bytes(os.urandom(4096))
    empty_pg = tmp_path / "postgres.dump"  # a real pg_dump archive, but not of a yitu database
    extra_dbs.extend([_name(demo_db) + "_x", "bad_target"])
    names_before = _ours(demo_db)

    def refused_on(dsn: str, *args: str) -> str:
        r = _yitu(dsn, redis_url, *args)
        assert r.exit_code != 0, r.output
        assert "Traceback" not in r.output
        return r.output

    def refused(*args: str) -> str:
        return refused_on(demo_db, *args)

    assert "not a yitu backup" in refused("db", "restore", str(junk), "--into", "bad_target")
    assert "no file" in refused("db", "restore", str(tmp_path / "missing.dump"), "--into", "bad_target")
    assert "no schema yet" in refused_on(with_dbname(demo_db, "postgres"), "db", "backup", str(empty_pg))
    env, _ = backup._client_env(with_dbname(demo_db, "postgres"))
    subprocess.run([str(_find_pg_bindir(None) / "pg_dump"), "-Fc", f"--file={empty_pg}"], env=env, check=True)
    assert "holds no schema_migrations" in refused("db", "restore", str(empty_pg), "--into", "bad_target")
    assert "--into NAME" in refused("db", "restore", str(junk))
    assert "--into NAME" in refused("db", "restore", str(junk), "--into", "x", "--replace")
    good = tmp_path / "good.dump"
    assert _yitu(demo_db, redis_url, "db", "backup", str(good)).exit_code == 0
    for hostile in ("x; DROP DATABASE postgres", "Upper", "a" * 64, "", "../x"):
        assert "not a database name" in refused("db", "restore", str(good), "--into", hostile)
    assert "exists already" in refused("db", "restore", str(good), "--into", _name(demo_db))
    size = good.stat().st_size
    assert "already exists" in refused("db", "backup", str(good))
    assert good.stat().st_size == size
    assert "no folder" in refused("db", "backup", str(tmp_path / "nowhere" / "x.dump"))
    assert _ours(demo_db) == names_before  # not one database made or dropped
    assert _name(demo_db) in _all_names(demo_db)


def _ours(dsn: str) -> set[str]:
    """The databases on the server that a command of these tests could make or drop: the demo's own
    (``dsn``'s), those named after it (a restore's target, ``--replace``'s working copy and the one
    it keeps), this test session's templates, and every name not of yitu's (``bad_target``, ``x``,
    the hostile names, postgres).
    Not yitu's other databases: other test sessions, and other workers of this one, make and drop
    theirs meanwhile (``yitu_test_…`` clones, ``yitu_ext_…``, ``yitu``). Before, every name but the
    clones' was counted — the test failed once under four xdist workers (docs/performance.md) — and
    the names made after the demo's were not."""
    own = _name(dsn)
    session = {TEMPLATE, DEMO, DEMO_TEMPLATE}  # this session's own, there throughout the test
    return {n for n in _all_names(dsn) if n.startswith(own) or n in session or not n.startswith("yitu")}


def test_the_blobs_travel_with_the_backup_and_a_half_archive_is_refused(
    demo_db: str, redis_url: str, tmp_path: Path, extra_dbs: list[str], blob_dir: Path
) -> None:
    """Attachments' blobs go to FILE.blobs.tar beside the dump and come back into the blob store; an
    archive cut off, damaged or missing is refused before anything is restored."""
    photo, agreement = b"\xff\xd8\xff a photo's bytes", b"%PDF-1.7 an agreement %%EOF"
    store = LocalBlobStore(blob_dir)
    (a, _), (b, _) = store.put(photo), store.put(agreement)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO attachments (case_id, sha256, served_sha256, kind, media_type, served_type, size,
                                        served_size, actor_kind, actor_name, actor_role)
               VALUES ((SELECT min(id) FROM cases), %s, %s, 'pdf', 'application/pdf', 'application/pdf', %s, %s,
                       'cli', 'test', 'admin')""",
            (b, b, len(agreement), len(agreement)),
        )
    file = tmp_path / "yitu.dump"
    made = _yitu(demo_db, redis_url, "db", "backup", str(file))
    assert made.exit_code == 0, made.output
    archive = backup.blobs_archive(file)
    assert f"blobs written: {archive} (2 blobs" in made.output
    assert sorted(backup.check_blobs(archive)) == sorted([a, b]) and not list(tmp_path.glob("*.partial"))
    taken = tmp_path / "taken.dump"
    backup.blobs_archive(taken).write_bytes(b"someone's file")
    refused = _yitu(demo_db, redis_url, "db", "backup", str(taken))
    assert refused.exit_code == 1 and "already exists" in refused.output and not taken.exists()

    # the round trip: a new database and an empty blob store get the rows and the bytes
    elsewhere = tmp_path / "other-blobs"
    name = _name(demo_db) + "_blobs"
    extra_dbs.append(name)
    back = _yitu(demo_db, redis_url, "db", "restore", str(file), "--into", name, blob_dir=elsewhere)
    assert back.exit_code == 0, back.output
    restored = LocalBlobStore(elsewhere)
    assert sorted(restored.addresses()) == sorted([a, b]) and restored.staging_files() == []
    with restored.open(b) as f:
        assert address_of(f.read()) == b
    with psycopg.connect(with_dbname(demo_db, name)) as conn:
        assert conn.execute("SELECT sha256 FROM attachments").fetchall() == [(b,)]

    # a half archive, a damaged one, none at all: refused, no database made, no blob added
    extra_dbs.append(name + "_x")
    names_before = _ours(demo_db)
    whole = archive.read_bytes()
    for case, damage in (
        ("half", lambda p: p.write_bytes(whole[:700])),  # inside the first blob's bytes
        ("no manifest", lambda p: p.write_bytes(whole[: whole.index(b"MANIFEST.json")])),
        ("damaged", lambda p: p.write_bytes(whole.replace(photo, photo[::-1]))),
        ("missing", lambda p: None),
    ):
        copy = tmp_path / f"{case.replace(' ', '-')}.dump"
        copy.write_bytes(file.read_bytes())
        damage(backup.blobs_archive(copy))
        target = tmp_path / f"blobs-{case.replace(' ', '-')}"
        r = _yitu(demo_db, redis_url, "db", "restore", str(copy), "--into", name + "_x", blob_dir=target)
        assert r.exit_code == 1 and "Traceback" not in r.output, (case, r.output)
        assert "blobs archive" in r.output or "cut off" in r.output or "damaged" in r.output, (case, r.output)
        assert list(LocalBlobStore(target).addresses()) == [], case
        assert not _exists(demo_db, name + "_x"), case
    assert _ours(demo_db) == names_before

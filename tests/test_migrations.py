"""Migrations: in order, once each, atomic per file, and honest about changed files."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from geodata.migrate import SQL_DIR, MigrationError, applied, discover, migrate

CORE_TABLES = {
    "areas": "MultiPolygon",
    "cameras": "Point",
    "mediation_centers": "Point",
    "van_positions": "Point",
    "cases": "Point",
}


def _files() -> list[str]:
    return [m.path.name for m in discover()]


def test_migrations_apply_in_order_then_are_a_no_op(fresh_db: str) -> None:
    first = migrate(fresh_db)
    assert first == _files()
    assert first == sorted(first)
    assert migrate(fresh_db) == []
    assert [name for _, name in applied(fresh_db)] == first


def test_core_tables_have_srid_4326_geometries_and_gist_indexes(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        cols = {
            table: (srid, gtype)
            for table, srid, gtype in conn.execute(
                "SELECT f_table_name, srid, type FROM geometry_columns WHERE f_table_schema = 'public'"
            )
        }
        gist = {
            row[0]
            for row in conn.execute(
                """SELECT t.relname FROM pg_index x
                   JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
                   JOIN pg_am am ON am.oid = i.relam WHERE am.amname = 'gist'"""
            )
        }
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        partitioned = {r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relkind = 'p'")}
    for table, gtype in CORE_TABLES.items():
        assert cols[table] == (4326, gtype.upper()), table
    for table in ("areas", "cameras", "mediation_centers", "cases"):
        assert table in gist, f"{table} has no GiST index"
    assert {"vans", "case_events", "schema_migrations"} <= tables
    assert {"van_positions", "case_events"} <= partitioned


def test_area_constraints_reject_codes_that_do_not_fit_their_level(db_url: str) -> None:
    insert = (
        "INSERT INTO areas (code, name, level, parent_code, geom)"
        " VALUES (%s, %s, %s, %s, ST_Multi(ST_GeomFromText(%s, 4326)))"
    )
    square = "POLYGON((107 38, 108 38, 108 39, 107 39, 107 38))"
    with psycopg.connect(db_url) as conn:
        conn.execute(insert, ("150623", "鄂托克前旗", 1, None, square))
        conn.commit()
        bad = [
            ("1506231", 2, "150623"),
            ("150623100", 3, "150623"),
            ("999999100", 2, "150623"),
            ("150624", 1, "150623"),
        ]
        for code, level, parent in bad:
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(insert, (code, "x", level, parent, square))
            conn.rollback()
        bowtie = "POLYGON((107 38, 108 39, 108 38, 107 39, 107 38))"
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(insert, ("150623100", "自相交", 2, "150623", bowtie))
        conn.rollback()
        conn.execute(insert, ("150623100", "敖勒召其镇", 2, "150623", square))
        conn.commit()


def test_month_partitions_are_created_once(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        made = conn.execute(
            "SELECT yitu_ensure_month_partitions('case_events', '2026-01-15', '2026-03-01')"
        ).fetchone()[0]
        again = conn.execute(
            "SELECT yitu_ensure_month_partitions('case_events', '2026-01-01', '2026-03-31')"
        ).fetchone()[0]
        assert (made, again) == (3, 0)
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute("SELECT yitu_ensure_month_partitions('areas', '2026-01-01', '2026-02-01')")


def _copy_sql(tmp_path: Path) -> Path:
    d = tmp_path / "sql"
    shutil.copytree(SQL_DIR, d)
    return d


def test_broken_migration_rolls_back_and_names_the_file(fresh_db: str, tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    (sql_dir / "900_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1);\nSELECT no_such_function();\n"
    )
    with pytest.raises(MigrationError) as err:
        migrate(fresh_db, sql_dir)
    assert err.value.filename == "900_broken.sql"
    assert "900_broken.sql" in str(err.value) and "no_such_function" in str(err.value)
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in discover()]  # everything before it stayed applied

    (sql_dir / "900_broken.sql").write_text("CREATE TABLE half_done (id int);\n")
    assert migrate(fresh_db, sql_dir) == ["900_broken.sql"]


def test_a_changed_applied_migration_is_refused(fresh_db: str, tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    migrate(fresh_db, sql_dir)
    target = sql_dir / "002_areas.sql"
    target.write_text(target.read_text() + "\n-- edited later\n")
    with pytest.raises(MigrationError, match=r"002_areas\.sql.*changed after it was applied"):
        migrate(fresh_db, sql_dir)


def test_duplicate_migration_numbers_are_refused(tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    (sql_dir / "002_again.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="002"):
        discover(sql_dir)


def test_concurrent_migrators_apply_each_file_once(fresh_db: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(fresh_db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert sorted(len(r) for r in results) == [0, 0, len(_files())]

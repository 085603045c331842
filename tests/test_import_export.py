"""yitu import grids / cameras and yitu export grids, on the real PostGIS.

The fixture files under tests/fixtures/import/ come from make_fixtures.py there: a 15-area
territory (banner 150623, 2 towns, 4 villages, 8 cells) and one small file per defect.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyogrio
import pytest
import shapely
from click.testing import CliRunner, Result

from cli.data import export_group, import_group
from geodata import io
from geodata.migrate import migrate

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "import"
GOOD = FIXTURES / "good.geojson"
LEVEL_COUNTS = {1: 1, 2: 2, 3: 4, 4: 8}


# --- helpers ------------------------------------------------------------------------------------
@pytest.fixture
def env(db_url: str, redis_url: str) -> dict[str, str]:
    return {"YITU_DATABASE_URL": db_url, "YITU_REDIS_URL": redis_url}


def cli(group: Any, env: dict[str, str], *args: object) -> Result:
    return CliRunner().invoke(group, [str(a) for a in args], env=env)


def problem_lines(result: Result) -> list[str]:
    return [line.strip() for line in result.output.splitlines() if line.startswith("  ")]


def areas(dsn: str) -> list[tuple[Any, ...]]:
    """Everything about every area, geometry as EWKB hex: equal snapshots mean an untouched table."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT code, name, level, parent_code, ST_AsEWKB(geom)::text, updated_at FROM areas ORDER BY code"
        ).fetchall()


def cameras(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT device_code, name, kind, status, stream_url, area_code, ST_X(geom), ST_Y(geom), "
            "updated_at FROM cameras ORDER BY device_code"
        ).fetchall()


def level_counts(dsn: str) -> dict[int, int]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT level, count(*) FROM areas GROUP BY level ORDER BY level").fetchall())


def geometries(dsn: str) -> dict[str, shapely.Geometry]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT code, ST_AsBinary(geom) FROM areas").fetchall()
    return {code: shapely.from_wkb(bytes(wkb)) for code, wkb in rows}


def assert_same_shapes(got: dict[str, shapely.Geometry], want: dict[str, shapely.Geometry], tol: float) -> None:
    assert got.keys() == want.keys()
    for code, geom in want.items():
        assert shapely.hausdorff_distance(got[code], geom) < tol, code
        assert shapely.symmetric_difference(got[code], geom).area < tol * geom.length, code


def good_shapes() -> dict[str, shapely.Geometry]:
    frame = pyogrio.read_dataframe(GOOD)
    return {c: shapely.MultiPolygon([g]) for c, g in zip(frame.code, frame.geometry)}


def load_good(env: dict[str, str]) -> None:
    result = cli(import_group, env, "grids", GOOD)
    assert result.exit_code == 0, result.output


# --- good files -----------------------------------------------------------------------------------
def test_good_file_imports_every_level(env: dict[str, str], db_url: str) -> None:
    result = cli(import_group, env, "grids", GOOD)
    assert result.exit_code == 0, result.output
    assert "inserted 15, updated 0" in result.output
    assert "level 1: 1, level 2: 2, level 3: 4, level 4: 8" in result.output
    assert level_counts(db_url) == LEVEL_COUNTS
    rows = {r[0]: r for r in areas(db_url)}
    assert rows["150623"][1:4] == ("示例旗", 1, None)
    assert rows["150623101002002"][1:4] == ("东城镇南村第2网格", 4, "150623101002")  # level and parent from the code
    with psycopg.connect(db_url) as conn:
        kinds = conn.execute("SELECT DISTINCT GeometryType(geom), ST_SRID(geom) FROM areas").fetchall()
        recent = conn.execute("SELECT bool_and(updated_at > now() - interval '1 minute') FROM areas").fetchone()
    assert kinds == [("MULTIPOLYGON", 4326)]
    assert recent == (True,)
    assert_same_shapes(geometries(db_url), good_shapes(), 1e-12)


@pytest.mark.parametrize("name", ["epsg3857.gpkg", "epsg4490.geojson"])
def test_projected_and_cgcs2000_files_land_in_wgs84(env: dict[str, str], db_url: str, name: str) -> None:
    result = cli(import_group, env, "grids", FIXTURES / name)
    assert result.exit_code == 0, result.output
    assert level_counts(db_url) == LEVEL_COUNTS
    assert_same_shapes(geometries(db_url), good_shapes(), 1e-9)


def test_z_coordinates_are_dropped_with_a_warning(env: dict[str, str], db_url: str) -> None:
    result = cli(import_group, env, "grids", FIXTURES / "z_coordinates.geojson")
    assert result.exit_code == 0, result.output
    assert "warning: 15 feature(s) have Z coordinates; heights dropped" in result.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT DISTINCT ST_NDims(geom) FROM areas").fetchall() == [(2,)]
    assert_same_shapes(geometries(db_url), good_shapes(), 1e-12)


def test_gcj02_coordinates_are_converted_to_wgs84(env: dict[str, str], db_url: str) -> None:
    shifted = cli(import_group, env, "grids", FIXTURES / "gcj02.geojson")
    assert shifted.exit_code == 0, shifted.output
    offsets = [shapely.hausdorff_distance(geometries(db_url)[c], g) for c, g in good_shapes().items()]
    assert min(offsets) > 1e-3  # AMap's shift around 107.5E 38.2N is hundreds of metres
    result = cli(import_group, env, "grids", FIXTURES / "gcj02.geojson", "--gcj02")
    assert result.exit_code == 0, result.output
    assert "updated 15" in result.output
    assert_same_shapes(geometries(db_url), good_shapes(), 1e-8)


def test_gbk_shapefile_with_cpg_and_chinese_field_names(env: dict[str, str], db_url: str) -> None:
    result = cli(import_group, env, "grids", FIXTURES / "grids_gbk.shp")
    assert result.exit_code == 0, result.output
    names = {r[0]: r[1] for r in areas(db_url)}
    assert names["150623"] == "示例旗"  # integer DBF code → "150623", GBK name decoded
    assert names["150623100001001"] == "西城镇北村第1网格"
    assert level_counts(db_url) == LEVEL_COUNTS


def test_gbk_shapefile_without_cpg_needs_encoding(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    for part in FIXTURES.glob("grids_gbk.*"):
        if part.suffix != ".cpg":
            shutil.copy(part, tmp_path / part.name)
    shp = tmp_path / "grids_gbk.shp"
    refused = cli(import_group, env, "grids", shp)
    assert refused.exit_code == 1
    assert "missing-field" in refused.output and "--encoding gbk" in refused.output
    assert areas(db_url) == []
    result = cli(import_group, env, "grids", shp, "--encoding", "gbk")
    assert result.exit_code == 0, result.output
    assert {r[0]: r[1] for r in areas(db_url)}["150623101"] == "东城镇"


def test_file_without_crs_is_taken_as_wgs84_with_a_warning(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    for part in FIXTURES.glob("grids_gbk.*"):
        if part.suffix != ".prj":
            shutil.copy(part, tmp_path / part.name)
    result = cli(import_group, env, "grids", tmp_path / "grids_gbk.shp")
    assert result.exit_code == 0, result.output
    assert "has no coordinate reference system; assuming WGS-84" in result.stderr
    assert_same_shapes(geometries(db_url), good_shapes(), 1e-12)


def test_metres_without_crs_are_refused(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    metres = pyogrio.read_dataframe(GOOD).to_crs(3857)
    pyogrio.write_dataframe(metres, tmp_path / "metres.shp")
    (tmp_path / "metres.prj").unlink()
    result = cli(import_group, env, "grids", tmp_path / "metres.shp")
    assert result.exit_code == 1
    assert "bad-coordinates" in result.output and "are not longitude/latitude" in result.output
    assert areas(db_url) == []


def test_geopackage_layer_is_chosen_by_name(env: dict[str, str], db_url: str) -> None:
    gpkg = FIXTURES / "named_layer.gpkg"
    ambiguous = cli(import_group, env, "grids", gpkg)
    assert ambiguous.exit_code == 1
    assert "multiple-layers" in ambiguous.output and "(grids, notes); choose one with --layer" in ambiguous.output
    unknown = cli(import_group, env, "grids", gpkg, "--layer", "网格")
    assert unknown.exit_code == 1 and "unreadable" in unknown.output
    assert areas(db_url) == []
    result = cli(import_group, env, "grids", gpkg, "--layer", "grids")
    assert result.exit_code == 0, result.output
    assert level_counts(db_url) == LEVEL_COUNTS


def test_field_options_name_other_fields(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    frame = pyogrio.read_dataframe(GOOD).rename(columns={"code": "GRID_ID", "name": "标签"})
    frame["上级"] = [c[:-3] if len(c) > 6 else None for c in frame.GRID_ID]
    pyogrio.write_dataframe(frame, tmp_path / "custom.geojson")
    refused = cli(import_group, env, "grids", tmp_path / "custom.geojson")
    assert refused.exit_code == 1
    lines = problem_lines(refused)
    assert len(lines) == 2  # both missing fields at once, each naming the candidates tried
    assert "no code field (tried code, 编码, 代码, 区划代码, 网格编码, CODE)" in lines[0]
    assert "no name field (tried name, 名称, 网格名称, NAME)" in lines[1]
    result = cli(
        import_group,
        env,
        "grids",
        tmp_path / "custom.geojson",
        "--code-field",
        "GRID_ID",
        "--name-field",
        "标签",
        "--parent-field",
        "上级",
    )
    assert result.exit_code == 0, result.output
    assert level_counts(db_url) == LEVEL_COUNTS


def test_help_documents_the_field_defaults() -> None:
    grids_help = CliRunner().invoke(import_group, ["grids", "--help"]).output
    for name in io.CODE_FIELDS + io.NAME_FIELDS + io.LEVEL_FIELDS + io.PARENT_FIELDS:
        assert name in grids_help
    assert "--gcj02" in grids_help and "--replace" in grids_help
    cameras_help = CliRunner().invoke(import_group, ["cameras", "--help"]).output
    for name in ("设备编码", "球机", "在线", "rtsp://"):
        assert name in cameras_help


# --- defects --------------------------------------------------------------------------------------
DEFECTS = [
    ("unreadable.geojson", "unreadable", ["unreadable.geojson", "not recognized"]),
    ("empty.geojson", "empty", ["empty.geojson", "no features"]),
    ("non_polygon.geojson", "not-polygon", ["150623100001001", "LineString"]),
    ("self_intersecting.geojson", "invalid-geometry", ["150623100001001", "Self-intersection"]),
    ("duplicate_code.geojson", "duplicate-code", ["150623101002002", "features #15, #16"]),
    ("missing_parent.geojson", "missing-parent", ["150623100001001, 150623100001002", "parent 150623100001"]),
    ("code_level.geojson", "code-level", ["150623100001002", "a level-3 code has 12 digits"]),
    ("child_outside_parent.geojson", "outside-parent", ["150623100002001, 150623100002", "outside its parent"]),
    ("overlapping_siblings.geojson", "overlap", ["150623101001001, 150623101001002", "overlap by"]),
    ("gap.geojson", "gap", ["150623101002", "uncovered"]),
]


@pytest.mark.parametrize(("name", "kind", "expected"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_defective_file_is_rejected_and_nothing_changes(
    env: dict[str, str], db_url: str, name: str, kind: str, expected: list[str]
) -> None:
    load_good(env)
    before = areas(db_url)
    result = cli(import_group, env, "grids", FIXTURES / name, "--replace")
    assert result.exit_code == 1, result.output
    assert f"{name} rejected, 1 problem(s), nothing was written" in result.output
    [line] = problem_lines(result)
    assert line.startswith(f"{kind}: ")
    for text in expected:
        assert text in line
    assert " @ lon/lat " in line or " @ " + name in line
    assert areas(db_url) == before


@pytest.mark.parametrize("name", [d[0] for d in DEFECTS if d[0] != "missing_parent.geojson"])
def test_defects_are_rejected_on_top_of_the_territory_too(env: dict[str, str], db_url: str, name: str) -> None:
    load_good(env)
    before = areas(db_url)
    result = cli(import_group, env, "grids", FIXTURES / name)
    assert result.exit_code == 1, result.output
    assert len(problem_lines(result)) == 1
    assert areas(db_url) == before


def test_every_problem_is_reported_at_once(env: dict[str, str], db_url: str) -> None:
    with pytest.raises(io.ImportRejected) as caught:
        io.import_grids(env["YITU_DATABASE_URL"], FIXTURES / "three_defects.geojson")
    found = {(p.kind, p.codes) for p in caught.value.problems}
    assert found == {
        ("invalid-geometry", ("150623101001002",)),
        ("duplicate-code", ("150623100001001",)),
        ("gap", ("150623100002",)),
    }
    assert all(p.location.startswith("lon/lat ") for p in caught.value.problems)
    assert areas(db_url) == []


def test_unusable_rows_are_each_located(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    """Hostile rows: numeric codes with a NaN, a 201-character name, a feature without geometry."""
    frame = pyogrio.read_dataframe(GOOD)
    frame["code"] = frame.code.astype(float)  # numeric codes: 150623.0 must become "150623"
    frame.loc[frame.code == 150623100001001, "code"] = np.nan
    frame.loc[frame.code == 150623101002002, "name"] = "长" * 201
    frame.loc[len(frame)] = {"code": np.nan, "name": "无几何", "geometry": None}
    pyogrio.write_dataframe(frame, tmp_path / "hostile.geojson")
    with pytest.raises(io.ImportRejected) as caught:
        io.import_grids(env["YITU_DATABASE_URL"], tmp_path / "hostile.geojson")
    assert {(p.kind, p.codes, p.location) for p in caught.value.problems} == {
        ("bad-name", ("150623101002002",), "lon/lat 107.57500,38.17500"),
        ("missing-code", (), "lon/lat 107.42500,38.27500"),  # its ground is not also reported as a gap
        ("missing-code", (), "feature #16"),
        ("no-geometry", (), "feature #16"),
    }
    assert "the name has 201 characters; at most 200" in str(caught.value)
    assert areas(db_url) == []


def test_sql_in_codes_and_names_is_only_data(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    frame = pyogrio.read_dataframe(GOOD)
    frame.loc[0, "name"] = "示例旗'); DROP TABLE areas; --"
    hostile = frame.copy()
    hostile.loc[hostile.code == "150623101001002", "code"] = "150623'); DROP TABLE areas; --"
    pyogrio.write_dataframe(hostile, tmp_path / "hostile_code.geojson")
    refused = cli(import_group, env, "grids", tmp_path / "hostile_code.geojson")
    assert refused.exit_code == 1
    assert "code-level: 150623'); DROP TABLE areas; -- @" in refused.output
    assert areas(db_url) == []
    frame["code"] = frame.code.astype("int64")  # integer codes, as from a DBF
    pyogrio.write_dataframe(frame, tmp_path / "numeric.geojson")
    result = cli(import_group, env, "grids", tmp_path / "numeric.geojson")
    assert result.exit_code == 0, result.output
    names = {r[0]: r[1] for r in areas(db_url)}
    assert names["150623"] == "示例旗'); DROP TABLE areas; --"
    assert "150623100001001" in names


def test_normalise_code() -> None:
    assert io.normalise_code(150623100001001) == "150623100001001"
    assert io.normalise_code(150623.0) == "150623"
    assert io.normalise_code(np.float64(150623100.0)) == "150623100"
    assert io.normalise_code(" 150623100001.0 ") == "150623100001"
    assert io.normalise_code(float("nan")) is None
    assert io.normalise_code(None) is None
    assert io.normalise_code("  ") is None
    assert io.normalise_code(1.5) == "1.5"


# --- upsert and replace ------------------------------------------------------------------------------
def test_cells_land_on_the_levels_imported_before(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    first = cli(import_group, env, "grids", FIXTURES / "levels_1_3.geojson")
    assert first.exit_code == 0, first.output
    assert "inserted 7, updated 0" in first.output
    cells = cli(import_group, env, "grids", FIXTURES / "level_4.geojson")
    assert cells.exit_code == 0, cells.output
    assert "inserted 8, updated 0 (level 4: 8)" in cells.output
    assert level_counts(db_url) == LEVEL_COUNTS
    before = {r[0]: r for r in areas(db_url)}

    renamed = pyogrio.read_dataframe(FIXTURES / "level_4.geojson")
    renamed["name"] = renamed.name + "（新）"
    pyogrio.write_dataframe(renamed, tmp_path / "renamed.geojson")
    again = cli(import_group, env, "grids", tmp_path / "renamed.geojson")
    assert again.exit_code == 0, again.output
    assert "inserted 0, updated 8" in again.output
    after = {r[0]: r for r in areas(db_url)}
    assert after["150623100001001"][1] == "西城镇北村第1网格（新）"
    assert after["150623100001001"][5] > before["150623100001001"][5]  # updated_at moved
    assert after["150623100001"] == before["150623100001"]  # villages untouched


def test_upsert_judges_the_union_with_the_database(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    """A village redrawn smaller leaves its cells (from the database) outside it."""
    load_good(env)
    before = areas(db_url)
    frame = pyogrio.read_dataframe(GOOD)
    village = frame[frame.code == "150623100001"].copy()
    village["geometry"] = [shapely.box(107.4, 38.2, 107.45, 38.3)]
    pyogrio.write_dataframe(village, tmp_path / "village.geojson")
    result = cli(import_group, env, "grids", tmp_path / "village.geojson")
    assert result.exit_code == 1
    lines = problem_lines(result)
    assert any(line.startswith("outside-parent: 150623100001002, 150623100001 ") for line in lines)
    assert any(line.startswith("gap: 150623100 ") for line in lines)  # the town is no longer covered
    assert areas(db_url) == before


def test_replace_swaps_the_whole_territory(env: dict[str, str], db_url: str) -> None:
    load_good(env)
    assert cli(import_group, env, "cameras", FIXTURES / "cameras.geojson").exit_code == 0
    result = cli(import_group, env, "grids", FIXTURES / "levels_1_3.geojson", "--replace")
    assert result.exit_code == 0, result.output
    assert "inserted 7, updated 0, replaced 15 old" in result.output
    assert level_counts(db_url) == {1: 1, 2: 2, 3: 4}
    # cameras stay, and now belong to the smallest area left: their village
    assert [r[5] for r in cameras(db_url)] == ["150623100001", "150623100002", "150623101001", "150623101002"]


def test_replace_alone_refuses_orphans_the_database_would_have_parented(env: dict[str, str], db_url: str) -> None:
    load_good(env)
    before = areas(db_url)
    result = cli(import_group, env, "grids", FIXTURES / "level_4.geojson", "--replace")
    assert result.exit_code == 1
    assert len(problem_lines(result)) == 4  # one per missing village
    assert areas(db_url) == before
    assert cli(import_group, env, "grids", FIXTURES / "level_4.geojson").exit_code == 0


# --- export ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_export_then_import_round_trip(
    env: dict[str, str], db_url: str, fresh_db: str, tmp_path: Path, suffix: str
) -> None:
    load_good(env)
    for level in (1, 2, 3, 4):
        out = tmp_path / f"level{level}{suffix}"
        result = cli(export_group, env, "grids", "--level", level, out)
        assert result.exit_code == 0, result.output
        assert f"exported {LEVEL_COUNTS[level]} level-{level} areas" in result.output
        frame = pyogrio.read_dataframe(out)
        assert list(frame.columns) == ["code", "name", "level", "parent_code", "geometry"]
        assert frame.crs.equals("EPSG:4326", ignore_axis_order=True)
    migrate(fresh_db)
    other = {"YITU_DATABASE_URL": fresh_db, "YITU_REDIS_URL": env["YITU_REDIS_URL"]}
    for level in (1, 2, 3, 4):
        result = cli(import_group, other, "grids", tmp_path / f"level{level}{suffix}")
        assert result.exit_code == 0, result.output
    assert [r[:4] for r in areas(fresh_db)] == [r[:4] for r in areas(db_url)]
    assert_same_shapes(geometries(fresh_db), geometries(db_url), 1e-9)


def test_export_refuses_bad_suffix_level_and_nothing(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    shp = cli(export_group, env, "grids", "--level", "4", tmp_path / "cells.shp")
    assert shp.exit_code == 1
    assert "cannot export to 'cells.shp': the file name must end in .gpkg or .geojson" in shp.output
    assert not (tmp_path / "cells.shp").exists()
    bad_level = cli(export_group, env, "grids", "--level", "5", tmp_path / "cells.gpkg")
    assert bad_level.exit_code == 2 and "--level" in bad_level.output
    no_level = cli(export_group, env, "grids", tmp_path / "cells.gpkg")
    assert no_level.exit_code == 2 and "Missing option '--level'" in no_level.output
    empty = cli(export_group, env, "grids", "--level", "4", tmp_path / "cells.gpkg")
    assert empty.exit_code == 1 and "holds no level-4 areas" in empty.output
    with pytest.raises(io.ExportError, match="level must be 1, 2, 3 or 4"):
        io.export_grids(db_url, 0, tmp_path / "x.geojson")


# --- cameras -----------------------------------------------------------------------------------------
def test_cameras_import_maps_chinese_values_and_finds_their_cells(env: dict[str, str], db_url: str) -> None:
    load_good(env)
    result = cli(import_group, env, "cameras", FIXTURES / "cameras.geojson")
    assert result.exit_code == 0, result.output
    assert "cameras: inserted 4, updated 0 (bullet: 1, checkpoint: 1, dome: 1, mini_dome: 1)" in result.output
    rows = cameras(db_url)
    assert [r[:6] for r in rows] == [
        ("15062300001320000001", "西城镇北村路口", "dome", "online", "rtsp://10.0.0.1:554/live/1", "150623100001001"),
        ("15062300001320000002", "西城镇南村学校", "bullet", "offline", None, "150623100002002"),
        (
            "15062300001320000003",
            "东城镇北村广场",
            "mini_dome",
            "online",
            "https://video.example.cn/3.m3u8",
            "150623101001002",
        ),
        ("15062300001320000004", "东城镇南村卡口", "checkpoint", "online", "rtmp://10.0.0.4/live", "150623101002001"),
    ]
    again = cli(import_group, env, "cameras", FIXTURES / "cameras.geojson")
    assert "inserted 0, updated 4" in again.output
    assert len(cameras(db_url)) == 4
    replaced = cli(import_group, env, "cameras", FIXTURES / "cameras.geojson", "--replace")
    assert "inserted 4, updated 0, replaced 4 old" in replaced.output


CAMERA_DEFECTS = [
    ("cameras_not_point.geojson", "not-point", "15062300001320000001"),
    ("cameras_duplicate.geojson", "duplicate-device-code", "15062300001320000001"),
    ("cameras_missing_code.geojson", "missing-device-code", "lon/lat 107.42000,38.25000"),
    ("cameras_bad_kind.geojson", "bad-kind", "'无人机'"),
    ("cameras_bad_status.geojson", "bad-status", "'坏了'"),
    ("cameras_bad_url.geojson", "bad-stream-url", "ftp://10.0.0.1/x"),
    ("cameras_outside.geojson", "outside-territory", "lon/lat 107.70000,38.20000"),
]


@pytest.mark.parametrize(("name", "kind", "expected"), CAMERA_DEFECTS, ids=[d[0] for d in CAMERA_DEFECTS])
def test_defective_camera_file_is_rejected(
    env: dict[str, str], db_url: str, name: str, kind: str, expected: str
) -> None:
    load_good(env)
    assert cli(import_group, env, "cameras", FIXTURES / "cameras.geojson").exit_code == 0
    before = cameras(db_url)
    result = cli(import_group, env, "cameras", FIXTURES / name, "--replace")
    assert result.exit_code == 1, result.output
    [line] = problem_lines(result)
    assert line.startswith(f"{kind}: ") and expected in line
    assert cameras(db_url) == before


def test_cameras_need_a_territory(env: dict[str, str], db_url: str) -> None:
    result = cli(import_group, env, "cameras", FIXTURES / "cameras.geojson")
    assert result.exit_code == 1
    assert "the database holds no level-1 area: import the grid first" in result.output
    assert cameras(db_url) == []


def test_unreachable_database_is_one_clear_line(tmp_path: Path, redis_url: str) -> None:
    env = {"YITU_DATABASE_URL": "postgresql://nobody:x@127.0.0.1:1/none", "YITU_REDIS_URL": redis_url}
    result = cli(import_group, env, "grids", GOOD)
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach the database:")
    assert "Traceback" not in result.output

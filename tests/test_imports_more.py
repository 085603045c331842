"""Issue 16 item 1, the rest of it: ``yitu import centers|vans|users`` and ``yitu import cameras
--update-status``, and the one-time welcome link an imported person sets their password with.

Each importer is judged as the grid and roster importers are: a good file writes what it says; a
file with several defects is refused whole, every problem named by row and field, nothing written;
``--check`` writes nothing and says what would change; ``--replace`` makes the file the whole set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner, Result

from cli.data import import_group
from geodata import tracking

BANNER = "150623"


def _rows(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def _one(dsn: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    return _rows(dsn, query, params)[0][0]


def _cli(dsn: str, *args: object) -> Result:
    return CliRunner().invoke(import_group, [str(a) for a in args], env={"YITU_DATABASE_URL": dsn})


def _csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def _problems(result: Result) -> list[str]:
    return [line.strip() for line in result.output.splitlines() if line.startswith("  ")]


def _town_point(dsn: str) -> tuple[str, float, float]:
    """A town's code and a point inside it."""
    code, lon, lat = _rows(
        dsn,
        "SELECT code, ST_X(p), ST_Y(p) FROM (SELECT code, ST_PointOnSurface(geom) p FROM areas WHERE level = 2 "
        "ORDER BY code LIMIT 1) t",
    )[0]
    return code, lon, lat


# --- the camera status feed ------------------------------------------------------------------------


def test_a_status_feed_sets_only_the_status_of_the_cameras_it_names(demo_db: str, tmp_path: Path) -> None:
    cams = _rows(demo_db, "SELECT device_code, status, name FROM cameras ORDER BY device_code LIMIT 3")
    flip = {"online": "离线", "offline": "在线"}
    feed = _csv(
        tmp_path / "status.csv", ["设备编码", "状态"], [[cams[0][0], flip[cams[0][1]]], [cams[1][0], cams[1][1]]]
    )
    result = _cli(demo_db, "cameras", feed, "--update-status", "--check")
    assert result.exit_code == 0, result.output
    assert "check only" in result.output and "updated 1" in result.output
    assert _one(demo_db, "SELECT status FROM cameras WHERE device_code = %s", (cams[0][0],)) == cams[0][1]

    result = _cli(demo_db, "cameras", feed, "--update-status")
    assert result.exit_code == 0, result.output
    assert "updated 1" in result.output
    after = _rows(demo_db, "SELECT status, name FROM cameras WHERE device_code = %s", (cams[0][0],))[0]
    assert after[0] != cams[0][1] and after[1] == cams[0][2]

    # JSON, with 1/0
    feed = tmp_path / "status.json"
    feed.write_text(json.dumps([{"device_code": cams[2][0], "status": "0"}, {"device_code": cams[0][0], "status": 1}]))
    result = _cli(demo_db, "cameras", feed, "--update-status")
    assert result.exit_code == 0, result.output
    assert _one(demo_db, "SELECT status FROM cameras WHERE device_code = %s", (cams[2][0],)) == "offline"
    assert _one(demo_db, "SELECT status FROM cameras WHERE device_code = %s", (cams[0][0],)) == "online"


def test_a_bad_status_feed_names_every_row_and_writes_nothing(demo_db: str, tmp_path: Path) -> None:
    before = _rows(demo_db, "SELECT device_code, status FROM cameras ORDER BY device_code")
    good = before[0][0]
    feed = _csv(
        tmp_path / "status.csv",
        ["device_code", "status"],
        [
            [good, "offline" if before[0][1] == "online" else "online"],
            ["NO-SUCH-CAM", "online"],
            [before[1][0], "maybe"],
        ],
    )
    result = _cli(demo_db, "cameras", feed, "--update-status")
    assert result.exit_code == 1
    problems = _problems(result)
    assert len(problems) == 2, result.output
    assert any("unknown-camera" in p and "row 3" in p for p in problems)
    assert any("bad-status" in p and "row 4, status" in p for p in problems)
    assert _rows(demo_db, "SELECT device_code, status FROM cameras ORDER BY device_code") == before


# --- mediation centres -----------------------------------------------------------------------------


def test_centres_from_csv_and_a_geopackage_matched_by_code(demo_db: str, tmp_path: Path) -> None:
    import geopandas as gpd
    import shapely

    town, lon, lat = _town_point(demo_db)
    existing = _rows(demo_db, "SELECT code, name FROM mediation_centers ORDER BY code LIMIT 1")[0]
    n_before = _one(demo_db, "SELECT count(*) FROM mediation_centers")
    path = _csv(
        tmp_path / "centres.csv",
        ["编码", "名称", "级别", "区划代码", "调解员数", "专长", "电话", "经度", "纬度"],
        [["C-NEW-1", "新镇调解站", "镇", town, "4", "", "0477-1234567", str(lon), str(lat)]],
        encoding="gbk",
    )
    result = _cli(demo_db, "centers", path, "--check")
    assert result.exit_code == 0, result.output
    assert "inserted 1" in result.output and _one(demo_db, "SELECT count(*) FROM mediation_centers") == n_before
    result = _cli(demo_db, "centers", path)
    assert result.exit_code == 0, result.output
    row = _rows(
        demo_db, "SELECT name, level, area_code, mediators, phone FROM mediation_centers WHERE code = 'C-NEW-1'"
    )[0]
    assert row == ("新镇调解站", 2, town, 4, "0477-1234567")

    # a GeoPackage: the point is the geometry; an existing code is updated
    gdf = gpd.GeoDataFrame(
        {"code": [existing[0]], "name": ["改名中心"], "area_code": [town]},
        geometry=[shapely.Point(lon, lat)],
        crs="EPSG:4326",
    )
    gdf.to_file(tmp_path / "centres.gpkg", driver="GPKG")
    result = _cli(demo_db, "centers", tmp_path / "centres.gpkg")
    assert result.exit_code == 0, result.output
    assert "updated 1" in result.output
    assert _one(demo_db, "SELECT name FROM mediation_centers WHERE code = %s", (existing[0],)) == "改名中心"


def test_a_bad_centre_file_names_every_problem_and_writes_nothing(demo_db: str, tmp_path: Path) -> None:
    town, lon, lat = _town_point(demo_db)
    before = _rows(demo_db, "SELECT code, name, level FROM mediation_centers ORDER BY code")
    path = _csv(
        tmp_path / "centres.csv",
        ["code", "name", "level", "area_code", "mediators", "lon", "lat"],
        [
            ["C1", "好的", "2", town, "1", str(lon), str(lat)],
            ["C2", "", "9", town, "many", str(lon), str(lat)],
            ["C3", "远处", "", "999999", "0", "200", str(lat)],
            ["C1", "重复", "2", town, "1", str(lon), str(lat)],
            ["C4", "外面", "2", town, "0", "0.5", "0.5"],
            ["C5", "=cmd", "2", town, "0", str(lon), str(lat)],
        ],
    )
    result = _cli(demo_db, "centers", path)
    assert result.exit_code == 1
    text = "\n".join(_problems(result))
    for expected in (
        "row 3, name",
        "row 3, level",
        "row 3, mediators",
        "row 4, area_code",
        "row 4, lon",
        "duplicate: C1 @ row 5",
        "outside-area: C4 @ row 6",
        "row 7, name",
    ):
        assert expected in text, (expected, result.output)
    assert _rows(demo_db, "SELECT code, name, level FROM mediation_centers ORDER BY code") == before


def test_replace_deletes_centres_not_in_the_file_unless_still_used(demo_db: str, tmp_path: Path) -> None:
    town, lon, lat = _town_point(demo_db)
    path = _csv(
        tmp_path / "c.csv", ["code", "name", "area_code", "lon", "lat"], [["ONLY", "唯一", town, str(lon), str(lat)]]
    )
    result = _cli(demo_db, "centers", path, "--replace")
    assert result.exit_code == 1
    assert "still-used" in result.output and "based there" in result.output
    # free the centres, then the file is the whole set, and the replace is audited
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE vans SET base_center_id = NULL")
        conn.execute("UPDATE mediators SET center_id = NULL")
    result = _cli(demo_db, "centers", path, "--replace")
    assert result.exit_code == 0, result.output
    assert _rows(demo_db, "SELECT code FROM mediation_centers") == [("ONLY",)]
    assert _one(demo_db, "SELECT count(*) FROM admin_events WHERE action = 'import.centres.replace'") == 1


# --- vans and their devices ------------------------------------------------------------------------


def test_vans_with_devices_stored_only_as_hashes(demo_db: str, tmp_path: Path) -> None:
    centre = _one(demo_db, "SELECT code FROM mediation_centers ORDER BY code LIMIT 1")
    van = _one(demo_db, "SELECT id FROM vans ORDER BY id LIMIT 1")
    path = _csv(
        tmp_path / "vans.csv",
        ["车辆编号", "名称", "车牌", "所属中心", "设备"],
        [["NEW01", "新调解车", "蒙K12345", centre, "phone-secret-1|terminal-secret-2"], [van, "改名车", "", "", ""]],
    )
    result = _cli(demo_db, "vans", path, "--check")
    assert result.exit_code == 0, result.output
    assert "inserted 1" in result.output and "updated 1" in result.output
    assert _rows(demo_db, "SELECT 1 FROM vans WHERE id = 'NEW01'") == []
    result = _cli(demo_db, "vans", path)
    assert result.exit_code == 0, result.output
    assert _rows(demo_db, "SELECT name, plate FROM vans WHERE id = 'NEW01'") == [("新调解车", "蒙K12345")]
    assert _one(demo_db, "SELECT name FROM vans WHERE id = %s", (van,)) == "改名车"
    hashes = {r[0] for r in _rows(demo_db, "SELECT device_hash FROM van_devices WHERE van_id = 'NEW01'")}
    assert hashes == {tracking.device_hash("phone-secret-1"), tracking.device_hash("terminal-secret-2")}
    assert "phone-secret-1" not in result.output


def test_a_bad_van_file_names_every_problem_and_writes_nothing(demo_db: str, tmp_path: Path) -> None:
    before = _rows(demo_db, "SELECT id, name FROM vans ORDER BY id")
    devices = _one(demo_db, "SELECT count(*) FROM van_devices")
    path = _csv(
        tmp_path / "vans.csv",
        ["id", "name", "base", "devices"],
        [
            ["OK1", "好车", "", "long-enough-id"],
            ["bad id!", "坏车", "", ""],
            ["OK2", "", "NO-SUCH-CENTRE", "123456"],
            ["OK1", "重复", "", ""],
            ["OK3", "共享", "", "long-enough-id"],
        ],
    )
    result = _cli(demo_db, "vans", path)
    assert result.exit_code == 1
    text = "\n".join(_problems(result))
    for expected in (
        "row 3, id",
        "row 4, name",
        "row 4, base",
        "row 4, devices",
        "duplicate: OK1 @ row 5",
        "row 6, devices",
    ):
        assert expected in text, (expected, result.output)
    assert "123456" not in result.output  # a device identifier is never echoed
    assert _rows(demo_db, "SELECT id, name FROM vans ORDER BY id") == before
    assert _one(demo_db, "SELECT count(*) FROM van_devices") == devices


def test_replace_takes_vans_not_in_the_file_off_the_road(demo_db: str, tmp_path: Path) -> None:
    vans = [r[0] for r in _rows(demo_db, "SELECT id FROM vans ORDER BY id")]
    path = _csv(tmp_path / "vans.csv", ["id", "name", "devices"], [[vans[0], "留下", "kept-device-1"]])
    result = _cli(demo_db, "vans", path, "--replace")
    assert result.exit_code == 0, result.output
    assert _one(demo_db, "SELECT count(*) FROM vans") == len(vans)  # never deleted
    assert _one(demo_db, "SELECT count(*) FROM vans WHERE id <> %s AND status <> 'offline'", (vans[0],)) == 0
    assert _rows(demo_db, "SELECT device_hash FROM van_devices") == [(tracking.device_hash("kept-device-1"),)]
    assert _one(demo_db, "SELECT count(*) FROM admin_events WHERE action = 'import.vans.replace'") == 1


def test_the_cli_help_explains_the_new_imports() -> None:
    for command, words in (
        ("centers", ("lon", "经度", "--replace", "--check")),
        ("vans", ("devices", "SHA-256", "--replace", "--check")),
        ("cameras", ("--update-status", "在线", "JSON")),
    ):
        result = CliRunner().invoke(import_group, [command, "--help"])
        assert result.exit_code == 0
        for word in words:
            assert word in result.output, (command, word)

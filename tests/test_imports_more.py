"""Issue 16 item 1, the rest of it: ``yitu import centers|vans|users`` and ``yitu import cameras
--update-status``, and the one-time welcome link an imported person sets their password with.

Each importer is judged as the grid and roster importers are: a good file writes what it says; a
file with several defects is refused whole, every problem named by row and field, nothing written;
``--check`` writes nothing and says what would change; ``--replace`` makes the file the whole set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from cli.data import import_group
from dashboard.app import create_app
from geodata import tracking
from services import identity

from .cases_fixtures import settings_for

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
    ).to_crs("EPSG:3857")  # a GIS office's web Mercator: reprojected, and said so
    gdf.to_file(tmp_path / "centres.gpkg", driver="GPKG")
    result = _cli(demo_db, "centers", tmp_path / "centres.gpkg")
    assert result.exit_code == 0, result.output
    assert "updated 1" in result.output and "reprojected from WGS 84 / Pseudo-Mercator (EPSG:3857)" in result.output
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


# --- people and their welcome links ----------------------------------------------------------------

ORIGIN = {"Origin": "http://testserver"}


@pytest.fixture
def app_client(demo_db: str, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(demo_db, redis_url, tmp_path))) as c:
        yield c


def _links(result: Result) -> dict[str, str]:
    """name -> the path of its welcome link, from the command's stdout."""
    out: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, _role, url = line.split("\t")
        out[name] = url[url.index("/welcome/") :]
    return out


def _login(c: TestClient, name: str, password: str) -> int:
    r = c.post("/login", data={"username": name, "password": password}, headers=ORIGIN, follow_redirects=False)
    return r.status_code


def test_users_are_created_with_one_time_welcome_links(app_client: TestClient, demo_db: str, tmp_path: Path) -> None:
    town = _one(demo_db, "SELECT code FROM areas WHERE level = 2 ORDER BY code LIMIT 1")
    van = _one(demo_db, "SELECT id FROM vans ORDER BY id LIMIT 1")
    path = _csv(
        tmp_path / "users.csv",
        ["姓名", "角色", "区划代码", "车辆"],
        [["张调度", "调度员", BANNER, ""], ["李网格", "grid_worker", town, ""], ["王司机", "车组", "", van]],
    )
    result = _cli(demo_db, "users", path, "--check")
    assert result.exit_code == 0, result.output
    assert "inserted 3" in result.output and _rows(demo_db, "SELECT 1 FROM users WHERE name = '张调度'") == []

    result = CliRunner().invoke(import_group, ["users", str(path)], env={"YITU_DATABASE_URL": demo_db})
    assert result.exit_code == 0, result.output
    links = _links(result)
    assert set(links) == {"张调度", "李网格", "王司机"}
    rows = _rows(
        demo_db, "SELECT name, role, area_code, van_id FROM users WHERE name = ANY(%s) ORDER BY name", (list(links),)
    )
    assert ("李网格", "grid_worker", town, None) in rows and ("王司机", "van", None, van) in rows
    # only hashes are kept; the link lives 72 hours
    codes = [link.rsplit("/", 1)[1] for link in links.values()]
    stored = {r[0] for r in _rows(demo_db, "SELECT code_hash FROM user_welcomes")}
    assert stored == {identity.hash_token(code) for code in codes}
    assert _one(demo_db, "SELECT min(expires_at - created_at) FROM user_welcomes") == timedelta(hours=72)
    assert _one(demo_db, "SELECT count(*) FROM admin_events WHERE action = 'import.users'") == 1

    c = app_client
    link = links["李网格"]
    assert _login(c, "李网格", "") in (401, 422)  # no password works before the welcome
    page = c.get(link)
    assert page.status_code == 200 and "李网格" in page.text
    # the admin page's rules: too short, and two different entries, are refused and use nothing up
    r = c.post(link, data={"password": "short", "password2": "short"}, headers=ORIGIN, follow_redirects=False)
    assert r.status_code == 422
    r = c.post(link, data={"password": "long-enough-1", "password2": "long-enough-2"}, headers=ORIGIN)
    assert r.status_code == 422
    r = c.post(
        link,
        data={"password": "ok-password-1", "password2": "ok-password-1"},
        headers={"Origin": "http://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403  # another site's form
    r = c.post(
        link, data={"password": "ok-password-1", "password2": "ok-password-1"}, headers=ORIGIN, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert _login(c, "李网格", "ok-password-1") == 303
    # used once: the link is refused after, on GET and on POST
    c.cookies.clear()
    assert c.get(link).status_code == 404
    r = c.post(link, data={"password": "other-pass-22", "password2": "other-pass-22"}, headers=ORIGIN)
    assert r.status_code == 404
    assert _login(c, "李网格", "other-pass-22") == 401

    # an expired link is refused
    with psycopg.connect(demo_db) as conn:
        conn.execute(
            "UPDATE user_welcomes SET expires_at = now() - interval '1 minute' WHERE code_hash = %s",
            (identity.hash_token(links["张调度"].rsplit("/", 1)[1]),),
        )
    assert c.get(links["张调度"]).status_code == 404
    r = c.post(links["张调度"], data={"password": "ok-password-1", "password2": "ok-password-1"}, headers=ORIGIN)
    assert r.status_code == 404
    assert c.get("/welcome/not-a-real-code").status_code == 404


def test_links_out_writes_the_links_to_a_private_file(demo_db: str, tmp_path: Path) -> None:
    path = _csv(tmp_path / "users.csv", ["name", "role", "area"], [["viewer-one", "viewer", ""]])
    out = tmp_path / "links.tsv"
    result = CliRunner().invoke(
        import_group, ["users", str(path), "--links-out", str(out)], env={"YITU_DATABASE_URL": demo_db}
    )
    assert result.exit_code == 0, result.output
    assert "/welcome/" not in result.stdout
    assert out.read_text().startswith("viewer-one\tviewer\t") and "/welcome/" in out.read_text()
    assert out.stat().st_mode & 0o077 == 0


def test_a_bad_user_file_names_every_problem_and_writes_nothing(demo_db: str, tmp_path: Path) -> None:
    existing = (
        _one(demo_db, "SELECT name FROM users ORDER BY id LIMIT 1")
        if _rows(demo_db, "SELECT 1 FROM users LIMIT 1")
        else None
    )
    rows = [
        ["好人", "viewer", "", ""],
        ["坏角色", "boss", "", ""],
        ["坏区域", "viewer", "999999999", ""],
        ["没车", "van", "", ""],
        ["好人", "viewer", "", ""],
        ["多车", "viewer", "", "V01"],
    ]
    if existing:
        rows.append([existing, "viewer", "", ""])
    path = _csv(tmp_path / "users.csv", ["name", "role", "area_code", "van"], rows)
    before = _one(demo_db, "SELECT count(*) FROM users")
    result = _cli(demo_db, "users", path)
    assert result.exit_code == 1
    text = "\n".join(_problems(result))
    for expected in ("row 3, role", "row 4, area_code", "row 5, van", "duplicate: 好人 @ row 6", "row 7, van"):
        assert expected in text, (expected, result.output)
    if existing:
        assert "exists: " in text and "row 8, name" in text
    assert _one(demo_db, "SELECT count(*) FROM users") == before
    assert _one(demo_db, "SELECT count(*) FROM user_welcomes") == 0


def test_the_users_import_is_explained_in_its_help() -> None:
    result = CliRunner().invoke(import_group, ["users", "--help"])
    assert result.exit_code == 0
    for word in ("/welcome/", "72", "--links-out", "role", "SHA-256", "--check"):
        assert word in result.output, word


def test_guessed_welcome_codes_are_throttled_per_address(app_client: TestClient) -> None:
    for i in range(identity.ADDRESS_LIMIT):
        assert app_client.get(f"/welcome/guess-{i}").status_code == 404
    r = app_client.get("/welcome/guess-last")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0

"""The roster (issue 14 item 2): units and mediators, their importer, their API, the admin section
and the demo's roster.

The importer is judged as the grid importer is: good files in every format it reads (CSV in UTF-8
and in GBK, XLSX, GeoPackage, each written here), and bad ones — malformed, oversized, out of range,
hostile — refused with every problem named by row and field and nothing written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import openpyxl
import psycopg
import pytest
import shapely
from click.testing import CliRunner, Result
from playwright.sync_api import Browser

from cli.data import import_group
from dashboard.i18n import TEXTS
from dashboard.pages.admin import Ids
from geodata import roster as geodata_roster
from geodata import roster_import
from geodata.demo.roster import BANNER_EXPERTS, DEPARTMENTS, TRADES, VAN_CREW
from geodata.io import ImportRejected

from .browser import Watched, browser  # noqa: F401 - browser is a fixture
from .conftest import ARTIFACTS, make_token

BANNER = "150623"
ZH = TEXTS["zh-CN"]


# --- helpers ---------------------------------------------------------------------------------------


def _one(dsn: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _areas(dsn: str) -> dict[int, list[str]]:
    """The demo's area codes by level."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT level, code FROM areas ORDER BY code").fetchall()
    out: dict[int, list[str]] = {1: [], 2: [], 3: [], 4: []}
    for level, code in rows:
        out[level].append(code)
    return out


def _counts(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM units), (SELECT count(*) FROM mediators), "
            "(SELECT max(updated_at) FROM units), (SELECT max(updated_at) FROM mediators)"
        ).fetchone()
    assert row is not None
    return row  # type: ignore[return-value]


# A mediator with no open case (the demo assigns its dispatched and handling cases to the roster).
IDLE = """SELECT m.id FROM mediators m WHERE m.active AND NOT EXISTS (
    SELECT 1 FROM cases k WHERE k.assignee ->> 'kind' = 'mediator' AND k.assignee ->> 'id' = m.id::text
      AND k.step NOT IN ('closed', 'evaluated', 'rejected'))"""


def _cli(dsn: str, *args: object) -> Result:
    return CliRunner().invoke(import_group, [str(a) for a in args], env={"YITU_DATABASE_URL": dsn})


def _write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def _problems(result: Result) -> list[str]:
    return [line.strip() for line in result.output.splitlines() if line.startswith("  ")]


@pytest.fixture
def areas(demo_db: str) -> dict[int, list[str]]:
    return _areas(demo_db)


# --- the demo's roster ------------------------------------------------------------------------------


def test_the_demo_seeds_the_roster_the_seeds_describe(demo_dsn: str) -> None:
    a = _areas(demo_dsn)
    towns = [t for t in a[2] if int(t[-3:]) < 400]
    with psycopg.connect(demo_dsn) as conn:
        kinds = dict(conn.execute("SELECT kind, count(*) FROM units GROUP BY kind").fetchall())
        levels = dict(conn.execute("SELECT level, count(*) FROM mediators GROUP BY level").fetchall())
        crews = dict(conn.execute("SELECT van_id, count(*) FROM mediators WHERE van_id IS NOT NULL GROUP BY 1"))
        vans = [r[0] for r in conn.execute("SELECT id FROM vans ORDER BY id")]
        villages_without = conn.execute(
            """SELECT count(*) FROM areas a WHERE a.level = 3 AND NOT EXISTS (
                   SELECT 1 FROM units u WHERE u.area_code = a.code AND u.kind = 'committee')"""
        ).fetchone()
        cells_without = conn.execute(
            """SELECT count(*) FROM areas a WHERE a.level = 4 AND NOT EXISTS (
                   SELECT 1 FROM mediators m WHERE m.area_code = a.code AND m.level = 'grid')"""
        ).fetchone()
        unlinked = conn.execute(
            "SELECT count(*) FROM mediators WHERE unit_id IS NULL OR (level <> 'grid' AND center_id IS NULL)"
        ).fetchone()
        # the open cases past dispatch are assigned to a mediator of their level and area
        unassigned = conn.execute(
            """SELECT count(*) FILTER (WHERE m.id IS NULL), count(*) FROM cases c
               LEFT JOIN mediators m ON c.assignee ->> 'kind' = 'mediator' AND m.id::text = c.assignee ->> 'id'
                 AND m.level = c.level AND m.name = c.assignee ->> 'name'
                 AND m.area_code IN (c.grid_code, c.village_code, c.town_code, c.banner_code)
               WHERE c.step IN ('dispatched', 'handling')"""
        ).fetchone()
    # Otog Front: 401 cells, 85 villages, 4 towns and a development zone (DOMAIN.md)
    assert len(a[4]) == 401 and len(a[3]) >= 85
    assert kinds["committee"] == 1 + len(a[2]) + len(a[3])  # the banner's, each town's, each village's
    assert kinds["professional"] == len(TRADES) == 10  # "10 trade mediation committees"
    assert kinds["justice_office"] == kinds["police_station"] == kinds["court"] == len(towns)
    assert kinds["petition"] == 1 and kinds["hotline"] == 1 and kinds["department"] == len(DEPARTMENTS)
    assert levels["grid"] == 474  # "474 grid workers acting as mediators"
    assert levels["village"] == 3 * len(a[3]) and levels["town"] == 5 * len(a[2])
    assert levels["banner"] == BANNER_EXPERTS + 3 * len(TRADES) + VAN_CREW * len(vans)
    assert crews == dict.fromkeys(vans, VAN_CREW)  # the roving vans' crews
    assert villages_without == (0,) and cells_without == (0,) and unlinked == (0,)
    assert unassigned is not None and unassigned[0] == 0 and unassigned[1] > 100


# --- the importer: good files --------------------------------------------------------------------------


UNIT_HEADER = ["name", "kind", "level", "area_code", "phone", "specialties"]


def test_units_from_csv_in_utf8_with_chinese_kinds_and_types(
    demo_db: str, areas: dict[int, list[str]], tmp_path: Path
) -> None:
    town, village = areas[2][0], areas[3][0]
    path = _write_csv(
        tmp_path / "units.csv",
        ["名称", "类型", "级别", "区划代码", "电话", "专长"],
        [
            ["测试镇交通事故调委会", "行业性专业性调解委员会", "镇", town, "0477-1234567", '"traffic,损害赔偿"'],
            ["测试村调委会", "committee", "", village, "", "邻里纠纷、婚姻家庭"],
            ["测试12345", "12345", "banner", BANNER, "12345", ""],
        ],
    )
    r = _cli(demo_db, "units", path)
    assert r.exit_code == 0, r.output
    assert "units: inserted 3, updated 0" in r.output
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute(
            """SELECT name, kind, level, area_code, phone, specialties FROM units
               WHERE name LIKE '测试%' ORDER BY name COLLATE "C" """
        ).fetchall()
    assert rows == [
        ("测试12345", "hotline", "banner", BANNER, "12345", []),
        ("测试村调委会", "committee", "village", village, None, ["neighbour", "marriage_family"]),
        ("测试镇交通事故调委会", "professional", "town", town, "0477-1234567", ["traffic", "damages"]),
    ]
    again = _cli(demo_db, "units", path)  # the same file again: matched on area and name
    assert again.exit_code == 0 and "inserted 0, updated 3" in again.output, again.output


def test_mediators_from_csv_in_gbk_find_their_unit_by_name_above_them(
    demo_db: str, areas: dict[int, list[str]], tmp_path: Path
) -> None:
    cell = areas[4][0]
    village = cell[:12]
    unit = _one(demo_db, "SELECT name FROM units WHERE area_code = %s AND kind = 'committee'", (village,))
    user = "网格员测试账号"
    with psycopg.connect(demo_db) as conn:
        from services.identity import create_user

        create_user(conn, name=user, role="grid_worker", password="a long password 1", area=cell)
    path = _write_csv(
        tmp_path / "mediators.csv",
        ["姓名", "电话", "所属单位", "调解中心", "车辆", "级别", "区划代码", "专长", "在岗", "用户名"],
        [
            ["其其格", "13900000001", unit, "", "", "网格", cell, "草牧场纠纷", "是", user],
            ["巴特尔", "+86 139 0000 0002", unit, f"MC{village}", "", "", village, "", "否", ""],
            ["李调解", "13900000003", "", f"MC{BANNER}", "V01", "banner", BANNER, "labour、medical", "", ""],
        ],
        encoding="gbk",
    )
    r = _cli(demo_db, "mediators", path)
    assert r.exit_code == 0, r.output
    assert "mediators: inserted 3" in r.output
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute(
            """SELECT m.name, m.level, u.name, m.van_id, m.active, usr.name, m.specialties FROM mediators m
               LEFT JOIN units u ON u.id = m.unit_id LEFT JOIN users usr ON usr.id = m.user_id
               WHERE m.phone IN ('13900000001', '+86 139 0000 0002', '13900000003') ORDER BY m.name COLLATE "C"
            """
        ).fetchall()
    assert rows == [
        ("其其格", "grid", unit, None, True, user, ["grassland"]),
        ("巴特尔", "village", unit, None, False, None, []),
        ("李调解", "banner", None, "V01", True, None, ["labour", "medical"]),
    ]


def test_units_from_xlsx_and_mediators_from_a_geopackage(
    demo_db: str, areas: dict[int, list[str]], tmp_path: Path
) -> None:
    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    ws.append(["name", "kind", "area_code", "phone", "specialties", "active"])
    ws.append(["XLSX司法所", "司法所", areas[2][1], 4771234567, "contract", True])  # a phone typed as a number
    ws.append(["XLSX派出所", "派出所", areas[2][1], None, None, "yes"])
    book.save(tmp_path / "units.xlsx")
    r = _cli(demo_db, "units", tmp_path / "units.xlsx")
    assert r.exit_code == 0 and "units: inserted 2" in r.output, r.output
    assert _one(demo_db, "SELECT phone FROM units WHERE name = 'XLSX司法所'") == "4771234567"

    unit_id = _one(demo_db, "SELECT id FROM units WHERE name = 'XLSX司法所'")
    frame = gpd.GeoDataFrame(
        {
            "name": ["GPKG调解员", "GPKG调解员二"],
            "phone": ["13700000001", "13700000002"],
            "unit": [str(unit_id), "XLSX派出所"],
            "area_code": [areas[2][1], areas[2][1]],
            "specialties": ["traffic", ""],
        },
        geometry=[shapely.Point(107.5, 38.2), shapely.Point(107.6, 38.3)],
        crs=4326,
    )
    frame.to_file(tmp_path / "mediators.gpkg", driver="GPKG", layer="mediators")
    r = _cli(demo_db, "mediators", tmp_path / "mediators.gpkg")
    assert r.exit_code == 0 and "mediators: inserted 2" in r.output, r.output
    with psycopg.connect(demo_db) as conn:
        units = conn.execute(
            """SELECT u.name FROM mediators m JOIN units u ON u.id = m.unit_id
               WHERE m.name LIKE 'GPKG%' ORDER BY m.name COLLATE "C" """
        ).fetchall()
    assert units == [("XLSX司法所",), ("XLSX派出所",)]


def test_replace_deactivates_what_the_file_does_not_hold(
    demo_db: str, areas: dict[int, list[str]], tmp_path: Path
) -> None:
    before = _one(demo_db, "SELECT count(*) FROM units WHERE active")
    path = _write_csv(
        tmp_path / "units.csv",
        UNIT_HEADER,
        [["新调委会", "committee", "", areas[3][2], "", ""], ["新司法所", "justice_office", "", areas[2][0], "", ""]],
    )
    r = _cli(demo_db, "units", path, "--replace")
    assert r.exit_code == 0, r.output
    assert f"replaced {before} old" in r.output  # deactivated, not deleted
    with psycopg.connect(demo_db) as conn:
        active = conn.execute("SELECT name FROM units WHERE active ORDER BY name").fetchall()
        total = conn.execute("SELECT count(*) FROM units").fetchone()
        audit = conn.execute("SELECT action, detail->>'file' FROM admin_events ORDER BY id DESC LIMIT 1").fetchone()
    assert active == [("新司法所",), ("新调委会",)]
    assert total == (before + 2,)  # every old unit is still there, for the old cases' timelines
    assert audit == ("import.units.replace", "units.csv")


# --- the importer: bad files ------------------------------------------------------------------------------


def test_every_problem_of_a_bad_file_is_named_by_row_and_field_and_nothing_is_written(
    demo_db: str, areas: dict[int, list[str]], tmp_path: Path
) -> None:
    town, village = areas[2][0], areas[3][0]
    path = _write_csv(
        tmp_path / "bad.csv",
        UNIT_HEADER,
        [
            ["好单位", "committee", "", village, "", ""],  # row 2: good
            ["未知区域", "committee", "", "150623999999", "", ""],  # 3: unknown area code
            ["未知类型", "法院", "", town, "", ""],  # 4: unknown kind
            ["未知专长", "committee", "", town, "", "邻里、炒股"],  # 5: unknown case type
            ["好单位", "committee", "", village, "", ""],  # 6: a duplicate of row 2
            ["坏电话", "committee", "", town, "call me", ""],  # 7: bad phone
            ["=cmd|' /C calc'!A0", "committee", "", town, "", ""],  # 8: formula injection
            ["控制\x07字符", "committee", "", town, "", ""],  # 9: a control character
            ["层级不符", "committee", "grid", town, "", ""],  # 10: the level is not the area's
            ["超长" * 60, "committee", "", town, "", ""],  # 11: a name over 100 characters
            ["", "committee", "", town, "", ""],  # 12: no name
            ["坏区划", "committee", "", "15O623", "", ""],  # 13: not an area code
            ["@SUM(1)", "committee", "", town, "", ""],  # 14: formula again
        ],
    )
    before = _counts(demo_db)
    r = _cli(demo_db, "units", path)
    assert r.exit_code == 1
    assert "nothing was written" in r.output
    lines = _problems(r)
    expected = {
        3: "area_code",
        4: "kind",
        5: "specialties",
        6: None,
        7: "phone",
        8: "name",
        9: "name",
        10: "level",
        11: "name",
        12: "name",
        13: "area_code",
        14: "name",
    }
    for row, field in expected.items():
        where = f"row {row}, {field}" if field else f"row {row}"
        assert any(where in line for line in lines), (where, lines)
    assert not any("@ row 2" in line for line in lines)  # the good row
    assert any("duplicate" in line and "row 6" in line and "row 2" in line for line in lines)
    assert any("150623999999" in line for line in lines) and any("炒股" in line for line in lines)
    assert _counts(demo_db) == before


def test_hostile_and_broken_files_are_refused_whole(demo_db: str, areas: dict[int, list[str]], tmp_path: Path) -> None:
    before = _counts(demo_db)
    town = areas[2][0]
    # an XLSX whose cell is a formula, whatever it computes
    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    ws.append(["name", "kind", "area_code", "phone"])
    ws.append(["公式单位", "committee", town, '=HYPERLINK("http://evil","13800000000")'])
    ws.append(["正常单位", "committee", town, "13800000000"])
    book.save(tmp_path / "formula.xlsx")
    r = _cli(demo_db, "units", tmp_path / "formula.xlsx")
    assert r.exit_code == 1 and any("row 2, phone" in line and "formula" in line for line in _problems(r)), r.output

    # a CSV row longer than its header (a comma in an unquoted name)
    bad = tmp_path / "malformed.csv"
    bad.write_text(f"name,kind,area_code\n司法所,justice_office,{town}\n甲,乙,丙,committee,{town}\n", encoding="utf-8")
    r = _cli(demo_db, "units", bad)
    assert r.exit_code == 1 and any("row 3" in line and "malformed" in line for line in _problems(r)), r.output

    # bytes that are neither UTF-8 nor GBK, a binary file, an empty one, a file without the columns
    (tmp_path / "latin.csv").write_bytes(b"name,kind,area_code\n\xff\xfe\xfa,committee,150623\n")
    (tmp_path / "nul.csv").write_bytes(b"name,kind,area_code\n\x00\x00,committee,150623\n")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "columns.csv").write_text("名字,电话\n张三,13800000000\n", encoding="utf-8")
    (tmp_path / "notexcel.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    for name, why in (
        ("latin.csv", "unreadable"),
        ("nul.csv", "unreadable"),
        ("empty.csv", "empty"),
        ("columns.csv", "missing-field"),
        ("notexcel.xlsx", "unreadable"),
    ):
        r = _cli(demo_db, "units", tmp_path / name)
        assert r.exit_code == 1 and why in r.output and "nothing was written" in r.output, (name, r.output)

    # oversized: refused before it is read
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.write(b"name,kind,area_code\n")
        f.truncate(roster_import.MAX_FILE_BYTES + 1)
    r = _cli(demo_db, "units", big)
    assert r.exit_code == 1 and "too-large" in r.output, r.output
    # too many rows
    rows = [[f"u{i}", "committee", "", town, "", ""] for i in range(roster_import.MAX_ROWS + 1)]
    many = _write_csv(tmp_path / "many.csv", UNIT_HEADER, rows)
    with pytest.raises(ImportRejected, match=r"too-large|at most"):
        roster_import.read_sheet(many, "units")
    assert _counts(demo_db) == before


def test_bad_mediator_references_are_named(demo_db: str, areas: dict[int, list[str]], tmp_path: Path) -> None:
    before = _counts(demo_db)
    cell = areas[4][0]
    path = _write_csv(
        tmp_path / "mediators.csv",
        ["name", "phone", "unit", "centre", "van", "area_code", "active", "user"],
        [
            ["甲", "13800000001", "没有这个单位", "", "", cell, "", ""],
            ["乙", "13800000002", "999999", "", "", cell, "", ""],
            ["丙", "13800000003", "", "MC000", "", cell, "", ""],
            ["丁", "13800000004", "", "", "V99", cell, "", ""],
            ["戊", "13800000005", "", "", "", cell, "也许", ""],
            ["己", "13800000006", "", "", "", cell, "", "nobody"],
            ["庚", "13800000007", "", "", "", cell, "", ""],
            ["庚", "13800000007", "", "", "", cell, "", ""],
            ["辛", "13800000008", "²", "", "", cell, "", ""],  # str.isdigit takes ², int() refuses it
        ],
    )
    r = _cli(demo_db, "mediators", path)
    assert r.exit_code == 1
    lines = _problems(r)
    wheres = ("row 2, unit", "row 3, unit", "row 4, centre", "row 5, van", "row 6, active", "row 7, user", "row 9")
    for where in (*wheres, "row 10, unit"):
        assert any(where in line for line in lines), (where, lines)
    assert len(lines) == 8, lines
    assert _counts(demo_db) == before


# --- the API -------------------------------------------------------------------------------------------


@pytest.fixture
def api(live_server, demo_db: str, redis_url: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    srv = live_server(demo_db, redis_url)
    return srv.url, demo_db


def _h(dsn: str, role: str, area: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(dsn, role, area=area)}"}


def test_the_api_lists_the_roster_in_scope_with_open_cases_and_masks_phones(api: tuple[str, str]) -> None:
    url, dsn = api
    a = _areas(dsn)
    town = a[2][0]
    mediator = _one(dsn, IDLE + " AND m.level = 'village' AND m.area_code LIKE %s ORDER BY m.id LIMIT 1", (town + "%",))
    with psycopg.connect(dsn) as conn:  # two open cases and a closed one assigned to that mediator
        codes = [
            r[0]
            for r in conn.execute(
                """UPDATE cases SET assignee = jsonb_build_object('kind', 'mediator', 'id', %s::text, 'name', 'x')
                   WHERE id IN (SELECT id FROM cases WHERE step IN ('reported', 'accepted')
                                ORDER BY id LIMIT 2) RETURNING code""",
                (mediator,),
            )
        ]
        conn.execute(
            """UPDATE cases SET assignee = jsonb_build_object('kind', 'mediator', 'id', %s::text, 'name', 'x')
               WHERE id = (SELECT id FROM cases WHERE step IN ('closed', 'evaluated') ORDER BY id LIMIT 1)""",
            (mediator,),
        )
    assert len(codes) == 2
    admin = _h(dsn, "admin")
    with httpx.Client(base_url=url, timeout=30) as http:
        everyone = http.get("/api/v1/mediators", params={"limit": 2000}, headers=admin).json()["mediators"]
        assert len(everyone) == _one(dsn, "SELECT count(*) FROM mediators WHERE active")
        one = next(m for m in everyone if m["id"] == mediator)
        assert one["open_cases"] == 2 and one["phone"].isdigit() and one["unit"]["name"]
        full = http.get(f"/api/v1/mediators/{mediator}", headers=admin).json()
        assert sorted(c["code"] for c in full["cases"]) == sorted(codes)

        # filters
        grid = http.get("/api/v1/mediators", params={"level": "grid", "limit": 2000}, headers=admin).json()
        assert len(grid["mediators"]) == 474 and {m["level"] for m in grid["mediators"]} == {"grid"}
        grass = http.get("/api/v1/mediators", params={"specialty": "grassland", "limit": 2000}, headers=admin).json()
        assert grass["mediators"] and all("grassland" in m["specialties"] for m in grass["mediators"])
        inside = http.get("/api/v1/mediators", params={"area": town, "limit": 2000}, headers=admin).json()
        assert inside["mediators"] and all(m["area_code"].startswith(town) for m in inside["mediators"])

        # scope: a town's grid worker sees the town's roster and the banner's, not the other towns'
        scoped = http.get("/api/v1/mediators", params={"limit": 2000}, headers=_h(dsn, "grid_worker", town)).json()
        seen = {m["area_code"] for m in scoped["mediators"]}
        assert seen and all(c.startswith(town) or c == BANNER for c in seen)
        assert any(c.startswith(town) and c != town for c in seen) and BANNER in seen
        other = _one(dsn, "SELECT id FROM mediators WHERE area_code LIKE %s LIMIT 1", (a[2][1] + "%",))
        r = http.get(f"/api/v1/mediators/{other}", headers=_h(dsn, "grid_worker", town))
        assert r.status_code == 404
        units = http.get("/api/v1/units", params={"limit": 2000}, headers=_h(dsn, "grid_worker", town)).json()
        assert all(u["area_code"].startswith(town) or u["area_code"] == BANNER for u in units["units"])

        # masking: a viewer sees ****1234
        viewed = http.get(f"/api/v1/mediators/{mediator}", headers=_h(dsn, "viewer")).json()
        assert re.fullmatch(r"\*{4}\d{4}", viewed["phone"]) and viewed["phone"][-4:] == one["phone"][-4:]
        vunits = http.get("/api/v1/units", params={"kind": "justice_office"}, headers=_h(dsn, "viewer")).json()
        assert vunits["units"] and all(u["phone"] is None or u["phone"].startswith("****") for u in vunits["units"])


def test_a_mediator_above_the_readers_area_shows_only_the_readers_cases(api: tuple[str, str]) -> None:
    """A banner's mediator works cases of every town; a reader of one town sees the mediator (who serves
    its town too) with its town's open cases only — their count, their list and their codes on the admin
    page — not the other towns' (codes, steps and deadlines of cases it may not read)."""
    url, dsn = api
    town, other = _areas(dsn)[2][:2]
    mediator = _one(dsn, "SELECT id FROM mediators WHERE length(area_code) = 6 AND active ORDER BY id LIMIT 1")
    assign = """UPDATE cases SET assignee = jsonb_build_object('kind', 'mediator', 'id', %s::text, 'name', 'x')
                WHERE id IN (SELECT id FROM cases WHERE step IN ('reported', 'accepted') AND town_code = %s
                             ORDER BY id LIMIT %s) RETURNING code"""
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE cases SET assignee = NULL WHERE assignee ->> 'id' = %s::text", (mediator,))
        mine = [r[0] for r in conn.execute(assign, (mediator, town, 2))]
        theirs = [r[0] for r in conn.execute(assign, (mediator, other, 1))]
    assert len(mine) == 2 and len(theirs) == 1
    with httpx.Client(base_url=url, timeout=30) as http:
        for headers, expected in ((_h(dsn, "viewer", area=town), mine), (_h(dsn, "admin"), mine + theirs)):
            one = http.get(f"/api/v1/mediators/{mediator}", headers=headers).json()
            assert sorted(c["code"] for c in one["cases"]) == sorted(expected)
            listed = http.get("/api/v1/mediators", params={"limit": 2000}, headers=headers).json()["mediators"]
            assert next(m for m in listed if m["id"] == mediator)["open_cases"] == len(expected)
    with psycopg.connect(dsn) as conn:
        codes = geodata_roster.open_case_codes(conn, "mediator", [mediator], town, per=9)
    assert sorted(codes[mediator]) == sorted(mine)


def test_only_an_admin_changes_the_roster_each_change_audited(api: tuple[str, str]) -> None:
    url, dsn = api
    town = _areas(dsn)[2][0]
    admin = _h(dsn, "admin")
    body = {"name": "API人民调解委员会", "kind": "committee", "area_code": town, "specialties": ["neighbour"]}
    with httpx.Client(base_url=url, timeout=30) as http:
        for role in ("viewer", "dispatcher", "grid_worker"):
            r = http.post("/api/v1/units", json=body, headers=_h(dsn, role))
            assert r.status_code == 403, (role, r.text)
        # an admin of another town changes nothing here, nor the banner's units above it (services/roster.py)
        elsewhere = _h(dsn, "admin", area=_areas(dsn)[2][1])
        r = http.post("/api/v1/units", json=body, headers=elsewhere)
        assert r.status_code == 403 and r.json()["field"] == "area_code", r.text
        r = http.patch("/api/v1/units/1", json={"active": False}, headers=elsewhere)  # the banner's own
        assert r.status_code == 403 and r.json()["field"] == "area_code", r.text
        assert _one(dsn, "SELECT count(*) FROM units WHERE name = 'API人民调解委员会'") == 0
        # with an Idempotency-Key, a retry gets the first answer and nothing is made twice
        keyed = {**admin, "Idempotency-Key": "roster-test-1"}
        first = http.post("/api/v1/units", json={**body, "name": "幂等调委会"}, headers=keyed)
        again = http.post("/api/v1/units", json={**body, "name": "幂等调委会"}, headers=keyed)
        assert first.status_code == again.status_code == 201 and again.headers["Idempotency-Replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        other = http.post("/api/v1/units", json={**body, "name": "别的调委会"}, headers=keyed)
        assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
        assert _one(dsn, "SELECT count(*) FROM units WHERE name = '幂等调委会'") == 1
        r = http.post("/api/v1/units", json=body, headers=admin)
        assert r.status_code == 201, r.text
        unit = r.json()
        assert unit["level"] == "town" and unit["kind"] == "committee" and unit["active"]
        assert http.post("/api/v1/units", json=body, headers=admin).status_code == 409  # the same unit twice
        r = http.post("/api/v1/units", json={**body, "name": "别的", "area_code": "150623999"}, headers=admin)
        assert r.status_code == 422 and r.json()["field"] == "area_code"
        r = http.post("/api/v1/units", json={**body, "name": "别的", "level": "grid"}, headers=admin)
        assert r.status_code == 422 and r.json()["field"] == "level"
        r = http.post("/api/v1/units", json={**body, "name": "=cmd"}, headers=admin)
        assert r.status_code == 422

        m = {"name": "API调解员", "phone": "13600000000", "area_code": town, "unit": unit["id"], "van": "V02"}
        r = http.post("/api/v1/mediators", json=m, headers=admin)
        assert r.status_code == 201, r.text
        med = r.json()
        assert med["unit"]["id"] == unit["id"] and med["van"] == "V02" and med["open_cases"] == 0
        r = http.patch(f"/api/v1/mediators/{med['id']}", json={"van": None, "specialties": ["labour"]}, headers=admin)
        assert r.status_code == 200 and r.json()["van"] is None and r.json()["specialties"] == ["labour"]
        r = http.patch(f"/api/v1/mediators/{med['id']}", json={"unit": 10**9}, headers=admin)
        assert r.status_code == 422 and r.json()["field"] == "unit"
        r = http.patch(f"/api/v1/mediators/{med['id']}", json={"active": False}, headers=_h(dsn, "viewer"))
        assert r.status_code == 403
        r = http.patch(f"/api/v1/mediators/{med['id']}", json={"active": False}, headers=admin)
        assert r.status_code == 200 and r.json()["active"] is False
        listed = http.get("/api/v1/mediators", params={"area": town, "limit": 2000}, headers=admin).json()
        assert med["id"] not in {x["id"] for x in listed["mediators"]}  # the active ones by default
        off = http.get("/api/v1/mediators", params={"area": town, "active": "false"}, headers=admin).json()
        assert med["id"] in {x["id"] for x in off["mediators"]}
        assert http.patch("/api/v1/units/999999999", json={"active": False}, headers=admin).status_code == 404
    with psycopg.connect(dsn) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM admin_events ORDER BY id")]
    assert actions[-4:] == ["unit.create", "mediator.create", "mediator.update", "mediator.deactivate"]


# --- the admin section, in Chromium ------------------------------------------------------------------


@pytest.mark.browser
def test_the_admin_page_lists_adds_edits_and_deactivates_the_roster(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    town = _areas(demo_db)[2][0]
    mediator, name = _one(
        demo_db, IDLE.replace("m.id", "ARRAY[m.id::text, m.name]", 1) + " AND m.level = 'town' LIMIT 1"
    )
    with psycopg.connect(demo_db) as conn:
        code = conn.execute(
            """UPDATE cases SET assignee = jsonb_build_object('kind', 'mediator', 'id', %s::text, 'name', %s::text)
               WHERE id = (SELECT id FROM cases WHERE step IN ('reported', 'accepted')
                           ORDER BY id LIMIT 1) RETURNING code""",
            (mediator, name),
        ).fetchone()
    assert code is not None
    srv = live_server(demo_db, redis_url)
    w = Watched(browser, srv.url, cookies=srv.browser_cookie(srv.sign_in("admin")))
    p = w.page
    p.goto(srv.url + "/admin")
    p.wait_for_selector(f"#{Ids.MEDIATORS} table")
    p.wait_for_selector(f"#{Ids.UNITS} table")
    # each mediator shows their open cases beside the name: filter to that one
    p.fill(f"#{Ids.MED_FILTER}", name)
    p.press(f"#{Ids.MED_FILTER}", "Enter")
    row = p.locator(f"#{Ids.MEDIATORS} tr", has_text=code[0])
    row.wait_for()
    assert name in row.inner_text() and ZH["admin.roster.open_cases"].format(n=1) in row.inner_text()
    assert row.locator(f"a[href='/cases/{code[0]}']").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    p.evaluate("() => document.querySelector('#admin-mediators').scrollIntoView()")
    p.screenshot(path=str(ARTIFACTS / "admin-roster-1920x1080.png"))

    # add a unit: a refusal names the field, then the unit is there
    p.fill(f"#{Ids.UNIT_NAME}", "浏览器测试司法所")
    p.click(f"#{Ids.UNIT_KIND}")
    p.get_by_role("option", name=ZH["unit_kind.justice_office"]).click()
    p.fill(f"#{Ids.UNIT_AREA}", "150623999")
    p.click(f"#{Ids.UNIT_CREATE}")
    p.wait_for_selector(f"#{Ids.UNIT_MESSAGE} .yitu-admin-refused")
    assert p.inner_text(f"#{Ids.UNIT_MESSAGE}").startswith(ZH["admin.field.area_code"])
    p.fill(f"#{Ids.UNIT_AREA}", town)
    p.click(f"#{Ids.UNIT_CREATE}")
    p.wait_for_selector(f"#{Ids.UNIT_MESSAGE} .yitu-admin-ok")
    p.fill(f"#{Ids.UNIT_FILTER}", "浏览器测试")
    p.press(f"#{Ids.UNIT_FILTER}", "Enter")
    p.locator(f"#{Ids.UNITS} tr", has_text="浏览器测试司法所").wait_for()

    # pick the mediator: the form fills; change the phone, then deactivate them
    p.click(f"#{Ids.MED_PICK}")
    p.get_by_role("option", name=re.compile(f"#{mediator} ")).click()
    p.wait_for_function(f"() => document.querySelector('#{Ids.MED_NAME}').value === {name!r}")
    p.fill(f"#{Ids.MED_PHONE}", "13512345678")
    p.click(f"#{Ids.MED_APPLY}")
    p.wait_for_selector(f"#{Ids.MED_MESSAGE} .yitu-admin-ok")
    p.locator(f"#{Ids.MEDIATORS} tr", has_text="13512345678").wait_for()
    p.click(f"#{Ids.MED_DEACTIVATE}")
    done = ZH["admin.done.roster_deactivate"].format(name=f"#{mediator}")
    p.wait_for_function(f"() => document.querySelector('#{Ids.MED_MESSAGE}').innerText.includes({done!r})")
    assert ZH["admin.state.disabled"] in p.locator(f"#{Ids.MEDIATORS} tr", has_text="13512345678").inner_text()
    p.set_viewport_size({"width": 1366, "height": 768})
    p.evaluate("() => document.querySelector('#admin-units').scrollIntoView()")
    p.screenshot(path=str(ARTIFACTS / "admin-roster-1366x768.png"))
    with psycopg.connect(demo_db) as conn:
        row2 = conn.execute("SELECT phone, active FROM mediators WHERE id = %s", (int(mediator),)).fetchone()
        actions = [r[0] for r in conn.execute("SELECT action FROM admin_events WHERE actor_kind = 'user' ORDER BY id")]
    assert row2 == ("13512345678", False)
    assert actions[-3:] == ["unit.create", "mediator.update", "mediator.deactivate"]
    w.close()

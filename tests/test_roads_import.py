"""``yitu import roads``: an OSM extract or a GDAL line file becomes the network dispatch drives on.

The OSM files are written by the tests (XML, as an extract is), so what the network must look like
is known independently: a lattice of ways that share their nodes, plus ways no van drives. The
dispatch check compares yitu's road distance (geodata/sql/van_candidates.sql, pgRouting) with a
Dijkstra written here over the same nodes and geodesic lengths.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import psycopg
import pytest
import shapely
from click.testing import CliRunner, Result
from pyproj import Geod

from cli.data import import_group
from geodata import dispatch, roads

GEOD = Geod(ellps="WGS84")
ROWS, COLS = 4, 5
LON0, LAT0, STEP = 109.90, 39.80, 0.01
ROW_CLASSES = ("primary", "secondary", "residential", "tertiary")
COL_CLASSES = ("track", "unclassified", "trunk", "service", "living_street")


def cli(env: dict[str, str], *args: object) -> Result:
    return CliRunner().invoke(import_group, [str(a) for a in args], env=env)


@pytest.fixture
def env(db_url: str, redis_url: str) -> dict[str, str]:
    return {"YITU_DATABASE_URL": db_url, "YITU_REDIS_URL": redis_url}


def lattice(seed: int = 7) -> dict[tuple[int, int], tuple[float, float]]:
    """Junction (row, col) → lon/lat, jittered so that no two routes tie."""
    rng = np.random.default_rng(seed)
    return {
        (r, c): (
            round(LON0 + c * STEP + float(rng.uniform(-0.003, 0.003)), 7),
            round(LAT0 + r * STEP + float(rng.uniform(-0.003, 0.003)), 7),
        )
        for r in range(ROWS)
        for c in range(COLS)
    }


def write_osm(path: Path, nodes: dict[Any, tuple[float, float]], ways: list[tuple[list[Any], dict[str, str]]]) -> Path:
    ids = {key: i + 1 for i, key in enumerate(nodes)}
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="yitu-tests">']
    lines += [f' <node id="{ids[k]}" lat="{lat}" lon="{lon}" version="1"/>' for k, (lon, lat) in nodes.items()]
    for n, (refs, tags) in enumerate(ways):
        lines.append(f' <way id="{1000 + n}" version="1">')
        lines += [f'  <nd ref="{ids[r]}"/>' for r in refs]
        lines += [f'  <tag k="{k}" v="{v}"/>' for k, v in tags.items()]
        lines.append(" </way>")
    lines.append("</osm>")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def lattice_osm(path: Path) -> Path:
    """Each row and each column one long way through every junction it crosses, plus ways to leave out."""
    nodes = lattice()
    ways: list[tuple[list[Any], dict[str, str]]] = []
    for r in range(ROWS):
        ways.append(([(r, c) for c in range(COLS)], {"highway": ROW_CLASSES[r], "name": f"第{r + 1}街"}))
    for c in range(COLS):
        ways.append(([(r, c) for r in range(ROWS)], {"highway": COL_CLASSES[c]}))
    ways.append(([(0, 0), (ROWS - 1, COLS - 1)], {"highway": "footway"}))  # a shortcut no van takes
    ways.append(([(0, 1), (1, 0)], {"waterway": "stream"}))  # not a road at all
    ways.append(([(1, 1), (2, 2)], {"highway": "proposed"}))  # a road not yet built
    return write_osm(path, nodes, ways)


def road_rows(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, kind, name, source, target, length_m, ST_AsEWKB(geom)::text FROM roads ORDER BY id"
        ).fetchall()


def components(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT component) FROM pgr_connectedComponents("
            "'SELECT id, source, target, length_m AS cost, length_m AS reverse_cost FROM roads')"
        ).fetchone()
    assert row is not None
    return int(row[0])


# --- good files -----------------------------------------------------------------------------------
def test_an_osm_extract_becomes_a_routable_network_cut_at_its_junctions(
    env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    result = cli(env, "roads", lattice_osm(tmp_path / "banner.osm"))
    assert result.exit_code == 0, result.output
    rows = road_rows(db_url)
    # every row way cut at its COLS junctions, every column way at its ROWS ones
    assert len(rows) == ROWS * (COLS - 1) + COLS * (ROWS - 1)
    ends = {n for r in rows for n in (r[3], r[4])}
    assert len(ends) == ROWS * COLS
    assert components(db_url) == 1
    kinds = {r[1] for r in rows}
    assert kinds == {"trunk", "county", "village"}
    with psycopg.connect(db_url) as conn:
        by_kind: dict[str, int] = dict(conn.execute("SELECT kind, count(*) FROM roads GROUP BY kind").fetchall())
        named = conn.execute("SELECT DISTINCT name FROM roads WHERE name IS NOT NULL ORDER BY name").fetchall()
        # an edge's geometry runs from its source to its target, and its length is geodesic
        mismatched = conn.execute(
            "SELECT count(*) FROM roads r WHERE abs(ST_Length(r.geom::geography, true) - r.length_m) > 0.01"
        ).fetchone()
    assert by_kind == {"trunk": 4 + 3, "county": 4 + 4, "village": 4 + 4 * 3}
    assert [n for (n,) in named] == ["第1街", "第2街", "第3街", "第4街"]
    assert mismatched == (0,)
    assert "roads: inserted 31" in result.output
    assert "left out (highway=footway): 1" in result.output and "left out (no highway tag): 1" in result.output
    assert "highway=proposed" in result.output or "proposed (1)" in result.output


def _dijkstra(
    nodes: dict[tuple[int, int], tuple[float, float]], start: tuple[int, int]
) -> dict[tuple[int, int], float]:
    """Shortest metres from ``start`` over the lattice's drivable edges (written here, not pgRouting)."""
    graph: dict[tuple[int, int], list[tuple[tuple[int, int], float]]] = {k: [] for k in nodes}

    def link(a: tuple[int, int], b: tuple[int, int]) -> None:
        (x1, y1), (x2, y2) = nodes[a], nodes[b]
        metres = float(GEOD.line_length([x1, x2], [y1, y2]))
        graph[a].append((b, metres))
        graph[b].append((a, metres))

    for r in range(ROWS):
        for c in range(COLS):
            if c + 1 < COLS:
                link((r, c), (r, c + 1))
            if r + 1 < ROWS:
                link((r, c), (r + 1, c))
    best = {start: 0.0}
    heap = [(0.0, start)]
    while heap:
        d, node = heapq.heappop(heap)
        if d > best.get(node, float("inf")):
            continue
        for nxt, m in graph[node]:
            if d + m < best.get(nxt, float("inf")):
                best[nxt] = d + m
                heapq.heappush(heap, (d + m, nxt))
    return best


def test_dispatch_on_imported_roads_matches_an_independent_dijkstra(
    env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    assert cli(env, "roads", lattice_osm(tmp_path / "banner.osm")).exit_code == 0
    nodes = lattice()
    case_at = (0, 0)
    vans = {f"V{r}{c}": (r, c) for r, c in [(3, 4), (2, 1), (1, 3), (0, 4), (3, 0)]}
    at = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        lon, lat = nodes[case_at]
        conn.execute(
            "INSERT INTO cases (code, type, banner_code, channel, level, step, reported_at, geom) "
            "VALUES ('150600-20261206-000001', 'neighbour', '150600', 'window', 'grid', 'accepted', %s, "
            "ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
            (at, lon, lat),
        )
        for van, node in vans.items():
            vlon, vlat = nodes[node]
            conn.execute(
                "INSERT INTO vans (id, name, status, geom, last_seen_at) "
                "VALUES (%s, %s, 'available', ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s)",
                (van, van, vlon, vlat, at),
            )
        got = {row["id"]: row for row in dispatch.candidates(conn, "150600-20261206-000001", dispatch.Routing(), at)}
    want = _dijkstra(nodes, case_at)
    for van, node in vans.items():
        assert got[van]["method"] == "road", van
        assert got[van]["distance_m"] == pytest.approx(want[node], abs=0.5), van
    # the footway diagonal (a shorter way to (3, 4)) is not driven
    corner = nodes[(ROWS - 1, COLS - 1)]
    straight = float(GEOD.line_length([nodes[case_at][0], corner[0]], [nodes[case_at][1], corner[1]]))
    assert got["V34"]["distance_m"] > straight * 1.2


def test_a_projected_gbk_shapefile_with_a_chinese_class_field(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    a, b, c = (109.90, 39.80), (109.92, 39.80), (109.92, 39.82)
    frame = gpd.GeoDataFrame(
        {"道路等级": ["国道", "县道", "村道"], "道路名称": ["G109", "X601", "幸福村村道"]},
        geometry=[shapely.LineString([a, b]), shapely.LineString([b, c]), shapely.LineString([c, (109.93, 39.83)])],
        crs=4326,
    ).to_crs(32649)  # UTM 49N metres, as a survey office delivers
    path = tmp_path / "roads.shp"
    frame.to_file(path, encoding="gbk")
    path.with_suffix(".cpg").unlink(missing_ok=True)  # as files arrive: GBK, no .cpg
    result = cli(env, "roads", path, "--encoding", "gbk", "--class-field", "道路等级")
    assert result.exit_code == 0, result.output
    assert "reprojected from WGS 84 / UTM zone 49N (EPSG:32649)" in result.output
    rows = road_rows(db_url)
    assert [(r[1], r[2]) for r in rows] == [("trunk", "G109"), ("county", "X601"), ("village", "幸福村村道")]
    assert components(db_url) == 1
    with psycopg.connect(db_url) as conn:
        start = conn.execute(
            "SELECT ST_X(ST_StartPoint(geom)), ST_Y(ST_StartPoint(geom)) FROM roads ORDER BY id LIMIT 1"
        ).fetchone()
    assert start == (pytest.approx(a[0], abs=1e-6), pytest.approx(a[1], abs=1e-6))


def test_check_prints_what_would_change_and_writes_nothing(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    result = cli(env, "roads", lattice_osm(tmp_path / "banner.osm"), "--check")
    assert result.exit_code == 0, result.output
    assert "check only, nothing written; the import would write roads: inserted 31" in result.output
    assert road_rows(db_url) == []


def test_a_second_file_joins_the_first_where_their_ends_meet_and_replace_swaps_all(
    env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    assert cli(env, "roads", lattice_osm(tmp_path / "a.osm")).exit_code == 0
    before = road_rows(db_url)
    corner = lattice()[(ROWS - 1, COLS - 1)]
    far = (corner[0] + 0.05, corner[1] + 0.02)
    second = write_osm(
        tmp_path / "b.osm", {"corner": corner, "far": far}, [(["corner", "far"], {"highway": "primary"})]
    )
    result = cli(env, "roads", second)
    assert result.exit_code == 0, result.output
    assert "joined to roads there: 1" in result.output
    after = road_rows(db_url)
    assert after[: len(before)] == before  # the first banner's roads untouched
    assert len(after) == len(before) + 1
    assert components(db_url) == 1
    replaced = cli(env, "roads", second, "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert "replaced 32 old" in replaced.output
    assert len(road_rows(db_url)) == 1


# --- bad files ------------------------------------------------------------------------------------
def _bad_geojson(path: Path) -> Path:
    frame = gpd.GeoDataFrame(
        {
            "class": ["county", "xyz", None, "village", "trunk", "village"],
            "name": ["好路", "怪路", "无名", "国外", "ok", "坏\x07名"],
        },
        geometry=[
            shapely.LineString([(109.9, 39.8), (109.91, 39.8)]),
            shapely.LineString([(109.9, 39.81), (109.91, 39.81)]),
            shapely.LineString([(109.9, 39.82), (109.91, 39.82)]),
            shapely.LineString([(10.0, 50.0), (10.1, 50.0)]),
            shapely.Point(109.9, 39.83),
            shapely.LineString([(109.9, 39.84), (109.91, 39.84)]),
        ],
        crs=4326,
    )
    frame.to_file(path, driver="GeoJSON")
    return path


def test_a_bad_road_file_lists_every_problem_by_feature_and_writes_nothing(
    env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    assert cli(env, "roads", lattice_osm(tmp_path / "a.osm")).exit_code == 0
    before = road_rows(db_url)
    result = cli(env, "roads", _bad_geojson(tmp_path / "bad.geojson"))
    assert result.exit_code == 1
    problems = [line.strip() for line in result.output.splitlines() if line.startswith("  ")]
    assert problems == [
        "bad-class: - @ feature #2: road class 'xyz' is none of: " + problems[0].split("is none of: ")[1],
        "missing-class: - @ feature #3: no road class in 'class'",
        "outside-china: - @ feature #4 (10.00000, 50.00000): a road outside China",
        "not-a-line: - @ feature #5: a Point, not a line",
        "bad-name: - @ feature #6: a road name must be 1-200 printable characters",
    ]
    assert "5 problem(s), nothing was written" in result.output
    assert road_rows(db_url) == before
    # --replace with a bad file leaves the old network too
    assert cli(env, "roads", tmp_path / "bad.geojson", "--replace").exit_code == 1
    assert road_rows(db_url) == before


def test_a_file_without_a_class_field_names_the_option(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "lines.geojson"
    gpd.GeoDataFrame({"width": [7]}, geometry=[shapely.LineString([(109.9, 39.8), (109.91, 39.8)])], crs=4326).to_file(
        path, driver="GeoJSON"
    )
    result = cli(env, "roads", path)
    assert result.exit_code == 1
    assert "no road class field (tried highway, class" in result.output and "--class-field" in result.output
    named = cli(env, "roads", path, "--class-field", "等级")
    assert named.exit_code == 1 and "no field '等级'" in named.output
    assert road_rows(db_url) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"<osm version='0.6'><node id='1' lat='39.8' lon='109.9'/><way id='2'><nd ref='1'/>", "GDAL cannot read it"),
        (b"\x00\x01\x02 not a road file", "GDAL cannot read it"),
        (b"", "GDAL cannot read it"),
    ],
)
def test_unreadable_files_are_a_clear_error(
    env: dict[str, str], db_url: str, tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "broken.osm"
    path.write_bytes(content)
    result = cli(env, "roads", path)
    assert result.exit_code == 1
    assert f"unreadable: - @ broken.osm: {expected}" in result.output
    assert "Traceback" not in result.output
    assert road_rows(db_url) == []


def test_a_file_over_the_feature_cap_is_refused(
    env: dict[str, str], db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(roads, "MAX_FEATURES", 5)  # the cap itself; writing two million ways here would take minutes
    result = cli(env, "roads", lattice_osm(tmp_path / "a.osm"))
    assert result.exit_code == 1
    assert "too-large" in result.output and "at most 5 in one import" in result.output
    assert road_rows(db_url) == []


def test_help_explains_the_classes() -> None:
    text = CliRunner().invoke(import_group, ["roads", "--help"]).output
    for word in ("OpenStreetMap", "--class-field", "--check", "--replace", "国道", "county", "footway"):
        assert word in text


def test_an_unmigrated_database_is_a_clear_error(fresh_db: str, redis_url: str, tmp_path: Path) -> None:
    result = cli({"YITU_DATABASE_URL": fresh_db, "YITU_REDIS_URL": redis_url}, "roads", lattice_osm(tmp_path / "a.osm"))
    assert result.exit_code == 1
    assert "the database has no yitu tables yet: run `yitu db migrate` first" in result.output

"""Each named spatial query against a brute-force shapely/pyproj computation on the seeded demo."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import psycopg
import pytest
import shapely
from pyproj import Geod, Transformer
from shapely import wkb

from geodata import queries

GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def world(demo_dsn: str) -> dict:
    with psycopg.connect(demo_dsn) as conn:
        areas = {
            r[0]: {"name": r[1], "level": r[2], "parent": r[3], "geom": wkb.loads(r[4])}
            for r in conn.execute("SELECT code, name, level, parent_code, ST_AsBinary(geom) FROM areas")
        }
        cases = conn.execute("SELECT id, ST_X(geom), ST_Y(geom) FROM cases").fetchall()
        cams = conn.execute("SELECT id, ST_X(geom), ST_Y(geom) FROM cameras").fetchall()
    return {"areas": areas, "cases": cases, "cameras": cams}


def _random_points(poly, n: int, rng: np.random.Generator) -> np.ndarray:  # type: ignore[no-untyped-def]
    minx, miny, maxx, maxy = poly.bounds
    pts = rng.uniform((minx, miny), (maxx, maxy), size=(n * 4, 2))
    return pts[shapely.contains_xy(poly, pts[:, 0], pts[:, 1])][:n]


def test_grid_chain_matches_shapely(demo_dsn: str, world: dict) -> None:
    areas = world["areas"]
    cells = {c: a for c, a in areas.items() if a["level"] == 4}
    codes = list(cells)
    tree = shapely.STRtree([cells[c]["geom"] for c in codes])
    banner = areas["150623"]["geom"]
    rng = np.random.default_rng(11)
    to_m = Transformer.from_crs(4326, 32648, always_xy=True)
    pts = _random_points(banner, 300, rng)
    # and points just inside a cell edge, to exercise the 50 m flag
    for c in codes[:40]:
        ring = cells[c]["geom"].geoms[0].exterior
        p = ring.interpolate(float(rng.uniform(0, ring.length)))
        inner = (
            shapely.Point(p.x + 0.0001, p.y)
            if cells[c]["geom"].contains(shapely.Point(p.x + 0.0001, p.y))
            else shapely.Point(p.x - 0.0001, p.y)
        )
        pts = np.vstack([pts, [inner.x, inner.y]])
    checked_near = 0
    with psycopg.connect(demo_dsn) as conn:
        for lon, lat in pts:
            chain = queries.grid_chain(conn, float(lon), float(lat))
            hits = [codes[i] for i in tree.query(shapely.Point(lon, lat), predicate="intersects")]
            assert not chain.outside
            assert chain.code_at(4) == min(hits)
            cell = cells[chain.code_at(4)]
            assert chain.code_at(3) == cell["parent"] and chain.code_at(2) == cell["parent"][:9]
            assert [link.level for link in chain.links] == [4, 3, 2, 1]
            assert chain.links[0].name == cell["name"]
            geom_m = shapely.transform(cell["geom"], lambda xy: np.column_stack(to_m.transform(xy[:, 0], xy[:, 1])))
            d = (
                geom_m.exterior.distance(shapely.Point(*to_m.transform(lon, lat)))
                if geom_m.geom_type == "Polygon"
                else geom_m.boundary.distance(shapely.Point(*to_m.transform(lon, lat)))
            )
            assert chain.boundary_m == pytest.approx(d, rel=0.01, abs=1.0)
            if abs(d - 50) > 2:
                assert chain.near_boundary == (d < 50)
            checked_near += chain.near_boundary
    assert checked_near >= 20


def test_points_outside_the_territory(demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        for lon, lat in [(116.39, 39.9), (107.48, 45.0), (0.0, 0.0)]:
            chain = queries.grid_chain(conn, lon, lat)
            assert chain.outside and chain.code_at(4) is None and not chain.near_boundary


def test_cases_in_area_match_point_in_polygon(demo_dsn: str, world: dict) -> None:
    areas = world["areas"]
    ids = np.asarray([c[0] for c in world["cases"]])
    xy = np.asarray([(c[1], c[2]) for c in world["cases"]])
    rng = np.random.default_rng(5)
    by_level = defaultdict(list)
    for code, a in areas.items():
        by_level[a["level"]].append(code)
    with psycopg.connect(demo_dsn) as conn:
        for level, codes in by_level.items():
            for code in rng.choice(sorted(codes), size=min(4, len(codes)), replace=False):
                geom = areas[str(code)]["geom"]
                expected = set(ids[shapely.contains_xy(geom, xy[:, 0], xy[:, 1])].tolist())
                got = queries.cases_in_area(conn, str(code), limit=100_000)
                assert {r["id"] for r in got} == expected, (level, code)
                assert [r["reported_at"] for r in got] == sorted((r["reported_at"] for r in got), reverse=True)


def test_cases_in_area_filters_and_paging(demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        town = "150623100"
        everything = queries.cases_in_area(conn, town, limit=100_000)
        handling = queries.cases_in_area(conn, town, step="handling", limit=100_000)
        assert handling and all(r["step"] == "handling" for r in handling)
        assert {r["id"] for r in handling} == {r["id"] for r in everything if r["step"] == "handling"}
        grass = queries.cases_in_area(conn, town, type="grassland", limit=100_000)
        assert {r["id"] for r in grass} <= {r["id"] for r in everything} and all(
            r["type"] == "grassland" for r in grass
        )
        mid = everything[len(everything) // 2]["reported_at"]
        recent = queries.cases_in_area(conn, town, since=mid, limit=100_000)
        assert all(r["reported_at"] >= mid for r in recent)
        pages = queries.cases_in_area(conn, town, limit=10, offset=0) + queries.cases_in_area(
            conn, town, limit=10, offset=10
        )
        assert [r["id"] for r in pages] == [r["id"] for r in everything[:20]]
        with pytest.raises(ValueError):
            queries.cases_in_area(conn, "15062")


def test_children_ancestors_neighbours(demo_dsn: str, world: dict) -> None:
    areas = world["areas"]
    rng = np.random.default_rng(9)
    with psycopg.connect(demo_dsn) as conn:
        for code in [
            "150623",
            "150623100",
            *rng.choice(sorted(c for c in areas if len(c) == 12), 5).tolist(),
            *rng.choice(sorted(c for c in areas if len(c) == 15), 10).tolist(),
        ]:
            a = areas[code]
            kids = [r["code"] for r in queries.area_children(conn, code)]
            assert kids == sorted(c for c, x in areas.items() if x["parent"] == code)
            chain, p = [], a["parent"]
            while p:
                chain.append(p)
                p = areas[p]["parent"]
            assert [r["code"] for r in queries.area_ancestors(conn, code)] == chain
            expected = sorted(
                c
                for c, x in areas.items()
                if x["level"] == a["level"] and c != code and shapely.relate_pattern(a["geom"], x["geom"], "F***1****")
            )
            assert [r["code"] for r in queries.area_neighbours(conn, code)] == expected
            if a["level"] == 4:
                assert expected, f"cell {code} has no neighbours"


@pytest.mark.parametrize("radius", [300.0, 2000.0, 15000.0])
def test_cameras_near_match_geodesic_distance(demo_dsn: str, world: dict, radius: float) -> None:
    cams = world["cameras"]
    ids = np.asarray([c[0] for c in cams])
    lon = np.asarray([c[1] for c in cams])
    lat = np.asarray([c[2] for c in cams])
    rng = np.random.default_rng(int(radius))
    centres = [(c[1], c[2]) for c in rng.choice(np.asarray(cams, dtype=object), 10)]
    with psycopg.connect(demo_dsn) as conn:
        for x, y in centres:
            _, _, dist = GEOD.inv(np.full(len(lon), x), np.full(len(lat), y), lon, lat)
            expected = set(ids[dist <= radius - 0.01].tolist())
            borderline = set(ids[np.abs(dist - radius) <= 0.01].tolist())
            got = queries.cameras_near(conn, float(x), float(y), radius, scope=None)
            got_ids = {r["id"] for r in got}
            assert expected <= got_ids <= expected | borderline
            assert all(r["distance_m"] <= radius for r in got)
            assert [r["distance_m"] for r in got] == sorted(r["distance_m"] for r in got)


def test_cameras_near_uses_the_index(demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                psycopg.sql.SQL("EXPLAIN ") + psycopg.sql.SQL(queries.query("cameras_near")),  # type: ignore[operator]
                {"lon": 107.48, "lat": 38.18, "radius": 500.0, "scope": None},
            )
        )
    assert "cameras_geom_gist" in plan
    code = "\n".join(line for line in queries.query("cameras_near").splitlines() if not line.lstrip().startswith("--"))
    assert "geography" not in code


def test_cameras_near_keep_to_the_readers_area(demo_dsn: str) -> None:
    """A town's reader gets its town's cameras only, however near the next town's are (a case by a
    town's edge showed the next town's cameras and their streams)."""
    with psycopg.connect(demo_dsn) as conn:
        # a camera with another town's cameras within 3 km of it
        row = conn.execute(
            """SELECT ST_X(a.geom), ST_Y(a.geom), left(a.area_code, 9) FROM cameras a
               WHERE EXISTS (SELECT 1 FROM cameras b WHERE left(b.area_code, 9) <> left(a.area_code, 9)
                             AND ST_DWithin(a.geom::geography, b.geom::geography, 3000))
               ORDER BY a.id LIMIT 1"""
        ).fetchone()
        assert row is not None, "the demo has cameras near a town's edge"
        lon, lat, town = row
        everyone = queries.cameras_near(conn, lon, lat, 3000.0, scope=None)
        mine = queries.cameras_near(conn, lon, lat, 3000.0, scope=town)
    assert {r["area_code"][:9] for r in everyone} > {town}
    assert mine and all(r["area_code"].startswith(town) for r in mine)
    assert [r["id"] for r in mine] == [r["id"] for r in everyone if r["area_code"].startswith(town)]


def test_k_nearest_vans(demo_db: str) -> None:
    rng = np.random.default_rng(3)
    pos = {f"V{i:02d}": (float(rng.uniform(107.0, 108.0)), float(rng.uniform(37.8, 38.5))) for i in range(1, 5)}
    with psycopg.connect(demo_db) as conn:
        for vid, (x, y) in pos.items():
            conn.execute("UPDATE vans SET geom = ST_SetSRID(ST_MakePoint(%s, %s), 4326) WHERE id = %s", (x, y, vid))
        conn.execute("UPDATE vans SET status = 'en_route' WHERE id = 'V02'")
        for _ in range(10):
            px, py = float(rng.uniform(107.0, 108.0)), float(rng.uniform(37.8, 38.5))
            d = {v: GEOD.inv(px, py, x, y)[2] for v, (x, y) in pos.items()}
            want = sorted(d, key=d.get)[:3]
            got = queries.vans_nearest(conn, px, py, k=3)
            assert [r["id"] for r in got] == want
            assert [r["distance_m"] for r in got] == pytest.approx([d[v] for v in want], rel=1e-6)
            avail = queries.vans_nearest(conn, px, py, k=4, status="available")
            assert [r["id"] for r in avail] == [v for v in sorted(d, key=d.get) if v != "V02"]

"""Layer endpoints on the seeded demo: levels, zoom, bbox, filters, geobuf, and bad parameters."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime

import geobuf
import psycopg
import pytest
import shapely
from fastapi.testclient import TestClient
from shapely import wkb

from dashboard.app import create_app
from layers import registry
from layers.registry import GEOJSON_TYPES
from services.settings import Settings

from .helpers import app_database


@pytest.fixture
def client(demo_dsn: str, redis_url: str, tmp_path, demo_admin: dict[str, str]) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = Settings(**app_database(demo_dsn), redis_url=redis_url, home=tmp_path / "h", _env_file=None)
    with TestClient(create_app(settings), headers=demo_admin) as c:
        yield c


def _fc(client: TestClient, url: str) -> dict:
    r = client.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    return r.json()


@pytest.mark.parametrize(
    ("query", "level", "count"),
    [
        ("level=1", 1, 1),
        ("level=2", 2, 4),
        ("level=3", 3, 85),
        ("level=4", 4, 401),
        ("zoom=8", 2, 4),
        ("zoom=9", 2, 4),
        ("zoom=10", 3, 85),
        ("zoom=12", 4, 401),
    ],
)
def test_grids_by_level_and_by_zoom(client: TestClient, query: str, level: int, count: int) -> None:
    fc = _fc(client, f"/api/v1/layers/grids?{query}")
    assert len(fc["features"]) == count
    assert {f["properties"]["level"] for f in fc["features"]} == {level}
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in fc["features"])


def test_grids_bbox_matches_envelope_test(client: TestClient, demo_dsn: str) -> None:
    box = (107.3, 38.0, 107.6, 38.3)
    with psycopg.connect(demo_dsn) as conn:
        cells = conn.execute("SELECT code, ST_AsBinary(geom) FROM areas WHERE level = 4").fetchall()
    env = shapely.box(*box)
    expected = sorted(c for c, g in cells if shapely.box(*wkb.loads(g).bounds).intersects(env))
    fc = _fc(client, "/api/v1/layers/grids?level=4&bbox=" + ",".join(map(str, box)))
    assert sorted(f["properties"]["code"] for f in fc["features"]) == expected
    assert 0 < len(expected) < 401


def test_grids_children_of_a_parent(client: TestClient) -> None:
    fc = _fc(client, "/api/v1/layers/grids?level=3&parent=150623100")
    assert len(fc["features"]) == 19 and all(f["properties"]["parent_code"] == "150623100" for f in fc["features"])


@pytest.mark.parametrize("name", [layer.name for layer in registry.all_layers()])
def test_every_layer_serves_features_of_its_geometry_kind(client: TestClient, name: str) -> None:
    layer = registry.get(name)
    fc = _fc(client, layer.path)
    assert fc["type"] == "FeatureCollection" and fc["features"], f"{name} serves nothing on the demo"
    assert {f["geometry"]["type"] for f in fc["features"]} <= GEOJSON_TYPES[layer.geometry]


@pytest.mark.parametrize("name", [layer.name for layer in registry.all_layers()])
def test_geobuf_round_trip(client: TestClient, name: str) -> None:
    query = "level=3" if name == "grids" else ""  # the grid's villages: more than the four towns
    plain = _fc(client, f"/api/v1/layers/{name}?{query}")
    r = client.get(f"/api/v1/layers/{name}?{query}&format=geobuf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    decoded = geobuf.decode(r.content)
    assert len(decoded["features"]) == len(plain["features"]) > 0
    for a, b in zip(plain["features"], decoded["features"]):
        # geobuf leaves null properties out; the styling code reads a missing one as null
        assert {k: v for k, v in a["properties"].items() if v is not None} == b["properties"]
        assert shapely.geometry.shape(a["geometry"]).equals_exact(shapely.geometry.shape(b["geometry"]), 1e-6)


def test_openapi_lists_every_layer_with_its_filters(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for layer in registry.all_layers():
        params = [p["name"] for p in paths[layer.path]["get"]["parameters"]]
        assert params == [*(["bbox"] if layer.bbox else []), *(f.name for f in layer.filters), "format", "rev"]
    assert "/api/v1/layers/grids/stats" in paths


def test_point_layers_and_filters(client: TestClient, demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        n_open, n_overdue, n_offline = conn.execute(
            """SELECT count(*) FILTER (WHERE step IN ('reported','accepted','dispatched','handling')),
                      count(*) FILTER (WHERE step IN ('reported','accepted','dispatched','handling')
                                         AND deadline < now()),
                      (SELECT count(*) FROM cameras WHERE status = 'offline') FROM cases"""
        ).fetchone()
    assert len(_fc(client, "/api/v1/layers/cameras")["features"]) == 4000
    offline = _fc(client, "/api/v1/layers/cameras?status=offline")["features"]
    assert len(offline) == n_offline and {f["properties"]["status"] for f in offline} == {"offline"}
    pins = _fc(client, "/api/v1/layers/cases")["features"]
    assert len(pins) == n_open
    assert {f["properties"]["step"] for f in pins} == {"reported", "accepted", "dispatched", "handling"}
    assert all("parties" not in f["properties"] for f in pins)  # no personal data on the map
    assert len(_fc(client, "/api/v1/layers/cases?overdue=true")["features"]) == n_overdue
    handling = _fc(client, "/api/v1/layers/cases?step=handling")["features"]
    assert handling and {f["properties"]["step"] for f in handling} == {"handling"}
    assert len(_fc(client, "/api/v1/layers/centers")["features"]) == 90
    assert len(_fc(client, "/api/v1/layers/centers?max_level=2")["features"]) == 5
    vans = [f for f in _fc(client, "/api/v1/layers/vans")["features"] if f["properties"]["kind"] == "van"]
    assert [f["properties"]["id"] for f in vans] == ["V01", "V02", "V03", "V04"]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/layers/grids?bbox=1,2,3", "bbox"),
        ("/api/v1/layers/grids?bbox=a,b,c,d", "bbox"),
        ("/api/v1/layers/grids?bbox=10,10,5,20", "bbox"),
        ("/api/v1/layers/grids?bbox=nan,1,2,3", "bbox"),
        ("/api/v1/layers/grids?bbox=-200,0,10,10", "bbox"),
        ("/api/v1/layers/grids?level=5", "level"),
        ("/api/v1/layers/grids?zoom=-1", "zoom"),
        ("/api/v1/layers/grids?zoom=abc", "zoom"),
        ("/api/v1/layers/grids?parent=15062x", "parent"),
        ("/api/v1/layers/grids?format=xml", "format"),
        ("/api/v1/layers/cameras?status=broken", "status"),
        ("/api/v1/layers/cases?step=done", "step"),
        ("/api/v1/layers/cases?type=x;DROP%20TABLE%20cases", "type"),
        ("/api/v1/layers/cases?closed_hours=99999", "closed_hours"),
        ("/api/v1/layers/cases?rev=%C2%B2", "rev"),  # ², which str.isdigit takes and int() refuses
        ("/api/v1/layers/vans?trail_minutes=-5", "trail_minutes"),
        ("/api/v1/layers/grids/stats?level=0", "level"),
        ("/api/v1/areas/150623/cases.csv?since=2026-13-01", "since"),
        ("/api/v1/areas/150623/cases.csv?since=2026-10-02&until=2026-10-01", "until"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(client: TestClient, url: str, field: str) -> None:
    r = client.get(url)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_gcj02_base_map_shifts_the_overlays(
    demo_dsn: str, redis_url: str, tmp_path, demo_admin: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    from geodata.gcj02 import wgs84_to_gcj02

    plain = Settings(**app_database(demo_dsn), redis_url=redis_url, home=tmp_path / "a", _env_file=None)
    amap = Settings(
        **app_database(demo_dsn),
        redis_url=redis_url,
        home=tmp_path / "b",
        _env_file=None,
        basemap="xyz",
        basemap_url="http://tiles.local/{z}/{x}/{y}.png",
        basemap_gcj02=True,
    )
    with TestClient(create_app(plain), headers=demo_admin) as a, TestClient(create_app(amap), headers=demo_admin) as b:
        p = a.get("/api/v1/layers/centers?max_level=1").json()["features"][0]["geometry"]["coordinates"]
        q = b.get("/api/v1/layers/centers?max_level=1").json()["features"][0]["geometry"]["coordinates"]
    assert q == pytest.approx([float(v) for v in wgs84_to_gcj02(*p)], abs=1e-6)
    assert abs(q[0] - p[0]) > 1e-3  # a few hundred metres here


def test_choropleth_stats_match_a_count(client: TestClient, demo_dsn: str) -> None:
    stats = client.get("/api/v1/layers/grids/stats?level=2").json()
    with psycopg.connect(demo_dsn) as conn:
        rows = conn.execute("""SELECT town_code, count(*) FROM cases
                               WHERE step IN ('reported','accepted','dispatched','handling') GROUP BY 1""").fetchall()
    assert {code: s["open"] for code, s in stats.items()} == dict(rows)
    assert all(s["rate"] is None or 0 <= s["rate"] <= 1 for s in stats.values())


def test_area_csv_export_matches_the_database(client: TestClient, demo_dsn: str) -> None:
    r = client.get("/api/v1/areas/150623101/cases.csv?step=evaluated&since=2026-06-01")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    with psycopg.connect(demo_dsn) as conn:
        n = conn.execute("""SELECT count(*) FROM cases WHERE town_code = '150623101' AND step = 'evaluated'
                            AND reported_at >= '2026-06-01 00:00+08'""").fetchone()[0]
    assert len(rows) == n > 0
    assert {row["step"] for row in rows} == {"evaluated"}
    with psycopg.connect(demo_dsn) as conn:  # China time with its offset, the instant stored
        stored = dict(conn.execute("SELECT code, reported_at FROM cases WHERE town_code = '150623101'").fetchall())
    assert all(row["reported_at"].endswith("+08:00") for row in rows)
    assert all(datetime.fromisoformat(row["reported_at"]) == stored[row["code"]] for row in rows)
    assert "phone" not in r.text and "parties" not in r.text
    assert client.get("/api/v1/areas/150623999/cases.csv").status_code == 404

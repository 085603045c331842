"""The base map served by yitu: its own tiles drawn from the demo, and an imported MBTiles.

The own tiles: drawn over the demo's roads and places (road pixels where the trunk road runs),
transparent where nothing is, redrawn when an import changes what they show, cached in Redis
and revalidated by ETag; a bad address is a 422 naming z, x or y. The MBTiles importer: a sound
raster file is copied in and served tile for tile with the TMS row flipped; every defect of a bad
one is named and nothing is written. In Chromium the wall and the area page draw the tiles with
no request leaving the server and no policy violation.
"""

from __future__ import annotations

import io
import math
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
import redis
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import Browser

from cli.main import main
from dashboard.app import create_app
from dashboard.basemap import basemap_layers
from geodata import basemap, mbtiles
from services.settings import Settings

from .browser import Watched, browser  # noqa: F401 - browser is a fixture
from .conftest import LiveServer, make_token
from .helpers import app_database

SEAT = (107.48, 38.19)  # near 敖勒召其镇's seat, where the demo's trunk roads meet


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 1 << z
    la = math.radians(lat)
    return int((lon + 180) / 360 * n), int((1 - math.log(math.tan(la) + 1 / math.cos(la)) / math.pi) / 2 * n)


def _image(body: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(body))
    im.load()
    return im.convert("RGBA")


def _pixels_near(im: Image.Image, colour: tuple[int, int, int], tolerance: int = 24) -> int:
    """Opaque pixels within ``tolerance`` of ``colour`` (a road's core)."""
    a = np.asarray(im, dtype=int)
    near = (np.abs(a[..., :3] - np.asarray(colour)) <= tolerance).all(axis=-1) & (a[..., 3] > 200)
    return int(near.sum())


def _settings(dsn: str, redis_url: str, home: Path, **extra: object) -> Settings:
    return Settings(**app_database(dsn), redis_url=redis_url, home=home, _env_file=None, **extra)


@pytest.fixture
def client(demo_dsn: str, redis_url: str, tmp_path: Path, demo_admin: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(demo_dsn, redis_url, tmp_path / "h")), headers=demo_admin) as c:
        yield c


# --- basemap=own ---------------------------------------------------------------------------------


def test_an_own_tile_draws_the_demos_roads_and_is_cached(client: TestClient, redis_url: str) -> None:
    x, y = _tile_of(*SEAT, 11)
    r = client.get(f"/api/v1/basemap/11/{x}/{y}.png")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    im = _image(r.content)
    assert im.size == (256, 256)
    assert _pixels_near(im, basemap.ROAD["trunk"][:3]) > 100  # the trunk roads through the seat
    assert int((np.asarray(im)[..., 3] > 0).sum()) > 256 * 256 // 2  # inside the banner: the land
    # Kept in Redis, answered again from there, and revalidated by its ETag.
    cache = redis.Redis.from_url(redis_url)
    keys = cache.keys("yitu:basemap:*")
    assert len(keys) == 1 and cache.get(keys[0]) == r.content
    cache.close()
    again = client.get(f"/api/v1/basemap/11/{x}/{y}.png")
    assert again.content == r.content and again.headers["etag"] == r.headers["etag"]
    unchanged = client.get(f"/api/v1/basemap/11/{x}/{y}.png", headers={"If-None-Match": r.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""
    # A HiDPI screen's tile: the same place in twice the pixels.
    big = client.get(f"/api/v1/basemap/11/{x}/{y}@2x.png")
    assert big.status_code == 200 and _image(big.content).size == (512, 512)
    assert big.headers["etag"] != r.headers["etag"]


def test_places_are_named_from_zoom_11(client: TestClient) -> None:
    names = {label.place.name for label in _labels(client, 11)}
    assert "敖勒召其镇" in names  # the town before its villages
    assert len(names) > 20  # and villages across the banner, none over another
    assert _labels(client, 10) == []  # below: the grid layer names the areas


def _labels(client: TestClient, z: int) -> list[basemap.Label]:
    settings: Settings = client.app.state.services.settings  # type: ignore[attr-defined]
    with client.app.state.services.pool.connection() as conn:  # type: ignore[attr-defined]
        places = basemap.Places().places(conn, basemap.generation(conn))
    return basemap.labels(places, z, basemap.font_path(settings.basemap_font))


def test_a_tile_with_nothing_on_it_is_transparent(client: TestClient) -> None:
    r = client.get("/api/v1/basemap/3/0/0.png")  # the Arctic off Alaska
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    im = _image(r.content)
    assert im.size == (256, 256) and im.getextrema()[3] == (0, 0)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("21/0/0.png", "z"),
        ("1/2/0.png", "x"),
        ("2/0/4.png", "y"),
        ("2/0/4@2x.png", "y"),
        ("2/0/1.gif", "y"),
        ("2/0/1@3x.png", "y"),
        ("2/-1/1.png", "x"),
        ("z/0/0.png", "z"),
    ],
)
def test_a_bad_tile_address_is_a_422_naming_the_field(client: TestClient, path: str, field: str) -> None:
    r = client.get(f"/api/v1/basemap/{path}")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == field or field in {e["field"] for e in body.get("errors") or []}, body


def test_tiles_are_for_any_signed_in_identity_and_wall_screens(demo_db: str, redis_url: str, tmp_path: Path) -> None:
    # its own clone: the tokens it makes must not stay in the suite's read-only demo (test_simulate
    # counts the tokens there)
    x, y = _tile_of(*SEAT, 9)
    path = f"/api/v1/basemap/9/{x}/{y}.png"
    with TestClient(create_app(_settings(demo_db, redis_url, tmp_path / "h"))) as c:
        assert c.get(path).status_code == 401
        for role in ("viewer", "van", "grid_worker"):
            token = make_token(demo_db, role, name=f"basemap-{role}")
            assert c.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200, role


def test_an_import_draws_anew_and_water_is_drawn(demo_db: str, redis_url: str, tmp_path: Path) -> None:
    """A lake imported where the seat is: the next tile shows it (the generation moved on), whatever
    was cached before."""
    z = 12
    x, y = _tile_of(*SEAT, z)
    token = make_token(demo_db, "viewer")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(_settings(demo_db, redis_url, tmp_path / "h")), headers=headers) as c:
        before = c.get(f"/api/v1/basemap/{z}/{x}/{y}.png")
        assert _pixels_near(_image(before.content), basemap.WATER_FILL[:3], 12) == 0
        with psycopg.connect(demo_db) as conn:
            gen = basemap.generation(conn)
            conn.execute(
                "INSERT INTO water (kind, name, geom) VALUES ('lake', '测试湖', "
                "ST_Buffer(ST_SetSRID(ST_MakePoint(%s, %s), 4326), 0.01))",
                SEAT,
            )
            conn.commit()
            assert basemap.generation(conn) == gen + 1
        after = c.get(f"/api/v1/basemap/{z}/{x}/{y}.png")
        assert after.headers["etag"] != before.headers["etag"]
        assert _pixels_near(_image(after.content), basemap.WATER_FILL[:3], 40) > 500
        # Only what the tiles show moves the generation: an area's other columns do not.
        with psycopg.connect(demo_db) as conn:
            gen = basemap.generation(conn)
            conn.execute("UPDATE areas SET props = props || '{\"x\": 1}' WHERE level = 3")
            conn.commit()
            assert basemap.generation(conn) == gen


def test_the_policy_stays_strict_with_a_base_map_of_its_own(demo_dsn: str, redis_url: str, tmp_path: Path) -> None:
    for kind in ("own", "mbtiles"):
        with TestClient(create_app(_settings(demo_dsn, redis_url, tmp_path / kind, basemap=kind))) as c:
            csp = c.get("/healthz").headers["content-security-policy"]
        assert "img-src 'self' data: blob:;" in csp and "http" not in csp, (kind, csp)


# --- MBTiles ------------------------------------------------------------------------------------


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (256, 256), colour).save(out, "PNG")
    return out.getvalue()


def write_mbtiles(
    path: Path,
    metadata: dict[str, str] | None = None,
    tiles: dict[tuple[int, int, int], bytes] | None = None,
    tables: bool = True,
) -> Path:
    """A small MBTiles: ``tiles`` by (z, x, TMS row)."""
    meta = {"name": "test", "format": "png", "minzoom": "0", "maxzoom": "2", "bounds": "-180,-85,180,85"}
    if metadata is not None:
        meta = metadata
    with sqlite3.connect(path) as conn:
        if tables:
            conn.execute("CREATE TABLE metadata (name text, value text)")
            conn.execute(
                "CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob)"
            )
            conn.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
            conn.executemany("INSERT INTO metadata VALUES (?, ?)", list(meta.items()))
            for (z, x, row), data in (tiles if tiles is not None else {(0, 0, 0): _png((10, 20, 30))}).items():
                conn.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, row, data))
        else:
            conn.execute("CREATE TABLE other (a integer)")
    conn.close()
    return path


TOP_LEFT = _png((200, 0, 0))  # z1 x0, XYZ row 0 (the north): TMS row 1
BOTTOM_LEFT = _png((0, 0, 200))  # z1 x0, XYZ row 1: TMS row 0


def test_an_imported_mbtiles_is_served_tile_for_tile_with_the_rows_flipped(
    demo_dsn: str, redis_url: str, tmp_path: Path, demo_admin: dict[str, str]
) -> None:
    src = write_mbtiles(
        tmp_path / "map.mbtiles", tiles={(0, 0, 0): _png((1, 2, 3)), (1, 0, 1): TOP_LEFT, (1, 0, 0): BOTTOM_LEFT}
    )
    settings = _settings(demo_dsn, redis_url, tmp_path / "h", basemap="mbtiles")
    info = mbtiles.install(src, settings.basemap_path(), settings.basemap_mbtiles_max_bytes)
    assert (info.format, info.minzoom, info.maxzoom, info.tiles) == ("png", 0, 2, 3)
    with TestClient(create_app(settings), headers=demo_admin) as c:
        north = c.get("/api/v1/basemap/1/0/0.png")
        assert north.status_code == 200 and north.headers["content-type"] == "image/png"
        assert north.content == TOP_LEFT
        assert c.get("/api/v1/basemap/1/0/1.png").content == BOTTOM_LEFT
        missing = c.get("/api/v1/basemap/2/3/3.png")  # not in the file: the empty tile, not an error
        assert missing.status_code == 200 and _image(missing.content).getextrema()[3] == (0, 0)
        assert c.get("/api/v1/basemap/1/2/0.png").status_code == 422
    # the pages' tile layer asks for the file's format, within its zooms and bounds
    (layer,) = basemap_layers(settings)
    assert layer.url == "/api/v1/basemap/{z}/{x}/{y}.png"
    assert (layer.minNativeZoom, layer.maxNativeZoom, layer.bounds) == (0, 2, [[-85.0, -180.0], [85.0, 180.0]])


@pytest.mark.parametrize(("fmt", "pil", "media"), [("jpg", "JPEG", "image/jpeg"), ("webp", "WEBP", "image/webp")])
def test_jpeg_and_webp_mbtiles_are_served_as_what_they_are(
    demo_dsn: str, redis_url: str, tmp_path: Path, demo_admin: dict[str, str], fmt: str, pil: str, media: str
) -> None:
    out = io.BytesIO()
    Image.new("RGB", (256, 256), (30, 60, 90)).save(out, pil)
    meta = {"name": fmt, "format": fmt, "minzoom": "0", "maxzoom": "0"}
    src = write_mbtiles(tmp_path / f"{fmt}.mbtiles", metadata=meta, tiles={(0, 0, 0): out.getvalue()})
    settings = _settings(demo_dsn, redis_url, tmp_path / "h", basemap="mbtiles")
    mbtiles.install(src, settings.basemap_path(), settings.basemap_mbtiles_max_bytes)
    with TestClient(create_app(settings), headers=demo_admin) as c:
        r = c.get(f"/api/v1/basemap/0/0/0.{fmt}")
    assert r.status_code == 200 and r.headers["content-type"] == media and r.content == out.getvalue()
    (layer,) = basemap_layers(settings)
    assert layer.url == f"/api/v1/basemap/{{z}}/{{x}}/{{y}}.{fmt}" and getattr(layer, "bounds", None) is None


def test_own_tiles_are_not_served_when_another_base_map_is_chosen(
    demo_dsn: str, redis_url: str, tmp_path: Path, demo_admin: dict[str, str]
) -> None:
    for kind in ("none", "osm", "mbtiles"):  # mbtiles: none imported
        settings = _settings(demo_dsn, redis_url, tmp_path / kind, basemap=kind)
        with TestClient(create_app(settings), headers=demo_admin) as c:
            r = c.get("/api/v1/basemap/9/400/200.png")
        assert r.status_code == 404 and r.json()["field"] == "basemap", (kind, r.text)


def _corrupt(path: Path) -> Path:
    """An SQLite header over pages of garbage."""
    write_mbtiles(path)
    data = bytearray(path.read_bytes())
    data[100:] = bytes((i * 37) % 251 for i in range(len(data) - 100))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: write_mbtiles(p, tables=False), ["no 'metadata' table", "no 'tiles' table"]),
        (
            lambda p: write_mbtiles(p, metadata={"minzoom": "3", "maxzoom": "1"}),
            ["no 'name'", "no 'format'", "minzoom 3 is above maxzoom 1"],
        ),
        (
            lambda p: write_mbtiles(p, metadata={"name": "x", "format": "gif", "bounds": "1,2,3"}),
            ["format 'gif' is not one of png, jpg, webp", "bounds '1,2,3'"],
        ),
        (  # vector MBTiles are drawn by the server now (tests/test_basemap_vector.py): one of images is not one
            lambda p: write_mbtiles(p, metadata={"name": "v", "format": "pbf"}),
            ["says format pbf, but the first tile is not a vector tile"],
        ),
        (
            lambda p: write_mbtiles(p, metadata={"name": "x", "format": "jpg"}),
            ["says format jpg, but the first tile is not a jpg image"],
        ),
        (lambda p: write_mbtiles(p, tiles={}), ["table tiles is empty"]),
        (
            lambda p: write_mbtiles(p, metadata={"name": "x", "format": "png", "maxzoom": "30"}),
            ["maxzoom 30 is not a zoom in 0..24"],
        ),
        (_corrupt, ["damaged"]),
        (lambda p: (p.write_text("name,format\nx,png\n"), p)[1], ["not an SQLite database"]),
    ],
)
def test_a_bad_mbtiles_is_refused_naming_every_problem(
    tmp_path: Path, make: Callable[[Path], Path], expected: list[str]
) -> None:
    folder = tmp_path / "basemap"
    src = make(tmp_path / "bad.mbtiles")
    with pytest.raises(mbtiles.MbtilesRejected) as caught:
        mbtiles.install(src, folder, 10**9)
    text = caught.value.message
    assert "bad.mbtiles rejected" in text and "nothing was written" in text
    for words in expected:
        assert words in text, text
    assert caught.value.field == "file"
    assert not (folder / mbtiles.FILE_NAME).exists()
    assert not folder.exists() or list(folder.iterdir()) == []  # no half copy left behind


def test_an_oversized_mbtiles_is_refused_before_it_is_read(tmp_path: Path) -> None:
    src = write_mbtiles(tmp_path / "big.mbtiles")
    with pytest.raises(mbtiles.MbtilesRejected, match=r"over the 1024 allowed \(YITU_BASEMAP_MBTILES_MAX_BYTES\)"):
        mbtiles.install(src, tmp_path / "basemap", 1024)
    assert not (tmp_path / "basemap").exists()


def test_the_basemap_command_imports_shows_and_removes(tmp_path: Path, redis_url: str, db_url: str) -> None:
    env = {"YITU_HOME": str(tmp_path / "h"), "YITU_DATABASE_URL": db_url, "YITU_REDIS_URL": redis_url}
    runner = CliRunner()
    good = write_mbtiles(tmp_path / "good.mbtiles")
    bad = write_mbtiles(tmp_path / "bad.mbtiles", metadata={"name": "v", "format": "pbf"})
    out = runner.invoke(main, ["basemap", "import", str(good)], env=env)
    assert out.exit_code == 0, out.output
    assert "imported test: png, zoom 0-2" in out.output and "set YITU_BASEMAP=mbtiles" in out.output
    stored = tmp_path / "h" / "basemap" / mbtiles.FILE_NAME
    assert stored.read_bytes() == good.read_bytes()
    refused = runner.invoke(main, ["basemap", "import", str(bad)], env=env)
    assert refused.exit_code == 1 and "the first tile is not a vector tile" in refused.output
    assert stored.read_bytes() == good.read_bytes()  # the one imported before stays
    status = runner.invoke(main, ["basemap", "status"], env={**env, "YITU_BASEMAP": "mbtiles"})
    assert status.exit_code == 0 and "basemap: mbtiles" in status.output and "1 tiles" in status.output
    assert runner.invoke(main, ["basemap", "remove"], env=env).exit_code == 0
    assert not stored.exists()
    status = runner.invoke(main, ["basemap", "status"], env={**env, "YITU_BASEMAP": "mbtiles"})
    assert status.exit_code == 1 and "no MBTiles imported" in status.output


# --- in the browser -------------------------------------------------------------------------------


BASEMAP_TILES = "() => document.querySelectorAll('.yitu-basemap img.leaflet-tile-loaded').length"


def test_the_wall_and_area_page_draw_the_own_base_map_from_their_own_origin(
    live_server: Callable[..., LiveServer], demo_dsn: str, redis_url: str, browser: Browser
) -> None:
    srv = live_server(demo_dsn, redis_url, YITU_SCHEDULER_INTERVAL="0")
    srv.pair()  # a wall screen
    w = Watched(browser, srv.url, cookies=srv.browser_cookie())
    tiles: list[tuple[str, int]] = []
    w.page.on("response", lambda r: tiles.append((r.url, r.status)) if "/api/v1/basemap/" in r.url else None)
    w.page.goto(srv.url + "/")
    w.page.wait_for_function(f"() => ({BASEMAP_TILES})() >= 4", timeout=60_000)
    w.page.goto(srv.url + "/area/150623")
    w.page.wait_for_function(f"() => ({BASEMAP_TILES})() >= 4", timeout=60_000)
    assert tiles and all(status == 200 for _, status in tiles), tiles
    assert all(url.startswith(srv.url + "/api/v1/basemap/") for url, _ in tiles)
    w.close()  # no request left the server, no console error, no policy violation


# --- water ----------------------------------------------------------------------------------------


WATER_GEOJSON = """{"type": "FeatureCollection", "features": [
 {"type": "Feature", "properties": {"类型": "河流", "名称": "都思兔河"},
  "geometry": {"type": "LineString", "coordinates": [[107.40, 38.15], [107.48, 38.19], [107.56, 38.22]]}},
 {"type": "Feature", "properties": {"类型": "水库", "名称": "测试水库"},
  "geometry": {"type": "Polygon",
   "coordinates": [[[107.47, 38.18], [107.49, 38.18], [107.49, 38.20], [107.47, 38.20], [107.47, 38.18]]]}}
]}"""

OSM_XML = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="test">
 <node id="1" lat="38.15" lon="107.40"/><node id="2" lat="38.19" lon="107.48"/><node id="3" lat="38.22" lon="107.56"/>
 <node id="4" lat="38.18" lon="107.47"/><node id="5" lat="38.18" lon="107.49"/><node id="6" lat="38.20" lon="107.49"/>
 <node id="7" lat="38.20" lon="107.47"/>
 <way id="10"><nd ref="1"/><nd ref="2"/><nd ref="3"/><tag k="waterway" v="river"/><tag k="name" v="都思兔河"/></way>
 <way id="11"><nd ref="4"/><nd ref="5"/><nd ref="6"/><nd ref="7"/><nd ref="4"/>
  <tag k="natural" v="water"/><tag k="water" v="reservoir"/></way>
 <way id="12"><nd ref="1"/><nd ref="3"/><tag k="highway" v="track"/></way>
</osm>"""


def test_water_is_imported_and_drawn(db_url: str, redis_url: str, tmp_path: Path) -> None:
    env = {"YITU_HOME": str(tmp_path / "h"), "YITU_DATABASE_URL": db_url, "YITU_REDIS_URL": redis_url}
    runner = CliRunner()
    good = tmp_path / "water.geojson"
    good.write_text(WATER_GEOJSON, encoding="utf-8")
    out = runner.invoke(main, ["import", "water", str(good)], env=env)
    assert out.exit_code == 0, out.output
    assert "water: inserted 2" in out.output and "river: 1" in out.output and "reservoir: 1" in out.output
    bad = tmp_path / "bad.geojson"
    bad.write_text(WATER_GEOJSON.replace("河流", "火山").replace("107.47, 38.18]", "7.47, 38.18]"), encoding="utf-8")
    refused = runner.invoke(main, ["import", "water", str(bad)], env=env)
    assert refused.exit_code == 1, refused.output
    assert "2 problem(s), nothing was written" in refused.output
    assert "kind '火山' is none of" in refused.output and "water outside China" in refused.output
    osm = tmp_path / "water.osm"
    osm.write_text(OSM_XML, encoding="utf-8")
    out = runner.invoke(main, ["import", "water", "--replace", str(osm)], env=env)
    assert out.exit_code == 0, out.output
    assert "replaced 2 old" in out.output and "river: 1" in out.output and "reservoir: 1" in out.output
    # drawn: the reservoir's blue at the seat
    token = make_token(db_url, "viewer")
    x, y = _tile_of(*SEAT, 13)
    with TestClient(
        create_app(_settings(db_url, redis_url, tmp_path / "h2")), headers={"Authorization": f"Bearer {token}"}
    ) as c:
        tile = _image(c.get(f"/api/v1/basemap/13/{x}/{y}.png").content)
    assert _pixels_near(tile, basemap.WATER_FILL[:3], 12) > 2000


def test_water_in_a_projected_crs_with_heights_is_reprojected_and_each_change_said(tmp_path: Path) -> None:
    """The water importer reads its shapes as every importer does (geodata/io.py geometries_wgs84):
    reprojected to lon/lat, heights dropped, and the warnings name the CRS and the features."""
    import geopandas as gpd
    import shapely

    from geodata.io import ImportRejected
    from geodata.water import read_water

    lon, lat = SEAT
    lake = shapely.Polygon([(lon, lat, 1300.0), (lon + 0.01, lat, 1300.0), (lon + 0.01, lat + 0.01, 1301.0)])
    river = shapely.LineString([(lon - 0.02, lat), (lon - 0.01, lat + 0.005)])
    frame = gpd.GeoDataFrame({"类型": ["湖泊", "河流"], "name": ["测试湖", "测试河"]}, geometry=[lake, river], crs=4326)
    path = tmp_path / "water_utm.gpkg"
    frame.to_crs(32648).to_file(path, driver="GPKG")
    out = read_water(path)
    assert any("reprojected from WGS 84 / UTM zone 48N" in w for w in out.warnings), out.warnings
    assert any("1 feature(s) have Z coordinates; heights dropped: #1" in w for w in out.warnings), out.warnings
    (kind1, name1, geom1), (kind2, _, geom2) = out.rows
    assert (kind1, name1, kind2) == ("lake", "测试湖", "river")
    assert not geom1.has_z and geom1.equals_exact(shapely.force_2d(lake), 1e-6)
    assert geom2.equals_exact(river, 1e-6)
    # a file without a kind field: refused, naming what was tried and the option that names it
    frame.drop(columns=["类型"]).to_file(tmp_path / "no_kind.gpkg", driver="GPKG")
    with pytest.raises(ImportRejected) as refused:
        read_water(tmp_path / "no_kind.gpkg")
    text = str(refused.value.problems)
    assert "no kind field (tried kind, class" in text and "name it with --kind-field" in text

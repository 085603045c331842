"""A vector MBTiles as the base map: imported, drawn by the server in the own map's colours.

A small file written here (mapbox_vector_tile.encode: a lake, a primary road, a town with a Chinese
name) is imported and its tile fetched through the app: the PNG has the own map's water colour
where the lake is, its trunk colour along the road and the town's name above its dot, gzip'd tiles
and plain ones alike; beyond the file's deepest zoom the tile is cut from the deepest one and
enlarged; below its shallowest, outside its bounds or where it has no tile: the empty tile. Hostile
tiles (junk, a decompression bomb, a huge one, a truncated stream) are refused at import naming the
tile, nothing written; one that slips past the import's sample is the empty tile and a log line
when served, never a 500.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import mapbox_vector_tile
import numpy as np
import pytest
import redis
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from cli.main import main
from dashboard.app import create_app
from dashboard.basemap import basemap_layers
from geodata import basemap, mbtiles, vector_basemap
from services.basemap import phone_tiles
from services.settings import Settings

from .helpers import app_database

Z, X, Y = 12, 3270, 1577  # 敖勒召其镇's seat, as in test_basemap (XYZ row)
BOUNDS = "107.3,38,107.8,38.4"
TOWN = "测试镇"


def _image(body: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(body))
    im.load()
    return im.convert("RGBA")


def _near(
    im: Image.Image, colour: tuple[int, ...], tolerance: int = 24, box: tuple[int, int, int, int] | None = None
) -> int:
    """Opaque pixels within ``tolerance`` of ``colour``, in ``box`` (left, top, right, bottom) or all."""
    a = np.asarray(im, dtype=int)
    if box is not None:
        a = a[box[1] : box[3], box[0] : box[2]]
    near = (np.abs(a[..., :3] - np.asarray(colour[:3])) <= tolerance).all(axis=-1) & (a[..., 3] > 200)
    return int(near.sum())


def vector_tile(water: bool = True, earth: bool = True) -> bytes:
    """Land (Protomaps' ``earth``) all over, a lake in the top-left corner, a primary road across at
    3000/4096 of the height, a town at the middle (tile grid 4096, y down)."""
    layers = [
        {
            "name": "transportation",
            "features": [{"geometry": "LINESTRING (0 3000, 4096 3000)", "properties": {"class": "primary"}}],
        },
        {
            "name": "place",
            "features": [{"geometry": "POINT (2048 2048)", "properties": {"class": "town", "name": TOWN}}],
        },
        {"name": "poi", "features": [{"geometry": "POINT (100 100)", "properties": {"class": "shop", "name": "商店"}}]},
    ]
    if water:
        polygon = "POLYGON ((0 0, 0 1500, 1500 1500, 1500 0, 0 0))"
        layers.insert(0, {"name": "water", "features": [{"geometry": polygon, "properties": {"class": "lake"}}]})
    if earth:
        polygon = "POLYGON ((-64 -64, -64 4160, 4160 4160, 4160 -64, -64 -64))"
        layers.insert(0, {"name": "earth", "features": [{"geometry": polygon, "properties": {}}]})
    return mapbox_vector_tile.encode(layers, default_options={"y_coord_down": True})


def write_vector_mbtiles(
    path: Path, tiles: dict[tuple[int, int, int], bytes], meta: dict[str, str] | None = None
) -> Path:
    """A vector MBTiles: ``tiles`` by XYZ (z, x, y), stored with the TMS row."""
    metadata = {"name": "vec", "format": "pbf", "minzoom": str(Z), "maxzoom": str(Z), "bounds": BOUNDS}
    metadata["json"] = json.dumps({"vector_layers": [{"id": n} for n in ("water", "transportation", "place", "poi")]})
    metadata.update(meta or {})
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE metadata (name text, value text)")
        conn.execute("CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob)")
        conn.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
        conn.executemany("INSERT INTO metadata VALUES (?, ?)", list(metadata.items()))
        for (z, x, y), data in tiles.items():
            conn.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, (1 << z) - 1 - y, data))
    conn.close()
    return path


def _settings(dsn: str, redis_url: str, home: Path) -> Settings:
    return Settings(**app_database(dsn), redis_url=redis_url, home=home, basemap="mbtiles", _env_file=None)


def _imported(tmp_path: Path, dsn: str, redis_url: str, tiles: dict[tuple[int, int, int], bytes]) -> Settings:
    settings = _settings(dsn, redis_url, tmp_path / "h")
    src = write_vector_mbtiles(tmp_path / "vec.mbtiles", tiles)
    mbtiles.install(src, settings.basemap_path(), settings.basemap_mbtiles_max_bytes)
    return settings


DARK = basemap.STYLES["dark"]


@pytest.mark.parametrize("packed", ["gzip", "plain"])
def test_a_vector_tile_is_drawn_in_the_own_maps_colours(
    demo_dsn: str, redis_url: str, tmp_path: Path, demo_admin: dict[str, str], packed: str
) -> None:
    data = gzip.compress(vector_tile()) if packed == "gzip" else vector_tile()
    settings = _settings(demo_dsn, redis_url, tmp_path / "h")
    src = write_vector_mbtiles(tmp_path / "vec.mbtiles", {(Z, X, Y): data})
    info = mbtiles.install(src, settings.basemap_path(), settings.basemap_mbtiles_max_bytes)
    assert (info.format, info.vector, info.minzoom, info.maxzoom, info.tiles) == ("pbf", True, Z, Z, 1)
    assert info.layers == ("water", "transportation", "place", "poi")
    with TestClient(create_app(settings), headers=demo_admin) as c:
        r = c.get(f"/api/v1/basemap/{Z}/{X}/{Y}.png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        im = _image(r.content)
        assert im.size == (256, 256)
        # the lake: 1500/4096 of the side from the top left, in the own map's water colour
        assert _near(im, DARK.water_fill, box=(0, 0, 88, 88)) > 88 * 88 * 0.95
        assert _near(im, DARK.water_fill, box=(100, 100, 256, 256)) == 0
        # the primary road: the own map's trunk colour along row 3000/4096 * 256 = 187.5
        assert _near(im, DARK.road["trunk"], box=(0, 184, 256, 192)) > 256 * 3
        assert _near(im, DARK.road["trunk"], box=(0, 0, 256, 176)) == 0
        # the town: its dot at the middle and its name above it, in the own map's place colours
        assert _near(im, DARK.place_dot[2], 12, box=(124, 124, 132, 132)) > 10
        assert _near(im, DARK.place_text[2], 30, box=(96, 100, 160, 124)) > 30
        assert int((np.asarray(im)[..., 3] > 0).sum()) == 256 * 256  # land all over, as the earth layer says
        # kept in Redis under the imported file, revalidated by its ETag
        cache = redis.Redis.from_url(redis_url)
        keys = cache.keys("yitu:basemap:mvt:*")
        assert len(keys) == 1 and cache.get(keys[0]) == r.content
        cache.close()
        again = c.get(f"/api/v1/basemap/{Z}/{X}/{Y}.png", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        big = c.get(f"/api/v1/basemap/{Z}/{X}/{Y}@2x.png")
        assert big.status_code == 200 and _image(big.content).size == (512, 512)
        light = _image(c.get(f"/api/v1/basemap/{Z}/{X}/{Y}.png?style=light").content)
        assert _near(light, basemap.STYLES["light"].water_fill, box=(0, 0, 88, 88)) > 88 * 88 * 0.9
        # a new import is drawn at once: no lake now, whatever was cached or validated before
        # (and without land polygons the tile is transparent where nothing is drawn, as the own map's)
        src = write_vector_mbtiles(tmp_path / "dry.mbtiles", {(Z, X, Y): vector_tile(water=False, earth=False)})
        mbtiles.install(src, settings.basemap_path(), settings.basemap_mbtiles_max_bytes)
        dry = c.get(f"/api/v1/basemap/{Z}/{X}/{Y}.png", headers={"If-None-Match": r.headers["etag"]})
        assert dry.status_code == 200 and dry.headers["etag"] != r.headers["etag"]
        dry_im = _image(dry.content)
        assert _near(dry_im, DARK.water_fill) == 0 and _near(dry_im, DARK.road["trunk"]) > 256 * 3
        assert dry_im.crop((0, 0, 88, 88)).getextrema()[3] == (0, 0)


def test_beyond_the_deepest_zoom_the_tile_is_enlarged_and_outside_the_file_it_is_empty(
    demo_dsn: str, redis_url: str, tmp_path: Path, demo_admin: dict[str, str]
) -> None:
    settings = _imported(tmp_path, demo_dsn, redis_url, {(Z, X, Y): gzip.compress(vector_tile())})
    with TestClient(create_app(settings), headers=demo_admin) as c:

        def tile(z: int, x: int, y: int) -> Image.Image:
            r = c.get(f"/api/v1/basemap/{z}/{x}/{y}.png")
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
            return _image(r.content)

        # z14, the top-left quarter of the top-left quarter: all lake (1500/4096 > 1/4)
        corner = tile(Z + 2, 4 * X, 4 * Y)
        assert _near(corner, DARK.water_fill) > 256 * 256 * 0.95
        # z14, third row down: the road at (3000/4096 * 4 - 2) * 256 = 237.5, a line of the zoom's width
        # (2.6 * 0.9 * 2.5 = 5.9 pixels), not the z12 line of 4.4 enlarged four times
        road = tile(Z + 2, 4 * X + 1, 4 * Y + 2)
        rows = [_near(road, DARK.road["trunk"], box=(0, r, 256, r + 1)) for r in range(256)]
        full = [r for r, n in enumerate(rows) if n == 256]
        assert full == list(range(full[0], full[0] + len(full))) and 5 <= len(full) <= 7, rows
        assert full[0] <= 237 and full[-1] >= 238 and sum(rows) < 256 * 9, rows
        assert _near(road, DARK.water_fill) == 0
        # the bottom row of z14 tiles: land only (the earth layer's)
        bottom = tile(Z + 2, 4 * X + 1, 4 * Y + 3)
        assert _near(bottom, DARK.road["trunk"]) == 0 and bottom.getextrema()[3] == (150, 150)
        # z20 (the deepest Leaflet asks for): still drawn from the z12 tile
        assert _near(tile(20, X << 8, Y << 8), DARK.water_fill) > 256 * 256 * 0.95
        empty = (0, 0)
        assert tile(Z - 1, X // 2, Y // 2).getextrema()[3] == empty  # below the file's shallowest zoom
        assert tile(Z, X + 1, Y).getextrema()[3] == empty  # within the bounds, but not in the file
        assert tile(Z, 100, 100).getextrema()[3] == empty  # outside the bounds
        assert tile(Z + 2, 400, 400).getextrema()[3] == empty  # outside the bounds, deeper than the file


def test_the_pages_ask_a_vector_file_at_every_zoom_in_their_own_palette(
    demo_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    settings = _imported(tmp_path, demo_dsn, redis_url, {(Z, X, Y): vector_tile()})
    (layer,) = basemap_layers(settings)
    assert layer.url == "/api/v1/basemap/{z}/{x}/{y}{r}.png"  # drawn here, @2x for HiDPI, like the own map
    assert getattr(layer, "maxNativeZoom", None) is None and layer.maxZoom == basemap.MAX_ZOOM
    assert layer.bounds == [[38.0, 107.3], [38.4, 107.8]]
    phone = phone_tiles(settings, light=True)
    assert phone is not None and phone["url"] == "/api/v1/basemap/{z}/{x}/{y}{r}.png?style=light"


def _bomb() -> bytes:
    return gzip.compress(b"\x00" * (17 * 1024 * 1024))  # some 17 kB inflating to 17 MiB


def _huge() -> bytes:
    return b"\x1a" + bytes((i * 7919) % 251 for i in range(4 * 1024 * 1024 + 10))


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (lambda: b"\x1a\xff\xff\xff\xff\xff\x01junk", "cannot be read: not a vector tile"),
        (lambda: gzip.compress(b"\x1a\x09not a tile at all" * 50), "cannot be read: not a vector tile"),
        (_bomb, "inflates to more than 16777216 bytes from"),
        (_huge, "has 4194315 bytes, over the 4194304 a vector tile may have"),
        (lambda: gzip.compress(vector_tile())[:-12], "cannot be read: the compressed tile is truncated"),
        (lambda: b"\x1a\x07\x0a\x01w\x28\x80\x20\x12\x01", "cannot be read"),  # a layer cut off mid-feature
    ],
    ids=["junk", "gzip-junk", "bomb", "huge", "truncated", "cut"],
)
def test_a_hostile_tile_is_refused_at_import_naming_it(tmp_path: Path, bad: Callable[[], bytes], expected: str) -> None:
    folder = tmp_path / "basemap"
    tiles = {(Z, X, Y): gzip.compress(vector_tile()), (Z, X + 1, Y): bad()}
    src = write_vector_mbtiles(tmp_path / "bad.mbtiles", tiles, {"bounds": "107,38,108,39"})
    with pytest.raises(mbtiles.MbtilesRejected) as caught:
        mbtiles.install(src, folder, 10**9)
    text = caught.value.message
    assert "bad.mbtiles rejected" in text and "nothing was written" in text
    assert f"tile {Z}/{X + 1}/{Y} " in text and expected in text, text
    assert f"tile {Z}/{X}/{Y} " not in text  # the good one is not blamed
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_tile_unreadable_when_served_is_the_empty_tile_and_a_log_line(
    demo_dsn: str, redis_url: str, tmp_path: Path, demo_admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The import reads each zoom's first, last and largest tile: a small junk tile between them
    gets in, and is answered as nothing when asked for."""
    good = gzip.compress(vector_tile())
    junk = b"\x1a\xff\xff\xff\xff\xff\x01junk"
    tiles = {(Z, X, Y): good, (Z, X + 1, Y): junk, (Z, X + 2, Y): good}
    settings = _imported(tmp_path, demo_dsn, redis_url, tiles)
    with TestClient(create_app(settings), headers=demo_admin) as c, caplog.at_level(logging.WARNING, "yitu.basemap"):
        r = c.get(f"/api/v1/basemap/{Z}/{X + 1}/{Y}.png")
        assert r.status_code == 200 and _image(r.content).getextrema()[3] == (0, 0)
        assert any(f"{Z}/{X + 1}/{Y}" in m and "not drawn" in m for m in caplog.messages), caplog.messages
        # its neighbours are drawn, without the names the junk tile might have had
        assert _near(_image(c.get(f"/api/v1/basemap/{Z}/{X + 2}/{Y}.png").content), DARK.water_fill) > 5000


def test_the_basemap_command_imports_a_vector_file_and_says_what_it_draws(
    tmp_path: Path, redis_url: str, db_url: str
) -> None:
    env = {"YITU_HOME": str(tmp_path / "h"), "YITU_DATABASE_URL": db_url, "YITU_REDIS_URL": redis_url}
    runner = CliRunner()
    src = write_vector_mbtiles(tmp_path / "vec.mbtiles", {(Z, X, Y): gzip.compress(vector_tile())})
    out = runner.invoke(main, ["basemap", "import", str(src)], env=env)
    assert out.exit_code == 0, out.output
    assert f"imported vec: pbf, zoom {Z}-{Z}, bounds 107.3, 38, 107.8, 38.4, 1 tiles" in out.output
    assert "vector, drawn by yitu; layers drawn: water, transportation, place; not drawn: poi" in out.output
    status = runner.invoke(main, ["basemap", "status"], env={**env, "YITU_BASEMAP": "mbtiles"})
    assert status.exit_code == 0, status.output
    assert "basemap: mbtiles" in status.output and "pbf, zoom 12-12" in status.output
    assert "1 tiles" in status.output and "vector, drawn by yitu" in status.output


def test_holes_islands_and_several_parts_are_drawn_as_they_are(tmp_path: Path) -> None:
    """A lake with an island and a second lake in one feature, a road of two pieces: the island is
    land, both lakes water, both pieces road (the geometries are built a layer at a time)."""
    lakes = (
        "MULTIPOLYGON (((0 0, 2048 0, 2048 2048, 0 2048, 0 0), (512 512, 512 1536, 1536 1536, 1536 512, 512 512)),"
        " ((2560 0, 4096 0, 4096 1024, 2560 1024, 2560 0)))"
    )
    roads = "MULTILINESTRING ((0 3000, 1500 3000), (2600 3000, 4096 3000))"
    data = mapbox_vector_tile.encode(
        [
            {"name": "water", "features": [{"geometry": lakes, "properties": {"class": "lake"}}]},
            {"name": "transportation", "features": [{"geometry": roads, "properties": {"class": "motorway"}}]},
        ],
        default_options={"y_coord_down": True},
    )
    folder = tmp_path / "basemap"
    mbtiles.install(write_vector_mbtiles(tmp_path / "v.mbtiles", {(Z, X, Y): data}), folder, 10**9)
    served = mbtiles.served(folder)
    assert served is not None and served.info.vector
    im = _image(vector_basemap.render(folder, served, basemap.TileKey(Z, X, Y), None))
    assert _near(im, DARK.water_fill, box=(4, 4, 28, 124)) == 24 * 120  # the first lake's rim
    assert im.crop((40, 40, 88, 88)).getextrema()[3] == (0, 0)  # its island: nothing drawn
    assert _near(im, DARK.water_fill, box=(164, 4, 252, 60)) == 88 * 56  # the second lake
    assert _near(im, DARK.road["trunk"], box=(0, 186, 90, 189)) == 90 * 3  # the first piece
    assert _near(im, DARK.road["trunk"], box=(110, 180, 150, 196)) == 0  # the gap
    assert _near(im, DARK.road["trunk"], box=(170, 186, 256, 189)) == 86 * 3  # the second piece


def test_the_same_file_on_two_hosts_has_one_identity_and_another_file_another(tmp_path: Path) -> None:
    """Hosts behind nginx that each imported the same file share its Redis tiles and its ETags."""
    src = write_vector_mbtiles(tmp_path / "v.mbtiles", {(Z, X, Y): vector_tile()})
    other = write_vector_mbtiles(tmp_path / "w.mbtiles", {(Z, X, Y): vector_tile(water=False)})
    ids = []
    for host, file in (("a", src), ("b", src), ("c", other)):
        mbtiles.install(file, tmp_path / host, 10**9)
        served = mbtiles.served(tmp_path / host)
        assert served is not None
        ids.append(served.identity)
    assert ids[0] == ids[1] != ids[2]

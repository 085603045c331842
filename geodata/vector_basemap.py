"""A vector MBTiles drawn as yitu's own map (``basemap=mbtiles`` with a ``pbf`` file).

A vector MBTiles (OpenMapTiles, Shortbread, Protomaps, Mapbox Streets, a tippecanoe or PostGIS
``ST_AsMVT`` export) holds geometries, not pictures; browsers would need a vector renderer
(MapLibre GL) to draw it, which yitu does not ship. So the server draws each tile to PNG with the
painter of its own map (geodata/basemap.py): the same colours for water and for the road classes,
the same font, dots and halos for the places, the same supersampling; the pages keep the one
raster tile layer they have, on their own origin.

The common schemas' layer names are mapped to what the own map draws (:data:`LAYERS`): land where a
schema has land polygons (Protomaps' ``earth``; elsewhere the tiles are transparent where nothing is
drawn, as the own map's are outside the banner), water, waterways, land cover and land use,
buildings, boundaries, roads by class (:data:`ROADS`: motorway,
trunk and primary in the own map's trunk colour, secondary and tertiary in its county colour, the
rest in its village colour, thinner for service roads, tracks and paths), places, and road and water
names. Anything else (POIs, aeroways, housenumbers) is left out: the base map lies under the grid,
the pins and the vans, never louder than them.

Beyond the file's deepest zoom a tile is cut from the deepest one and enlarged as geometry, so
lines stay sharp; below its shallowest zoom or outside its bounds a tile is the empty one, and so
is a tile that cannot be read (logged, never an error to the page). Place names are chosen as the
own map chooses them (:func:`geodata.basemap.labels`) among the places of the tile and its eight
neighbours, so a name across a tile edge is drawn on both tiles.
"""

from __future__ import annotations

import io
import logging
import math
import sqlite3
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from PIL import Image, ImageDraw

from geodata import basemap, mbtiles, mvt
from geodata.basemap import HALO_WIDTH, LINE_BUFFER, SUPERSAMPLE, TILE, Canvas, Colour, Place, TileKey

log = logging.getLogger("yitu.basemap")

STYLE_VERSION = 1  # bump when the drawing changes: cached tiles and browsers' copies are then stale
DECODED_TILES = 128  # tiles kept parsed in this process (_Kept)
DECODED_BYTES = 8 * 1024 * 1024  # and at most this many inflated bytes of them
BUILDINGS_FROM = 13
LINE_NAMES_FROM = 13  # road and river names along their lines, on every other tile (a checkerboard):
# a name in each tile a long road crosses, some 256 pixels apart, says it too often
NAME_GAP = 3  # pixels kept free around a name


@dataclass(frozen=True)
class Extra:
    """The colours a vector file has and the own map does not (land cover, buildings, borders)."""

    green: Colour  # wood, grass, parks, wetland
    sand: Colour  # sand, desert, bare rock
    built: Colour  # residential, industrial and the like
    building: Colour
    boundary: Colour
    water_text: Colour


EXTRA: dict[str, Extra] = {
    "dark": Extra(
        green=(30, 60, 58, 120),
        sand=(80, 70, 46, 110),
        built=(38, 50, 80, 140),
        building=(52, 64, 92, 210),
        boundary=(124, 112, 156, 200),
        water_text=(110, 166, 210, 255),
    ),
    "light": Extra(
        green=(202, 226, 192, 170),
        sand=(238, 228, 198, 170),
        built=(232, 228, 222, 180),
        building=(214, 208, 200, 230),
        boundary=(160, 136, 176, 220),
        water_text=(60, 112, 168, 255),
    ),
}

# The layer names of the common schemas (OpenMapTiles, Shortbread, Protomaps, Mapbox Streets) and
# what the own map draws them as.
LAYERS: dict[str, str] = {
    "earth": "land",  # Protomaps' land polygons: the own map's land colour, as its banner
    **dict.fromkeys(("water", "water_polygons", "ocean"), "water"),
    **dict.fromkeys(("waterway", "waterways", "water_lines"), "waterway"),
    **dict.fromkeys(("landcover", "landuse", "landuse_overlay", "park", "land", "sites", "natural"), "cover"),
    **dict.fromkeys(("transportation", "road", "roads", "streets"), "road"),
    **dict.fromkeys(("building", "buildings"), "building"),
    **dict.fromkeys(("boundary", "boundaries", "admin"), "boundary"),
    **dict.fromkeys(("place", "places", "place_label", "place_labels"), "place"),
    **dict.fromkeys(("transportation_name", "road_label", "street_labels"), "road_name"),
    **dict.fromkeys(("water_name", "water_label", "water_polygons_labels", "water_lines_labels"), "water_name"),
}

# A road's class (OpenMapTiles' class, Shortbread's and Protomaps' kind, Mapbox's class) as the own
# map's class, and its width relative to that class's.
ROADS: dict[str, tuple[str, float]] = {
    **dict.fromkeys(("motorway", "highway"), ("trunk", 1.25)),
    **dict.fromkeys(("trunk", "major_road"), ("trunk", 1.0)),
    "primary": ("trunk", 0.9),
    **dict.fromkeys(("secondary", "medium_road"), ("county", 1.0)),
    "tertiary": ("county", 0.85),
    **dict.fromkeys(
        ("minor", "minor_road", "residential", "unclassified", "street", "street_limited", "living_street", "road"),
        ("village", 1.0),
    ),
    **dict.fromkeys(("service", "busway", "pedestrian"), ("village", 0.7)),
    "track": ("village", 0.6),
    **dict.fromkeys(("path", "footway", "cycleway", "bridleway", "steps"), ("village", 0.5)),
}
ROAD_ORDER = ("village", "county", "trunk")  # drawn bottom first, as the own map does

COVER: dict[str, str] = {
    **dict.fromkeys(
        (
            "wood",
            "forest",
            "grass",
            "grassland",
            "meadow",
            "scrub",
            "heath",
            "wetland",
            "park",
            "garden",
            "nature_reserve",
            "national_park",
            "protected_area",
            "recreation_ground",
            "golf_course",
            "cemetery",
            "orchard",
            "vineyard",
            "village_green",
        ),
        "green",
    ),
    **dict.fromkeys(("sand", "beach", "desert", "bare_rock", "rock", "scree", "dune"), "sand"),
    **dict.fromkeys(
        (
            "residential",
            "commercial",
            "industrial",
            "retail",
            "railway",
            "military",
            "school",
            "university",
            "college",
            "hospital",
            "suburb",
            "neighbourhood",
            "quarter",
            "urban_area",
            "built_up",
        ),
        "built",
    ),
}
COVER_ORDER = ("built", "green", "sand")

TOWNS = frozenset(
    ("country", "state", "province", "region", "capital", "city", "town", "county", "district", "municipality")
)
NAME_KEYS = ("name:zh", "name_zh", "name:zh-Hans", "name", "name_int", "name:latin", "name_en", "name:en")


def etag(identity: str, key: TileKey, font: tuple[str, int] | None, style: str) -> str:
    """The validator of a drawn tile: the imported file (its identity changes with each import) and
    what drew it."""
    return f'"mvt-{identity}-{zlib.crc32(repr((key, font, style, STYLE_VERSION)).encode()):08x}"'


def render(
    folder: Path, served: mbtiles.Served, key: TileKey, font: tuple[str, int] | None, style: str = "dark"
) -> bytes:
    """The tile's PNG in ``style``; the empty tile where the file has nothing to draw."""
    try:
        drawn = _draw(folder, served, key, font, style)
    except (mvt.TileUnreadable, sqlite3.DatabaseError, shapely.errors.GEOSException) as exc:
        log.warning("basemap tile %s/%s/%s of the imported MBTiles not drawn: %s", key.z, key.x, key.y, exc)
        drawn = None
    return drawn if drawn is not None else basemap.empty_tile(key.size)


class _Kept:
    """The tiles parsed lately, the least recently used dropped first past DECODED_TILES of them or
    DECODED_BYTES of their protobuf: a parsed and decoded tile takes some 40 times its inflated
    bytes (a dense city's 800 kB tile, 30 MB), and the deepest tiles, drawn again for each tile
    enlarged from them, and the neighbours, read for their place names, are the ones worth keeping."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tiles: OrderedDict[tuple[Path, str, int, int, int], mvt.Tile | None] = OrderedDict()
        self._bytes = 0

    def get(self, folder: Path, identity: str, z: int, x: int, y: int) -> mvt.Tile | None:
        """The file's tile at XYZ ``z/x/y``, parsed (None where the file has none). ``identity``: a
        new import is never answered from the tiles of the one before."""
        key = (folder, identity, z, x, y)
        with self._lock:
            if key in self._tiles:
                self._tiles.move_to_end(key)
                return self._tiles[key]
        data = mbtiles.read_tile(folder, z, x, y)
        tile = None if data is None else mvt.Tile(data)
        with self._lock:
            if key not in self._tiles:
                self._tiles[key] = tile
                self._bytes += tile.size if tile else 0
            while len(self._tiles) > DECODED_TILES or (self._bytes > DECODED_BYTES and len(self._tiles) > 1):
                _, dropped = self._tiles.popitem(last=False)
                self._bytes -= dropped.size if dropped else 0
        return tile


_kept = _Kept()
_tile = _kept.get


def _within(bounds: tuple[float, float, float, float] | None, key: TileKey) -> bool:
    if bounds is None:
        return True
    w, s, e, n = bounds
    west, north = _lonlat(key.x, key.y, key.z)
    east, south = _lonlat(key.x + 1, key.y + 1, key.z)
    return west < e and w < east and south < n and s < north


def _lonlat(u: float, v: float, z: int) -> tuple[float, float]:
    """Degrees of the point ``u, v`` tiles from the world's top left at zoom ``z``."""
    side = 1 << z
    return u / side * 360.0 - 180.0, math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * v / side))))


class _View:
    """Where a tile of the file lands on the canvas of the tile asked for: the same tile, or a part
    of a shallower one enlarged ``2**depth`` times (beyond the file's deepest zoom)."""

    def __init__(self, key: TileKey, depth: int, big: int) -> None:
        self.depth = depth
        self.big = big
        mask = (1 << depth) - 1
        self.dx, self.dy = (key.x & mask) * big, (key.y & mask) * big
        self.margin = LINE_BUFFER * key.scale * SUPERSAMPLE

    def fit(self, geoms: list[shapely.Geometry], extent: int) -> list[shapely.Geometry | None]:
        """The geometries on the canvas (supersampled pixels), cut a margin beyond its edges; None
        for one that falls off it."""
        if not geoms:
            return []
        k = self.big * (1 << self.depth) / extent
        shift = np.array([self.dx, self.dy], dtype=float)
        moved = shapely.transform(np.asarray(geoms, dtype=object), lambda c: c * k - shift)
        if self.depth:  # enlarged: most of the file's tile is off this one, and far off
            lo, hi = -self.margin, self.big + self.margin
            moved = shapely.clip_by_rect(moved, lo, lo, hi, hi)
        return [None if g.is_empty else g for g in moved]


def _kind(props: dict[str, mvt.Value]) -> str:
    return str(props.get("class") or props.get("kind") or props.get("pmap:kind") or "")


def _name(props: dict[str, mvt.Value]) -> str:
    for k in NAME_KEYS:
        value = props.get(k)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _layer(tile: mvt.Tile, view: _View, what: str) -> Iterator[tuple[dict[str, mvt.Value], shapely.Geometry]]:
    """The features of the tile's layers drawn as ``what``, on the canvas."""
    for name in tile.layer_names:
        if LAYERS.get(name) != what:
            continue
        features = tile.features(name)
        for feature, geom in zip(features, view.fit([f.geom for f in features], tile.extent(name)), strict=True):
            if geom is not None:
                yield feature.props, geom


def _draw(folder: Path, served: mbtiles.Served, key: TileKey, font: tuple[str, int] | None, style: str) -> bytes | None:
    info = served.info
    if key.z < info.minzoom or not _within(info.bounds, key):
        return None
    z = min(key.z, info.maxzoom)
    depth = key.z - z
    tile = _tile(folder, served.identity, z, key.x >> depth, key.y >> depth)
    if tile is None:
        return None
    colours, extra = basemap.STYLES[style], EXTRA[style]
    canvas = Canvas(key.size)
    view = _View(key, depth, canvas.big)
    px = key.scale * SUPERSAMPLE  # mask pixels per CSS pixel
    grow = basemap.zoom_factor(key.z)
    mask, draw = canvas.mask()
    for _, geom in _layer(tile, view, "land"):
        basemap.fill_polygons(draw, geom)
    canvas.lay(mask, colours.land)
    _draw_cover(canvas, tile, view, extra)
    _draw_water(canvas, tile, view, colours, grow * px)
    if key.z >= BUILDINGS_FROM:
        mask, draw = canvas.mask()
        for _, geom in _layer(tile, view, "building"):
            basemap.fill_polygons(draw, geom)
        canvas.lay(mask, extra.building)
    _draw_boundaries(canvas, tile, view, extra, px)
    _draw_roads(canvas, tile, view, colours, grow * px)
    places = _places(folder, served.identity, z, key.x >> depth, key.y >> depth)
    named = basemap.labels(places, key.z, font)
    if font is not None and key.z >= basemap.NAMES_FROM:
        taken = [_tile_box(label.box, key) for label in named]
        _draw_names(canvas, key, tile, view, font, colours, extra, taken)
    basemap.draw_places(canvas, key, places, named, font, colours)
    if not canvas.drawn:
        return None
    out = io.BytesIO()
    canvas.image.save(out, "PNG", optimize=False, compress_level=6)
    return out.getvalue()


def _draw_cover(canvas: Canvas, tile: mvt.Tile, view: _View, extra: Extra) -> None:
    masks = {kind: canvas.mask() for kind in COVER_ORDER}
    for props, geom in _layer(tile, view, "cover"):
        kind = COVER.get(_kind(props)) or COVER.get(str(props.get("subclass") or ""))
        if kind is not None:
            basemap.fill_polygons(masks[kind][1], geom)
    for kind in COVER_ORDER:
        canvas.lay(masks[kind][0], getattr(extra, kind))


def _draw_water(canvas: Canvas, tile: mvt.Tile, view: _View, colours: basemap.Style, width: float) -> None:
    fill, fdraw = canvas.mask()
    line, ldraw = canvas.mask()
    for what in ("water", "waterway"):
        for props, geom in _layer(tile, view, what):
            basemap.fill_polygons(fdraw, geom)  # the polygons of either layer
            basemap.stroke_lines(ldraw, geom, basemap.WATER_WIDTH.get(_kind(props), 0.8) * width)
    canvas.lay(fill, colours.water_fill)
    canvas.lay(line, colours.water_line)


def _draw_boundaries(canvas: Canvas, tile: mvt.Tile, view: _View, extra: Extra, px: float) -> None:
    mask, draw = canvas.mask()
    for props, geom in _layer(tile, view, "boundary"):
        if props.get("maritime") in (1, True, "yes"):
            continue
        level = props.get("admin_level")
        major = isinstance(level, int | float) and level <= 4
        basemap.stroke_lines(draw, geom, (1.2 if major else 0.8) * px)
    canvas.lay(mask, extra.boundary)


def _draw_roads(canvas: Canvas, tile: mvt.Tile, view: _View, colours: basemap.Style, width: float) -> None:
    masks = {kind: canvas.mask() for kind in ROAD_ORDER}
    for props, geom in _layer(tile, view, "road"):
        kind = _kind(props)
        link = kind.endswith("_link") or props.get("ramp") in (1, True)
        road = ROADS.get(kind.removesuffix("_link").removesuffix("_construction"))
        if road is None:  # rail, ferries, aerialways, piers: not the base map's
            continue
        own, factor = road
        basemap.stroke_lines(masks[own][1], geom, basemap.ROAD_WIDTH[own] * factor * (0.75 if link else 1) * width)
    for kind in ROAD_ORDER:
        canvas.lay(masks[kind][0], colours.road[kind])


def _places(folder: Path, identity: str, z: int, x: int, y: int) -> list[Place]:
    """The places of the tile and its eight neighbours, in degrees, each once."""
    side = 1 << z
    found: dict[tuple[int, str, float, float], Place] = {}
    for cy in (y - 1, y, y + 1):
        for cx in (x - 1, x, x + 1):
            if not (0 <= cx < side and 0 <= cy < side):
                continue
            try:
                tile = _tile(folder, identity, z, cx, cy)
            except mvt.TileUnreadable:
                continue  # that tile's own drawing logs it; this one draws without its names
            if tile is None:
                continue
            for name in tile.layer_names:
                if LAYERS.get(name) != "place":
                    continue
                extent = tile.extent(name)
                for feature in tile.features(name):
                    text = _name(feature.props)
                    if not text:
                        continue
                    level = 2 if _kind(feature.props) in TOWNS else 3
                    for point in shapely.get_parts(feature.geom):
                        if not isinstance(point, shapely.Point):
                            continue
                        lon, lat = _lonlat(cx + point.x / extent, cy + point.y / extent, z)
                        found.setdefault((level, text, round(lon, 5), round(lat, 5)), Place(level, text, lon, lat))
    return list(found.values())


Box = tuple[float, float, float, float]


def _tile_box(box: Box, key: TileKey) -> Box:
    """A world-pixel box (scale 1) in the tile's own pixels."""
    left, top, s = key.x * TILE, key.y * TILE, key.scale
    return (box[0] - left) * s, (box[1] - top) * s, (box[2] - left) * s, (box[3] - top) * s


def _draw_names(
    canvas: Canvas,
    key: TileKey,
    tile: mvt.Tile,
    view: _View,
    font: tuple[str, int],
    colours: basemap.Style,
    extra: Extra,
    taken: list[Box],
) -> None:
    """Lake names at their points; road and river names (from LINE_NAMES_FROM, every other tile)
    level along the longest piece of their line in the tile. Each wholly inside the tile (a name
    cut by the tile edge would be cut on the next tile too), none over another or over a place's
    name, each name once a tile."""
    size = canvas.size
    lines = key.z >= LINE_NAMES_FROM and (key.x + key.y) % 2 == 0
    halo = Image.new("L", canvas.image.size, 0)
    hd = ImageDraw.Draw(halo)
    texts = {colour: Image.new("L", canvas.image.size, 0) for colour in ("road", "water")}
    whats = [("road_name", "road"), ("water_name", "water"), ("waterway", "water")]
    if not any(LAYERS.get(n) == "road_name" for n in tile.layer_names):
        whats.append(("road", "road"))  # schemas that name the roads in the road layer itself
    done: set[str] = set()
    for what, colour in whats:
        for props, geom in _layer(tile, view, what):
            text = _name(props)
            if not text or text in done:
                continue
            spot = _spot(geom, canvas.big)
            if spot is None or (spot[1] != math.inf and not lines):
                continue
            (x, y), room = spot
            f = basemap.font_of(font[0], font[1], (11 if colour == "road" else 12) * key.scale)
            left, top, right, bottom = f.getbbox(text, anchor="mm", stroke_width=HALO_WIDTH * key.scale)
            if room / SUPERSAMPLE < (right - left) + 8 * key.scale:
                continue
            box = (x + left - NAME_GAP, y + top - NAME_GAP, x + right + NAME_GAP, y + bottom + NAME_GAP)
            if box[0] < 0 or box[1] < 0 or box[2] > size or box[3] > size:
                continue
            if any(basemap.overlaps(box, other) for other in taken):
                continue
            taken.append(box)
            done.add(text)
            hd.text((x, y), text, font=f, anchor="mm", fill=255, stroke_width=HALO_WIDTH * key.scale, stroke_fill=255)
            ImageDraw.Draw(texts[colour]).text((x, y), text, font=f, anchor="mm", fill=255)
    canvas.lay(halo, colours.halo)
    canvas.lay(texts["road"], colours.place_text[3])
    canvas.lay(texts["water"], extra.water_text)


def _spot(geom: shapely.Geometry, big: int) -> tuple[tuple[float, float], float] | None:
    """Where a name goes on a line or a point (tile pixels) and how long the line's piece is
    (canvas pixels; a point has room for any name), or None when it is not on the tile."""
    inside = shapely.clip_by_rect(geom, 0, 0, big, big)
    if inside.is_empty:
        return None
    parts = [p for p in shapely.get_parts(inside) if not p.is_empty]
    points = [p for p in parts if isinstance(p, shapely.Point)]
    if points:
        return (points[0].x / SUPERSAMPLE, points[0].y / SUPERSAMPLE), math.inf
    lines = [p for p in parts if isinstance(p, shapely.LineString)]
    if not lines:
        return None
    longest = max(lines, key=lambda line: line.length)
    middle = longest.interpolate(0.5, normalized=True)
    return (middle.x / SUPERSAMPLE, middle.y / SUPERSAMPLE), longest.length

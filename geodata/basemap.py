"""The deployment's own base map (``basemap=own``): PNG tiles drawn from its own data.

A command network is often cut off from the internet, and a map of pins on black tells nobody
where the roads run. These tiles are drawn from what the deployment already holds: the banner's
outline as land, the water an import brought (``water``), the roads by class (``roads``: trunk,
county, village) and the towns and villages at their seats with their names. Nothing comes from
another origin.

PostGIS cuts each tile (geodata/sql/basemap_tile.sql: ``ST_AsMVTGeom`` gives the geometries in the
tile's own pixels, clipped and simplified); Pillow draws them, lines and fills on masks twice the
size and scaled down, which is what smooths their edges. The tiles are transparent outside what
they draw, so they sit on the wall's dark background as on the phone's light one.

Place names are chosen for the whole map at once (:func:`labels`), larger places first and none
over another, so a name across a tile edge is drawn the same on both tiles. The choice depends on
the zoom only and is kept per ``basemap_state.generation`` (036_basemap.sql): every import of roads,
areas or water bumps it, and nothing drawn before is used after.
"""

from __future__ import annotations

import io
import math
import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
import shapely
from PIL import Image, ImageDraw, ImageFont

from geodata import errors, queries

TILE = 256  # pixels of a tile at scale 1
SCALES = (1, 2)  # 2: "@2x" tiles for screens of two device pixels per CSS pixel
MAX_ZOOM = 20
SUPERSAMPLE = 2  # lines and fills are drawn this many times larger, then scaled down (smooth edges)
LINE_BUFFER = 16  # pixels beyond the tile that lines and fills are cut at (a stroke reaches over)
PLACE_DOTS_FROM = {2: 8, 3: 10}  # zoom from which a town's / village's seat is marked
NAMES_FROM = 11  # zoom from which places are named (below it the grid layer names the areas)

FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)

Colour = tuple[int, int, int, int]


@dataclass(frozen=True)
class Style:
    """The colours of a tile. Quiet ones: the base map is under the grid, the pins and the vans,
    never louder than them."""

    land: Colour
    water_fill: Colour
    water_line: Colour
    road: dict[str, Colour]
    place_dot: dict[int, Colour]
    place_text: dict[int, Colour]
    halo: Colour


STYLES: dict[str, Style] = {
    # the wall, the desk pages and the van crew's phone: dark
    "dark": Style(
        land=(22, 36, 62, 150),
        water_fill=(24, 64, 104, 210),
        water_line=(44, 104, 150, 230),
        road={"village": (74, 86, 110, 235), "county": (104, 116, 140, 245), "trunk": (156, 146, 120, 255)},
        place_dot={2: (200, 208, 224, 255), 3: (150, 162, 186, 255)},
        place_text={2: (214, 222, 236, 255), 3: (168, 180, 202, 255)},
        halo=(5, 11, 24, 235),
    ),
    # the grid worker's phone page (api/static/m/): light, under its white-filled cells
    "light": Style(
        land=(246, 244, 236, 160),
        water_fill=(160, 196, 226, 230),
        water_line=(110, 160, 205, 240),
        road={"village": (172, 172, 168, 255), "county": (150, 146, 138, 255), "trunk": (206, 150, 72, 255)},
        place_dot={2: (60, 66, 80, 255), 3: (96, 102, 116, 255)},
        place_text={2: (30, 36, 48, 255), 3: (64, 70, 84, 255)},
        halo=(255, 255, 255, 230),
    ),
}
ROAD = STYLES["dark"].road  # the wall's road colours (tests look for them)
WATER_FILL = STYLES["dark"].water_fill
ROAD_WIDTH = {"village": 1.0, "county": 1.7, "trunk": 2.6}  # pixels at zoom 9, growing with the zoom
WATER_WIDTH = {"river": 1.6, "canal": 1.2}  # the other lines (stream): 0.8
NAME_SIZE = {2: 15, 3: 12}  # pixels at scale 1
HALO_WIDTH = 2


@dataclass(frozen=True)
class TileKey:
    """One tile: zoom, column, row (XYZ: row 0 at the top), pixels per CSS pixel."""

    z: int
    x: int
    y: int
    scale: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.z <= MAX_ZOOM:
            raise errors.Invalid(f"zoom {self.z} is not in 0..{MAX_ZOOM}", field="z")
        side = 1 << self.z
        if not 0 <= self.x < side:
            raise errors.Invalid(f"column {self.x} is not in 0..{side - 1} at zoom {self.z}", field="x")
        if not 0 <= self.y < side:
            raise errors.Invalid(f"row {self.y} is not in 0..{side - 1} at zoom {self.z}", field="y")
        if self.scale not in SCALES:
            raise errors.Invalid(f"scale {self.scale} is not one of {SCALES}", field="y")

    @property
    def size(self) -> int:
        return TILE * self.scale


@dataclass(frozen=True)
class Place:
    """A town (level 2) or village (level 3) at its seat, in lon/lat."""

    level: int
    name: str
    lon: float
    lat: float


@dataclass(frozen=True)
class Label:
    """A place named at a zoom: its seat in world pixels (scale 1) and its name's box around it."""

    place: Place
    px: float
    py: float
    box: tuple[float, float, float, float]  # left, top, right, bottom, world pixels


def generation(conn: psycopg.Connection[Any]) -> int:
    """The base map's generation: bumped by every change to roads, areas or water (036_basemap.sql)."""
    row = conn.execute("SELECT generation FROM basemap_state").fetchone()
    return int(row[0]) if row else 0


def world_px(lon: float, lat: float, z: int) -> tuple[float, float]:
    """Web Mercator pixels of the whole world at zoom ``z`` (scale 1), origin top left."""
    side = TILE * (1 << z)
    lat = max(-85.05112878, min(85.05112878, lat))
    s = math.sin(math.radians(lat))
    return (lon + 180.0) / 360.0 * side, (0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * side


@cache
def font_path(configured: Path | None) -> tuple[str, int] | None:
    """The font of the names and its face (the Simplified Chinese one of a collection), or None."""
    for candidate in [str(configured)] if configured else FONT_CANDIDATES:
        if not Path(candidate).is_file():
            continue
        best = 0
        for index in range(12):  # a .ttc holds several faces: take the SC one
            try:
                name = " ".join(str(part) for part in ImageFont.truetype(candidate, 12, index=index).getname())
            except OSError:
                break
            if " SC" in name:
                best = index
                break
        return candidate, best
    return None


@cache
def font_of(path: str, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, index=index)


class Places:
    """The places of one generation and the names chosen per zoom, kept in this process (both are
    made again from PostGIS when the generation moves on)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._places: list[Place] = []
        self._labels: dict[tuple[int, str | None], list[Label]] = {}

    def places(self, conn: psycopg.Connection[Any], gen: int) -> list[Place]:
        with self._lock:
            if self._generation != gen:
                rows = conn.execute(queries.query("basemap_places")).fetchall()
                self._places = [Place(int(r[0]), str(r[1]), float(r[2]), float(r[3])) for r in rows]
                self._labels = {}
                self._generation = gen
            return self._places

    def labels(self, places: Sequence[Place], z: int, font: tuple[str, int] | None, gen: int) -> list[Label]:
        key = (z, font[0] if font else None)
        with self._lock:
            if self._generation == gen and key in self._labels:
                return self._labels[key]
        chosen = labels(places, z, font)
        with self._lock:
            if self._generation == gen:
                self._labels[key] = chosen
        return chosen


def labels(places: Iterable[Place], z: int, font: tuple[str, int] | None) -> list[Label]:
    """The places named at zoom ``z``: towns before villages, then by name; a name that would
    touch one already chosen is left out. None below NAMES_FROM or without a font."""
    if z < NAMES_FROM or font is None:
        return []
    chosen: list[Label] = []
    near: dict[tuple[int, int], list[Label]] = {}  # the chosen by the tiles their boxes touch
    for place in sorted(places, key=lambda p: (p.level, p.name, p.lon, p.lat)):
        px, py = world_px(place.lon, place.lat, z)
        f = font_of(font[0], font[1], NAME_SIZE.get(place.level, 12))
        left, top, right, _ = f.getbbox(place.name, anchor="mb", stroke_width=HALO_WIDTH)
        gap = 3
        box = (
            px + left - gap,
            py - dot_radius(place.level) - 2 + top - gap,
            px + right + gap,
            py + dot_radius(place.level) + gap,
        )
        cells = [
            (cx, cy)
            for cx in range(int(box[0] // TILE), int(box[2] // TILE) + 1)
            for cy in range(int(box[1] // TILE), int(box[3] // TILE) + 1)
        ]
        if any(overlaps(box, other.box) for cell in cells for other in near.get(cell, ())):
            continue
        label = Label(place, px, py, box)
        chosen.append(label)
        for cell in cells:
            near.setdefault(cell, []).append(label)
    return chosen


def overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def dot_radius(level: int) -> float:
    return 3.5 if level == 2 else 2.2


def zoom_factor(z: int) -> float:
    """How much wider the lines are at ``z`` than at zoom 9: a road stays a line when zoomed out
    and gains body when zoomed in."""
    return max(0.7, min(2.6, 1.0 + 0.3 * (z - 9)))


def tile_rows(conn: psycopg.Connection[Any], key: TileKey) -> list[tuple[int, int, str | None, str | None, bytes]]:
    """The tile's land, water and roads in its pixels (SUPERSAMPLE times larger)."""
    extent = key.size * SUPERSAMPLE
    buffer = LINE_BUFFER * key.scale * SUPERSAMPLE
    params = {"z": key.z, "x": key.x, "y": key.y, "extent": extent, "buffer": buffer, "margin": LINE_BUFFER / TILE}
    return [
        (int(r[0]), int(r[1]), r[2], r[3], bytes(r[4]))
        for r in conn.execute(queries.query("basemap_tile"), params).fetchall()
    ]


class Canvas:
    """The tile being drawn: layers of one colour each, drawn as masks and laid on in order."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.big = size * SUPERSAMPLE
        self.image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self.drawn = False

    def mask(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        m = Image.new("L", (self.big, self.big), 0)
        return m, ImageDraw.Draw(m)

    def lay(self, mask: Image.Image, colour: Colour) -> None:
        """Lay ``colour`` through ``mask`` (supersampled or not) onto the tile."""
        if mask.size != self.image.size:
            mask = mask.resize(self.image.size, Image.Resampling.BOX)
        if mask.getbbox() is None:
            return
        alpha = mask.point(lambda v: v * colour[3] // 255)
        layer = Image.new("RGBA", self.image.size, colour[:3] + (0,))
        layer.putalpha(alpha)
        self.image.alpha_composite(layer)
        self.drawn = True


def _polygons(geom: shapely.Geometry) -> Iterable[shapely.Polygon]:
    if isinstance(geom, shapely.Polygon):
        yield geom
    elif isinstance(geom, shapely.MultiPolygon | shapely.GeometryCollection):
        for part in geom.geoms:
            yield from _polygons(part)


def _lines(geom: shapely.Geometry) -> Iterable[shapely.LineString]:
    if isinstance(geom, shapely.LineString):
        yield geom
    elif isinstance(geom, shapely.MultiLineString | shapely.GeometryCollection):
        for part in geom.geoms:
            yield from _lines(part)


def fill_polygons(draw: ImageDraw.ImageDraw, geom: shapely.Geometry) -> None:
    """Polygons with their holes (a lake's island) on a mask."""
    for poly in _polygons(geom):
        draw.polygon([tuple(c) for c in poly.exterior.coords], fill=255)
        for hole in poly.interiors:
            draw.polygon([tuple(c) for c in hole.coords], fill=0)


def stroke_lines(draw: ImageDraw.ImageDraw, geom: shapely.Geometry, width: float) -> None:
    """Lines with round joins and ends on a mask."""
    w = max(1, round(width))
    r = w / 2
    for line in _lines(geom):
        coords = [tuple(c) for c in line.coords]
        draw.line(coords, fill=255, width=w, joint="curve")
        if w > 2:
            for cx, cy in (coords[0], coords[-1]):
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)


def draw_tile(
    key: TileKey,
    rows: Sequence[tuple[int, int, str | None, str | None, bytes]],
    places: Sequence[Place],
    named: Sequence[Label],
    font: tuple[str, int] | None,
    style: Style,
) -> bytes | None:
    """The tile's PNG, or None when nothing falls on it (the caller answers the empty tile)."""
    canvas = Canvas(key.size)
    px = key.scale * SUPERSAMPLE  # mask pixels per CSS pixel
    grow = zoom_factor(key.z)
    geoms: list[shapely.Geometry] = list(shapely.from_wkb([r[4] for r in rows])) if rows else []
    by: dict[str, list[tuple[int, str | None, shapely.Geometry]]] = {"land": [], "water": [], "road": []}
    for (layer, rank, kind, _name, _), geom in zip(rows, geoms, strict=True):
        by[("land", "water", "road")[layer]].append((rank, kind, geom))
    if by["land"]:
        mask, draw = canvas.mask()
        for _, _, geom in by["land"]:
            fill_polygons(draw, geom)
        canvas.lay(mask, style.land)
    if by["water"]:
        fill, fdraw = canvas.mask()
        line, ldraw = canvas.mask()
        for rank, kind, geom in by["water"]:
            if rank == 0:
                fill_polygons(fdraw, geom)
            else:
                stroke_lines(ldraw, geom, WATER_WIDTH.get(kind or "", 0.8) * grow * px)
        canvas.lay(fill, style.water_fill)
        canvas.lay(line, style.water_line)
    for kind in ("village", "county", "trunk"):
        geoms_of_kind = [g for _, k, g in by["road"] if k == kind]
        if geoms_of_kind:
            mask, draw = canvas.mask()
            for geom in geoms_of_kind:
                stroke_lines(draw, geom, ROAD_WIDTH[kind] * grow * px)
            canvas.lay(mask, style.road[kind])
    draw_places(canvas, key, places, named, font, style)
    if not canvas.drawn:
        return None
    out = io.BytesIO()
    canvas.image.save(out, "PNG", optimize=False, compress_level=6)
    return out.getvalue()


def draw_places(
    canvas: Canvas,
    key: TileKey,
    places: Sequence[Place],
    named: Sequence[Label],
    font: tuple[str, int] | None,
    style: Style,
) -> None:
    """The seats as dots, then the names chosen for the zoom (halo under text), in the tile's pixels."""
    left, top = key.x * TILE, key.y * TILE
    s = key.scale
    for level in (3, 2):
        if key.z < PLACE_DOTS_FROM[level]:
            continue
        mask, draw = canvas.mask()
        k = s * SUPERSAMPLE
        for p in places:
            if p.level != level:
                continue
            wx, wy = world_px(p.lon, p.lat, key.z)
            x, y = (wx - left) * k, (wy - top) * k
            if -16 * k <= x <= (TILE + 16) * k and -16 * k <= y <= (TILE + 16) * k:
                r = dot_radius(level) * k
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
        canvas.lay(mask, style.place_dot[level])
    if not named or font is None:
        return
    halo = Image.new("L", canvas.image.size, 0)
    hd = ImageDraw.Draw(halo)
    text: dict[int, tuple[Image.Image, ImageDraw.ImageDraw]] = {}
    for label in named:
        b = label.box
        if b[2] < left or b[0] > left + TILE or b[3] < top or b[1] > top + TILE:
            continue
        level = label.place.level
        f = font_of(font[0], font[1], NAME_SIZE.get(level, 12) * s)
        x, y = (label.px - left) * s, (label.py - top - dot_radius(level) - 2) * s
        hd.text((x, y), label.place.name, font=f, anchor="mb", fill=255, stroke_width=HALO_WIDTH * s, stroke_fill=255)
        if level not in text:
            m = Image.new("L", canvas.image.size, 0)
            text[level] = (m, ImageDraw.Draw(m))
        text[level][1].text((x, y), label.place.name, font=f, anchor="mb", fill=255)
    canvas.lay(halo, style.halo)
    for level, (m, _) in sorted(text.items(), reverse=True):
        canvas.lay(m, style.place_text[level])


@cache
def empty_tile(size: int) -> bytes:
    """A fully transparent PNG of ``size`` pixels: what a tile with nothing on it is."""
    out = io.BytesIO()
    Image.new("RGBA", (size, size), (0, 0, 0, 0)).save(out, "PNG", optimize=True)
    return out.getvalue()


STYLE_VERSION = 1  # bump when the drawing changes: cached tiles and browsers' copies are then stale


def etag(gen: int, key: TileKey, font: tuple[str, int] | None, style: str) -> str:
    """The validator of a drawn tile: its generation and what drew it (a new font draws anew)."""
    return f'"own-{gen}-{zlib.crc32(repr((key, font, style, STYLE_VERSION)).encode()):08x}"'


def render(
    conn: psycopg.Connection[Any],
    key: TileKey,
    gen: int,
    font: tuple[str, int] | None,
    cache: Places,
    style: str = "dark",
) -> bytes:
    """The tile's PNG in ``style`` (the empty tile when nothing falls on it)."""
    places = cache.places(conn, gen)
    named = cache.labels(places, key.z, font, gen)
    drawn = draw_tile(key, tile_rows(conn, key), places, named, font, STYLES[style])
    return drawn if drawn is not None else empty_tile(key.size)

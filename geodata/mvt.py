"""Mapbox Vector Tiles, read for drawing (geodata/vector_basemap.py) and for judging an import
(geodata/mbtiles.py).

A vector MBTiles holds each tile as a Mapbox Vector Tile (vector-tile-spec 2.1): a protobuf message
of named layers of features, each geometry a run of command integers on the tile's own grid
(``extent`` units a side, usually 4096, y down), the whole gzip'd or not. The protobuf is parsed by
the schema the ``mapbox-vector-tile`` package ships (protobuf's C parser); the geometries are
decoded here, straight into shapely, and only those of the layers a drawing asks for: a tile's
buildings and POIs are most of its bytes, and the base map never draws POIs.

A tile comes from a file someone else made, so it is read as untrusted: more than
:data:`MAX_STORED` bytes, inflating to more than :data:`MAX_INFLATED`, a truncated stream, junk that
is no protobuf, a geometry that runs past its end, a key or value index that points nowhere: each is
a :class:`TileUnreadable` saying which, never another exception and never unbounded memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from google.protobuf.message import DecodeError
from mapbox_vector_tile.Mapbox import vector_tile_pb2

MAX_STORED = 4 * 1024 * 1024  # bytes of a stored tile (the common tools stop at 500 kB)
MAX_INFLATED = 16 * 1024 * 1024  # bytes a stored tile may inflate to
GZIP_MAGIC = b"\x1f\x8b"
ZLIB_HEADS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")
LAYER_TAG = 0x1A  # field 3 (layers), length-delimited: the first byte of a plain tile with layers

POINT, LINE, POLYGON = 1, 2, 3
MOVE_TO, LINE_TO, CLOSE_PATH = 1, 2, 7

Value = str | float | int | bool


class TileUnreadable(ValueError):
    """The tile cannot be drawn; the message says why (a caller adds which tile)."""


@dataclass(frozen=True)
class Feature:
    """One feature of a layer: its geometry on the layer's grid (y down) and its properties."""

    geom: shapely.Geometry
    props: dict[str, Value]


def looks_vector(data: bytes) -> bool:
    """Whether stored tile bytes are (compressed) protobuf rather than an image."""
    return data.startswith(GZIP_MAGIC) or data.startswith(ZLIB_HEADS) or data[:1] == bytes([LAYER_TAG])


def inflate(data: bytes) -> bytes:
    """The tile's protobuf bytes: ungzipped (or un-zlibbed) when compressed, at most MAX_INFLATED."""
    if len(data) > MAX_STORED:
        raise TileUnreadable(f"{len(data)} bytes stored, over the {MAX_STORED} a tile may have")
    if not (data.startswith(GZIP_MAGIC) or data.startswith(ZLIB_HEADS)):
        return data
    inflater = zlib.decompressobj(wbits=47)  # 32 + 15: a gzip or a zlib header, whichever it is
    try:
        out = inflater.decompress(data, MAX_INFLATED + 1)
    except zlib.error as exc:
        raise TileUnreadable(f"the compressed tile is damaged ({exc})") from None
    if len(out) > MAX_INFLATED or inflater.unconsumed_tail:
        raise TileUnreadable(
            f"the tile inflates to more than {MAX_INFLATED} bytes from {len(data)} (a decompression bomb?)"
        )
    if not inflater.eof:
        raise TileUnreadable("the compressed tile is truncated")
    return out


class Tile:
    """A parsed tile: its layers by name, their geometries decoded on demand."""

    def __init__(self, data: bytes) -> None:
        message = vector_tile_pb2.tile()
        raw = inflate(data)
        self.size = len(raw)  # bytes of protobuf: what the tile weighs once parsed and decoded, some 40 times
        try:
            message.ParseFromString(raw)
        except DecodeError as exc:
            raise TileUnreadable(f"not a vector tile: {exc}") from None
        self._layers: dict[str, Any] = {}
        for layer in message.layers:
            if layer.extent <= 0:
                raise TileUnreadable(f"layer {layer.name!r} has extent {layer.extent}")
            self._layers.setdefault(layer.name, layer)
        self._decoded: dict[str, list[Feature]] = {}

    @property
    def layer_names(self) -> list[str]:
        return list(self._layers)

    def extent(self, name: str) -> int:
        return int(self._layers[name].extent)

    def features(self, name: str) -> list[Feature]:
        """The layer's features with a drawable geometry (none for a layer the tile lacks), decoded
        once: a tile drawn at zooms beyond the file's deepest serves many smaller tiles."""
        known = self._decoded.get(name)
        if known is None:
            known = self._decoded[name] = list(self._decode(name))
        return known

    def _decode(self, name: str) -> list[Feature]:
        layer = self._layers.get(name)
        if layer is None:
            return []
        keys = list(layer.keys)
        values = [_value(v) for v in layer.values]
        shapes = _Shapes()
        props_of: list[dict[str, Value]] = []
        for feature in layer.features:
            if not shapes.add(_parts(feature.geometry), feature.type):
                continue
            tags = list(feature.tags)
            if len(tags) % 2:
                raise TileUnreadable(f"layer {name!r}: a feature has an odd number of tags")
            props: dict[str, Value] = {}
            for k, v in zip(tags[::2], tags[1::2], strict=True):
                if k >= len(keys) or v >= len(values):
                    raise TileUnreadable(f"layer {name!r}: a tag points past the layer's keys or values")
                props[keys[k]] = values[v]
            props_of.append(props)
        return [Feature(geom, props) for geom, props in zip(shapes.build(), props_of, strict=True)]


def _value(value: Any) -> Value:
    fields = value.ListFields()
    if not fields:
        return ""
    result: Value = fields[0][1]
    return result


def check(tile: Tile) -> int:
    """Decode every feature of every layer (what an import does to a sample); the features' count."""
    return sum(len(tile.features(name)) for name in tile.layer_names)


def decode_geometry(commands: Sequence[int], kind: int) -> shapely.Geometry | None:
    """The geometry of a feature's command integers (MoveTo, LineTo, ClosePath; zigzag deltas),
    or None for an unknown type or nothing drawable (a line of one point, a ring of zero area)."""
    shapes = _Shapes()
    return shapes.build()[0] if shapes.add(_parts(commands), kind) else None


class _Shapes:
    """A layer's geometries gathered as coordinates and part numbers, then made by shapely in one
    call per kind (one shapely object at a time costs more than decoding the tile)."""

    def __init__(self) -> None:
        self.owner: list[tuple[int, int]] = []  # per feature: kind, its number among those of its kind
        self.points: tuple[list[tuple[int, int]], list[int]] = ([], [])  # coordinates, feature
        self.lines: tuple[list[tuple[int, int]], list[int], list[int]] = ([], [], [])  # coordinates, line, feature
        self.rings: tuple[list[tuple[int, int]], list[int], list[int], list[int]] = ([], [], [], [])
        # rings: coordinates, ring; per ring: polygon; per polygon: feature
        self.count = {POINT: 0, LINE: 0, POLYGON: 0}

    def add(self, parts: list[list[tuple[int, int]]], kind: int) -> bool:
        """Gather the next feature; False when it has nothing to draw (it is then left out)."""
        number = self.count.get(kind)
        if number is None:
            return False
        if kind == POINT:
            found = [p for part in parts for p in part]
            if not found:
                return False
            self.points[0].extend(found)
            self.points[1].extend([number] * len(found))
        elif kind == LINE:
            lines = [part for part in parts if len(part) >= 2]
            if not lines:
                return False
            coords, line_of, feature_of = self.lines
            for line in lines:
                coords.extend(line)
                line_of.extend([len(feature_of)] * len(line))
                feature_of.append(number)
        else:
            polygons = _polygons(parts)
            if not polygons:
                return False
            coords, ring_of, polygon_of, feature_of = self.rings
            for polygon in polygons:
                for ring in polygon:
                    coords.extend(ring)
                    ring_of.extend([len(polygon_of)] * len(ring))
                    polygon_of.append(len(feature_of))
                feature_of.append(number)
        self.count[kind] = number + 1
        self.owner.append((kind, number))
        return True

    def build(self) -> list[shapely.Geometry]:
        """The features' geometries, in the order they were added (multi-part ones all)."""
        made: dict[int, Any] = {}
        if self.count[POINT]:
            coords, feature_of = self.points
            points: Any = shapely.points(np.asarray(coords, dtype=float))
            made[POINT] = shapely.multipoints(points, indices=np.asarray(feature_of))
        if self.count[LINE]:
            coords, line_of, feature_of = self.lines
            lines: Any = shapely.linestrings(np.asarray(coords, dtype=float), indices=np.asarray(line_of))
            made[LINE] = shapely.multilinestrings(lines, indices=np.asarray(feature_of))
        if self.count[POLYGON]:
            coords, ring_of, polygon_of, feature_of = self.rings
            rings: Any = shapely.linearrings(np.asarray(coords, dtype=float), indices=np.asarray(ring_of))
            polygons: Any = shapely.polygons(rings, indices=np.asarray(polygon_of))
            made[POLYGON] = shapely.multipolygons(polygons, indices=np.asarray(feature_of))
        return [made[kind][number] for kind, number in self.owner]


def _parts(commands: Sequence[int]) -> list[list[tuple[int, int]]]:
    """The runs of points the commands draw: each MoveTo starts one, a ClosePath ends one."""
    commands = list(commands)  # a plain list: indexing protobuf's repeated field costs more per item
    parts: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    x = y = 0
    i, n = 0, len(commands)
    while i < n:
        word = commands[i]
        i += 1
        command, count = word & 7, word >> 3
        if command == CLOSE_PATH:
            if current:
                parts.append(current)
                current = []
            continue
        if command not in (MOVE_TO, LINE_TO):
            raise TileUnreadable(f"a geometry has the unknown command {command}")
        if i + 2 * count > n:
            raise TileUnreadable("a geometry runs past its end")
        if command == MOVE_TO and current:
            parts.append(current)
            current = []
        for _ in range(count):
            dx, dy = commands[i], commands[i + 1]
            i += 2
            x += (dx >> 1) ^ -(dx & 1)
            y += (dy >> 1) ^ -(dy & 1)
            current.append((x, y))
    if current:
        parts.append(current)
    return parts


def _area2(ring: Sequence[tuple[int, int]]) -> int:
    """Twice the ring's signed area on the tile's grid (y down): positive for an outer ring (spec 4.3.4.4)."""
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, [*ring[1:], ring[0]], strict=True))


def _polygons(rings: Iterable[list[tuple[int, int]]]) -> list[list[list[tuple[int, int]]]]:
    """The polygons of a feature's rings, each its outer ring then its holes. A tile of the old spec
    wound the other way round: the first ring's sign says which way this one winds."""
    polygons: list[list[list[tuple[int, int]]]] = []
    outer_sign = 0
    for ring in rings:
        if len(ring) < 3:
            continue
        area = _area2(ring)
        if area == 0:
            continue
        sign = 1 if area > 0 else -1
        if outer_sign == 0:
            outer_sign = sign
        if sign == outer_sign:
            polygons.append([ring])
        elif polygons:
            polygons[-1].append(ring)
    return polygons

"""What every map layer shares: the box, zoom → level, and the wire formats.

Layers return GeoJSON text built by PostGIS, or for a point layer of many pins (``Layer.rows``)
one row per point (:class:`Points`); this module turns either into the bytes the browser asks for
(GeoJSON or geobuf), shifted to GCJ-02 when the base map is an AMap-style one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from geodata import geobuf_wire
from geodata.errors import Invalid

# The whole map: a box that contains any banner (used when no bbox is given).
WORLD = (-180.0, -90.0, 180.0, 90.0)


@dataclass(frozen=True)
class BBox:
    """A box in degrees; :data:`BBOX_PATTERN` is its text form (the API's ``bbox`` parameter)."""

    minx: float
    miny: float
    maxx: float
    maxy: float

    @classmethod
    def parse(cls, text: str | None) -> BBox:
        """``"minx,miny,maxx,maxy"`` in degrees; ValueError says what is wrong."""
        if text is None or text == "":
            return cls(*WORLD)
        parts = text.split(",")
        if len(parts) != 4:
            raise ValueError("bbox needs 4 comma-separated numbers: minx,miny,maxx,maxy")
        try:
            minx, miny, maxx, maxy = (float(p) for p in parts)
        except ValueError:
            raise ValueError("bbox values must be numbers") from None
        if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
            raise ValueError("bbox values must be finite")
        if not (-180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90):
            raise ValueError("bbox must satisfy -180 ≤ minx < maxx ≤ 180 and -90 ≤ miny < maxy ≤ 90")
        return cls(minx, miny, maxx, maxy)

    def params(self) -> dict[str, float]:
        return {"minx": self.minx, "miny": self.miny, "maxx": self.maxx, "maxy": self.maxy}


_LON = r"-?(180(\.0+)?|(1[0-7][0-9]|[0-9]{1,2})(\.[0-9]+)?)"
_LAT = r"-?(90(\.0+)?|[0-8]?[0-9](\.[0-9]+)?)"
# minx,miny,maxx,maxy in range (the order, minx < maxx and miny < maxy, only the parser can check)
BBOX_PATTERN = f"^{_LON},{_LAT},{_LON},{_LAT}$"


def level_for_zoom(zoom: int) -> int:
    """The grid level a wall screen shows at a zoom: towns, then villages, then cells.

    Zoom 9 fits a banner of ~2° on a 1,400-pixel map; one level deeper per zoom step after that.
    """
    if zoom <= 9:
        return 2
    if zoom == 10:
        return 3
    return 4


def tolerance_for_zoom(zoom: int) -> float:
    """Half a screen pixel in degrees at ``zoom``: simplification nobody can see."""
    return 0.5 * 360.0 / (256 * 2.0**zoom)


def _shift_point(lon: float, lat: float) -> tuple[float, float]:
    """One point from WGS-84 to GCJ-02, rounded to the 6 decimals the layers write."""
    from geodata.gcj02 import wgs84_to_gcj02

    x, y = wgs84_to_gcj02(float(lon), float(lat))
    return round(float(x), 6), round(float(y), 6)


def _shift(coords: object) -> object:
    if isinstance(coords, list) and coords and isinstance(coords[0], (int, float)):
        return list(_shift_point(coords[0], coords[1]))
    if isinstance(coords, list):
        return [_shift(c) for c in coords]
    return coords


def to_gcj02(fc: dict[str, Any]) -> dict[str, Any]:
    """Shift every coordinate of a FeatureCollection from WGS-84 to GCJ-02 (for AMap tiles)."""
    for feature in fc.get("features", []):
        geom = feature.get("geometry")
        if geom and "coordinates" in geom:
            geom["coordinates"] = _shift(geom["coordinates"])
    return fc


def encode(geojson_text: str, fmt: str = "geojson", gcj02: bool = False) -> tuple[bytes, str]:
    """The response body and its media type."""
    if not gcj02 and fmt == "geojson":
        return geojson_text.encode("utf-8"), "application/geo+json"
    fc = orjson.loads(geojson_text)
    if gcj02:
        fc = to_gcj02(fc)
    if fmt == "geobuf":
        return _geobuf(fc), "application/x-protobuf"
    return json.dumps(fc, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), "application/geo+json"


# An empty FeatureCollection message (field 4, length 0). The Python encoder leaves it out when a
# collection has no features, and the browser's decoder then returns no ``features`` at all:
# dash-leaflet fails on it (a pin filter that matches nothing). The JavaScript encoder writes it.
_EMPTY_COLLECTION = b"\x22\x00"


def _geobuf(fc: dict[str, Any]) -> bytes:
    data = geobuf_wire.encode(fc, 6)  # the geobuf package's bytes, 1.7x sooner (geodata/geobuf_wire.py)
    if fc.get("type") == "FeatureCollection" and not fc.get("features"):
        data += _EMPTY_COLLECTION
    return data


class TooManyFeatures(Invalid):
    """More features in the box than a layer request may return: zoom in (a smaller bbox)."""

    code = "too_many_features"


def _too_many(max_features: int) -> TooManyFeatures:
    return TooManyFeatures(
        f"more than {max_features} features in this box: zoom in (a smaller bbox) or narrow the filters",
        field="bbox",
        extra={"max_features": max_features},
    )


def feature_collection(
    conn: psycopg.Connection, query_text: str, params: dict[str, Any], max_features: int | None = None
) -> str:
    """Run a layer's query (its SQL file's text, which builds the FeatureCollection in PostGIS) and
    return the GeoJSON text.

    A query that can grow with the data (case pins, cameras) reads at most ``%(max_features)s``
    rows — the cap plus one — and returns their number beside the text: one more than the cap
    means the box holds too many, refused with :class:`TooManyFeatures` without a second count.
    """
    limit = None if max_features is None else max_features + 1
    row = conn.execute(query_text, {**params, "max_features": limit}).fetchone()
    if row is None:
        return '{"type":"FeatureCollection","features":[]}'
    if max_features is not None and len(row) > 1 and row[1] is not None and int(row[1]) > max_features:
        raise _too_many(max_features)
    return str(row[0])


@dataclass(frozen=True)
class Points:
    """A point layer's features as its query returned them: one row ``(lon, lat, *values)`` per
    feature, ``keys`` naming the values (the query's other columns)."""

    keys: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    query: str = ""  # the query that gave them: its features' bytes are kept from answer to answer

    def shifted(self) -> Points:
        """The same points in GCJ-02 (for AMap tiles), as :func:`to_gcj02` shifts a collection."""
        out = [(*_shift_point(row[0], row[1]), *row[2:]) for row in self.rows]
        return Points(self.keys, out, self.query + " -- gcj02")

    def geojson(self) -> str:
        """The FeatureCollection's GeoJSON text (its properties in ``keys`` order)."""
        keys = self.keys
        features = [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [row[0], row[1]]},
                "properties": dict(zip(keys, row[2:], strict=True)),
            }
            for row in self.rows
        ]
        return orjson.dumps({"type": "FeatureCollection", "features": features}).decode("utf-8")

    def body(self, fmt: str) -> tuple[bytes, str]:
        """The response body and its media type: geobuf written from the rows (the bytes
        :func:`encode` writes for :meth:`geojson`), or the GeoJSON text."""
        if fmt == "geobuf":
            data = geobuf_wire.encode_points(self.keys, self.rows, 6, _memo(self.query, self.keys))
            return (data if self.rows else data + _EMPTY_COLLECTION), "application/x-protobuf"
        return self.geojson().encode("utf-8"), "application/geo+json"


# Each point query's features as geobuf bytes, by row: a layer reloaded after every batch of events
# has nearly all its pins unchanged, and writes them once (2,320 pins: 9 ms -> ~1 ms). Dropped whole
# past MEMO_ROWS rows (a few reloads' worth of change); threads may race on a drop: a row is made again.
MEMO_ROWS = 50_000
_memos: dict[tuple[str, tuple[str, ...]], dict[Any, bytes]] = {}


def _memo(query: str, keys: tuple[str, ...]) -> dict[Any, bytes]:
    memo = _memos.setdefault((query, keys), {})
    if len(memo) > MEMO_ROWS:
        memo.clear()
    return memo


def encode_answer(got: str | Points, fmt: str = "geojson", gcj02: bool = False) -> tuple[bytes, str]:
    """A layer's answer (registry.Layer.read) as the response body and its media type."""
    if isinstance(got, Points):
        return (got.shifted() if gcj02 else got).body(fmt)
    return encode(got, fmt, gcj02)


def point_rows(
    conn: psycopg.Connection, query_text: str, params: dict[str, Any], max_features: int | None = None
) -> Points:
    """Run a point layer's row query (``lon``, ``lat`` and a column per property, at most
    ``%(max_features)s`` rows: the cap plus one, as :func:`feature_collection` reads it). No JSON is
    built in PostgreSQL nor parsed here: for a layer of thousands of pins reloaded after every batch
    of events that was most of its cost (docs/scaling.md)."""
    limit = None if max_features is None else max_features + 1
    with conn.cursor() as cur:
        rows = cur.execute(query_text, {**params, "max_features": limit}).fetchall()
        columns = [(c.name, _type_name(conn, c.type_code)) for c in cur.description or ()]
    names = tuple(name for name, _ in columns)
    if names[:2] != ("lon", "lat"):
        raise ValueError(f"a point layer's query returns lon, lat, then its properties, not {names}")
    for name, kind in columns[2:]:
        if kind not in _ROW_TYPES:  # a timestamp, a numeric: cast it in the SQL
            raise ValueError(f"a point layer's column {name} is a {kind}: cast it to text or float8")
    if max_features is not None and len(rows) > max_features:
        raise _too_many(max_features)
    return Points(names[2:], rows, query_text)


# The column types a point layer's row may hold: those GeoJSON and geobuf write alike (Points).
_ROW_TYPES = frozenset(
    {"text", "varchar", "bpchar", "bool", "int2", "int4", "int8", "float4", "float8", "json", "jsonb"}
)


def _type_name(conn: psycopg.Connection, oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return info.name if info is not None else f"type {oid}"

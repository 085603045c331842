"""What every map layer shares: the box, zoom → level, and the wire formats.

Layers return GeoJSON text built by PostGIS; this module turns it into the bytes the browser
asks for (GeoJSON or geobuf), shifted to GCJ-02 when the base map is an AMap-style one.
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


def _shift(coords: object) -> object:
    from geodata.gcj02 import wgs84_to_gcj02

    if isinstance(coords, list) and coords and isinstance(coords[0], (int, float)):
        lon, lat = wgs84_to_gcj02(float(coords[0]), float(coords[1]))
        return [round(float(lon), 6), round(float(lat), 6)]
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
        raise TooManyFeatures(
            f"more than {max_features} features in this box: zoom in (a smaller bbox) or narrow the filters",
            field="bbox",
            extra={"max_features": max_features},
        )
    return str(row[0])

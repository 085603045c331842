"""geobuf, written straight to bytes: the same bytes as the ``geobuf`` package's encoder, 1.7x sooner.

The wall screens reload the case pins as geobuf after each batch of events, and the layers'
encoding (the text parsed, then the package's encoder building a protobuf message field by field)
was a third of what an app process held the GIL for under the command centre's mix
(docs/scaling.md: the bench's 320 pins 3.46 → 2.01 ms, 3,200 pins about half). This writes the protobuf wire
format of geobuf's ``Data`` message directly, following that encoder rule for rule — which keys
are properties and which custom properties, how a value is typed (a whole float is an integer,
``None`` an empty value, a list or object JSON text), the coordinates' integer scaling, delta
coding and lengths — so the browser's decoder reads the same collection. tests/test_geobuf_wire.py
holds it to the package's bytes on generated GeoJSON of every geometry type and on the layers.

The schema (geobuf.proto, v3; proto3, so a scalar field at zero is not written, a oneof's member
always is): Data {keys=1, dimensions=2, precision=3, feature_collection=4, feature=5, geometry=6};
FeatureCollection {features=1, values=13, custom_properties=15};
Feature {geometry=1, id=11, int_id=12, values=13, properties=14, custom_properties=15};
Geometry {type=1, lengths=2, coords=3, geometries=4, values=13, custom_properties=15};
Value {string_value=1, double_value=2, pos_int_value=3, neg_int_value=4, bool_value=5, json_value=6}.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

GEOMETRY_TYPES = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 2,
    "MultiLineString": 3,
    "Polygon": 4,
    "MultiPolygon": 5,
    "GeometryCollection": 6,
}
_COLLECTION_OWN = ("type", "features")
_FEATURE_OWN = ("type", "id", "properties", "geometry")
_GEOMETRY_OWN = ("type", "id", "coordinates", "arcs", "geometries", "properties")
_FEATURE_OWN_SET = frozenset(_FEATURE_OWN)
_POINT_OWN_SET = frozenset(("type", "coordinates"))
_UINT64 = 1 << 64
_DOUBLE = struct.Struct("<d")


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [_varint(i) for i in range(1 << 14)]  # the varints of small numbers (indexes, lengths, tags)


def _uvarint(n: int) -> bytes:
    return _SMALL[n] if n < 16384 else _varint(n)


def _zigzag(n: int) -> int:
    return (n << 1) if n >= 0 else ((-n << 1) - 1)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: its key byte(s), the length, the payload."""
    return _uvarint(tag) + _uvarint(len(payload)) + payload


def _packed(tag: int, numbers: list[int]) -> bytes:
    """A packed repeated varint field (nothing when empty, as protobuf writes it)."""
    if not numbers:
        return b""
    if max(numbers) < 0x80:  # one byte each (a feature's key and value indexes, nearly always)
        return _field(tag, bytes(numbers))
    return _field(tag, b"".join(_uvarint(n) for n in numbers))


def _packed_sint(tag: int, numbers: list[int]) -> bytes:
    if not numbers:
        return b""
    return _field(tag, b"".join(_uvarint(_zigzag(n)) for n in numbers))


class Encoder:
    """One encoding: the keys table grows as properties are met (as the package's does)."""

    def __init__(self, precision: int = 6, dim: int = 2) -> None:
        self.precision = precision
        self.dim = dim
        self.e = pow(10, precision)
        self.keys: dict[str, int] = {}
        self._values: dict[tuple[type, Any], bytes] = {}  # a value's field bytes, by its type and itself

    def encode(self, obj: Mapping[str, Any]) -> bytes:
        kind = obj["type"]
        if kind == "FeatureCollection":
            body = self._collection(obj)
            tail = _field(0x22, body) if body else b""
        elif kind == "Feature":
            tail = _field(0x2A, self._feature(obj))
        else:
            tail = _field(0x32, self._geometry(obj))
        head = b"".join(_field(0x0A, k.encode("utf-8")) for k in self.keys)
        dim = b"\x10" + _uvarint(self.dim) if self.dim else b""
        precision = b"\x18" + _uvarint(self.precision) if self.precision else b""
        return head + dim + precision + tail

    # --- properties ---------------------------------------------------------------------------
    def _props(self, items: Any, exclude: tuple[str, ...], values: list[bytes], pairs: list[int]) -> None:
        keys, cache = self.keys, self._values
        for key, val in items:
            if key in exclude:
                continue
            index = keys.get(key)
            if index is None:
                index = keys[key] = len(keys)
            pairs.append(index)
            # A layer's values repeat (steps, types, flags): each distinct one is written once.
            try:
                field = cache.get((val.__class__, val))
            except TypeError:  # a list or an object: not hashable, not cached
                field = None
            if field is None:
                field = _field(0x6A, _value(val))
                if not isinstance(val, (dict, list)):
                    cache[(val.__class__, val)] = field
            values.append(field)
            pairs.append(len(values) - 1)

    # --- messages -----------------------------------------------------------------------------
    def _collection(self, obj: Mapping[str, Any]) -> bytes:
        values: list[bytes] = []
        custom: list[int] = []
        self._props(obj.items(), _COLLECTION_OWN, values, custom)
        features = b"".join(_field(0x0A, self._feature(f)) for f in obj.get("features") or ())
        return features + b"".join(values) + _packed(0x7A, custom)

    def _feature(self, obj: Mapping[str, Any]) -> bytes:
        out = []
        fid = obj.get("id")
        ident = b""
        if fid is not None:
            if isinstance(fid, int):
                ident = b"\x60" + _uvarint(_zigzag(fid) % _UINT64)
            else:
                ident = _field(0x5A, str(fid).encode("utf-8"))
        values: list[bytes] = []
        props: list[int] = []
        custom: list[int] = []
        if obj.get("properties"):
            self._props(obj["properties"].items(), (), values, props)
        if not obj.keys() <= _FEATURE_OWN_SET:
            self._props(obj.items(), _FEATURE_OWN, values, custom)
        out.append(_field(0x0A, self._geometry(obj.get("geometry"))))
        out.append(ident)
        out.extend(values)
        out.append(_packed(0x72, props))
        out.append(_packed(0x7A, custom))
        return b"".join(out)

    def _geometry(self, obj: Any) -> bytes:
        kind = obj["type"]
        coords = obj.get("coordinates")
        if kind == "Point" and obj.keys() <= _POINT_OWN_SET:  # a pin: its coordinates alone
            return _packed_sint(0x1A, [round(x * self.e) for x in coords])
        values: list[bytes] = []
        custom: list[int] = []
        self._props(obj.items(), _GEOMETRY_OWN, values, custom)
        lengths: list[int] = []
        numbers: list[int] = []
        geometries = b""
        if kind == "GeometryCollection":
            geometries = b"".join(_field(0x22, self._geometry(g)) for g in obj.get("geometries"))
        elif kind == "Point":
            numbers = [round(x * self.e) for x in coords]
        elif kind in ("MultiPoint", "LineString"):
            self._line(numbers, coords)
        elif kind in ("MultiLineString", "Polygon"):
            closed = kind == "Polygon"
            if len(coords) != 1:
                lengths = [len(points) - int(closed) for points in coords]
            for points in coords:
                self._line(numbers, points, closed)
        elif kind == "MultiPolygon":
            if len(coords) != 1 or len(coords[0]) != 1:
                lengths.append(len(coords))
                for rings in coords:
                    lengths.append(len(rings))
                    lengths.extend(len(points) - 1 for points in rings)
            for rings in coords:
                for points in rings:
                    self._line(numbers, points, True)
        code = GEOMETRY_TYPES[kind]
        head = b"\x08" + _uvarint(code) if code else b""  # proto3: a zero (a Point) is not written
        return (
            head
            + _packed(0x12, lengths)
            + _packed_sint(0x1A, numbers)
            + geometries
            + b"".join(values)
            + _packed(0x7A, custom)
        )

    def _line(self, out: list[int], points: Any, closed: bool = False) -> None:
        e, dim = self.e, self.dim
        total = [0] * dim
        for i in range(len(points) - int(closed)):
            point = points[i]
            for j in range(dim):
                n = round(point[j] * e) - total[j]
                out.append(n)
                total[j] += n


def _value(val: Any) -> bytes:
    """A Value message's payload, typed as the package types it (``None`` and others: empty)."""
    if isinstance(val, (dict, list)):
        return _field(0x32, json.dumps(val, separators=(",", ":")).encode("utf-8"))
    if isinstance(val, str):
        return _field(0x0A, val.encode("utf-8"))
    if isinstance(val, float):
        if val.is_integer():
            return _int(int(val))
        return b"\x11" + _DOUBLE.pack(val)
    if isinstance(val, bool):
        return b"\x28" + (b"\x01" if val else b"\x00")
    if isinstance(val, int):
        return _int(val)
    return b""


def _int(val: int) -> bytes:
    if 0 <= val < _UINT64:
        return b"\x18" + _uvarint(val)
    if -_UINT64 < val < 0:
        return b"\x20" + _uvarint(-val)
    return b"\x11" + _DOUBLE.pack(float(val))  # beyond uint64: the package falls back to a double


def encode(obj: Mapping[str, Any], precision: int = 6, dim: int = 2) -> bytes:
    """``obj`` (a GeoJSON FeatureCollection, Feature or geometry) as geobuf."""
    return Encoder(precision, dim).encode(obj)


def _coord(n: int) -> bytes:
    """One coordinate of a point as a zigzag varint (a degree times 10^6 is 4 or 5 bytes: in one step)."""
    z = _zigzag(n)
    if 1 << 28 <= z < 1 << 35:
        return bytes((z & 0x7F | 0x80, z >> 7 & 0x7F | 0x80, z >> 14 & 0x7F | 0x80, z >> 21 & 0x7F | 0x80, z >> 28))
    return _uvarint(z)


def encode_points(
    keys: Sequence[str], rows: Iterable[Sequence[Any]], precision: int = 6, memo: dict[Any, bytes] | None = None
) -> bytes:
    """A FeatureCollection of points given as rows ``(lon, lat, *values)``, each value the property of
    its key in ``keys``: the very bytes :func:`encode` writes for that collection (its features'
    properties in ``keys`` order, a None an empty value), without the collection being built first —
    a pin layer's rows go from the database to the wire (layers/base.py ``Points``).

    ``memo`` keeps each row's feature bytes (by its values and their types) for the next collection
    of the same ``keys`` and ``precision``: a layer reloaded after every batch of events has nearly
    all its pins unchanged."""
    e = pow(10, precision)
    props = _packed(0x72, [i for k in range(len(keys)) for i in (k, k)])  # every feature has every key
    encoder = Encoder(precision)  # its values' fields, typed and kept as encode() does
    features = []
    for row in rows:
        key = None
        if memo is not None:
            key = (row, tuple(map(type, row)))  # the types too: True == 1 == 1.0 to a dict, not to geobuf
            try:
                kept = memo.get(key)
            except TypeError:  # a list or an object among the values: not kept
                key = kept = None
            if kept is not None:
                features.append(kept)
                continue
        values: list[bytes] = []
        encoder._props(zip(keys, row[2:], strict=True), (), values, [])
        xy = _coord(round(row[0] * e)) + _coord(round(row[1] * e))
        geometry = b"\x1a" + _uvarint(len(xy)) + xy  # Geometry {coords=3}: a Point's type (0) is not written
        feature = b"\x0a" + _uvarint(len(geometry)) + geometry + b"".join(values) + props
        made = b"\x0a" + _uvarint(len(feature)) + feature
        features.append(made)
        if memo is not None and key is not None:
            memo[key] = made
    head = b"".join(_field(0x0A, k.encode("utf-8")) for k in keys) if features else b""
    body = b"".join(features)
    return head + b"\x10\x02" + b"\x18" + _uvarint(precision) + (_field(0x22, body) if body else b"")

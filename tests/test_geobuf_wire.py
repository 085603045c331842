"""geodata/geobuf_wire.py writes the very bytes of the ``geobuf`` package's encoder.

Generated GeoJSON of every geometry type, with properties of every kind the package types
differently (strings, whole and fractional floats, big and negative integers, booleans, None, lists
and objects), ids, custom properties at each level; then collections shaped as the layers' and the
layers' own answers on the seeded demo, through the route's encoding path (layers/base.py).
"""

from __future__ import annotations

import json
from typing import Any

import geobuf
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geodata import geobuf_wire
from layers import registry
from layers.base import Points, encode, encode_answer

lon = st.floats(min_value=-180, max_value=180, allow_nan=False)
lat = st.floats(min_value=-90, max_value=90, allow_nan=False)
point = st.tuples(lon, lat).map(list)
line = st.lists(point, min_size=2, max_size=6)
ring = st.lists(point, min_size=3, max_size=6).map(lambda ps: [*ps, ps[0]])  # closed, as GeoJSON's
polygon = st.lists(ring, min_size=1, max_size=3)
keys = st.sampled_from(["code", "type", "step", "名称", "level", "overdue", "n", "extra", "id2"])
scalar = st.one_of(
    st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: float(round(f))),  # whole floats
    st.integers(min_value=-(2**70), max_value=2**70),  # past uint64 both ways: the double fallback
    st.booleans(),
    st.none(),
)
value = st.one_of(scalar, st.lists(scalar, max_size=3), st.dictionaries(keys, scalar, max_size=2))
props = st.dictionaries(keys, value, max_size=5)


def _geometry(depth: int = 1) -> st.SearchStrategy[dict[str, Any]]:
    simple = st.one_of(
        st.builds(lambda c: {"type": "Point", "coordinates": c}, point),
        st.builds(lambda c: {"type": "MultiPoint", "coordinates": c}, line),
        st.builds(lambda c: {"type": "LineString", "coordinates": c}, line),
        st.builds(lambda c: {"type": "MultiLineString", "coordinates": c}, st.lists(line, min_size=1, max_size=3)),
        st.builds(lambda c: {"type": "Polygon", "coordinates": c}, polygon),
        st.builds(lambda c: {"type": "MultiPolygon", "coordinates": c}, st.lists(polygon, min_size=1, max_size=3)),
    )
    with_custom = st.builds(lambda g, extra: {**g, **extra}, simple, st.dictionaries(st.just("extra"), scalar))
    if depth == 0:
        return with_custom
    collection = st.builds(
        lambda gs: {"type": "GeometryCollection", "geometries": gs}, st.lists(_geometry(depth - 1), max_size=3)
    )
    return st.one_of(with_custom, collection)


feature_id = st.one_of(st.none(), st.integers(min_value=-(2**40), max_value=2**40), st.text(max_size=6))


@st.composite
def features(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Feature", "geometry": draw(_geometry()), "properties": draw(st.none() | props)}
    fid = draw(feature_id)
    if fid is not None:
        out["id"] = fid
    out.update(draw(st.dictionaries(st.sampled_from(["extra", "bbox"]), value, max_size=2)))
    return out


collections = st.builds(
    lambda fs, extra: {"type": "FeatureCollection", "features": fs, **extra},
    st.lists(features(), max_size=6),
    st.dictionaries(st.just("name"), scalar, max_size=1),
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(collections, features(), _geometry()))
def test_the_bytes_are_the_packages(obj: dict[str, Any]) -> None:
    assert geobuf_wire.encode(obj, 6) == geobuf.encode(obj, 6)


def test_a_layer_shaped_collection_and_an_empty_one() -> None:
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [111.123456, 40.654321]},
                "properties": {
                    "code": f"Y{i:06d}",
                    "type": "land",
                    "step": "accepted",
                    "level": "village",
                    "overdue": i % 2 == 0,
                    "severity": None,
                    "group": False,
                },
            }
            for i in range(300)
        ],
    }
    assert geobuf_wire.encode(fc) == geobuf.encode(fc, 6)
    assert geobuf.decode(geobuf_wire.encode(fc))["features"][7]["properties"]["code"] == "Y000007"
    empty = {"type": "FeatureCollection", "features": []}
    assert geobuf_wire.encode(empty) == geobuf.encode(empty, 6)


# What a row from PostgreSQL holds (text, float8, bigint, boolean, NULL; arrays and json as lists
# and objects): a bigint fits 64 bits.
db_scalar = st.one_of(
    st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: float(round(f))),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.none(),
)
db_value = st.one_of(db_scalar, st.lists(db_scalar, max_size=3), st.dictionaries(keys, db_scalar, max_size=2))
rows = st.lists(st.tuples(lon, lat, db_scalar, db_value, db_scalar), max_size=8)


@settings(max_examples=300, deadline=None)
@given(rows)
def test_points_from_rows_are_the_packages_bytes_of_their_collection(points: list[tuple[Any, ...]]) -> None:
    keys = ("code", "名称", "n")
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [row[0], row[1]]},
                "properties": dict(zip(keys, row[2:], strict=True)),
            }
            for row in points
        ],
    }
    assert geobuf_wire.encode_points(keys, points) == geobuf_wire.encode(fc) == geobuf.encode(fc, 6)
    assert json.loads(Points(keys, points).geojson()) == json.loads(json.dumps(fc))
    # kept from answer to answer: the same bytes again, and for a collection with a row changed
    memo: dict[Any, bytes] = {}
    assert geobuf_wire.encode_points(keys, points, 6, memo) == geobuf.encode(fc, 6)
    assert geobuf_wire.encode_points(keys, points, 6, memo) == geobuf.encode(fc, 6)
    # a memo shared across rows whose values are equal to a dict but not to geobuf (True == 1 == 1.0)
    mixed = [(1.5, 2.5, False, None, None), (1.5, 2.5, 0, None, None), (1.5, 2.5, 0.0, None, 1.0)]
    mixed_fc = {**fc, "features": [_feature(x, y, keys, rest) for x, y, *rest in mixed]}
    assert geobuf_wire.encode_points(keys, mixed, 6, memo) == geobuf.encode(mixed_fc, 6)
    assert geobuf_wire.encode_points(keys, mixed, 6, memo) == geobuf.encode(mixed_fc, 6)
    if points:
        changed = [*points[1:], (points[0][0], points[0][1], "changed", None, 7)]
        moved = {
            **fc,
            "features": [*fc["features"][1:], _feature(points[0][0], points[0][1], keys, ("changed", None, 7))],
        }
        assert geobuf_wire.encode_points(keys, changed, 6, memo) == geobuf.encode(moved, 6)


def _feature(lon: float, lat: float, keys: tuple[str, ...], values: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": dict(zip(keys, values, strict=True)),
    }


def test_a_pin_layer_of_rows_refuses_a_query_of_other_columns(demo_db: str) -> None:
    from layers.base import point_rows

    with psycopg.connect(demo_db) as conn:
        with pytest.raises(ValueError, match="lon, lat"):
            point_rows(conn, "SELECT 1 AS x, 2 AS y, 'a' AS code", {})
        with pytest.raises(ValueError, match="seen"):  # a timestamp would be text in JSON, empty in geobuf
            point_rows(conn, "SELECT 1.5::float8 AS lon, 2.5::float8 AS lat, now() AS seen", {})
        with pytest.raises(ValueError, match="amount is a numeric"):  # whatever its first row holds
            point_rows(conn, "SELECT 1.5::float8 AS lon, 2.5::float8 AS lat, NULL::numeric AS amount", {})
        got = point_rows(conn, "SELECT 1.5::float8 AS lon, 2.5::float8 AS lat, 'a' AS code", {})
        assert (got.keys, got.rows) == (("code",), [(1.5, 2.5, "a")])
        none = point_rows(conn, "SELECT 1.5::float8 AS lon, 2.5::float8 AS lat, 'a' AS code WHERE false", {})
        assert (none.keys, none.rows) == (("code",), [])
        assert encode_answer(none, "geobuf") == encode('{"type":"FeatureCollection","features":[]}', "geobuf")


@pytest.mark.parametrize("layer", [layer.name for layer in registry.all_layers()])
def test_every_layer_of_the_demo_encodes_as_the_package_does(layer: str, demo_db: str) -> None:
    spec = registry.get(layer)
    values: dict[str, Any] = {f.name: f.default for f in spec.filters}
    values["scope"] = None
    with psycopg.connect(demo_db) as conn:
        text = spec.features(conn, {**values, **_configured(spec)}, None, 50_000)
    fc = json.loads(text)
    assert fc["features"] or layer not in ("cases", "grids"), f"the demo has no {layer}"
    body, media = encode(text, "geobuf")
    assert media == "application/x-protobuf"
    assert body == geobuf.encode(fc, 6) + (b"\x22\x00" if not fc["features"] else b"")
    # The route's path (Layer.read, then encode_answer): a layer of rows goes from its rows to the
    # wire; every format, in GCJ-02 too, is what the GeoJSON text would have given.
    with psycopg.connect(demo_db) as conn:
        got = spec.read(conn, {**values, **_configured(spec)}, None, 50_000)
    assert isinstance(got, Points) == spec.rows
    for fmt in ("geobuf", "geojson"):
        for gcj02 in (False, True):
            want, want_media = encode(text, fmt, gcj02)
            body, media = encode_answer(got, fmt, gcj02)
            assert media == want_media
            assert (body == want) if fmt == "geobuf" else (json.loads(body) == json.loads(want)), (fmt, gcj02)


def _configured(spec: registry.Layer) -> dict[str, Any]:
    from services.settings import Settings

    return spec.configured(Settings(_env_file=None))

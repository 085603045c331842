"""GCJ-02 ⇄ WGS-84 against published and independently computed vectors. No database needed."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import Point, Polygon

from geodata.gcj02 import gcj02_to_wgs84, geometry_gcj02_to_wgs84, geometry_wgs84_to_gcj02, out_of_china, wgs84_to_gcj02

GEOD = Geod(ellps="WGS84")

# The example in the README of wandergis/coordtransform (MIT), quoted in many implementations:
# wgs84togcj02(116.404, 39.915) -> [116.41024449916938, 39.91640428150164];
# gcj02towgs84(116.404, 39.915) -> [116.39775550083061, 39.91359571849836] (the one-step approximation).
PUBLISHED_FORWARD = ((116.404, 39.915), (116.41024449916938, 39.91640428150164))
PUBLISHED_ONE_STEP_INVERSE = ((116.404, 39.915), (116.39775550083061, 39.91359571849836))

# Computed with PyPI prcoords 1.0.2 (CC0, by Mingye Wang), installed in a scratch directory, not a project
# dependency: wgs_gcj(Coords(lat, lon)) for the forward value, and gcj_wgs_bored(Coords(lat, lon)) with
# prcoords.PRC_EPS = 1e-12 for the exact inverse. Each row: input (lon, lat), forward, exact inverse.
PRCOORDS = [
    ((107.48, 38.18), (107.48520345664082, 38.18054678766964), (107.47477934222522, 38.179438572236414)),
    ((106.96, 38.27), (106.9646741114744, 38.270352255859294), (106.95534347699324, 38.26965856165375)),
    ((108.27, 37.73), (108.2749565775803, 37.73059299189301), (108.26504664372244, 37.72941029753783)),
    ((121.4737, 31.2304), (121.47822305927693, 31.22845773757727), (121.4691622633295, 31.232329239037508)),
    ((113.9, 22.5), (113.90486389528537, 22.496945031454228), (113.89513151302857, 22.503054018013195)),
]


def test_published_forward_vector() -> None:
    (lon, lat), expected = PUBLISHED_FORWARD
    assert wgs84_to_gcj02(lon, lat) == pytest.approx(expected, abs=1e-12)


def test_exact_inverse_differs_from_one_step_approximation_but_only_slightly() -> None:
    (lon, lat), one_step = PUBLISHED_ONE_STEP_INVERSE
    exact = gcj02_to_wgs84(lon, lat)
    assert exact == pytest.approx(one_step, abs=1e-5)  # same answer to a metre ...
    assert abs(exact[0] - one_step[0]) > 1e-7  # ... but not the approximation
    assert wgs84_to_gcj02(*exact) == pytest.approx((lon, lat), abs=1e-10)


@pytest.mark.parametrize(("point", "forward", "inverse"), PRCOORDS)
def test_matches_prcoords(
    point: tuple[float, float], forward: tuple[float, float], inverse: tuple[float, float]
) -> None:
    assert wgs84_to_gcj02(*point) == pytest.approx(forward, abs=1e-12)
    assert gcj02_to_wgs84(*point) == pytest.approx(inverse, abs=1e-9)


def test_scalars_in_scalars_out() -> None:
    lon, lat = wgs84_to_gcj02(107.48, 38.18)
    assert type(lon) is float and type(lat) is float
    lon, lat = gcj02_to_wgs84(107.48, 38.18)
    assert type(lon) is float and type(lat) is float


def test_round_trip_over_the_banner_is_below_1e7_degrees() -> None:
    rng = np.random.default_rng(7)
    lon = rng.uniform(106.4, 108.6, 5000)
    lat = rng.uniform(37.3, 38.9, 5000)
    back_lon, back_lat = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert np.max(np.abs(back_lon - lon)) < 1e-7
    assert np.max(np.abs(back_lat - lat)) < 1e-7
    again_lon, again_lat = wgs84_to_gcj02(*gcj02_to_wgs84(lon, lat))
    assert np.max(np.abs(again_lon - lon)) < 1e-7
    assert np.max(np.abs(again_lat - lat)) < 1e-7


def test_round_trip_across_china() -> None:
    lon, lat = (a.ravel() for a in np.meshgrid(np.linspace(74, 134, 61), np.linspace(19, 53, 35)))
    back_lon, back_lat = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert np.max(np.hypot(back_lon - lon, back_lat - lat)) < 1e-7


def test_shift_near_the_banner_seat_is_a_few_hundred_metres() -> None:
    lon, lat = 107.5, 38.2
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    _, _, metres = GEOD.inv(lon, lat, g_lon, g_lat)
    assert 300 < metres < 700, metres
    assert g_lon > lon and g_lat > lat  # here GCJ-02 sits to the north-east


@pytest.mark.parametrize("point", [(2.3522, 48.8566), (-74.006, 40.7128), (151.2093, -33.8688), (139.6917, 56.5)])
def test_points_outside_china_are_unchanged(point: tuple[float, float]) -> None:
    assert out_of_china(*point)
    assert wgs84_to_gcj02(*point) == point
    assert gcj02_to_wgs84(*point) == point


def test_arrays_mix_inside_and_outside() -> None:
    lon = np.array([107.48, 2.3522, 116.404])
    lat = np.array([38.18, 48.8566, 39.915])
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    assert g_lon.shape == (3,) and g_lat.shape == (3,)
    assert (g_lon[1], g_lat[1]) == (2.3522, 48.8566)
    assert (g_lon[2], g_lat[2]) == pytest.approx(PUBLISHED_FORWARD[1], abs=1e-12)
    w_lon, w_lat = gcj02_to_wgs84(g_lon, g_lat)
    assert np.allclose(w_lon, lon, atol=1e-10, rtol=0) and np.allclose(w_lat, lat, atol=1e-10, rtol=0)


def test_two_dimensional_arrays_keep_their_shape() -> None:
    lon, lat = np.meshgrid(np.linspace(107, 108, 4), np.linspace(38, 38.5, 3))
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    assert g_lon.shape == (3, 4) and g_lat.shape == (3, 4)
    assert gcj02_to_wgs84(g_lon, g_lat)[0].shape == (3, 4)


def test_empty_arrays() -> None:
    lon, lat = gcj02_to_wgs84(np.array([]), np.array([]))
    assert lon.shape == (0,) and lat.shape == (0,)


def test_polygon_with_hole_round_trips() -> None:
    shell = [(107.0, 38.0), (108.0, 38.0), (108.0, 38.6), (107.0, 38.6), (107.0, 38.0)]
    hole = [(107.3, 38.2), (107.3, 38.4), (107.6, 38.4), (107.6, 38.2), (107.3, 38.2)]
    wgs = Polygon(shell, [hole])
    gcj = geometry_wgs84_to_gcj02(wgs)
    assert isinstance(gcj, Polygon) and len(gcj.interiors) == 1 and gcj.is_valid
    lon, lat = wgs84_to_gcj02(*np.asarray(hole).T)
    assert np.allclose(np.asarray(gcj.interiors[0].coords), np.column_stack([lon, lat]), atol=1e-12, rtol=0)
    back = geometry_gcj02_to_wgs84(gcj)
    assert isinstance(back, Polygon) and len(back.interiors) == 1
    assert np.max(np.abs(shapely.get_coordinates(back) - shapely.get_coordinates(wgs))) < 1e-7
    assert shapely.equals_exact(back, wgs, tolerance=1e-7)


def test_geometry_collection_and_point() -> None:
    geom = shapely.GeometryCollection([Point(107.48, 38.18), Point(2.35, 48.85)])
    out = geometry_wgs84_to_gcj02(geom)
    assert out.geoms[0].coords[0] == pytest.approx(PRCOORDS[0][1], abs=1e-12)
    assert out.geoms[1].coords[0] == (2.35, 48.85)

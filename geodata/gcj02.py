"""GCJ-02 ⇄ WGS-84, the Chinese "Mars coordinates" obfuscation.

AMap/Gaode (and Tencent) publish geometry in GCJ-02, a deliberately distorted datum that no EPSG code or
pyproj pipeline describes; around Otog Front the shift is several hundred metres. yitu stores WGS-84 only
(DOMAIN.md, "Geography and coordinates"), so AMap-derived data must pass through here before use.

The forward formula is the well-known public one (Krasovsky 1940 ellipsoid plus a fixed trigonometric
offset polynomial). It has no closed-form inverse, so ``gcj02_to_wgs84`` solves ``wgs84_to_gcj02(w) == g``
by fixed-point iteration to about 1e-10 degrees rather than using the common one-step approximation, which
is off by up to a few metres. Points outside the rough China bounding box are returned unchanged, as every
GCJ-02 implementation does.
"""

from __future__ import annotations

from typing import overload

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CHINA_LAT",
    "CHINA_LON",
    "gcj02_to_wgs84",
    "geometry_gcj02_to_wgs84",
    "geometry_wgs84_to_gcj02",
    "out_of_china",
    "wgs84_to_gcj02",
]

_A = 6378245.0  # Krasovsky 1940 semi-major axis, metres
_EE = 0.00669342162296594323  # Krasovsky 1940 first eccentricity squared
_TOL = 1e-10  # inverse stops when the forward image is this close (degrees) to the target
_MAX_ITER = 30  # the iteration contracts ~1000x per step; 3-4 steps suffice in practice

FloatArray = NDArray[np.float64]


# The box in which GCJ-02 applies (the customary test), also the bounds of a report's position
# (api/cases.py): a point outside it is not in China (a phone's GPS at 0,0, a swapped lon/lat).
CHINA_LON = (72.004, 137.8347)
CHINA_LAT = (0.8293, 55.8271)


def out_of_china(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """True where the point lies outside the box in which GCJ-02 applies (the customary test)."""
    lon_a = np.asarray(lon, dtype=np.float64)
    lat_a = np.asarray(lat, dtype=np.float64)
    return (lon_a < CHINA_LON[0]) | (lon_a > CHINA_LON[1]) | (lat_a < CHINA_LAT[0]) | (lat_a > CHINA_LAT[1])


def _offset(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 minus WGS-84 in degrees at a WGS-84 point, with no China test."""
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = (
        -100.0
        + 2.0 * x
        + 3.0 * y
        + 0.2 * y * y
        + 0.1 * x * y
        + 0.2 * sqrt_abs_x
        + common
        + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
        + (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    )
    dlon = (
        300.0
        + x
        + 2.0 * y
        + 0.1 * x * x
        + 0.1 * x * y
        + 0.1 * sqrt_abs_x
        + common
        + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
        + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    )
    rad_lat = np.radians(lat)
    magic = 1.0 - _EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = dlat * 180.0 / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = dlon * 180.0 / (_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return dlon, dlat


def _prepare(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray, NDArray[np.bool_], bool]:
    lon_a = np.asarray(lon, dtype=np.float64)
    lat_a = np.asarray(lat, dtype=np.float64)
    lon_a, lat_a = np.broadcast_arrays(lon_a, lat_a)
    scalar = lon_a.ndim == 0
    return lon_a, lat_a, ~out_of_china(lon_a, lat_a), scalar


def _wrap(lon: FloatArray, lat: FloatArray, scalar: bool) -> tuple[float, float] | tuple[FloatArray, FloatArray]:
    if scalar:
        return float(lon), float(lat)
    return lon, lat


@overload
def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]: ...
@overload
def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]: ...
def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[float, float] | tuple[FloatArray, FloatArray]:
    """WGS-84 to GCJ-02, e.g. to overlay yitu data on AMap tiles. Floats in, floats out; arrays vectorised."""
    lon_a, lat_a, inside, scalar = _prepare(lon, lat)
    dlon, dlat = _offset(lon_a, lat_a)
    out_lon = np.where(inside, lon_a + dlon, lon_a)
    out_lat = np.where(inside, lat_a + dlat, lat_a)
    return _wrap(out_lon, out_lat, scalar)


@overload
def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]: ...
@overload
def gcj02_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]: ...
def gcj02_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[float, float] | tuple[FloatArray, FloatArray]:
    """GCJ-02 to WGS-84, exact to ~1e-10 degrees by iteration (the one-step inverse errs by metres).

    The offset varies slowly, so ``w <- w - (forward(w) - g)`` contracts fast; the China test is made on
    the GCJ-02 input, as the data's publisher would have made it on the original.
    """
    g_lon, g_lat, inside, scalar = _prepare(lon, lat)
    w_lon = g_lon.copy()
    w_lat = g_lat.copy()
    for _ in range(_MAX_ITER):
        dlon, dlat = _offset(w_lon, w_lat)
        err_lon = np.where(inside, w_lon + dlon - g_lon, 0.0)
        err_lat = np.where(inside, w_lat + dlat - g_lat, 0.0)
        w_lon = w_lon - err_lon
        w_lat = w_lat - err_lat
        if err_lon.size == 0 or max(np.max(np.abs(err_lon)), np.max(np.abs(err_lat))) < _TOL:
            break
    return _wrap(w_lon, w_lat, scalar)


def _coords_gcj02_to_wgs84(xy: FloatArray) -> FloatArray:
    lon, lat = gcj02_to_wgs84(xy[:, 0], xy[:, 1])
    return np.column_stack([lon, lat])


def _coords_wgs84_to_gcj02(xy: FloatArray) -> FloatArray:
    lon, lat = wgs84_to_gcj02(xy[:, 0], xy[:, 1])
    return np.column_stack([lon, lat])


def geometry_gcj02_to_wgs84(geom: shapely.Geometry) -> shapely.Geometry:
    """Every vertex of a lon/lat shapely geometry from GCJ-02 to WGS-84 (returns a 2-D geometry).

    Only vertices move: validity is usually kept, as the shift is smooth, but callers that need a
    guarantee should run ``shapely.make_valid`` afterwards.
    """
    return shapely.transform(geom, _coords_gcj02_to_wgs84)


def geometry_wgs84_to_gcj02(geom: shapely.Geometry) -> shapely.Geometry:
    """Every vertex of a lon/lat shapely geometry from WGS-84 to GCJ-02 (returns a 2-D geometry)."""
    return shapely.transform(geom, _coords_wgs84_to_gcj02)

"""Import the four-level grid and the cameras from GIS files; export the grid.

Grid data reaches a banner centre as whatever the county's GIS office had: a GBK Shapefile in
CGCS2000, a GeoPackage, GeoJSON drawn on an AMap (GCJ-02) base. Everything GDAL reads is read,
reprojected to WGS-84 and then judged as a whole before anything is written, and every problem
is reported at once: the person fixing the file wants the full list, not one error per attempt.
Without ``replace`` a file lands on the territory already in the database (upsert) and the union
is what gets judged; with ``replace`` the file is the whole new territory. Each import is one
transaction, so a rejected or failed import leaves the database exactly as it was.
"""

from __future__ import annotations

import codecs
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pyogrio
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from geodata import league, queries
from geodata.errors import Invalid
from geodata.import_report import AuditHook, ImportRejected, ImportReport, Problem, one_line, shown

_T = TypeVar("_T")

# Field names tried in order when the caller names none (exact match first, then ignoring case).
CODE_FIELDS = ("code", "编码", "代码", "区划代码", "网格编码", "CODE")
NAME_FIELDS = ("name", "名称", "网格名称", "NAME")
LEVEL_FIELDS = ("level", "级别", "层级")
PARENT_FIELDS = ("parent_code", "上级编码", "父级编码", "parent")
DEVICE_CODE_FIELDS = ("device_code", "设备编码", "编码", "code")
CAMERA_NAME_FIELDS = ("name", "名称")
KIND_FIELDS = ("kind", "type", "类型")
STATUS_FIELDS = ("status", "状态")
STREAM_URL_FIELDS = ("stream_url", "视频流", "url")

KINDS = {
    "dome": "dome",
    "bullet": "bullet",
    "mini_dome": "mini_dome",
    "checkpoint": "checkpoint",
    "球机": "dome",
    "枪机": "bullet",
    "半球": "mini_dome",
    "卡口": "checkpoint",
}
STATUSES = {"online": "online", "offline": "offline", "在线": "online", "离线": "offline"}
STREAM_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://")
NAME_MAX = 200  # the areas.name CHECK
DEVICE_CODE_MAX = 64
MIN_AREA_M2 = 1.0  # slivers below a square metre are digitising noise, not defects
REL_TOLERANCE = 1e-6
EXPORT_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON"}
POLYGONAL = ("Polygon", "MultiPolygon")
_DIGITS = re.compile(r"[0-9]+")
_REASON_AT = re.compile(r"\[\s*(-?[0-9.eE+-]+)\s+(-?[0-9.eE+-]+)")

# --- SQL: constant statements, values always as parameters or COPY rows -------------------------
_LOCK_AREAS = "LOCK TABLE areas IN SHARE ROW EXCLUSIVE MODE"
# The territory a grid file is judged on: every banner's subtree but those the import replaces; the
# root (level 0) is derived from its banners, not judged, and banners are judged as siblings.
_SELECT_AREAS = """SELECT code, name, level, CASE WHEN level > 1 THEN parent_code END, ST_AsBinary(geom) FROM areas
WHERE level > 0 AND NOT left(code, 6) = ANY(%(replaced)s::text[])"""
# --replace swaps the subtrees of the banners the file is about, and leaves the other banners be.
_DELETE_AREAS = "DELETE FROM areas WHERE level > 0 AND left(code, 6) = ANY(%(replaced)s::text[])"
_TEMP_AREAS = """CREATE TEMP TABLE import_areas (
    code text PRIMARY KEY, name text NOT NULL, level smallint NOT NULL, parent_code text,
    geom geometry(MultiPolygon, 4326) NOT NULL) ON COMMIT DROP"""
_COPY_AREAS = "COPY import_areas (code, name, level, parent_code, geom) FROM STDIN"
_COUNT_AREA_UPDATES = "SELECT count(*) FROM import_areas JOIN areas USING (code)"
_UPSERT_AREAS = """INSERT INTO areas (code, name, level, parent_code, geom, updated_at)
SELECT code, name, level, parent_code, geom, now() FROM import_areas
ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, level = EXCLUDED.level,
    parent_code = EXCLUDED.parent_code, geom = EXCLUDED.geom, updated_at = EXCLUDED.updated_at"""
# cameras.area_code is the smallest area holding the point; a new grid moves it for every camera.
_ALL_CAMERA_AREAS = """UPDATE cameras c SET area_code = (
    SELECT a.code FROM areas a WHERE ST_Covers(a.geom, c.geom) ORDER BY a.level DESC, a.code LIMIT 1)"""
_IMPORTED_CAMERA_AREAS = """UPDATE cameras c SET area_code = (
    SELECT a.code FROM areas a WHERE ST_Covers(a.geom, c.geom) ORDER BY a.level DESC, a.code LIMIT 1)
FROM import_cameras i WHERE i.device_code = c.device_code"""
_LOCK_CAMERAS = "LOCK TABLE cameras IN SHARE ROW EXCLUSIVE MODE"
_LOCK_AREAS_SHARED = "LOCK TABLE areas IN SHARE MODE"
_TERRITORY = "SELECT ST_AsBinary(ST_Union(geom)) FROM areas WHERE level = 1"
_TEMP_CAMERAS = """CREATE TEMP TABLE import_cameras (
    device_code text PRIMARY KEY, name text NOT NULL, kind text NOT NULL, status text NOT NULL,
    stream_url text, geom geometry(Point, 4326) NOT NULL) ON COMMIT DROP"""
_COPY_CAMERAS = "COPY import_cameras (device_code, name, kind, status, stream_url, geom) FROM STDIN"
_COUNT_CAMERA_UPDATES = "SELECT count(*) FROM import_cameras JOIN cameras USING (device_code)"
_UPSERT_CAMERAS = """INSERT INTO cameras (device_code, name, kind, status, stream_url, geom, updated_at)
SELECT device_code, name, kind, status, stream_url, geom, now() FROM import_cameras
ON CONFLICT (device_code) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
    status = EXCLUDED.status, stream_url = EXCLUDED.stream_url, geom = EXCLUDED.geom,
    updated_at = EXCLUDED.updated_at"""
_EXPORT_AREAS = """SELECT code, name, level, parent_code, ST_AsBinary(geom) FROM areas
WHERE level = %(level)s ORDER BY code"""


class ExportError(Invalid):
    """The export cannot be made as asked (format, level, or nothing to export)."""


@dataclass(frozen=True)
class ReadOptions:
    """How to read a GIS file, whatever it holds: the import's --layer, --encoding and --gcj02."""

    layer: str | None = None
    encoding: str | None = None
    gcj02: bool = False


_Wanted = dict[str, tuple[str | None, Sequence[str], bool]]


@dataclass(frozen=True)
class GridFields:
    """The grid file's field names as the user gave them; None takes the first present of the defaults."""

    code: str | None = None
    name: str | None = None
    level: str | None = None
    parent: str | None = None

    def wanted(self) -> _Wanted:
        return {
            "code": (self.code, CODE_FIELDS, True),
            "name": (self.name, NAME_FIELDS, True),
            "level": (self.level, LEVEL_FIELDS, False),
            "parent": (self.parent, PARENT_FIELDS, False),
        }


@dataclass(frozen=True)
class CameraFields:
    """The camera file's field names as the user gave them; None takes the first present of the defaults."""

    device_code: str | None = None
    name: str | None = None
    kind: str | None = None
    status: str | None = None
    stream_url: str | None = None

    def wanted(self) -> _Wanted:
        return {
            "device code": (self.device_code, DEVICE_CODE_FIELDS, True),
            "name": (self.name, CAMERA_NAME_FIELDS, True),
            "kind": (self.kind, KIND_FIELDS, True),
            "status": (self.status, STATUS_FIELDS, False),
            "stream URL": (self.stream_url, STREAM_URL_FIELDS, False),
        }


# --- small value helpers --------------------------------------------------------------------
def _is_missing(value: object) -> bool:
    """An empty cell as pandas and GDAL give it: None, NaN (of any float width), <NA> or NaT."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and bool(np.isnan(value))


def normalise_code(value: object) -> str | None:
    """Codes arrive as text, integers or floats (DBF numeric fields): all become digit strings."""
    if _is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    if re.fullmatch(r"[0-9]+\.0*", text):
        text = text.split(".")[0]
    return text or None


def _text(value: object) -> str | None:
    if _is_missing(value):
        return None
    text = str(value).strip()
    return text or None


def _level(value: object) -> int | None:
    """1–4, or None when absent or unusable (then the code's length decides)."""
    code = normalise_code(value)
    return int(code) if code is not None and _DIGITS.fullmatch(code) and 1 <= int(code) <= 4 else None


def _level_from_code(code: str | None) -> int | None:
    if code is None or not _DIGITS.fullmatch(code) or len(code) not in (6, 9, 12, 15):
        return None
    return (len(code) - 3) // 3


def _parent_from_code(code: str | None, level: int | None) -> str | None:
    if code is None or level is None or level < 2 or len(code) != 3 + 3 * level:
        return None
    return code[:-3]


# --- reading --------------------------------------------------------------------------------
def _rejected(kind: str, where: str, message: str) -> ImportRejected:
    return ImportRejected([Problem(kind, (), where, message)])


def _pick_layer(path: Path, layer: str | None) -> str | None:
    """A file with several spatial layers must say which one: guessing would import the wrong data."""
    if layer is not None:
        return layer
    layers = pyogrio.list_layers(path)
    spatial = [str(name) for name, geom_type in layers if geom_type is not None]
    if len(spatial) > 1:
        raise _rejected(
            "multiple-layers",
            path.name,
            f"the file holds {len(spatial)} layers ({', '.join(spatial)}); choose one with --layer",
        )
    return spatial[0] if spatial else None


def _read_vector(path: str | Path, layer: str | None, encoding: str | None) -> gpd.GeoDataFrame:
    """Whatever GDAL cannot read becomes one clear problem instead of a traceback."""
    p = Path(path)
    if not p.exists():  # also keeps GDAL's /vsicurl/ and friends out
        raise _rejected("unreadable", p.name, f"no such file: {p}")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise _rejected("unreadable", p.name, f"unknown text encoding {encoding!r}") from None
    try:
        chosen = _pick_layer(p, layer)
        frame = pyogrio.read_dataframe(p, layer=chosen, encoding=encoding)
    except (RuntimeError, OSError, ValueError, UnicodeError) as exc:  # pyogrio's errors are RuntimeErrors
        hint = " (if its text is GBK, add a .cpg file or pass --encoding gbk)" if isinstance(exc, UnicodeError) else ""
        raise _rejected("unreadable", p.name, f"GDAL cannot read it: {one_line(str(exc))}{hint}") from None
    if len(frame) == 0:
        raise _rejected("empty", p.name, "the file holds no features")
    if not isinstance(frame, gpd.GeoDataFrame):
        raise _rejected("no-geometry", p.name, "the layer has no geometry column")
    return frame


def read_vector(path: str | Path, layer: str | None, encoding: str | None) -> gpd.GeoDataFrame:
    """A GIS file as a frame, or ImportRejected saying why it cannot be read (for the other importers)."""
    return _read_vector(path, layer, encoding)


def _looks_misdecoded(names: Iterable[str]) -> bool:
    """GBK bytes read as Latin-1 look like '±àÂë': the tell-tale of a DBF without its .cpg."""
    return any(any("\x80" <= ch <= "\xff" for ch in name) for name in names)


def _pick_field(
    columns: list[str],
    explicit: str | None,
    candidates: Sequence[str],
    what: str,
    required: bool,
    where: str,
    option: str | None = None,
) -> tuple[str | None, Problem | None]:
    found = f"; the file has: {', '.join(columns[:30]) or 'no fields'}"
    hint = (
        " (field names look mis-decoded: add a .cpg file or pass --encoding gbk)" if _looks_misdecoded(columns) else ""
    )
    if option:  # the command's option that names the field
        hint += f"; name it with {option}"
    if explicit is not None:
        if explicit in columns:
            return explicit, None
        return None, Problem("missing-field", (), where, f"no field {explicit!r} for the {what}{found}{hint}")
    by_lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name in columns:
            return name, None
    for name in candidates:
        if name.lower() in by_lower:
            return by_lower[name.lower()], None
    if not required:
        return None, None
    return None, Problem("missing-field", (), where, f"no {what} field (tried {', '.join(candidates)}){found}{hint}")


def pick_fields(
    frame: gpd.GeoDataFrame, where: str, wanted: _Wanted, options: Mapping[str, str] | None = None
) -> dict[str, str | None]:
    """The columns of ``wanted`` ({what: (the field named, else the usual names tried, required)}),
    exact names before any case; every missing field reported together, each with the command's
    option that names it (``options``: {what: "--class-field"}) and a hint when the names look
    mis-decoded. Every importer picks its fields here."""
    columns = [str(c) for c in frame.columns if c != frame.geometry.name]
    chosen: dict[str, str | None] = {}
    problems: list[Problem] = []
    for what, (explicit, candidates, required) in wanted.items():
        option = (options or {}).get(what)
        chosen[what], problem = _pick_field(columns, explicit, candidates, what, required, where, option)
        if problem:
            problems.append(problem)
    if problems:
        raise ImportRejected(problems)
    return chosen


def _features(mask: np.ndarray, limit: int = 10) -> str:
    """The features a warning is about, by their number in the file (1-based): the first ``limit``."""
    picked = np.flatnonzero(mask)
    listed = ", ".join(f"#{i + 1}" for i in picked[:limit])
    return listed + (f" and {len(picked) - limit} more" if len(picked) > limit else "")


def _geometries_wgs84(frame: gpd.GeoDataFrame, where: str, gcj02: bool) -> tuple[np.ndarray, list[str]]:
    """Any CRS to WGS-84 lon/lat (CGCS2000 / EPSG:4490 counts as WGS-84 within a metre), 2-D.

    Every importer reads its shapes through here (grid, cameras, roads; centres' and vans' points), so
    each says the same when it changes what the file holds: a reprojection names the CRS it came
    from, dropped heights (Z) and measures (M) name the features that had them."""
    warnings: list[str] = []
    geoms = frame.geometry
    if geoms.crs is None:
        warnings.append(f"{where} has no coordinate reference system; assuming WGS-84 longitude/latitude (EPSG:4326)")
        _require_lonlat(geoms.to_numpy(), where)
    elif geoms.crs.to_epsg() != 4326:
        warnings.append(
            f"{where} reprojected from {geoms.crs.name} ({geoms.crs.to_string()}) to WGS-84 longitude/latitude"
        )
        geoms = geoms.to_crs(4326)
    arr = geoms.to_numpy()
    has_z = shapely.has_z(arr)
    has_m = shapely.has_m(arr)
    if has_z.any():
        warnings.append(f"{int(has_z.sum())} feature(s) have Z coordinates; heights dropped: {_features(has_z)}")
    if has_m.any():
        warnings.append(f"{int(has_m.sum())} feature(s) have M values; measures dropped: {_features(has_m)}")
    if has_z.any() or has_m.any():
        arr = shapely.force_2d(arr)
    if gcj02:
        arr = _from_gcj02(arr)
    return arr, warnings


def geometries_wgs84(frame: gpd.GeoDataFrame, where: str, gcj02: bool = False) -> tuple[np.ndarray, list[str]]:
    """A frame's shapes in WGS-84, 2-D, and the warnings saying what that changed (for the other importers)."""
    return _geometries_wgs84(frame, where, gcj02)


def _require_lonlat(arr: np.ndarray, where: str) -> None:
    """Without a CRS, projected metres would land somewhere absurd: refuse rather than guess."""
    bounds = shapely.total_bounds(arr[~shapely.is_missing(arr)])
    if np.isfinite(bounds).all() and (abs(bounds[[0, 2]]).max() > 180 or abs(bounds[[1, 3]]).max() > 90):
        raise _rejected(
            "bad-coordinates",
            where,
            f"no CRS and coordinates up to ({bounds[2]:.0f}, {bounds[3]:.0f}) are not longitude/latitude; "
            "add the .prj (or the CRS) to the file",
        )


def _from_gcj02(arr: np.ndarray) -> np.ndarray:
    from geodata.gcj02 import geometry_gcj02_to_wgs84  # lazily: only --gcj02 needs it

    out = arr.copy()
    for i, geom in enumerate(arr):
        if geom is not None and not geom.is_empty:
            out[i] = geometry_gcj02_to_wgs84(geom)
    return out


class _Read(NamedTuple):
    """A file as both readers start from it: its rows, the fields chosen, WGS-84 shapes, warnings."""

    frame: gpd.GeoDataFrame
    fields: dict[str, str | None]
    geoms: np.ndarray
    warnings: list[str]


def _read(path: str | Path, wanted: _Wanted, options: ReadOptions | None) -> _Read:
    options = options or ReadOptions()
    frame = _read_vector(path, options.layer, options.encoding)
    where = Path(path).name
    fields = pick_fields(frame, where, wanted)
    geoms, warnings = _geometries_wgs84(frame, where, options.gcj02)
    return _Read(frame, fields, geoms, warnings)


def _frame(columns: dict[str, Any], geoms: np.ndarray) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(geoms, crs=4326), crs=4326)


def read_grids(
    path: str | Path, fields: GridFields | None = None, options: ReadOptions | None = None
) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Read a grid file into columns feature, code, name, level, parent_code, geometry (EPSG:4326).

    Level and parent may be absent from the file: the NBS code says both (6/9/12/15 digits,
    parent = code minus its last three digits). Raises ImportRejected when the file itself is
    unusable (unreadable, empty, several layers, no code or name field).
    """
    frame, chosen, geoms, warnings = _read(path, (fields or GridFields()).wanted(), options)
    codes = [normalise_code(v) for v in frame[chosen["code"]]]
    levels = _column(frame, chosen["level"], _level)
    levels = [lvl if lvl is not None else _level_from_code(c) for lvl, c in zip(levels, codes)]
    parents = _column(frame, chosen["parent"], normalise_code)
    parents = [p if p is not None else _parent_from_code(c, lvl) for p, c, lvl in zip(parents, codes, levels)]
    columns = {
        "feature": np.arange(1, len(frame) + 1),
        "code": _objects(codes),
        "name": _objects(_text(v) for v in frame[chosen["name"]]),
        "level": pd.array(levels, dtype="Int64"),
        "parent_code": _objects(parents),
    }
    return _frame(columns, geoms), warnings


def _objects(values: Iterable[Any]) -> pd.Series:
    """Text columns keep None for missing values (pandas 3 would infer str and turn None into NaN)."""
    return pd.Series(list(values), dtype=object)


def _with_none(frame: gpd.GeoDataFrame, columns: Sequence[str]) -> gpd.GeoDataFrame:
    """Callers may pass frames whose missing text is NaN: make it None, as ``read_*`` does."""
    return frame.assign(
        **{c: _objects(None if _is_missing(v) else v for v in frame[c]).set_axis(frame.index) for c in columns}
    )


class _AreaRow(NamedTuple):
    """One area of a grid frame (``read_grids`` columns), None where the file has no value."""

    feature: object  # the file's feature number; <NA> for an area from the database
    code: str | None
    name: str | None
    level: int | None
    parent_code: str | None
    geometry: BaseGeometry | None


def _area_rows(frame: gpd.GeoDataFrame) -> list[_AreaRow]:
    """The frame's rows, typed (``level`` is an ``Int64`` column: <NA> becomes None)."""
    return [
        _AreaRow(feature, code, name, None if _is_missing(level) else int(level), parent, geom)
        for feature, code, name, level, parent, geom in zip(
            frame["feature"], frame["code"], frame["name"], frame["level"], frame["parent_code"], frame.geometry
        )
    ]


class _CameraRow(NamedTuple):
    """One camera of a camera frame (``read_cameras`` columns), None where the file has no value."""

    feature: object
    device_code: str | None
    name: str | None
    kind: str | None
    status: str | None
    stream_url: str | None
    geometry: BaseGeometry | None


def _camera_rows(frame: gpd.GeoDataFrame) -> list[_CameraRow]:
    columns = [frame[c] for c in ("feature", "device_code", "name", "kind", "status", "stream_url")]
    return [_CameraRow(*values) for values in zip(*columns, frame.geometry)]


def _column(frame: gpd.GeoDataFrame, name: str | None, convert: Callable[[object], _T | None]) -> list[_T | None]:
    return [convert(v) for v in frame[name]] if name is not None else [None] * len(frame)


# --- validation: one row at a time ------------------------------------------------------------
def _location(geom: BaseGeometry | None, feature: object) -> str:
    """A lon/lat a user can paste into a map, or the feature number when there is no usable geometry."""
    fallback = f"feature #{feature}" if not _is_missing(feature) else "database"
    if geom is None or geom.is_empty or not np.isfinite(shapely.bounds(geom)).all():
        return fallback
    if geom.geom_type in POLYGONAL and not geom.is_valid:
        found = _REASON_AT.search(shapely.is_valid_reason(geom))
        if found:
            return f"lon/lat {float(found.group(1)):.5f},{float(found.group(2)):.5f}"
        x0, y0, x1, y1 = geom.bounds
        return f"lon/lat {(x0 + x1) / 2:.5f},{(y0 + y1) / 2:.5f}"
    point = geom.representative_point()
    return f"lon/lat {point.x:.5f},{point.y:.5f}"


def _geometry_problem(
    geom: BaseGeometry | None, code: tuple[str, ...], feature: object, allowed: Sequence[str]
) -> Problem | None:
    where = _location(geom, feature)
    if geom is None or geom.is_empty:
        return Problem("no-geometry", code, where, "the feature has no geometry")
    if geom.geom_type not in allowed:
        return Problem(
            "not-polygon" if allowed == POLYGONAL else "not-point",
            code,
            where,
            f"a {geom.geom_type}, expected {' or '.join(allowed)}",
        )
    x0, y0, x1, y1 = shapely.bounds(geom)
    if not np.isfinite([x0, y0, x1, y1]).all() or x0 < -180 or x1 > 180 or y0 < -90 or y1 > 90:
        return Problem("bad-coordinates", code, where, "coordinates are not valid longitudes/latitudes")
    if not geom.is_valid:
        return Problem("invalid-geometry", code, where, shapely.is_valid_reason(geom))
    return None


def _name_problem(name: str | None, codes: tuple[str, ...], where: str) -> Problem | None:
    if name is None:
        return Problem("bad-name", codes, where, "the name is missing")
    if len(name) > NAME_MAX:
        return Problem("bad-name", codes, where, f"the name has {len(name)} characters; at most {NAME_MAX}")
    if "\x00" in name:
        return Problem("bad-name", codes, where, "the name contains a NUL character")
    return None


def _code_misfit(code: str, level: int | None, parent: str | None) -> str | None:
    """Why an NBS code does not fit its level and parent, or None when it does."""
    if not _DIGITS.fullmatch(code):
        return "a code is ASCII digits only"
    if level is None:
        return f"the level is missing or not 1–4 and a {len(code)}-digit code does not tell it"
    if len(code) != 3 + 3 * level:
        return f"a level-{level} code has {3 + 3 * level} digits, this one has {len(code)}"
    if level == 1:
        return f"a level-1 area has no parent, this one names {parent}" if parent else None
    if parent is None or len(parent) != len(code) - 3 or not code.startswith(parent):
        return f"a level-{level} code starts with its parent's {len(code) - 3}-digit code, not {parent}"
    return None


@dataclass
class _RowVerdict:
    problems: list[Problem]
    code_ok: bool
    geom_ok: bool


def _judge_row(row: _AreaRow) -> _RowVerdict:
    code = row.code
    codes = (code,) if code is not None else ()
    geom_problem = _geometry_problem(row.geometry, codes, row.feature, POLYGONAL)
    where = _location(row.geometry if geom_problem is None else None, row.feature)
    problems = [geom_problem] if geom_problem else []
    misfit = "the code is missing" if code is None else _code_misfit(code, row.level, row.parent_code)
    if misfit:
        problems.append(Problem("missing-code" if code is None else "code-level", codes, where, misfit))
    name_problem = _name_problem(row.name, codes, where)
    if name_problem:
        problems.append(name_problem)
    return _RowVerdict(problems, misfit is None, geom_problem is None)


def _duplicates(gdf: gpd.GeoDataFrame, column: str, what: str) -> list[Problem]:
    """One problem per code that several features share (kind ``duplicate-`` + the column's name)."""
    problems = []
    for code, group in gdf[gdf[column].notna()].groupby(column, sort=False):
        if len(group) > 1:
            features = ", ".join(f"#{f}" for f in group.feature)
            where = _location(group.geometry.iloc[0], group.feature.iloc[0])
            message = f"the {what} appears {len(group)} times (features {features})"
            problems.append(Problem("duplicate-" + what.replace(" ", "-"), (str(code),), where, message))
    return problems


def _missing_parents(rows: gpd.GeoDataFrame, known: set[str], judged_alone: bool) -> list[Problem]:
    """One problem per absent parent, naming every child that points at it."""
    orphans = rows[(rows.level > 1) & ~rows.parent_code.isin(known)]
    where_else = "in the file" if judged_alone else "in the file nor in the database"
    problems = []
    for parent, group in orphans.groupby("parent_code", sort=True):
        where = _location(group.geometry.iloc[0], group.feature.iloc[0])
        problems.append(
            Problem(
                "missing-parent",
                tuple(dict.fromkeys(group.code)),
                where,
                f"parent {parent} is {'not ' if judged_alone else 'neither '}{where_else}",
            )
        )
    return problems


# --- validation: the territory as a whole -----------------------------------------------------
def _metric_areas(geoms: Sequence[BaseGeometry] | np.ndarray, metric: CRS) -> np.ndarray:
    if len(geoms) == 0:
        return np.zeros(0)
    return gpd.GeoSeries(list(geoms), crs=4326).to_crs(metric).area.to_numpy()


def _metric_crs(geoms: gpd.GeoSeries) -> CRS:
    """UTM of the territory's centre: areas within a fraction of a percent across a banner."""
    try:
        return geoms.estimate_utm_crs()
    except RuntimeError:  # no UTM zone fits (polar or absurd extents): fall back to equal-area
        return CRS.from_epsg(6933)


@dataclass
class _Union:
    """The territory being judged: the file's usable areas plus the database's others."""

    codes: list[str]
    parents: list[str | None]
    levels: list[int]
    geoms: np.ndarray
    from_file: np.ndarray
    metric: CRS

    @classmethod
    def build(cls, file_rows: gpd.GeoDataFrame, existing: gpd.GeoDataFrame | None, overridden: set[str]) -> _Union:
        """``overridden``: every code the file names, usable or not (the file means to replace it)."""
        parts = [file_rows.assign(in_file=True)]
        if existing is not None and len(existing):
            parts.append(existing[~existing.code.isin(overridden)].assign(in_file=False))
        merged = pd.concat(parts, ignore_index=True)
        series = gpd.GeoSeries(merged.geometry.to_numpy(), crs=4326)
        return cls(
            list(merged.code),
            [None if _is_missing(p) else p for p in merged.parent_code],
            [int(v) for v in merged.level],
            series.to_numpy(),
            merged["in_file"].to_numpy(bool),
            _metric_crs(series) if len(series) else CRS.from_epsg(6933),
        )

    def index(self) -> dict[str, int]:
        return {code: i for i, code in enumerate(self.codes)}

    def child_parent_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        idx = self.index()
        pairs = [(i, idx[p]) for i, p in enumerate(self.parents) if p is not None and p in idx]
        arr = np.array(pairs, dtype=int).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]


def _outside_parents(u: _Union) -> list[Problem]:
    child, parent = u.child_parent_pairs()
    involved = u.from_file[child] | u.from_file[parent]
    child, parent = child[involved], parent[involved]
    outside = shapely.difference(u.geoms[child], u.geoms[parent])
    out_area = _metric_areas(outside, u.metric)
    child_area = _metric_areas(u.geoms[child], u.metric)
    bad = (out_area > MIN_AREA_M2) & (out_area > REL_TOLERANCE * child_area)
    return [
        Problem(
            "outside-parent",
            (u.codes[c], u.codes[p]),
            _location(outside[k], None),
            f"{out_area[k]:,.0f} m² of {u.codes[c]} lie outside its parent {u.codes[p]}",
        )
        for k, (c, p) in enumerate(zip(child, parent))
        if bad[k]
    ]


def _sibling_overlaps(u: _Union) -> list[Problem]:
    """Siblings (same parent, or two level-1 areas) must not share interior: 不交叉."""
    left, right = shapely.STRtree(u.geoms).query(u.geoms, predicate="intersects")
    parents = np.array([p or "" for p in u.parents], dtype=object)
    levels = np.array(u.levels)
    keep = (
        (left < right)
        & (parents[left] == parents[right])
        & (levels[left] == levels[right])
        & (u.from_file[left] | u.from_file[right])
    )
    left, right = left[keep], right[keep]
    shared = shapely.intersection(u.geoms[left], u.geoms[right])
    area = _metric_areas(shared, u.metric)
    return [
        Problem(
            "overlap",
            (u.codes[a], u.codes[b]),
            _location(shared[k], None),
            f"{u.codes[a]} and {u.codes[b]} overlap by {area[k]:,.0f} m²",
        )
        for k, (a, b) in enumerate(zip(left, right))
        if area[k] > MIN_AREA_M2
    ]


def _gaps(u: _Union, incomplete: set[str], unplaced: BaseGeometry) -> list[Problem]:
    """Children must cover their parent: 全覆盖.

    A parent with a child that could not be judged is skipped, and so is ground covered by a
    feature that could not be placed (no usable code): those features are reported themselves.
    """
    child, parent = u.child_parent_pairs()
    kids: dict[int, list[int]] = defaultdict(list)
    for c, p in zip(child, parent):
        kids[int(p)].append(int(c))
    judged = [p for p, cs in kids.items() if u.codes[p] not in incomplete and (u.from_file[p] or u.from_file[cs].any())]
    holes = [shapely.difference(u.geoms[p], shapely.union_all([*u.geoms[kids[p]], unplaced])) for p in judged]
    hole_area = _metric_areas(holes, u.metric)
    parent_area = _metric_areas(u.geoms[judged], u.metric)
    return [
        Problem(
            "gap",
            (u.codes[p],),
            _location(holes[k], None),
            f"its {len(kids[p])} children leave {hole_area[k]:,.0f} m² uncovered",
        )
        for k, p in enumerate(judged)
        if hole_area[k] > max(MIN_AREA_M2, REL_TOLERANCE * parent_area[k])
    ]


def validate_grids(gdf: gpd.GeoDataFrame, existing: gpd.GeoDataFrame | None = None) -> list[Problem]:
    """Every problem of a grid file (from ``read_grids``), judged with ``existing`` areas if given.

    ``existing`` (same columns, e.g. the database's areas) is the territory the file lands on:
    the file's areas override the same codes and the union is judged, so a file of level-4 cells
    is judged against the villages already imported. Spatial checks only report defects that
    involve at least one of the file's areas: the database's own state is not the file's fault.
    """
    gdf = _with_none(gdf, ("code", "name", "parent_code"))
    if existing is not None:
        existing = _with_none(existing, ("code", "name", "parent_code"))
    verdicts = [_judge_row(row) for row in _area_rows(gdf)]
    problems = [p for v in verdicts for p in v.problems]
    problems += _duplicates(gdf, "code", "code")
    code_ok = np.array([v.code_ok for v in verdicts], dtype=bool)
    geom_ok = np.array([v.geom_ok for v in verdicts], dtype=bool)
    usable = code_ok & geom_ok & ~gdf.code.duplicated(keep="first").to_numpy()
    incomplete = {p for p, ok in zip(gdf.parent_code, code_ok & geom_ok) if not ok and p is not None}
    known = set(gdf.code[code_ok]) | (set(existing.code) if existing is not None else set())
    problems += _missing_parents(gdf[code_ok], known, existing is None)
    unplaced = shapely.union_all(gdf.geometry.to_numpy()[geom_ok & ~code_ok])
    u = _Union.build(gdf[usable], existing, set(gdf.code.dropna()))
    if u.codes:
        problems += _outside_parents(u) + _sibling_overlaps(u) + _gaps(u, incomplete, unplaced)
    return problems


# --- writing the grid -----------------------------------------------------------------------------
def _ewkb(geom: BaseGeometry) -> str:
    return shapely.to_wkb(shapely.set_srid(geom, 4326), hex=True, include_srid=True)


def _multi(geom: BaseGeometry) -> shapely.MultiPolygon:
    if isinstance(geom, shapely.MultiPolygon):
        return geom
    if isinstance(geom, shapely.Polygon):
        return shapely.MultiPolygon([geom])
    raise ValueError(f"a {geom.geom_type} is not polygonal")  # the file was judged: never reached


def _area_copy_rows(gdf: gpd.GeoDataFrame) -> Iterator[tuple[str | None, str | None, int, str | None, str]]:
    for r in _area_rows(gdf):
        assert r.geometry is not None, "a judged file: each area has its shape"
        assert r.level is not None, "a judged file: each area has its level"
        yield r.code, r.name, r.level, r.parent_code, _ewkb(_multi(r.geometry))


def _camera_copy_rows(gdf: gpd.GeoDataFrame) -> Iterator[tuple[str | None, ...]]:
    for r in _camera_rows(gdf):
        assert r.geometry is not None, "a judged file: each camera has its point"
        yield r.device_code, r.name, camera_kind(r.kind), camera_status(r.status), r.stream_url, _ewkb(r.geometry)


def copy_rows(
    cur: psycopg.Cursor[Any], statement: str, rows: Iterable[tuple[Any, ...]], total: int, progress: bool, unit: str
) -> None:
    """``rows`` through ``statement`` (a COPY … FROM STDIN), with a progress bar on stderr if ``progress``."""
    with cur.copy(statement) as cp:
        for row in tqdm(rows, total=total, disable=not progress, file=sys.stderr, unit=unit, leave=False):
            cp.write_row(row)


def _count(cur: psycopg.Cursor[Any], statement: str) -> int:
    row = cur.execute(statement).fetchone()
    assert row is not None, "a count(*) answers one row"
    return int(row[0])


def existing_areas(conn: psycopg.Connection[Any], replaced: Sequence[str] = ()) -> gpd.GeoDataFrame:
    """The database's territory in ``read_grids`` columns (feature is missing: not from a file),
    without the subtrees of the banners ``replaced`` (6-digit codes)."""
    rows = conn.execute(_SELECT_AREAS, {"replaced": list(replaced)}).fetchall()
    columns = {
        "feature": pd.array([None] * len(rows), dtype="Int64"),
        "code": _objects(r[0] for r in rows),
        "name": _objects(r[1] for r in rows),
        "level": pd.array([r[2] for r in rows], dtype="Int64"),
        "parent_code": _objects(r[3] for r in rows),
    }
    return _frame(columns, shapely.from_wkb([bytes(r[4]) for r in rows]))


def _area_counts(gdf: gpd.GeoDataFrame) -> dict[str, int]:
    return {f"level {lvl}": int(n) for lvl, n in sorted(gdf.level.value_counts().items())}


def import_grids(
    dsn: str,
    path: str | Path,
    fields: GridFields | None = None,
    options: ReadOptions | None = None,
    *,
    replace: bool = False,
    progress: bool = False,
    audit: AuditHook | None = None,
    root: str | None = None,
    root_name: str | None = None,
) -> ImportReport:
    """Read, judge and write a grid file in one transaction; ImportRejected lists every problem.

    The areas table stays locked against other writers from judging to commit, so the territory
    that was judged is the one the file lands on; readers keep seeing the old one until commit.
    Other banners are left as they are (``replace`` swaps only the subtrees of the file's banners),
    the league/city root is made or refreshed (geodata/league.py; ``root``: its code, e.g.
    150600), and the commit carries an ``areas.changed`` event so open screens redraw.
    """
    gdf, warnings = read_grids(path, fields, options)
    touched = sorted({c[:6] for c in gdf.code.dropna() if len(c) >= 6})

    def judge(conn: psycopg.Connection[Any]) -> list[Problem]:
        problems = validate_grids(gdf, existing_areas(conn, touched if replace else ()))
        return problems + _root_problems(conn, touched, root)

    def finish(conn: psycopg.Connection[Any]) -> list[str]:
        found = league.settle(conn, root, root_name)
        league.announce(conn, touched)
        return found

    return _import(
        dsn,
        _AREAS,
        gdf,
        warnings,
        judge,
        replace=replace,
        progress=progress,
        audit=audit,
        delete_params={"replaced": touched},
        finish=finish,
    )


def _root_problems(conn: psycopg.Connection[Any], touched: Sequence[str], asked: str | None) -> list[Problem]:
    """A file's banners must lie under the root (the one there is, or the one ``asked`` for)."""
    have = league.root(conn)
    try:
        at = queries.root_code(asked) if asked is not None else have[0] if have else None
    except ValueError as exc:
        return [Problem("bad-root", (asked or "",), "option --root", str(exc))]
    if at is None:
        return []
    if have is not None and have[0] != at:
        return [Problem("bad-root", (at,), "option --root", f"the root is already {have[0]} ({have[1]})")]
    return [
        Problem("outside-root", (code,), "database", f"banner {code} does not lie under the league/city root {at}")
        for code in league.outside(touched, at)
    ]


# --- cameras --------------------------------------------------------------------------------------
def read_cameras(
    path: str | Path, fields: CameraFields | None = None, options: ReadOptions | None = None
) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Read a camera file into feature, device_code, name, kind, status, stream_url, geometry.

    Kind and status stay as written (e.g. 球机, 在线) so problems quote the file; ``camera_kind``
    and ``camera_status`` map them. Single-point MultiPoints (common in Shapefiles) become Points.
    """
    frame, chosen, geoms, warnings = _read(path, (fields or CameraFields()).wanted(), options)
    for i, geom in enumerate(geoms):
        if geom is not None and geom.geom_type == "MultiPoint" and len(geom.geoms) == 1:
            geoms[i] = geom.geoms[0]
    columns = {
        "feature": np.arange(1, len(frame) + 1),
        "device_code": _objects(normalise_code(v) for v in frame[chosen["device code"]]),
        "name": _objects(_text(v) for v in frame[chosen["name"]]),
        "kind": _objects(_text(v) for v in frame[chosen["kind"]]),
        "status": _objects(_column(frame, chosen["status"], _text)),
        "stream_url": _objects(_column(frame, chosen["stream URL"], _text)),
    }
    return _frame(columns, geoms), warnings


def camera_kind(value: str | None) -> str | None:
    return KINDS.get(value.strip().lower()) if value else None


def camera_status(value: str | None) -> str | None:
    return "online" if value is None else STATUSES.get(value.strip().lower())


def _camera_row_problems(row: _CameraRow) -> list[Problem]:
    code = row.device_code
    codes = (code,) if code is not None else ()
    geom_problem = _geometry_problem(row.geometry, codes, row.feature, ("Point",))
    where = _location(row.geometry if geom_problem is None else None, row.feature)
    problems = [geom_problem] if geom_problem else []
    if code is None:
        problems.append(Problem("missing-device-code", codes, where, "the device code is missing"))
    elif len(code) > DEVICE_CODE_MAX or not code.isprintable():
        problems.append(
            Problem("bad-device-code", codes, where, f"a device code is at most {DEVICE_CODE_MAX} printable characters")
        )
    if row.name is None:
        problems.append(Problem("missing-name", codes, where, "the name is missing"))
    elif (name_problem := _name_problem(row.name, codes, where)) is not None:
        problems.append(name_problem)
    if camera_kind(row.kind) is None:
        problems.append(Problem("bad-kind", codes, where, f"kind {row.kind!r} is not one of {', '.join(KINDS)}"))
    if camera_status(row.status) is None:
        problems.append(
            Problem("bad-status", codes, where, f"status {row.status!r} is not one of {', '.join(STATUSES)}")
        )
    url = row.stream_url
    if url is not None and (not url.lower().startswith(STREAM_SCHEMES) or not url.isprintable() or " " in url):
        problems.append(
            Problem(
                "bad-stream-url",
                codes,
                where,
                f"stream URL {shown(url, 60)!r} is not an rtsp://, rtmp://, http:// or https:// URL",
            )
        )
    return problems


def _outside_territory(gdf: gpd.GeoDataFrame, territory: BaseGeometry | None) -> list[Problem]:
    points = gdf[[_geometry_problem(g, (), None, ("Point",)) is None for g in gdf.geometry]]
    if territory is None:
        return [
            Problem("outside-territory", (), "database", "the database holds no level-1 area: import the grid first")
        ]
    shapely.prepare(territory)
    outside = points[~shapely.covers(territory, points.geometry.to_numpy())]
    return [
        Problem(
            "outside-territory",
            (r.device_code,) if r.device_code is not None else (),
            _location(r.geometry, r.feature),
            "the point is not inside any level-1 area of the database",
        )
        for r in _camera_rows(outside)
    ]


def validate_cameras(gdf: gpd.GeoDataFrame, territory: BaseGeometry | None) -> list[Problem]:
    """Every problem of a camera file (from ``read_cameras``); ``territory`` is the level-1 union."""
    gdf = _with_none(gdf, ("device_code", "name", "kind", "status", "stream_url"))
    problems = [p for row in _camera_rows(gdf) for p in _camera_row_problems(row)]
    return problems + _duplicates(gdf, "device_code", "device code") + _outside_territory(gdf, territory)


def _territory(conn: psycopg.Connection[Any]) -> BaseGeometry | None:
    row = conn.execute(_TERRITORY).fetchone()
    return shapely.from_wkb(bytes(row[0])) if row and row[0] is not None else None


def _camera_counts(gdf: gpd.GeoDataFrame) -> dict[str, int]:
    kinds = pd.Series([camera_kind(k) for k in gdf.kind]).value_counts()
    return {str(k): int(n) for k, n in sorted(kinds.items())}


def import_cameras(
    dsn: str,
    path: str | Path,
    fields: CameraFields | None = None,
    options: ReadOptions | None = None,
    *,
    replace: bool = False,
    progress: bool = False,
    audit: AuditHook | None = None,
) -> ImportReport:
    """Read, judge and upsert a camera file in one transaction.

    Each camera's area_code becomes the smallest area holding it. The areas stay share-locked
    until commit, so the territory the points were judged against cannot change underneath.
    """
    gdf, warnings = read_cameras(path, fields, options)

    def judge(conn: psycopg.Connection[Any]) -> list[Problem]:
        return validate_cameras(gdf, _territory(conn))

    return _import(dsn, _CAMERAS, gdf, warnings, judge, replace=replace, progress=progress, audit=audit)


# --- one import, either kind ----------------------------------------------------------------------
@dataclass(frozen=True)
class _Target:
    """Where one kind of feature lands: its locks, its COPY through a temp table, its upsert."""

    what: str
    unit: str
    locks: tuple[str, ...]
    delete: str
    temp: str
    copy: str
    count_updates: str
    upsert: str
    camera_areas: str  # a camera's area depends on both tables: each import refreshes what it moved
    rows: Callable[[gpd.GeoDataFrame], Iterator[tuple[Any, ...]]]
    counts: Callable[[gpd.GeoDataFrame], dict[str, int]]


_AREAS = _Target(
    "areas",
    "area",
    (_LOCK_AREAS,),
    _DELETE_AREAS,
    _TEMP_AREAS,
    _COPY_AREAS,
    _COUNT_AREA_UPDATES,
    _UPSERT_AREAS,
    _ALL_CAMERA_AREAS,
    _area_copy_rows,
    _area_counts,
)
_CAMERAS = _Target(
    "cameras",
    "camera",
    (_LOCK_AREAS_SHARED, _LOCK_CAMERAS),
    "DELETE FROM cameras",
    _TEMP_CAMERAS,
    _COPY_CAMERAS,
    _COUNT_CAMERA_UPDATES,
    _UPSERT_CAMERAS,
    _IMPORTED_CAMERA_AREAS,
    _camera_copy_rows,
    _camera_counts,
)


def _import(
    dsn: str,
    target: _Target,
    gdf: gpd.GeoDataFrame,
    warnings: list[str],
    judge: Callable[[psycopg.Connection[Any]], list[Problem]],
    *,
    replace: bool,
    progress: bool,
    audit: AuditHook | None = None,
    delete_params: dict[str, Any] | None = None,
    finish: Callable[[psycopg.Connection[Any]], list[str]] | None = None,
) -> ImportReport:
    """Lock, judge under the lock, and write only a file without problems: all in one transaction
    (``audit``'s record of it included; ``finish``, run after the write, adds warnings)."""
    with psycopg.connect(dsn) as conn:
        for lock in target.locks:
            conn.execute(lock)
        problems = judge(conn)
        if problems:
            raise ImportRejected(problems, warnings)
        with conn.cursor() as cur:
            deleted = cur.execute(target.delete, delete_params).rowcount if replace else 0
            cur.execute(target.temp)
            copy_rows(cur, target.copy, target.rows(gdf), len(gdf), progress, target.unit)
            updated = _count(cur, target.count_updates)
            cur.execute(target.upsert)
            cur.execute(target.camera_areas)
        if finish is not None:
            warnings = [*warnings, *finish(conn)]
        report = ImportReport(target.what, len(gdf) - updated, updated, deleted, target.counts(gdf), warnings)
        if audit is not None:
            audit(conn, report)
    return report


# --- export ---------------------------------------------------------------------------------------
def export_driver(out_path: str | Path) -> str:
    """The GDAL driver for an export file name; ExportError for anything but .gpkg / .geojson."""
    suffix = Path(out_path).suffix.lower()
    if suffix not in EXPORT_DRIVERS:
        raise ExportError(f"cannot export to {Path(out_path).name!r}: the file name must end in .gpkg or .geojson")
    return EXPORT_DRIVERS[suffix]


def export_grids(dsn: str, level: int, out_path: str | Path) -> int:
    """Write one level of the grid (code, name, level, parent_code; EPSG:4326); returns the count.

    The output re-imports as it is: the same field names are the import's defaults.
    """
    driver = export_driver(out_path)
    if level not in (1, 2, 3, 4):
        raise ExportError(f"level must be 1, 2, 3 or 4, not {level!r}")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(_EXPORT_AREAS, {"level": level}).fetchall()
    if not rows:
        raise ExportError(f"the database holds no level-{level} areas: nothing to export")
    columns = {
        "code": pd.array([r[0] for r in rows], dtype="string"),
        "name": pd.array([r[1] for r in rows], dtype="string"),
        "level": pd.array([r[2] for r in rows], dtype="int32"),
        "parent_code": pd.array([r[3] for r in rows], dtype="string"),
    }
    frame = _frame(columns, shapely.from_wkb([bytes(r[4]) for r in rows]))
    out = Path(out_path)
    out.unlink(missing_ok=True)
    pyogrio.write_dataframe(frame, out, driver=driver, layer=f"areas_level{level}")
    return len(frame)

"""Importing a road network: an OpenStreetMap extract or any GDAL line file with a road class field.

Dispatch ranks vans by the time to drive to a case over ``roads`` (pgRouting's ``pgr_dijkstra`` over
``source``/``target``, the speed of each edge's ``kind``: geodata/sql/van_candidates.sql). Without
a territory's real roads it falls back on straight lines; this module brings them in.

The network's topology comes from the file itself: two lines meet where they share a vertex (as the
ways of an OpenStreetMap extract share their nodes, and as a road file drawn with snapping does).
Each line is cut at every vertex another line (or itself) also passes through, so every junction
becomes a node; crossings without a shared vertex are bridges and underpasses and stay apart. New
nodes that fall on the end of a road already in the database join it, so a second banner's roads
connect to the first's at the border.

Every class is mapped to one of the three kinds that carry a speed (settings YITU_DISPATCH_SPEED_*_KMH):
``trunk`` (国道, 省道, motorways, OSM primary and above), ``county`` (县道, 乡道, OSM secondary and
tertiary) and ``village`` (村道, OSM unclassified, residential, track, service). OSM ways that no
van drives (footway, path, cycleway, steps...) and ways without a highway tag are left out and
counted. As the other importers: every problem at once, naming the feature; nothing written unless
all is well; one transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import shapely
from pyproj import Geod

from geodata.gcj02 import out_of_china
from geodata.import_report import AuditHook, ImportRejected, ImportReport, Problem
from geodata.io import ReadOptions, copy_rows, geometries_wgs84, pick_fields, read_vector

OSM_SUFFIXES = (".osm", ".pbf")
MAX_FEATURES = 2_000_000  # a whole province's OSM roads are about a million ways
MAX_NAME = 200
ROUND = 7  # decimal degrees of a vertex when telling whether two lines share it: about 1 cm

KINDS = ("trunk", "county", "village")
# OpenStreetMap's highway=* values that a van drives on, by kind.
OSM_KINDS: dict[str, str] = {
    **dict.fromkeys(("motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link"), "trunk"),
    **dict.fromkeys(("secondary", "secondary_link", "tertiary", "tertiary_link"), "county"),
    **dict.fromkeys(("unclassified", "residential", "road", "track", "service", "living_street"), "village"),
}
# The Chinese road classes (公路技术等级/行政等级) and yitu's own kinds, for road files that are not OSM.
NAMED_KINDS: dict[str, str] = {
    **OSM_KINDS,
    **{k: k for k in KINDS},
    **dict.fromkeys(("高速", "高速公路", "国道", "省道", "一级公路", "干线", "主干道"), "trunk"),
    **dict.fromkeys(("县道", "乡道", "二级公路", "三级公路", "次干道"), "county"),
    **dict.fromkeys(("村道", "四级公路", "等外公路", "专用公路", "支路", "便道", "机耕路"), "village"),
}
CLASS_FIELDS = ("highway", "class", "fclass", "kind", "road_class", "等级", "道路等级", "公路等级", "类型")
NAME_FIELDS = ("name", "名称", "道路名称", "路名")

_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True)
class RoadFields:
    """The road file's fields as the user named them (--class-field, --name-field); None picks a default."""

    class_field: str | None = None
    name_field: str | None = None


@dataclass(frozen=True)
class Edge:
    """One piece of road between two junctions (or a junction and a dead end)."""

    kind: str
    name: str | None
    coords: np.ndarray  # (n, 2) lon/lat, n >= 2
    length_m: float


@dataclass
class RoadFile:
    """A road file as read and cut into edges, before the database is asked anything."""

    edges: list[Edge]
    warnings: list[str]
    features: int  # line features read
    skipped: Counter[str]  # features left out, by why (an OSM class no van drives, no class)


def is_osm(path: str | Path) -> bool:
    return Path(path).name.lower().endswith(OSM_SUFFIXES)


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = " ".join(str(value).split())
    return text or None


def _lines(geom: Any) -> list[np.ndarray]:
    """The coordinate arrays of a LineString or each part of a MultiLineString (2-D)."""
    parts = list(geom.geoms) if geom.geom_type == "MultiLineString" else [geom]
    return [np.asarray(p.coords)[:, :2] for p in parts if not p.is_empty]


def read_roads(path: str | Path, fields: RoadFields | None = None, options: ReadOptions | None = None) -> RoadFile:
    """Read, judge and cut a road file; ImportRejected lists every defect of the file at once."""
    fields = fields or RoadFields()
    options = options or ReadOptions()
    where = Path(path).name
    osm = is_osm(path)
    frame = read_vector(path, "lines" if osm else options.layer, options.encoding)
    problems: list[Problem] = []
    if len(frame) > MAX_FEATURES:
        raise ImportRejected(
            [Problem("too-large", (), where, f"{len(frame)} features; at most {MAX_FEATURES} in one import")]
        )
    chosen = pick_fields(
        frame,
        where,
        {
            "road class": ("highway" if osm else fields.class_field, CLASS_FIELDS, True),
            "road name": (fields.name_field, NAME_FIELDS, False),
        },
        {"road class": "--class-field", "road name": "--name-field"},
    )
    class_field, name_field = chosen["road class"], chosen["road name"]
    assert class_field is not None  # required: pick_fields refused the file otherwise

    arr, warnings = geometries_wgs84(frame, where, options.gcj02)  # a file without a CRS must be lon/lat

    classes = frame[class_field].to_numpy()
    names = frame[name_field].to_numpy() if name_field else np.full(len(frame), None, dtype=object)
    kept: list[tuple[str, str | None, np.ndarray]] = []
    skipped: Counter[str] = Counter()
    unknown_osm: Counter[str] = Counter()
    for i, (geom, cls, name) in enumerate(zip(arr, classes, names, strict=True)):
        feature = f"feature #{i + 1}"
        value = _text(cls)
        if value is None:
            if osm:
                skipped["no highway tag"] += 1
                continue
            problems.append(Problem("missing-class", (), feature, f"no road class in {class_field!r}"))
            continue
        kind = (OSM_KINDS if osm else NAMED_KINDS).get(value if osm else value.lower(), NAMED_KINDS.get(value))
        if kind is None:
            if osm:
                unknown_osm[value] += 1
                skipped[f"highway={value}"] += 1
                continue
            problems.append(
                Problem(
                    "bad-class",
                    (),
                    feature,
                    f"road class {value[:40]!r} is none of: {', '.join(sorted(set(NAMED_KINDS)))[:300]}",
                )
            )
            continue
        if geom is None or geom.is_empty:
            problems.append(Problem("no-geometry", (), feature, "empty or missing geometry"))
            continue
        if geom.geom_type not in ("LineString", "MultiLineString"):
            problems.append(Problem("not-a-line", (), feature, f"a {geom.geom_type}, not a line"))
            continue
        xy = shapely.get_coordinates(geom)
        if not np.isfinite(xy).all():
            problems.append(Problem("bad-geometry", (), feature, "coordinates that are not numbers"))
            continue
        if out_of_china(xy[:, 0], xy[:, 1]).any():
            lon, lat = xy[0]
            problems.append(Problem("outside-china", (), f"{feature} ({lon:.5f}, {lat:.5f})", "a road outside China"))
            continue
        text_name = _text(name)
        if text_name is not None and (len(text_name) > MAX_NAME or any(ord(ch) < 32 for ch in text_name)):
            problems.append(Problem("bad-name", (), feature, f"a road name must be 1-{MAX_NAME} printable characters"))
            continue
        for line in _lines(geom):
            kept.append((kind, text_name, line))
    if problems:
        raise ImportRejected(problems, warnings)
    if unknown_osm:
        listed = ", ".join(f"{k} ({n})" for k, n in unknown_osm.most_common(10))
        warnings.append(f"ways left out: highway values no van drives or yitu does not know: {listed}")
    edges = _cut(kept, warnings)
    if not edges:
        raise ImportRejected([Problem("no-roads", (), where, "no drivable roads in the file")], warnings)
    return RoadFile(edges, warnings, len(frame), skipped)


def _cut(lines: list[tuple[str, str | None, np.ndarray]], warnings: list[str]) -> list[Edge]:
    """Cut every line at each vertex that another line (or itself, elsewhere) passes through."""
    seen: Counter[tuple[float, float]] = Counter()
    rounded: list[list[tuple[float, float]]] = []
    for _, _, coords in lines:
        pts = [(round(float(x), ROUND), round(float(y), ROUND)) for x, y in coords]
        # consecutive repeats are one vertex (they would make zero-length pieces)
        pts = [p for j, p in enumerate(pts) if j == 0 or p != pts[j - 1]]
        rounded.append(pts)
        seen.update(pts)
        if pts:
            seen.update((pts[0], pts[-1]))  # ends are nodes even when nothing else touches them
    edges: list[Edge] = []
    degenerate = 0
    for (kind, name, _), pts in zip(lines, rounded, strict=True):
        if len(pts) < 2:
            degenerate += 1
            continue
        start = 0
        for j in range(1, len(pts)):
            if j == len(pts) - 1 or seen[pts[j]] > 1:
                piece = np.asarray(pts[start : j + 1])
                length = float(_GEOD.line_length(piece[:, 0], piece[:, 1]))
                if length > 0:
                    edges.append(Edge(kind, name, piece, length))
                else:
                    degenerate += 1
                start = j
    if degenerate:
        warnings.append(f"{degenerate} line piece(s) of zero length left out")
    return edges


@dataclass(frozen=True)
class Plan:
    """What writing the file would change: the check's answer and the import's report."""

    edges: int
    nodes_new: int
    nodes_joined: int  # new edges' ends that fall on the end of a road already there
    replaced: int
    by_kind: dict[str, int]


_LOCK = "LOCK TABLE roads IN SHARE ROW EXCLUSIVE MODE"
_EXISTING_NODES = """SELECT source, ST_X(ST_StartPoint(geom)), ST_Y(ST_StartPoint(geom)) FROM roads
UNION SELECT target, ST_X(ST_EndPoint(geom)), ST_Y(ST_EndPoint(geom)) FROM roads"""
_COPY = "COPY roads (kind, name, source, target, length_m, geom) FROM STDIN"


def _number(conn: psycopg.Connection[Any], edges: list[Edge], replace: bool) -> tuple[list[tuple[int, int]], Plan]:
    """Node ids for each edge's two ends: an existing road's end at the same place, or a new one."""
    existing: dict[tuple[float, float], int] = {}
    replaced = 0
    if replace:
        row = conn.execute("SELECT count(*) FROM roads").fetchone()
        replaced = int(row[0]) if row else 0
    else:
        for node, x, y in conn.execute(_EXISTING_NODES):
            existing.setdefault((round(x, ROUND), round(y, ROUND)), int(node))
    next_id = max(existing.values(), default=0) + 1
    ids: dict[tuple[float, float], int] = {}
    joined: set[int] = set()
    ends: list[tuple[int, int]] = []
    for edge in edges:
        pair = []
        for x, y in (edge.coords[0], edge.coords[-1]):
            key = (float(x), float(y))
            node = ids.get(key)
            if node is None:
                node = existing.get(key)
                if node is None:
                    node, next_id = next_id, next_id + 1
                else:
                    joined.add(node)
                ids[key] = node
            pair.append(node)
        ends.append((pair[0], pair[1]))
    by_kind = dict(sorted(Counter(e.kind for e in edges).items()))
    return ends, Plan(len(edges), len(ids) - len(joined), len(joined), replaced, by_kind)


def _rows(edges: list[Edge], ends: list[tuple[int, int]]) -> Iterator[tuple[Any, ...]]:
    for edge, (source, target) in zip(edges, ends, strict=True):
        wkb = shapely.to_wkb(shapely.LineString(edge.coords), hex=True, include_srid=True, flavor="extended")
        yield edge.kind, edge.name, source, target, edge.length_m, wkb


def import_roads(
    dsn: str,
    path: str | Path,
    fields: RoadFields | None = None,
    options: ReadOptions | None = None,
    *,
    replace: bool = False,
    check: bool = False,
    progress: bool = False,
    audit: AuditHook | None = None,
) -> ImportReport:
    """Read and cut the file, then (unless ``check``) write its edges in one transaction.

    ``replace`` swaps the whole network for the file's; otherwise the file's roads are added and
    joined to those already there where their ends meet. The report's counts say what was (or with
    ``check``, would be) written.
    """
    road_file = read_roads(path, fields, options)
    edges = road_file.edges
    with psycopg.connect(dsn) as conn:
        conn.execute(_LOCK)
        ends, plan = _number(conn, edges, replace)
        counts = {**plan.by_kind, "nodes new": plan.nodes_new, "joined to roads there": plan.nodes_joined}
        counts.update({f"left out ({why})": n for why, n in sorted(road_file.skipped.items())})
        report = ImportReport("roads", plan.edges, 0, plan.replaced, counts, road_file.warnings)
        if check:
            conn.rollback()
            return report
        with conn.cursor() as cur:
            if replace:
                cur.execute("DELETE FROM roads")
            copy_rows(cur, _COPY, _rows(edges, ends), len(edges), progress, "edge")
        conn.execute("ANALYZE roads")
        if audit is not None:
            audit(conn, report)
    return report

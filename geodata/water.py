"""Importing water for the own base map (geodata/basemap.py): rivers, canals, lakes, reservoirs.

Nothing but the base map reads ``water``: it is what a map needs besides roads and places to be
recognised at a glance (the Dune river, the reservoirs of the steppe). From an OpenStreetMap extract
(``waterway=river|stream|canal|drain|ditch`` lines; ``natural=water`` and ``natural=wetland`` areas,
the ``water=*`` tag telling a reservoir or a pond from a lake) or any GDAL file with a kind field
(English or Chinese: 河流, 水库, 湖泊, …). As the other importers: every problem at once, naming the
feature; nothing written unless all is well; one transaction. An outline that is not valid is
repaired (``make_valid``) and counted in a warning: hand-drawn lakes often touch themselves.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import shapely

from geodata.gcj02 import out_of_china
from geodata.import_report import AuditHook, ImportRejected, ImportReport, Problem
from geodata.io import ReadOptions, copy_rows, geometries_wgs84, pick_fields, read_vector
from geodata.roads import NAME_FIELDS, _text, is_osm

KINDS = ("river", "stream", "canal", "lake", "reservoir", "pond", "wetland")
NAMED_KINDS: dict[str, str] = {
    **{k: k for k in KINDS},
    **dict.fromkeys(("河", "河流", "江", "干流", "riverbank"), "river"),
    **dict.fromkeys(("溪", "溪流", "沟", "支流", "brook", "drain", "ditch", "排水沟"), "stream"),
    **dict.fromkeys(("渠", "水渠", "干渠", "运河"), "canal"),
    **dict.fromkeys(("湖", "湖泊", "海子", "淖尔", "water", "oxbow", "lagoon"), "lake"),
    **dict.fromkeys(("水库", "basin", "reservoir_covered"), "reservoir"),
    **dict.fromkeys(("塘", "池塘", "坑塘", "fishpond"), "pond"),
    **dict.fromkeys(("湿地", "沼泽", "marsh", "swamp", "bog"), "wetland"),
}
KIND_FIELDS = ("kind", "class", "fclass", "type", "water", "waterway", "natural", "类型", "水系类型", "类别")
MAX_FEATURES = 500_000
MAX_NAME = 200
_OTHER_TAG = re.compile(r'"(?P<k>[^"]+)"=>"(?P<v>[^"]*)"')
_COPY = "COPY water (kind, name, geom) FROM STDIN"
_LOCK = "LOCK TABLE water IN SHARE ROW EXCLUSIVE MODE"


@dataclass(frozen=True)
class WaterFields:
    """The water file's fields as the user named them (--kind-field, --name-field); None picks a default."""

    kind_field: str | None = None
    name_field: str | None = None


@dataclass
class WaterFile:
    rows: list[tuple[str, str | None, shapely.Geometry]]
    warnings: list[str]
    skipped: Counter[str]


def _osm_kind(row: Mapping[Any, Any]) -> str | None:
    """The kind of an OSM feature, from its waterway / natural / water tags."""
    tags = {m["k"]: m["v"] for m in _OTHER_TAG.finditer(str(row.get("other_tags") or ""))}
    waterway = _text(row.get("waterway"))
    if waterway is not None:
        return NAMED_KINDS.get(waterway)
    natural = _text(row.get("natural")) or tags.get("natural")
    if natural == "wetland":
        return "wetland"
    if natural == "water" or tags.get("water") or row.get("landuse") in ("reservoir", "basin"):
        return NAMED_KINDS.get(tags.get("water") or str(row.get("landuse") or ""), "lake")
    return None


def _read_osm(path: Path, encoding: str | None) -> list[tuple[int, str | None, str | None, Any]]:
    """(feature number, kind, name, geometry) of an OSM extract's water ways and areas."""
    out: list[tuple[int, str | None, str | None, Any]] = []
    n = 0
    for layer in ("lines", "multipolygons"):
        frame = read_vector(path, layer, encoding)
        for row, geom in zip(frame.drop(columns=frame.geometry.name).to_dict("records"), frame.geometry, strict=True):
            n += 1
            out.append((n, _osm_kind(row), _text(row.get("name")), geom))
    return out


def read_water(path: str | Path, fields: WaterFields | None = None, options: ReadOptions | None = None) -> WaterFile:
    """Read and judge a water file; ImportRejected lists every defect of the file at once."""
    fields = fields or WaterFields()
    options = options or ReadOptions()
    path = Path(path)
    where = path.name
    problems: list[Problem] = []
    warnings: list[str] = []
    skipped: Counter[str] = Counter()
    osm = is_osm(path)
    if osm:
        features = _read_osm(path, options.encoding)  # OSM is WGS-84 lon/lat, 2-D
    else:
        frame = read_vector(path, options.layer, options.encoding)
        chosen = pick_fields(
            frame,
            where,
            {"kind": (fields.kind_field, KIND_FIELDS, True), "name": (fields.name_field, NAME_FIELDS, False)},
            {"kind": "--kind-field", "name": "--name-field"},
        )
        kind_field, name_field = chosen["kind"], chosen["name"]
        assert kind_field is not None  # required: pick_fields refused the file otherwise
        # as every importer: reprojected, heights and measures dropped, GCJ-02 undone, each said
        geoms, changed = geometries_wgs84(frame, where, options.gcj02)
        warnings += changed
        kinds = frame[kind_field].to_numpy()
        names = frame[name_field].to_numpy() if name_field else np.full(len(frame), None, dtype=object)
        features = []
        for i, (value, name, geom) in enumerate(zip(kinds, names, geoms, strict=True)):
            text = _text(value)
            kind = NAMED_KINDS.get(text.lower() if text else "", NAMED_KINDS.get(text or ""))
            if text is not None and kind is None:
                problems.append(
                    Problem(
                        "bad-kind",
                        (),
                        f"feature #{i + 1}",
                        f"kind {text[:40]!r} is none of: {', '.join(sorted(NAMED_KINDS))[:300]}",
                    )
                )
                continue
            features.append((i + 1, kind, _text(name), geom))
    if len(features) > MAX_FEATURES:
        raise ImportRejected([Problem("too-large", (), where, f"{len(features)} features; at most {MAX_FEATURES}")])
    rows, repaired = _judge(features, osm, problems, skipped)
    if problems:
        raise ImportRejected(problems, warnings)
    if repaired:
        warnings.append(f"{repaired} outline(s) that were not valid geometry repaired")
    if not rows:
        raise ImportRejected(
            [Problem("no-water", (), where, "no rivers, canals, lakes or reservoirs in the file")], warnings
        )
    return WaterFile(rows, warnings, skipped)


def _judge(
    features: list[tuple[int, str | None, str | None, Any]], osm: bool, problems: list[Problem], skipped: Counter[str]
) -> tuple[list[tuple[str, str | None, shapely.Geometry]], int]:
    rows: list[tuple[str, str | None, shapely.Geometry]] = []
    repaired = 0
    for n, kind, name, raw in features:
        feature = f"feature #{n}"
        if kind is None:
            if osm:
                skipped["not water"] += 1
                continue
            problems.append(Problem("missing-kind", (), feature, "no kind of water"))
            continue
        if raw is None or raw.is_empty:
            problems.append(Problem("no-geometry", (), feature, "empty or missing geometry"))
            continue
        geom = raw
        if geom.geom_type not in ("LineString", "MultiLineString", "Polygon", "MultiPolygon"):
            problems.append(Problem("bad-geometry", (), feature, f"a {geom.geom_type}, not a line or an area"))
            continue
        xy = shapely.get_coordinates(geom)
        if not np.isfinite(xy).all():
            problems.append(Problem("bad-geometry", (), feature, "coordinates that are not numbers"))
            continue
        if out_of_china(xy[:, 0], xy[:, 1]).any():
            lon, lat = xy[0]
            problems.append(Problem("outside-china", (), f"{feature} ({lon:.5f}, {lat:.5f})", "water outside China"))
            continue
        if name is not None and (len(name) > MAX_NAME or any(ord(ch) < 32 for ch in name)):
            problems.append(Problem("bad-name", (), feature, f"a name must be 1-{MAX_NAME} printable characters"))
            continue
        if not geom.is_valid:
            fixed = shapely.make_valid(geom)
            kept = [g for g in getattr(fixed, "geoms", [fixed]) if g.geom_type in ("Polygon", "MultiPolygon")]
            if not kept:
                problems.append(Problem("bad-geometry", (), feature, f"not valid: {shapely.is_valid_reason(geom)}"))
                continue
            geom = shapely.union_all(kept)
            repaired += 1
        rows.append((kind, name, geom))
    return rows, repaired


def import_water(
    dsn: str,
    path: str | Path,
    fields: WaterFields | None = None,
    options: ReadOptions | None = None,
    *,
    replace: bool = False,
    check: bool = False,
    progress: bool = False,
    audit: AuditHook | None = None,
) -> ImportReport:
    """Read and judge the file, then (unless ``check``) write it in one transaction; ``replace``
    drops the water imported before. The base map draws it at once (036_basemap.sql)."""
    water = read_water(path, fields, options)
    counts: dict[str, int] = dict(Counter(kind for kind, _, _ in water.rows).most_common())
    counts.update({f"left out ({why})": n for why, n in sorted(water.skipped.items())})
    with psycopg.connect(dsn) as conn:
        conn.execute(_LOCK)
        row = conn.execute("SELECT count(*) FROM water").fetchone()
        replaced = int(row[0]) if replace and row else 0
        report = ImportReport("water", len(water.rows), 0, replaced, counts, water.warnings)
        if check:
            conn.rollback()
            return report
        with conn.cursor() as cur:
            if replace:
                cur.execute("DELETE FROM water")
            rows = (
                (kind, name, shapely.to_wkb(shapely.set_srid(geom, 4326), hex=True, include_srid=True))
                for kind, name, geom in water.rows
            )
            copy_rows(cur, _COPY, rows, len(water.rows), progress, "feature")
        conn.execute("ANALYZE water")
        if audit is not None:
            audit(conn, report)
    return report

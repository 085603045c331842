"""The seeded demo territory: counts, exact tiling, plausible resources and case history."""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import psycopg
import pytest
import shapely
from shapely import wkb

from geodata import vendored
from geodata.demo.seed import SCALES, SeedError, build_demo, seed_demo
from geodata.demo.territory import atom_adjacency

from .conftest import DEMO_AS_OF


def _areas(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT code, name, level, parent_code, ST_AsBinary(geom) FROM areas ORDER BY code"
        ).fetchall()


def test_counts_per_level_and_real_names(demo_dsn: str) -> None:
    rows = _areas(demo_dsn)
    per_level = defaultdict(int)
    for _code, _name, level, _parent, _g in rows:
        per_level[level] += 1
    assert dict(per_level) == {1: 1, 2: 4, 3: 85, 4: 401}
    names = {code: name for code, name, *_ in rows}
    assert names["150623"] == "鄂托克前旗"
    assert [names[c] for c in ("150623100", "150623101", "150623102", "150623103")] == [
        "敖勒召其镇",
        "上海庙镇",
        "城川镇",
        "昂素镇",
    ]
    real = {d.code: d.name for d in vendored.load_divisions("150623") if d.level == 3}
    assert {c: n for c, n in names.items() if len(c) == 12} == real


def test_codes_fit_levels_and_cells_are_numbered_from_001(demo_dsn: str) -> None:
    rows = _areas(demo_dsn)
    seqs: dict[str, list[int]] = defaultdict(list)
    for code, _name, level, parent, _g in rows:
        assert len(code) == 3 + 3 * level and code.isdigit()
        if level > 1:
            assert code.startswith(parent) and len(parent) == len(code) - 3
        if level == 4:
            seqs[parent].append(int(code[-3:]))
    assert all(sorted(s) == list(range(1, len(s) + 1)) for s in seqs.values())
    assert min(len(s) for s in seqs.values()) >= 2


def test_children_tile_their_parent_exactly(demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        worst = conn.execute(
            """SELECT max(abs(s.children - ST_Area(p.geom::geography)) / ST_Area(p.geom::geography))
               FROM areas p JOIN (SELECT parent_code, sum(ST_Area(geom::geography)) AS children
                                  FROM areas GROUP BY parent_code) s ON s.parent_code = p.code"""
        ).fetchone()[0]
        overlaps = conn.execute(
            """SELECT count(*) FROM areas a JOIN areas b
                 ON a.parent_code = b.parent_code AND a.code < b.code AND a.geom && b.geom
               WHERE ST_Relate(a.geom, b.geom, '2********')"""
        ).fetchone()[0]
        invalid = conn.execute("SELECT count(*) FROM areas WHERE NOT ST_IsValid(geom)").fetchone()[0]
        multi = conn.execute("SELECT count(*) FROM areas WHERE level > 1 AND ST_NumGeometries(geom) > 1").fetchone()[0]
        uncovered = conn.execute(
            """SELECT max(ST_Area(ST_Difference(p.geom, u.g)::geography))
               FROM areas p JOIN (SELECT parent_code, ST_Union(geom) AS g FROM areas GROUP BY parent_code) u
                 ON u.parent_code = p.code"""
        ).fetchone()[0]
    assert worst < 1e-6
    assert overlaps == 0
    assert invalid == 0
    assert multi == 0  # every town, village and cell is one piece
    assert uncovered < 1.0  # square metres


def test_banner_is_the_vendored_boundary(demo_dsn: str) -> None:
    banner = wkb.loads(_areas(demo_dsn)[0][4])
    real = vendored.load_boundary("150623")
    assert shapely.symmetric_difference(banner, real).area / real.area < 1e-9


def test_cells_are_numbered_north_to_south(demo_dsn: str) -> None:
    cells: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for code, _n, level, parent, g in _areas(demo_dsn):
        if level == 4:
            cells[parent].append((int(code[-3:]), wkb.loads(g).centroid.y))
    checked = north_first = 0
    for seq_lat in cells.values():
        if len(seq_lat) >= 4:
            seq_lat.sort()
            checked += 1
            north_first += seq_lat[0][1] > seq_lat[-1][1]
    assert checked > 20 and north_first / checked > 0.9


def test_resources(demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        q = lambda s: conn.execute(s).fetchall()  # noqa: E731
        assert q("SELECT count(*) FROM cameras") == [(4000,)]
        kinds = dict(q("SELECT kind, count(*) FROM cameras GROUP BY kind"))
        assert set(kinds) == {"bullet", "dome", "mini_dome", "checkpoint"}
        status = dict(q("SELECT status, count(*) FROM cameras GROUP BY status"))
        assert 0.01 < status["offline"] / 4000 < 0.15
        assert q("SELECT count(*) FROM cameras WHERE area_code IS NULL OR length(area_code) <> 15") == [(0,)]
        assert q("SELECT count(*) FROM cameras WHERE device_code !~ '^[0-9]{20}$' OR stream_url !~ '^rtsp://'") == [
            (0,)
        ]
        assert q("SELECT level, count(*) FROM mediation_centers GROUP BY level ORDER BY level") == [
            (1, 1),
            (2, 4),
            (3, 85),
        ]
        vans = q("""SELECT v.id, ST_Equals(v.geom, c.geom)
                    FROM vans v JOIN mediation_centers c ON c.id = v.base_center_id
                    WHERE c.level = 1 ORDER BY v.id""")
        assert vans == [("V01", True), ("V02", True), ("V03", True), ("V04", True)]
        edges = q("SELECT source, target FROM roads")
    nodes = {n for e in edges for n in e}
    assert len(nodes) == 4 + 85  # every seat and village is on the network
    reach = {0}
    frontier = [0]
    adj = defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    while frontier:
        for n in adj[frontier.pop()]:
            if n not in reach:
                reach.add(n)
                frontier.append(n)
    assert reach == nodes  # one connected network


def test_case_history_has_the_domain_shape(demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        q = lambda s, *a: conn.execute(s, a).fetchall()  # noqa: E731
        total = q("SELECT count(*) FROM cases")[0][0]
        assert total == SCALES["banner"].cases + SCALES["banner"].open_cases
        resolved = q("""SELECT avg((outcome IN ('mediated', 'judicial_confirmation'))::int)
                        FROM cases WHERE outcome IS NOT NULL""")[0][0]
        assert 0.91 < resolved < 0.95
        levels = dict(q("SELECT level, count(*) FROM cases WHERE step IN ('closed', 'evaluated') GROUP BY level"))
        closed = sum(levels.values())
        assert levels["grid"] / closed > 0.6  # most settled inside the grid
        assert (levels["grid"] + levels["village"]) / closed > 0.85  # 小事不出村
        assert levels["banner"] / closed < 0.06
        steps = dict(q("SELECT step, count(*) FROM cases GROUP BY step"))
        for step in ("reported", "accepted", "dispatched", "handling", "closed", "evaluated"):
            assert steps.get(step, 0) >= 30, step
        open_total, overdue = q(
            """SELECT count(*), count(*) FILTER (WHERE deadline < %s) FROM cases
                                   WHERE step IN ('reported', 'accepted', 'dispatched', 'handling')""",
            DEMO_AS_OF,
        )[0]
        assert 0.05 < overdue / open_total < 0.35
        weekday, weekend = (
            q("""SELECT count(*) FILTER (WHERE extract(isodow FROM reported_at AT TIME ZONE 'Asia/Shanghai') < 6)
                              / 5.0::float8,
                        count(*) FILTER (WHERE extract(isodow FROM reported_at AT TIME ZONE 'Asia/Shanghai') >= 6)
                              / 2.0::float8
                   FROM cases""")[0]
        )
        assert weekend < 0.8 * weekday  # quiet weekends
        codes = [r[0] for r in q("SELECT code FROM cases")]
        assert len(set(codes)) == len(codes) and all(re.fullmatch(r"150623-\d{8}-\d{6}", c) for c in codes)
        assert q("SELECT count(*) FROM cases WHERE reported_at > %s", DEMO_AS_OF) == [(0,)]
        # every case has its timeline, starting with the report
        assert q("""SELECT count(*) FROM cases c WHERE NOT EXISTS
                    (SELECT 1 FROM case_events e WHERE e.case_id = c.id AND e.action = 'report')""") == [(0,)]
        # the grid chain columns agree with the cell the point lies in
        assert q("""SELECT count(*) FROM cases c JOIN areas a ON a.code = c.grid_code
                    WHERE NOT ST_Intersects(a.geom, c.geom) OR c.village_code <> a.parent_code""") == [(0,)]


def test_seed_is_deterministic_for_a_seed() -> None:
    a = build_demo(SCALES["banner"], seed=3)
    b = build_demo(SCALES["banner"], seed=3)
    c = build_demo(SCALES["banner"], seed=4)
    geoms = lambda d: [shapely.to_wkb(x.geom) for x in d.territory.areas]  # noqa: E731
    assert geoms(a) == geoms(b)
    assert [(x.device_code, x.lon, x.lat) for x in a.cameras] == [(x.device_code, x.lon, x.lat) for x in b.cameras]
    assert geoms(a) != geoms(c)

    import numpy as np

    from geodata.demo.cases import generate_cases

    def rows(demo):  # type: ignore[no-untyped-def]
        return list(generate_cases(demo.territory, 300, 40, DEMO_AS_OF, np.random.default_rng([3, 2])))

    assert rows(a) == rows(b)


def test_reseeding_needs_replace_and_is_all_or_nothing(demo_db: str) -> None:
    with pytest.raises(SeedError, match="--replace"):
        seed_demo(demo_db, "banner", seed=1, as_of=DEMO_AS_OF, cases=10)
    with psycopg.connect(demo_db) as conn:
        assert (
            conn.execute("SELECT count(*) FROM cases").fetchone()[0]
            == SCALES["banner"].cases + SCALES["banner"].open_cases
        )
    counts = seed_demo(demo_db, "banner", seed=1, as_of=DEMO_AS_OF, cases=100, cameras=50, replace=True)
    assert counts["cases"] == 100 + SCALES["banner"].open_cases and counts["cameras"] == 50
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT count(*) FROM cases").fetchone()[0] == counts["cases"]
        assert conn.execute("SELECT count(*) FROM areas").fetchone()[0] == 491


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_demo_territory_round_trips_through_export_and_import(
    demo_dsn: str, db_url: str, tmp_path, suffix: str
) -> None:  # type: ignore[no-untyped-def]
    from geodata.io import export_grids, import_grids

    for level in (1, 2, 3, 4):
        out = tmp_path / f"level{level}{suffix}"
        assert export_grids(demo_dsn, level, out) == {1: 1, 2: 4, 3: 85, 4: 401}[level]
        import_grids(db_url, out)  # levels imported one after the other, each judged with what is there
    query = "SELECT code, name, level, parent_code, ST_AsBinary(geom) FROM areas ORDER BY code"
    with psycopg.connect(demo_dsn) as a, psycopg.connect(db_url) as b:
        before = a.execute(query).fetchall()
        after = b.execute(query).fetchall()
    assert [r[:4] for r in after] == [r[:4] for r in before]
    worst = max(
        shapely.symmetric_difference(wkb.loads(x[4]), wkb.loads(y[4])).area / wkb.loads(x[4]).area
        for x, y in zip(before, after)
    )
    assert worst < 1e-9


def test_atoms_are_neighbours_only_across_an_edge() -> None:
    """A 2 × 2 block of squares and one beside it sharing half an edge, and one touching a corner
    only: neighbours are those whose outlines share a line (here as short as 1 mm), never a point."""
    sq = lambda x, y, size=1.0: shapely.box(x, y, x + size, y + size)  # noqa: E731
    atoms = np.array([sq(0, 0), sq(1, 0), sq(0, 1), sq(1, 1), sq(2, 0.5), sq(2, 2), sq(0.5, 2, 0.001)], dtype=object)
    # 0 1 / 2 3 the block; 4 beside 1 and 3 (half an edge each); 5 touches 3's corner; 6 a 1 mm square on 2's top
    assert atom_adjacency(atoms) == [{1, 2}, {0, 3, 4}, {0, 3, 6}, {1, 2, 4}, {1, 3}, set(), {2}]

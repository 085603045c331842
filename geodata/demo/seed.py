"""``yitu seed demo``: build the demo territory and write it in one transaction.

Deterministic for a seed and an ``as_of`` time: the same pair gives the same rows. The banner
scale is Otog Front Banner (real boundary and NBS names/codes, synthetic geometry below level 1);
the city scale is a Dalad-sized territory for benchmarks; the league scale is the whole of Ordos
(鄂尔多斯市, 150600): its nine banners and districts, each built as the banner scale is, under the
league root (geodata/league.py).
"""

from __future__ import annotations

import functools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Never

import numpy as np
import psycopg
import shapely
from psycopg import sql
from psycopg.types.json import Jsonb
from pyproj import Geod
from shapely.geometry import MultiPolygon
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from geodata import counters, deadlines, league, vendored
from geodata.demo import cases as case_gen
from geodata.demo import resources
from geodata.demo import roster as roster_gen
from geodata.demo.territory import Territory, TownSpec, VillageSpec, build_territory
from geodata.queries import query
from geodata.workflow import DeadlineRules, Rules

log = logging.getLogger("yitu.seed")

DEMO_TABLES = (
    "mediators",
    "units",
    "case_events",
    "cases",
    "van_positions",
    "vans",
    "mediation_centers",
    "cameras",
    "roads",
    "water",  # the base map's (036_basemap.sql): another territory's rivers would not fit
    "areas",
)


@dataclass(frozen=True)
class Scale:
    name: str
    banner_code: str
    cells: int
    cameras: int
    cases: int
    open_cases: int
    vans: int = 4
    days: int = 365  # the history's span before ``as_of``


SCALES = {
    "banner": Scale("banner", "150623", cells=401, cameras=4000, cases=6000, open_cases=320),
    "city": Scale("city", "150621", cells=1700, cameras=17000, cases=1_000_000, open_cases=2400),
    # the league's figures are totals, shared among its banners by their village-level units: five
    # million cases over three years, of which a few thousand open today
    "league": Scale("league", "1506", cells=0, cameras=9000, cases=4_996_000, open_cases=4000, vans=18, days=3 * 365),
}
LEAGUE = ("150600", "鄂尔多斯市")
LEAGUE_KM2_PER_CELL = 20.0  # a league banner's cells: one per 20 km², at least two per village
# The seats of the league's banners and districts (their governments, from public maps), around which
# the subdistricts (街道) lie; a seat outside its outline falls back to a point inside it.
LEAGUE_SEATS = {
    "150602": (109.98, 39.82),  # 东胜区
    "150603": (109.79, 39.61),  # 康巴什区
    "150621": (110.03, 40.39),  # 达拉特旗 树林召
    "150622": (111.24, 39.86),  # 准格尔旗 薛家湾
    "150623": (107.48, 38.18),  # 鄂托克前旗 敖勒召其
    "150624": (107.98, 39.10),  # 鄂托克旗 乌兰
    "150625": (108.73, 39.84),  # 杭锦旗 锡尼
    "150626": (108.84, 38.59),  # 乌审旗 嘎鲁图
    "150627": (109.74, 39.58),  # 伊金霍洛旗 阿勒腾席热
}

# Approximate seats of Otog Front's towns (敖勒召其镇 from DOMAIN.md; the others placed where the
# towns lie on public maps: 上海庙 in the west, 城川 in the south-east, 昂素 in the north-east).
OTOG_SEATS = {
    "150623100": (107.48, 38.18),
    "150623101": (106.96, 38.27),
    "150623102": (108.27, 37.73),
    "150623103": (107.93, 38.40),
}


# Dalad's seat (DOMAIN.md): its subdistricts (街道, town codes 001–099) ring it; the towns and the
# sumu are spread over the banner by the generator.
DALAD_SEAT = (110.03, 40.39)
DALAD_KM2 = 8190.0  # the banner the subdistricts' weight was tuned on


def _town(
    code: str,
    name: str,
    seat: tuple[float, float] | None,
    index: int,
    centre: tuple[float, float] = DALAD_SEAT,
    small: float = 1.0,
) -> TownSpec:
    """``small``: how much less a subdistrict gives way in a banner smaller than Dalad (1: as in Dalad)."""
    if seat is None and int(code[-3:]) < 100:  # a subdistrict: urban, small, around the seat
        ring = index // 6  # six to a ring (Dalad has six); a district with more rings them outwards
        angle = index * 1.047 + ring * 0.524
        seat = (centre[0] + 0.05 * (1 + ring) * np.cos(angle), centre[1] + 0.035 * (1 + ring) * np.sin(angle))
        return TownSpec(code, name, seat, weight=-6000.0 * small)
    return TownSpec(code, name, seat)


class SeedError(RuntimeError):
    """The demo cannot be seeded as asked (e.g. the database already holds a territory)."""


@dataclass
class Demo:
    territory: Territory
    roads: list[resources.Road]
    cameras: list[resources.Camera]
    centres: list[resources.Centre]
    vans: list[resources.VanSpec]


def _source(scale: Scale) -> tuple[MultiPolygon, vendored.Division, list[TownSpec], list[VillageSpec]]:
    """The banner's vendored outline, its own division, its towns and villages."""
    return _source_of(scale.banner_code)


def _source_of(
    code: str, centre: tuple[float, float] = DALAD_SEAT, small: float = 1.0
) -> tuple[MultiPolygon, vendored.Division, list[TownSpec], list[VillageSpec]]:
    boundary = vendored.load_boundary(code)
    divisions = vendored.load_divisions(code)
    banner = next(d for d in divisions if d.level == 1)
    seats = OTOG_SEATS if code == "150623" else {}
    towns = [
        _town(d.code, d.name, seats.get(d.code), i, centre, small)
        for i, d in enumerate(d for d in divisions if d.level == 2)
    ]
    villages = [VillageSpec(d.code, d.name, d.parent_code) for d in divisions if d.level == 3 and d.parent_code]
    return boundary, banner, towns, villages


def build_demo(scale: Scale, seed: int, progress: bool = False) -> Demo:
    return _build(_source(scale), scale, seed, progress)


def _build(
    source: tuple[MultiPolygon, vendored.Division, list[TownSpec], list[VillageSpec]],
    scale: Scale,
    seed: int | list[int],
    progress: bool,
    first_van: int = 1,
) -> Demo:
    rng = np.random.default_rng(seed)
    boundary, banner, towns, villages = source
    bar = tqdm(total=len(villages) + 3, desc=f"territory {banner.name}", unit="step", disable=not progress, leave=False)
    territory = build_territory(boundary, banner.code, banner.name, towns, villages, scale.cells, rng, progress=bar)
    bar.close()
    roads, _nodes = resources.make_roads(territory, rng)
    cameras = resources.make_cameras(territory, roads, scale.cameras, rng, banner.code)
    centres = resources.make_centres(territory, banner.name, rng)
    return Demo(territory, roads, cameras, centres, resources.make_vans(scale.vans, first_van))


def league_parts(total: Scale) -> list[tuple[str, Scale]]:
    """The league's banners and each one's share of ``total`` (by its village-level units: where people
    live), in code order; cells by area."""
    codes = sorted(vendored.VENDORED)
    villages = {c: sum(d.level == 3 for d in vendored.load_divisions(c)) for c in codes}
    km2 = {c: _km2(vendored.load_boundary(c)) for c in codes}
    whole = sum(villages.values())

    def share(n: int, c: str) -> int:
        return max(1, round(n * villages[c] / whole))

    return [
        (
            c,
            Scale(
                "league",
                c,
                cells=max(2 * villages[c], round(km2[c] / LEAGUE_KM2_PER_CELL)),
                cameras=share(total.cameras, c),
                cases=share(total.cases, c),
                open_cases=share(total.open_cases, c),
                vans=2,
                days=total.days,
            ),
        )
        for c in codes
    ]


def _km2(geom: BaseGeometry) -> float:
    return abs(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0]) / 1e6


def _seat(code: str) -> tuple[float, float]:
    """The banner's seat, or a point inside its outline when the table's is not."""
    seat = LEAGUE_SEATS.get(code)
    outline = vendored.load_boundary(code)
    if seat is None or not outline.contains(shapely.Point(seat)):
        p = outline.representative_point()
        return (p.x, p.y)
    return seat


def build_league(total: Scale, seed: int, progress: bool = False) -> list[tuple[Scale, Demo]]:
    """Each banner of the league built as a banner demo (its own random stream), vans numbered on."""
    out: list[tuple[Scale, Demo]] = []
    for i, (code, part) in enumerate(league_parts(total)):
        small = min(1.0, math.sqrt(_km2(vendored.load_boundary(code)) / DALAD_KM2))
        source = _source_of(code, _seat(code), small)
        demo = _build(source, part, [seed, 10 + i], progress, first_van=1 + 2 * i)
        out.append((part, demo))
    return out


def _ewkb(geom: BaseGeometry) -> str:
    return shapely.to_wkb(shapely.set_srid(geom, 4326), hex=True, include_srid=True)


def _copy(cur: psycopg.Cursor, statement: str, rows: Iterable[tuple[object, ...]]) -> int:
    n = 0
    with cur.copy(statement) as cp:
        for row in rows:
            cp.write_row(row)
            n += 1
    return n


def database_is_empty(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT (SELECT count(*) FROM areas) + (SELECT count(*) FROM cases)").fetchone()
    return row is not None and row[0] == 0


# The caller's record of a seeding, in its transaction: (connection, row counts, whether data was wiped).
SeedAudit = Callable[[psycopg.Connection, dict[str, int], bool], None]


def seed_demo(
    dsn: str,
    scale_name: str = "banner",
    seed: int = 1,
    as_of: datetime | None = None,
    replace: bool = False,
    progress: bool = False,
    cameras: int | None = None,
    cases: int | None = None,
    rules: Rules | None = None,
    audit: SeedAudit | None = None,
) -> dict[str, int]:
    """Generate and write the demo; return row counts per table. One transaction: all or nothing
    (from AFTER_COMMIT_CASES cases on, the counters and the search's indexes follow the commit).

    The cases' deadlines follow ``rules`` (the workflow's defaults unless given: pass the running
    app's, services.deadlines.deadline_rules, so the demo agrees with the API and the sweep), with
    the league's and each banner's own rules over them (geodata/deadlines.py).
    ``audit`` is called in the transaction once everything is written (the CLI's admin_events row).

    ``replace`` wipes the case history too, which is append-only for everyone (016_audit.sql): the
    owner opens the audit's maintenance path for the TRUNCATE alone, in this transaction."""
    base = SCALES[scale_name]
    scale = Scale(
        base.name,
        base.banner_code,
        base.cells,
        cameras if cameras is not None else base.cameras,
        cases if cases is not None else base.cases,
        base.open_cases,
        base.vans,
        base.days,
    )
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    t_start = time.perf_counter()
    log.info("building demo scale=%s seed=%d as_of=%s", scale.name, seed, as_of.isoformat())
    parts = (
        build_league(scale, seed, progress) if scale.name == "league" else [(scale, build_demo(scale, seed, progress))]
    )
    counts: dict[str, int] = {}
    wiped = False
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        if not database_is_empty(conn):
            if not replace:
                raise SeedError("the database already holds a territory or cases; use --replace to wipe and reseed")
            wiped = True
            cur.execute("SELECT set_config('yitu.audit_maintenance', 'on', true)")
            cur.execute("TRUNCATE " + ", ".join(DEMO_TABLES) + " RESTART IDENTITY CASCADE")  # constant names
            cur.execute("SELECT set_config('yitu.audit_maintenance', 'off', true)")
        # Memory for this transaction's sorts: the indexes built after the load, the counters' rebuild.
        cur.execute(
            "SELECT set_config('maintenance_work_mem', %s, true), set_config('work_mem', %s, true)",
            (BULK_MAINTENANCE_MEM, BULK_WORK_MEM),
        )
        first_day = (as_of - timedelta(days=scale.days + 35)).date()
        for table in ("case_events", "van_positions"):
            cur.execute(
                "SELECT yitu_ensure_month_partitions(%s::regclass, %s, %s)",
                (table, first_day, (as_of + timedelta(days=62)).date()),
            )
        # The KPI counters' triggers stand aside for the bulk load (033_counters.sql): one rebuild
        # after it costs a fraction of a delta per COPY batch. The secondary indexes of the cases go
        # too: built once from the loaded table (a sort each) they cost a fraction of millions of
        # insertions into each.
        cur.execute("SELECT set_config('yitu.counters_bulk', 'on', true)")
        # each banner's deadlines: the rules given with the league's and the banners' own over them
        # (geodata/deadlines.py; the table survives a --replace), unless a book is given
        book = rules if rules is not None and not isinstance(rules, DeadlineRules) else None
        book = book or deadlines.load(conn, rules if isinstance(rules, DeadlineRules) else DeadlineRules())
        indexes = _drop_indexes(cur, "cases")
        total = sum(part.cases + part.open_cases for part, _ in parts)  # one bar for every banner's cases
        bar = tqdm(total=total, desc="cases", unit="case", unit_scale=True, disable=not progress, leave=False)
        nodes = first_id = 0
        for i, (part, demo) in enumerate(parts):
            # one banner of several (the league): its own random streams, road nodes and case ids numbered on
            stream = [seed] if len(parts) == 1 else [seed, 10 + i]
            written = _write_part(cur, demo, part, as_of, stream, bar, book, nodes, first_id)
            for k, v in written.items():
                counts[k] = counts.get(k, 0) + v
            nodes += 1 + max((max(r.source, r.target) for r in demo.roads), default=-1)
            first_id += written["cases"]
        bar.close()
        if len(parts) > 1:
            league.set_root(conn, *LEAGUE)
        log.info("territories, resources and cases written in %.0f s", time.perf_counter() - t_start)
        now = [(n, d) for n, d in indexes if not _searched(d)]
        bar = tqdm(total=len(now), desc="indexes", unit="index", disable=not progress, leave=False)
        for name, definition in now:
            bar.set_postfix_str(name)
            cur.execute(sql.SQL(definition))  # the catalog's own text, as it was
            bar.update()
        bar.close()
        cur.execute("SELECT setval(pg_get_serial_sequence('cases', 'id'), GREATEST((SELECT max(id) FROM cases), 1))")
        assigned = cur.execute(query("demo_assign_roster")).rowcount
        log.info("open cases assigned to the roster's mediators: %d", assigned)
        searched = [(n, d) for n, d in indexes if _searched(d)]
        split = total >= AFTER_COMMIT_CASES
        if not split:  # a banner or a city: minutes at most, so all of it stays one transaction
            for name, definition in searched:
                log.info("building %s", name)
                cur.execute(sql.SQL(definition))  # the catalog's own text, as it was
            cur.execute("SELECT set_config('yitu.counters_bulk', 'off', true)")
            counters.rebuild(conn)
        if audit is not None:
            audit(conn, counts, wiped)
    log.info("committed after %.0f s", time.perf_counter() - t_start)
    if split:
        _after_commit(dsn, searched, progress)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in DEMO_TABLES:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    log.info("seeded in %.0f s", time.perf_counter() - t_start)
    log.info("demo seeded %s", " ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


# From this many cases (the league's five million) the counters' rebuild and the search's GIN
# indexes are made after the commit, side by side (see _after_commit); below it, in the transaction.
AFTER_COMMIT_CASES = 2_000_000


def _searched(definition: str) -> bool:
    """An index of the search's grams (024_search.sql): GIN, the longest builds of all."""
    return "USING gin" in definition


def _after_commit(dsn: str, search_indexes: list[tuple[str, str]], progress: bool) -> None:
    """The KPI counters' rebuild and the search's GIN indexes, side by side on connections of their own.

    Outside the seeding transaction (from AFTER_COMMIT_CASES cases on), and on purpose: at league scale (five
    million cases) these three are single-threaded statements of 5–12 minutes each (PostgreSQL 15 builds GIN in
    one process and runs no INSERT … SELECT in parallel), which in one transaction add up to more than the 30
    minutes the whole seeding may take; on three connections they use both cores. All three take SHARE locks on
    ``cases`` (compatible with each other), so no case changes meanwhile: the counters agree with the cases the
    moment their rebuild commits, and a reader meanwhile sees the new cases with figures of zero and a search
    without its index (slow, not wrong). If one of them fails, the cases stay seeded: ``yitu kpi rebuild``
    redoes the counters and the error names the index to create.
    """
    jobs: list[tuple[str, Callable[[], None]]] = [
        (name, functools.partial(_build_index, dsn, definition)) for name, definition in search_indexes
    ]
    jobs.append(("KPI counters", functools.partial(_rebuild_counters, dsn)))
    bar = tqdm(total=len(jobs), desc="counters + search indexes", unit="job", disable=not progress, leave=False)
    # All at once: the server shares the two cores among them, so they end at about half their sum
    # (or with the longest), whatever order they were listed in.
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {pool.submit(fn): name for name, fn in jobs}
        with psycopg.connect(dsn, autocommit=True) as watch:
            while True:
                done, _ = wait(futures, timeout=1.0)
                # the GIN builds say how far their scan is (its counters start again in a later phase:
                # the bar never goes back)
                bar.n = max(bar.n, round(len(done) + _index_progress(watch), 2))
                bar.set_postfix_str(", ".join(futures[f] for f in futures if f not in done))
                bar.refresh()
                if len(done) == len(futures):
                    break
        bar.close()
        for future, name in futures.items():
            if future.exception() is not None:
                raise SeedError(f"the cases are seeded but {name} failed: {future.exception()}")


def _index_progress(conn: psycopg.Connection) -> float:
    """How far the index builds running in this database are, summed (each from 0 to 1)."""
    row = conn.execute(
        """SELECT coalesce(sum(CASE WHEN blocks_total > 0 THEN blocks_done::float8 / blocks_total ELSE 0 END), 0)
           FROM pg_stat_progress_create_index WHERE datname = current_database()"""
    ).fetchone()
    return float(row[0]) * 0.95 if row else 0.0  # the scan; the last part (writing the index) is not counted


def _build_index(dsn: str, definition: str) -> None:
    t0 = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (BULK_MAINTENANCE_MEM,))
        conn.execute(sql.SQL(definition))  # the catalog's own text, as it was
    log.info("built in %.0f s: %s", time.perf_counter() - t0, definition)


def _rebuild_counters(dsn: str) -> None:
    """``counters.rebuild`` with the counters' own indexes out of the way while their rows go in."""
    t0 = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "SELECT set_config('maintenance_work_mem', %s, true), set_config('work_mem', %s, true)",
            (BULK_MAINTENANCE_MEM, BULK_WORK_MEM),
        )
        conn.execute("LOCK TABLE cases IN SHARE MODE")
        with conn.cursor() as cur:
            indexes = [ix for table in counters.TABLES for ix in _drop_indexes(cur, table)]
        rows = counters.rebuild(conn)
        for _, definition in indexes:
            conn.execute(sql.SQL(definition))  # the catalog's own text, as it was
    log.info("KPI counters rebuilt in %.0f s: %d daily rows", time.perf_counter() - t0, rows)


# This transaction's memory for sorts (SET LOCAL): the index builds and the counters' rebuild after a
# load of millions of rows sort in memory instead of in temporary files.
BULK_MAINTENANCE_MEM = "1GB"
BULK_WORK_MEM = "256MB"


def _drop_indexes(cur: psycopg.Cursor, table: str) -> list[tuple[str, str]]:
    """Drop the indexes of ``table`` that no constraint needs (in this transaction); their names and
    definitions (``pg_get_indexdef``), to build them again once the rows are in."""
    indexes = cur.execute(
        """SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE i.indrelid = %s::regclass
             AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
           ORDER BY c.relname""",
        (table,),
    ).fetchall()
    for name, _ in indexes:
        cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return [(str(n), str(d)) for n, d in indexes]


def _write_part(
    cur: psycopg.Cursor,
    demo: Demo,
    scale: Scale,
    as_of: datetime,
    stream: list[int],
    bar: tqdm[Never],
    rules: Rules,
    node_offset: int = 0,
    id_offset: int = 0,
) -> dict[str, int]:
    """One banner's territory, resources, roster and cases; road nodes and case ids after the offsets."""
    counts: dict[str, int] = {}
    banner = demo.territory.level(1)[0].code
    counts["areas"] = _copy(
        cur,
        "COPY areas (code, name, level, parent_code, geom, props) FROM STDIN",
        (
            (
                a.code,
                a.name,
                a.level,
                a.parent_code,
                _ewkb(a.geom),
                Jsonb({**a.props, "seat": [round(a.seat[0], 6), round(a.seat[1], 6)]}),
            )
            for a in demo.territory.areas
        ),
    )
    counts["roads"] = _copy(
        cur,
        "COPY roads (kind, name, source, target, length_m, geom) FROM STDIN",
        (
            (r.kind, r.name or None, node_offset + r.source, node_offset + r.target, r.length_m, _ewkb(r.geom))
            for r in demo.roads
        ),
    )
    counts["mediation_centers"] = _copy(
        cur,
        "COPY mediation_centers (code, name, level, area_code, mediators, specialties, phone, geom) FROM STDIN",
        (
            (
                c.code,
                c.name,
                c.level,
                c.area_code,
                c.mediators,
                c.specialties,
                c.phone or None,
                f"SRID=4326;POINT({c.lon:.6f} {c.lat:.6f})",
            )
            for c in demo.centres
        ),
    )
    centre = cur.execute(
        "SELECT id, ST_AsEWKT(geom) FROM mediation_centers WHERE code = %s", ("MC" + banner,)
    ).fetchone()
    assert centre is not None, "the banner's centre was copied just above"
    centre_id, base = centre
    counts["vans"] = _copy(
        cur,
        "COPY vans (id, name, plate, base_center_id, geom, last_seen_at) FROM STDIN",
        ((v.id, v.name, v.plate, centre_id, base, as_of) for v in demo.vans),
    )
    counts["cameras"] = _copy(
        cur,
        "COPY cameras (device_code, name, kind, status, stream_url, geom) FROM STDIN",
        (
            (c.device_code, c.name, c.kind, c.status, c.stream_url, f"SRID=4326;POINT({c.lon} {c.lat})")
            for c in demo.cameras
        ),
    )
    counts["units"], counts["mediators"] = _write_roster(cur, demo.territory, [v.id for v in demo.vans], stream)
    cur.execute(
        """UPDATE cameras c SET area_code = a.code
           FROM areas a WHERE c.area_code IS NULL AND a.level = 4 AND ST_Intersects(a.geom, c.geom)"""
    )
    counts["cases"], counts["case_events"] = _write_cases(
        cur, demo.territory, scale, as_of, stream, bar, rules, id_offset
    )
    return counts


def _write_roster(cur: psycopg.Cursor, territory: Territory, vans: list[str], stream: list[int]) -> tuple[int, int]:
    """The units, then the mediators linked to them by id, to their centres by code and to their vans."""
    roster = roster_gen.make_roster(territory, vans, np.random.default_rng([*stream, 3]))  # its own stream
    n_units = _copy(
        cur,
        "COPY units (name, kind, level, area_code, phone, specialties) FROM STDIN",
        ((u.name, u.kind, u.level, u.area_code, u.phone, u.specialties) for u in roster.units),
    )
    ids = {(a, n): i for i, a, n in cur.execute("SELECT id, area_code, name FROM units").fetchall()}
    unit_id = {u.key: ids[(u.area_code, u.name)] for u in roster.units}
    centres: dict[str, int] = dict(cur.execute("SELECT code, id FROM mediation_centers").fetchall())
    n_mediators = _copy(
        cur,
        "COPY mediators (name, phone, unit_id, center_id, van_id, level, area_code, specialties) FROM STDIN",
        (
            (
                m.name,
                m.phone,
                unit_id[m.unit] if m.unit else None,
                centres.get(m.centre) if m.centre else None,
                m.van,
                m.level,
                m.area_code,
                m.specialties,
            )
            for m in roster.mediators
        ),
    )
    return n_units, n_mediators


def _write_cases(
    cur: psycopg.Cursor,
    territory: Territory,
    scale: Scale,
    as_of: datetime,
    stream: list[int],
    bar: tqdm[Never],
    rules: Rules,
    id_offset: int = 0,
) -> tuple[int, int]:
    rng = np.random.default_rng([*stream, 2])  # its own stream: the territory does not shift the cases
    n_cases = n_events = 0
    batches = case_gen.generate(
        territory, scale.cases, scale.open_cases, as_of, rng, first_id=1 + id_offset, rules=rules, days=scale.days
    )
    for batch, text in _ahead(batches):
        if text is not None:
            with cur.copy(CASES_COPY) as cp:
                cp.write(text[0])
            with cur.copy(EVENTS_COPY) as cp:
                cp.write(text[1])
            n_cases += len(batch)
            n_events += text[2]
        elif isinstance(batch, case_gen.OpenBatch):
            n_cases += _copy(cur, CASES_COPY, batch.cases)
            n_events += _copy(cur, EVENTS_COPY, batch.events)
        bar.update(len(batch.cases) if isinstance(batch, case_gen.OpenBatch) else len(batch))
    return n_cases, n_events


Rendered = tuple[bytes, bytes, int]  # a history batch's cases and events as COPY text, and its number of events


def _ahead(
    batches: Iterable[case_gen.HistoryBatch | case_gen.OpenBatch],
) -> Iterable[tuple[case_gen.HistoryBatch | case_gen.OpenBatch, Rendered | None]]:
    """The batches, each history batch with its COPY text, drawn and rendered in a thread of their own
    a batch or two ahead: the server takes in one batch while the next is made (both cores busy)."""
    out: queue.Queue[tuple[case_gen.HistoryBatch | case_gen.OpenBatch, Rendered | None] | BaseException | None]
    out = queue.Queue(maxsize=2)

    def make() -> None:
        try:
            for batch in batches:
                if isinstance(batch, case_gen.HistoryBatch):
                    cases, events = batch.copy_text()
                    out.put((batch, (cases, events, len(batch.ev_case))))
                else:
                    out.put((batch, None))
            out.put(None)
        except BaseException as e:  # handed to the consumer, which raises it
            out.put(e)

    worker = threading.Thread(target=make, name="demo-cases", daemon=True)
    worker.start()
    while (item := out.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item
    worker.join()


CASES_COPY = """COPY cases (id, code, type, description, parties, geom, grid_code, village_code, town_code, banner_code,
    channel, reporter, level, step, deadline, attempts, outcome, satisfaction, followup_note, reported_at,
    closed_at, updated_at) FROM STDIN"""
EVENTS_COPY = "COPY case_events (case_id, occurred_at, actor, role, action, from_step, to_step, level, note) FROM STDIN"


__all__ = ["SCALES", "Scale", "SeedError", "build_demo", "database_is_empty", "seed_demo"]

"""Synthetic geometry for the levels below the banner, tiling each parent exactly.

Below village level no public geometry exists (DOMAIN.md), and town and village boundaries are
not published either, so they are synthesised. The banner polygon is cut into a few thousand
small Voronoi "atoms" — dense around the town seats, sparse across the steppe — and every level
is a union of atoms: each town takes the atoms nearest its seat (additively weighted distance, so
regions stay star-shaped around their seat), each village the atoms of its town nearest its seed,
each grid cell the atoms of its village nearest its seed. Because parents and children are unions
of the same atoms, children tile their parent with no gap and no overlap (全覆盖、不交叉) up to
floating point, and the boundaries look organic rather than ruled. Disconnected pieces are handed
to a neighbouring sibling so that every area is one polygon.

All geometry work happens in a local plane in metres (see ``_Projector``); the result is WGS-84.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import shapely
import shapely.ops
from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True)
class TownSpec:
    code: str
    name: str
    seat: tuple[float, float] | None  # lon, lat; None: placed by the generator
    weight: float = 0.0  # metres added in the town's favour when atoms choose a seat


@dataclass(frozen=True)
class VillageSpec:
    code: str
    name: str
    parent_code: str

    @property
    def is_community(self) -> bool:
        """NBS village codes 001–199 are urban communities (社区); 200–399 villages (村/嘎查)."""
        return int(self.code[-3:]) < 200


@dataclass
class Area:
    code: str
    name: str
    level: int
    parent_code: str | None
    geom: BaseGeometry  # WGS-84
    seat: tuple[float, float]  # lon, lat of the seat / seed point
    props: dict[str, object] = field(default_factory=dict)


@dataclass
class Territory:
    """The four levels, in WGS-84, plus the origin of the plane they were cut in."""

    areas: list[Area]
    origin: tuple[float, float]

    def level(self, n: int) -> list[Area]:
        return [a for a in self.areas if a.level == n]

    def by_code(self) -> dict[str, Area]:
        return {a.code: a for a in self.areas}


class _Projector:
    """A local equirectangular plane in metres around (lon0, lat0).

    Affine on purpose: straight edges stay straight both ways, so the points where atoms cut the
    banner's edges lie exactly on those edges again in degrees (a UTM round trip would bow them by
    metres). Over a banner (±1°) its scale is within 1% of true, plenty for synthetic areas.
    """

    def __init__(self, lon0: float, lat0: float) -> None:
        self.lon0, self.lat0 = lon0, lat0
        self.kx = 111_320.0 * math.cos(math.radians(lat0))
        self.ky = 110_574.0

    def _fwd(self, xy: np.ndarray) -> np.ndarray:
        return np.column_stack([(xy[:, 0] - self.lon0) * self.kx, (xy[:, 1] - self.lat0) * self.ky])

    def _inv(self, xy: np.ndarray) -> np.ndarray:
        return np.column_stack([xy[:, 0] / self.kx + self.lon0, xy[:, 1] / self.ky + self.lat0])

    def to_m(self, geom: BaseGeometry) -> BaseGeometry:
        return shapely.transform(geom, self._fwd)

    def to_deg(self, geom: BaseGeometry) -> BaseGeometry:
        return shapely.transform(geom, self._inv)

    def point_m(self, lon: float, lat: float) -> tuple[float, float]:
        x, y = self._fwd(np.asarray([[lon, lat]]))[0]
        return float(x), float(y)

    def point_deg(self, x: float, y: float) -> tuple[float, float]:
        lon, lat = self._inv(np.asarray([[x, y]]))[0]
        return float(lon), float(lat)


# --- atoms ------------------------------------------------------------------------------------


def _random_points_in(poly: BaseGeometry, n: int, rng: np.random.Generator) -> np.ndarray:
    minx, miny, maxx, maxy = poly.bounds
    shapely.prepare(poly)
    prepared = poly
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        batch = rng.uniform((minx, miny), (maxx, maxy), size=(max(256, 2 * (n - have)), 2))
        inside = batch[shapely.contains_xy(prepared, batch[:, 0], batch[:, 1])]
        out.append(inside)
        have += len(inside)
    return np.concatenate(out)[:n]


def _clustered_points(
    poly: BaseGeometry, centres: list[tuple[float, float]], n: int, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    pts = []
    per = max(1, n // max(1, len(centres)))
    for cx, cy in centres:
        cand = rng.normal((cx, cy), sigma, size=(per * 2, 2))
        inside = cand[shapely.contains_xy(poly, cand[:, 0], cand[:, 1])]
        pts.append(inside[:per])
    return np.concatenate(pts) if pts else np.empty((0, 2))


def make_atoms(
    boundary_m: BaseGeometry,
    seats_m: list[tuple[float, float]],
    n_atoms: int,
    rng: np.random.Generator,
    cluster_share: float = 0.3,
    sigma_m: float = 4000.0,
) -> np.ndarray:
    """Voronoi atoms tiling ``boundary_m``: an array of single polygons (multi-part cells exploded)."""
    n_cluster = int(n_atoms * cluster_share)
    seeds = np.concatenate(
        [
            _random_points_in(boundary_m, n_atoms - n_cluster, rng),
            _clustered_points(boundary_m, seats_m, n_cluster, sigma_m, rng),
            np.asarray(seats_m, dtype=float),
        ]
    )
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=boundary_m))
    shapely.prepare(boundary_m)
    inside = shapely.within(cells, boundary_m)
    clipped = cells.copy()
    crossing = ~inside
    clipped[crossing] = shapely.intersection(cells[crossing], boundary_m)
    parts = shapely.get_parts(clipped)
    parts = parts[shapely.get_type_id(parts) == 3]  # polygons only (drop slivers reduced to lines)
    atoms: np.ndarray = parts[shapely.area(parts) > 0]
    return atoms


# Two atoms' boundaries meet in a line (DE-9IM: boundary ∩ boundary of dimension 1): they share an edge.
SHARE_AN_EDGE = "****1****"


def atom_adjacency(atoms: np.ndarray) -> list[set[int]]:
    """Neighbours that share an edge (not just a corner), asked of GEOS as a relation rather than by
    making each pair's shared line and measuring it (a length over 1e-6 m): half the time (a league's
    nine banners 4.8 s against 10.1). The two differ only for atoms that overlap (not made here:
    Voronoi cells, clipped, single polygons) or share an edge under a micrometre; the neighbours
    came out the same in the fourteen territories tried (banner seeds 1, 3 and 7, city 1 and 7, the
    league's nine banners of seed 2)."""
    tree = shapely.STRtree(atoms)
    left, right = tree.query(atoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    edge = shapely.relate_pattern(atoms[left], atoms[right], SHARE_AN_EDGE)
    nbrs: list[set[int]] = [set() for _ in range(len(atoms))]
    for a, b in zip(left[edge], right[edge]):
        nbrs[a].add(int(b))
        nbrs[b].add(int(a))
    return nbrs


# --- assigning atoms to seats ---------------------------------------------------------------


def assign(centroids: np.ndarray, members: np.ndarray, seeds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Label each member atom with the seed index minimising distance − weight."""
    d = np.hypot(centroids[members, None, 0] - seeds[None, :, 0], centroids[members, None, 1] - seeds[None, :, 1])
    labels: np.ndarray = np.argmin(d - weights[None, :], axis=1)
    return labels


def make_contiguous(labels: dict[int, int], anchors: dict[int, int], nbrs: list[set[int]]) -> dict[int, int]:
    """Give every piece of a label not connected to its anchor atom to the neighbour label it
    touches most, until each label is one connected piece."""
    for _ in range(50):
        by_label: dict[int, set[int]] = defaultdict(set)
        for atom, lab in labels.items():
            by_label[lab].add(atom)
        moved = False
        for lab, atoms in by_label.items():
            seen = _component(anchors[lab], atoms, nbrs)
            for stray in atoms - seen:
                votes = Counter(labels[n] for n in nbrs[stray] if n in labels and labels[n] != lab)
                if votes:
                    labels[stray] = votes.most_common(1)[0][0]
                    moved = True
        if not moved:
            break
    return labels


def _component(start: int, allowed: set[int], nbrs: list[set[int]]) -> set[int]:
    seen = {start}
    stack = [start]
    while stack:
        for n in nbrs[stack.pop()]:
            if n in allowed and n not in seen:
                seen.add(n)
                stack.append(n)
    return seen


def farthest_points(
    candidates: np.ndarray, k: int, first: int, rng: np.random.Generator, jitter: float = 0.15
) -> list[int]:
    """Indices of ``k`` well-spread candidates (greedy farthest-point with a little randomness)."""
    chosen = [first]
    dmin = np.hypot(*(candidates - candidates[first]).T)
    for _ in range(k - 1):
        score = dmin * (1 + jitter * rng.random(len(candidates)))
        score[chosen] = -1
        nxt = int(np.argmax(score))
        chosen.append(nxt)
        dmin = np.minimum(dmin, np.hypot(*(candidates - candidates[nxt]).T))
    return chosen


def allocate(total: int, weights: list[float], minimum: int) -> list[int]:
    """Split ``total`` into integers ≥ ``minimum`` proportional to ``weights`` (largest remainder)."""
    n = len(weights)
    rest = total - minimum * n
    if rest < 0:
        raise ValueError(f"cannot give {n} areas at least {minimum} cells each out of {total}")
    w = np.asarray(weights, dtype=float)
    share = rest * w / w.sum()
    base = np.floor(share).astype(int)
    order = np.argsort(-(share - base), kind="stable")
    base[order[: rest - base.sum()]] += 1
    return [int(b) + minimum for b in base]


# --- the whole territory ----------------------------------------------------------------------


def _snap_inside(poly: BaseGeometry, x: float, y: float, margin: float = 2000.0) -> tuple[float, float]:
    pt = shapely.Point(x, y)
    if poly.contains(pt):
        return x, y
    inner = poly.buffer(-margin)
    target = inner if not inner.is_empty else poly
    snapped = shapely.ops.nearest_points(target, pt)[0]
    return float(snapped.x), float(snapped.y)


def _spread(xy: np.ndarray, k: int, existing: np.ndarray, rng: np.random.Generator, jitter: float = 0.2) -> list[int]:
    """``k`` indices of ``xy`` far from ``existing`` points and from each other."""
    if k <= 0:
        return []
    dmin = np.full(len(xy), np.inf)
    for ex in existing:
        dmin = np.minimum(dmin, np.hypot(*(xy - ex).T))
    chosen: list[int] = []
    for _ in range(min(k, len(xy))):
        score = np.where(np.isinf(dmin), 1.0, dmin) * (1 + jitter * rng.random(len(xy)))
        score[chosen] = -1
        nxt = int(np.argmax(score))
        chosen.append(nxt)
        dmin = np.minimum(dmin, np.hypot(*(xy - xy[nxt]).T))
    return chosen


def _row_order(xy: np.ndarray, rows: int) -> list[int]:
    """Indices sorted north→south by row band, then west→east inside a band (GB/T 30428.1 habit)."""
    y = xy[:, 1]
    span = max(y.max() - y.min(), 1e-9)
    band = np.minimum(((y.max() - y) / span * rows).astype(int), rows - 1)
    return sorted(range(len(xy)), key=lambda i: (band[i], xy[i, 0]))


def _partition(
    members: np.ndarray, seed_atoms: list[int], centroids: np.ndarray, weights: np.ndarray, nbrs: list[set[int]]
) -> list[np.ndarray]:
    """Split ``members`` (atom indices) among seeds; each result contains its seed atom and is connected."""
    labels_arr = assign(centroids, members, centroids[seed_atoms], weights)
    labels = {int(a): int(lab) for a, lab in zip(members, labels_arr)}
    for i, atom in enumerate(seed_atoms):
        labels[atom] = i
    labels = make_contiguous(labels, dict(enumerate(seed_atoms)), nbrs)
    groups: list[list[int]] = [[] for _ in seed_atoms]
    for atom, lab in labels.items():
        groups[lab].append(atom)
    return [np.asarray(sorted(g)) for g in groups]


def _union(pieces: np.ndarray) -> BaseGeometry:
    """The union of atoms (or of unions of atoms). They tile the territory edge to edge, so the
    coverage union is exact (the same polygons as a general union) and some fifteen times faster."""
    return shapely.coverage_union_all(pieces)


def build_territory(
    boundary: BaseGeometry,
    banner_code: str,
    banner_name: str,
    towns: list[TownSpec],
    villages: list[VillageSpec],
    n_cells: int,
    rng: np.random.Generator,
    n_atoms: int | None = None,
    progress: Progress | None = None,
) -> Territory:
    """Cut ``boundary`` (WGS-84) into towns, villages and ``n_cells`` grid cells."""
    c = boundary.centroid
    proj = _Projector(c.x, c.y)
    b_m = shapely.make_valid(proj.to_m(boundary))
    given = [_snap_inside(b_m, *proj.point_m(*t.seat)) if t.seat else None for t in towns]
    town_seats = [s for s in given if s is not None]
    if len(town_seats) < len(given):  # towns without a known seat get one spread among the others
        known = np.asarray(town_seats or [(b_m.centroid.x, b_m.centroid.y)])
        pool = _random_points_in(b_m, 4000, rng)
        extra = iter(_spread(pool, len(given) - len(town_seats), known, rng, jitter=0.0))
        town_seats = [s if s is not None else _xy(pool[next(extra)]) for s in given]
    n_atoms = n_atoms or max(4000, n_cells * 30)
    atoms = make_atoms(b_m, town_seats, n_atoms, rng)
    centroids = shapely.get_coordinates(shapely.centroid(atoms))
    nbrs = atom_adjacency(atoms)
    _tick(progress, "atoms")

    def seed_atom(x: float, y: float) -> int:
        return int(np.argmin(np.hypot(centroids[:, 0] - x, centroids[:, 1] - y)))

    town_seed_atoms = [seed_atom(*s) for s in town_seats]
    town_groups = _partition(
        np.arange(len(atoms)), town_seed_atoms, centroids, np.asarray([t.weight for t in towns]), nbrs
    )
    _tick(progress, "towns")

    by_town: dict[str, list[VillageSpec]] = defaultdict(list)
    for v in villages:
        by_town[v.parent_code].append(v)

    # villages: communities huddle around the seat, villages/嘎查 spread over the town
    village_groups: dict[str, np.ndarray] = {}
    village_seed_atom: dict[str, int] = {}
    for town, group, seat_atom in zip(towns, town_groups, town_seed_atoms):
        vs = by_town.get(town.code, [])
        if not vs:
            continue
        if len(group) < len(vs):
            raise ValueError(f"town {town.code} got {len(group)} atoms for {len(vs)} villages; raise n_atoms")
        comm = [v for v in vs if v.is_community]
        rural = [v for v in vs if not v.is_community]
        xy = centroids[group]
        seat_xy = centroids[seat_atom]
        near = np.argsort(np.hypot(*(xy - seat_xy).T))
        seeds: list[int] = []
        if comm:
            pool = near[: max(6 * len(comm), 30)]
            picked = [0] + _spread(xy[pool[1:]], len(comm) - 1, xy[pool[:1]], rng)
            picked = [int(pool[0])] + [int(pool[1:][i]) for i in picked[1:]]
            seeds += picked
        taken = set(seeds)
        free = np.asarray([i for i in range(len(group)) if i not in taken])
        existing = xy[seeds] if seeds else xy[near[:1]]
        r_pick = _spread(xy[free], len(rural), existing, rng)
        seeds += [int(free[i]) for i in r_pick]
        weights = np.asarray([-1500.0 if v.is_community else 0.0 for v in comm + rural])
        groups = _partition(group, [int(group[s]) for s in seeds], centroids, weights, nbrs)
        for v, g, s in zip(comm + rural, groups, seeds):
            village_groups[v.code] = g
            village_seed_atom[v.code] = int(group[s])
    _tick(progress, "villages")

    # grid cells: more of them in communities, at least 2 per village
    order = [v for v in villages if v.code in village_groups]
    area_of = {v.code: float(shapely.area(_union(atoms[village_groups[v.code]]))) for v in order}
    med = float(np.median(list(area_of.values())))
    cell_weights = [(3.0 if v.is_community else 1.0) * math.sqrt(area_of[v.code] / med) ** 0.5 for v in order]
    counts = allocate(n_cells, cell_weights, minimum=2)
    counts = [min(c, len(village_groups[v.code])) for c, v in zip(counts, order)]
    short = n_cells - sum(counts)
    while short > 0:  # hand cells a tiny village could not hold to the largest ones
        for i in sorted(range(len(order)), key=lambda i: -len(village_groups[order[i].code])):
            if short and counts[i] < len(village_groups[order[i].code]):
                counts[i] += 1
                short -= 1

    areas: list[Area] = []
    town_geoms_m = [_union(atoms[g]) for g in town_groups]
    banner_m = _union(np.asarray(town_geoms_m))
    areas.append(_area(banner_code, banner_name, 1, None, banner_m, town_seats[0], proj))
    for town, town_m, seat in zip(towns, town_geoms_m, town_seats):
        areas.append(_area(town.code, town.name, 2, banner_code, town_m, seat, proj))
    for v, n in zip(order, counts):
        group = village_groups[v.code]
        vgeom = _union(atoms[group])
        vseat = _xy(centroids[village_seed_atom[v.code]])
        areas.append(
            _area(
                v.code,
                v.name,
                3,
                v.parent_code,
                vgeom,
                vseat,
                proj,
                {"kind": "community" if v.is_community else "village"},
            )
        )
        xy = centroids[group]
        first = int(np.where(group == village_seed_atom[v.code])[0][0])
        seeds = farthest_points(xy, n, first, rng)
        cells = _partition(group, [int(group[s]) for s in seeds], centroids, np.zeros(n), nbrs)
        geoms = [_union(atoms[cg]) for cg in cells]
        cxy = shapely.get_coordinates(shapely.centroid(np.asarray(geoms)))
        for seq, idx in enumerate(_row_order(cxy, max(1, round(math.sqrt(n)))), start=1):
            code = f"{v.code}{seq:03d}"
            areas.append(
                _area(
                    code,
                    f"{v.name}第{seq}网格",
                    4,
                    v.code,
                    geoms[idx],
                    _xy(centroids[group[seeds[idx]]]),
                    proj,
                    {"seq": seq},
                )
            )
        _tick(progress, "cells")
    return Territory(areas=areas, origin=(c.x, c.y))


def _area(
    code: str,
    name: str,
    level: int,
    parent: str | None,
    geom_m: BaseGeometry,
    seat_m: tuple[float, float],
    proj: _Projector,
    props: dict[str, object] | None = None,
) -> Area:
    geom = proj.to_deg(geom_m)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    polys = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon"]
    return Area(code, name, level, parent, shapely.MultiPolygon(polys), proj.point_deg(*seat_m), props or {})


class Progress(Protocol):
    """A progress bar (tqdm is one): a step done, and what it was."""

    def update(self, n: float = 1) -> object: ...
    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...


def _xy(point: np.ndarray) -> tuple[float, float]:
    return float(point[0]), float(point[1])


def _tick(progress: Progress | None, what: str) -> None:
    if progress is not None:
        progress.update(1)
        progress.set_postfix_str(what)

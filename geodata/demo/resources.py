"""Roads, cameras, mediation centres and vans for the demo territory.

Roads join the town seats (trunk: a minimum spanning tree plus a shortcut or two) and, inside each
town, the seat and its village seeds (county roads), drawn as gently wandering polylines. Cameras
follow the roads (枪机 and 卡口 at town exits) and cluster around settlements (球机, 半球). Every
generator takes the seeded ``rng`` so a seed gives the same demo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import Geod

from geodata.demo.territory import Territory

GEOD = Geod(ellps="WGS84")

CAMERA_KINDS = ("bullet", "dome", "mini_dome", "checkpoint")  # 枪机 球机 半球 卡口
KIND_ZH = {"bullet": "枪机", "dome": "球机", "mini_dome": "半球", "checkpoint": "卡口"}
# GB/T 28181 type codes: 132 network camera (IPC), 131 camera; checkpoints 135 (卡口)
GB28181_TYPE = {"bullet": "132", "dome": "132", "mini_dome": "132", "checkpoint": "135"}


@dataclass
class Road:
    kind: str
    name: str
    source: int
    target: int
    geom: shapely.LineString  # WGS-84

    @property
    def length_m(self) -> float:
        return float(GEOD.geometry_length(self.geom))


@dataclass
class Camera:
    device_code: str
    name: str
    kind: str
    status: str
    stream_url: str
    lon: float
    lat: float


@dataclass
class Centre:
    code: str
    name: str
    level: int
    area_code: str
    mediators: int
    specialties: list[str]
    phone: str
    lon: float
    lat: float


@dataclass
class VanSpec:
    id: str
    name: str
    plate: str


def _mst(xy: np.ndarray) -> list[tuple[int, int]]:
    """Prim's minimum spanning tree on planar points (a few dozen at most per call)."""
    n = len(xy)
    if n < 2:
        return []
    in_tree = [0]
    best = np.hypot(*(xy - xy[0]).T)
    parent = np.zeros(n, dtype=int)
    best[0] = np.inf
    edges = []
    for _ in range(n - 1):
        j = int(np.argmin(best))
        edges.append((int(parent[j]), j))
        in_tree.append(j)
        best[j] = np.inf
        d = np.hypot(*(xy - xy[j]).T)
        closer = d < best
        closer[in_tree] = False
        best[closer] = d[closer]
        parent[closer] = j
    return edges


def _wander(
    a: tuple[float, float], b: tuple[float, float], rng: np.random.Generator, amplitude: float = 0.06, pieces: int = 6
) -> shapely.LineString:
    """A road from a to b that bends a little, as roads over the steppe do."""
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    t = np.linspace(0, 1, pieces + 1)
    offs = rng.normal(0, amplitude, pieces + 1) * np.sin(np.pi * t)
    xs = ax + dx * t - dy * offs
    ys = ay + dy * t + dx * offs
    return shapely.LineString(np.column_stack([xs, ys]))


def make_roads(territory: Territory, rng: np.random.Generator) -> tuple[list[Road], dict[int, tuple[float, float]]]:
    """Roads and their nodes (node id → lon, lat). Node ids: towns first, then villages."""
    towns = territory.level(2)
    villages = territory.level(3)
    nodes: list[tuple[float, float]] = [t.seat for t in towns] + [v.seat for v in villages]
    node_of = {a.code: i for i, a in enumerate(towns + villages)}
    # metres-ish planar coordinates are good enough for choosing which pairs to join
    lat0 = math.radians(float(np.mean([p[1] for p in nodes])))
    xy = np.asarray([(lon * math.cos(lat0), lat) for lon, lat in nodes])
    roads: list[Road] = []
    town_xy = xy[: len(towns)]
    trunk = _mst(town_xy)
    if len(towns) >= 4:  # one shortcut so the trunk is not a bare tree
        pairs = [
            (i, j)
            for i in range(len(towns))
            for j in range(i + 1, len(towns))
            if (i, j) not in trunk and (j, i) not in trunk
        ]
        i, j = min(pairs, key=lambda p: float(np.hypot(*(town_xy[p[0]] - town_xy[p[1]]))))
        trunk.append((i, j))
    for i, j in trunk:
        roads.append(
            Road(
                "trunk",
                f"{towns[i].name}—{towns[j].name}公路",
                i,
                j,
                _wander(nodes[i], nodes[j], rng, amplitude=0.03, pieces=10),
            )
        )
    for t in towns:
        vs = [v for v in villages if v.parent_code == t.code]
        ids = [node_of[t.code]] + [node_of[v.code] for v in vs]
        local = xy[ids]
        edges = _mst(local)
        # a few loops: join each village to its second-nearest neighbour now and then
        for k in range(1, len(ids)):
            if rng.random() < 0.15:
                d = np.hypot(*(local - local[k]).T)
                d[k] = np.inf
                for e in np.argsort(d)[:2]:
                    if (k, int(e)) not in edges and (int(e), k) not in edges:
                        edges.append((k, int(e)))
                        break
        for a, b in edges:
            na, nb = ids[a], ids[b]
            kind = "county" if na < len(towns) or nb < len(towns) else "village"
            roads.append(Road(kind, "", na, nb, _wander(nodes[na], nodes[nb], rng)))
    return roads, dict(enumerate(nodes))


def _points_along(roads: list[Road], n: int, rng: np.random.Generator) -> list[tuple[float, float, str]]:
    if n <= 0:
        return []
    weights = np.asarray([r.length_m * (3.0 if r.kind == "trunk" else 1.0) for r in roads])
    picks = rng.choice(len(roads), size=n, p=weights / weights.sum())
    out = []
    for i in picks:
        # denser near the ends (settlements) than in the middle of the steppe
        f = float(rng.beta(0.6, 0.6))
        p = roads[i].geom.interpolate(f, normalized=True)
        out.append((p.x, p.y, roads[i].kind))
    return out


def _placements(
    territory: Territory, roads: list[Road], n: int, rng: np.random.Generator
) -> list[tuple[float, float, str]]:
    """``n`` camera spots: ~45% along roads, ~8% checkpoints at town exits, the rest around settlements."""
    towns = territory.level(2)
    villages = territory.level(3)
    n_check = max(1, int(n * 0.08))
    n_road = int(n * 0.45)
    n_settle = n - n_check - n_road
    placed: list[tuple[float, float, str]] = []
    for lon, lat, _kind in _points_along(roads, n_road, rng):
        placed.append((lon, lat, "bullet" if rng.random() < 0.8 else "dome"))
    trunk_ends = [r for r in roads if r.kind in ("trunk", "county")]
    for k in range(n_check):
        r = trunk_ends[k % len(trunk_ends)]
        f = float(rng.uniform(0.01, 0.06)) if rng.random() < 0.5 else float(rng.uniform(0.94, 0.99))
        p = r.geom.interpolate(f, normalized=True)
        placed.append((p.x, p.y, "checkpoint"))
    # settlements: town seats weigh heavy, communities more than 嘎查
    centres = [(t.seat, 0.015, 40.0) for t in towns] + [
        (v.seat, 0.004, 4.0 if v.props.get("kind") == "community" else 1.0) for v in villages
    ]
    w = np.asarray([c[2] for c in centres])
    picks = rng.choice(len(centres), size=n_settle, p=w / w.sum())
    kinds = rng.choice(["mini_dome", "dome", "bullet"], size=n_settle, p=[0.45, 0.3, 0.25])
    for i, kind in zip(picks, kinds):
        (lon, lat), sigma, _ = centres[i]
        placed.append((lon + rng.normal(0, sigma), lat + rng.normal(0, sigma * 0.8), str(kind)))
    return [placed[i] for i in rng.permutation(len(placed))]


def make_cameras(
    territory: Territory,
    roads: list[Road],
    n: int,
    rng: np.random.Generator,
    banner_code: str,
    offline_share: float = 0.06,
) -> list[Camera]:
    """Exactly ``n`` cameras inside the banner (spots that fall outside are drawn again)."""
    boundary = territory.level(1)[0].geom
    shapely.prepare(boundary)
    cams: list[Camera] = []
    while len(cams) < n:
        for lon, lat, kind in _placements(territory, roads, max(16, int((n - len(cams)) * 1.2)), rng):
            if len(cams) == n:
                break
            if not shapely.contains_xy(boundary, lon, lat):
                continue
            seq = len(cams) + 1
            code = f"{banner_code}00" + "00" + GB28181_TYPE[kind] + "0" + f"{seq:06d}"
            cams.append(
                Camera(
                    device_code=code,
                    name=f"{KIND_ZH[kind]}-{seq:05d}",
                    kind=kind,
                    status="offline" if rng.random() < offline_share else "online",
                    stream_url=f"rtsp://video.yitu.invalid/live/{code}",
                    lon=round(lon, 6),
                    lat=round(lat, 6),
                )
            )
    return cams


BANNER_SPECIALTIES = ["grassland", "herder_enterprise", "marriage_family", "labour", "land_transfer", "private_lending"]
TOWN_SPECIALTIES = ["neighbour", "housing_land", "contract", "damages", "traffic", "forest_land", "consumer"]


def make_centres(territory: Territory, banner_name: str, rng: np.random.Generator) -> list[Centre]:
    banner = territory.level(1)[0]
    out = [
        Centre(
            f"MC{banner.code}",
            f"{banner_name}社会矛盾纠纷调处化解中心",
            1,
            banner.code,
            46,
            BANNER_SPECIALTIES,
            "0477-6" + f"{rng.integers(0, 10**6):06d}",
            *territory.level(2)[0].seat,
        )
    ]
    for t in territory.level(2):
        specs = list(rng.choice(TOWN_SPECIALTIES, size=3, replace=False))
        out.append(
            Centre(
                f"MC{t.code}",
                f"{t.name}矛盾纠纷调处化解中心",
                2,
                t.code,
                int(rng.integers(8, 16)),
                ["grassland", *map(str, specs)],
                "0477-6" + f"{rng.integers(0, 10**6):06d}",
                *t.seat,
            )
        )
    for v in territory.level(3):
        room = "调解室" if v.props.get("kind") == "community" else "人民调解室"
        out.append(
            Centre(
                f"MC{v.code}",
                f"{v.name}{room}",
                3,
                v.code,
                int(rng.integers(2, 7)),
                ["neighbour", "marriage_family"],
                "",
                *v.seat,
            )
        )
    return out


def make_vans(n: int = 4, first: int = 1) -> list[VanSpec]:
    """Dalad runs four 行走的调解室 (DOMAIN.md); ids V01… (a league's banners number theirs on from ``first``)."""
    return [VanSpec(f"V{i:02d}", f"行走的调解室{i}号", f"蒙K·T{2300 + i:04d}") for i in range(first, first + n)]

"""The vans' roads: a pgRouting path between two points (``sim_route.sql``, read-only from the
same PostGIS), driven at its road kind's speed."""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

import psycopg
from pyproj import Geod

from geodata.queries import query

GEOD = Geod(ellps="WGS84")
DEFAULT_SPEEDS_KMH = {"trunk": 80.0, "county": 60.0, "village": 40.0, "offroad": 30.0}


# --- roads -----------------------------------------------------------------------------------------


@dataclass
class Route:
    """A polyline to drive: ``kinds[i]`` is the road from ``points[i]`` to ``points[i + 1]``."""

    points: list[tuple[float, float]]
    kinds: list[str]
    cum: list[float]  # metres from the start to points[i]
    azimuths: list[float]

    @classmethod
    def through(cls, points: list[tuple[float, float]], kinds: list[str]) -> Route:
        pts, ks = [points[0]], []
        for p, k in zip(points[1:], kinds):
            _, _, d = GEOD.inv(pts[-1][0], pts[-1][1], p[0], p[1])
            if d >= 0.5:  # drop repeated vertices (where pieces of road meet)
                pts.append(p)
                ks.append(k)
        cum, az = [0.0], []
        for a, b in itertools.pairwise(pts):
            fwd, _, d = GEOD.inv(a[0], a[1], b[0], b[1])
            cum.append(cum[-1] + d)
            az.append(fwd % 360.0)
        return cls(pts, ks, cum, az)

    @property
    def length_m(self) -> float:
        return self.cum[-1]

    def segment(self, s: float) -> int:
        return min(max(bisect.bisect_right(self.cum, s) - 1, 0), max(len(self.kinds) - 1, 0))

    def at(self, s: float) -> tuple[float, float, float]:
        """lon, lat and heading ``s`` metres along (linear within a segment: they are short)."""
        if not self.kinds:
            return self.points[0][0], self.points[0][1], 0.0
        s = min(max(s, 0.0), self.length_m)
        i = self.segment(s)
        span = self.cum[i + 1] - self.cum[i]
        f = 0.0 if span <= 0 else (s - self.cum[i]) / span
        (x0, y0), (x1, y1) = self.points[i], self.points[i + 1]
        return x0 + (x1 - x0) * f, y0 + (y1 - y0) * f, self.azimuths[i]


def route_between(conn: psycopg.Connection, a: tuple[float, float], b: tuple[float, float]) -> Route:
    """The road from a to b (pgRouting, ``sim_route.sql``) with the off-road legs at both ends;
    straight across country when there are no roads."""
    rows = conn.execute(
        query("sim_route"), {"from_lon": a[0], "from_lat": a[1], "to_lon": b[0], "to_lat": b[1]}
    ).fetchall()
    if not rows:
        return Route.through([a, b], ["offroad"])
    points = [a] + [(float(r[0]), float(r[1])) for r in rows] + [b]
    kinds = ["offroad"] + [str(r[2]) for r in rows[1:]] + ["offroad"]
    return Route.through(points, kinds)

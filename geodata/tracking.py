"""Van GPS in PostGIS: the history (``van_positions``), the latest fix (``vans``) and mileage.

One batch is one transaction: the vans it names are locked (in id order), its pings go into the
history with one multi-row INSERT (a ping already stored for that van and time is skipped), and
each van moves to its newest *new* ping if that is newer than the one it shows, and the batch's
live events go to the outbox (geodata/outbox.py) in the same transaction. So pings that
arrive late or twice land in the history once and never move a van backwards: the latest
position is always the one with the greatest ``recorded_at``.

Mileage (累计行驶, ``vans.odometer_km``) grows by the ellipsoidal (WGS-84) distance between
consecutive pings *in time order that are newer than the van's latest*: from the fix the van
showed to the batch's first newer ping, then ping to ping. A step that implies more than
``max_speed_kmh`` (200 km/h by default) is a GPS glitch and adds nothing; a late ping (older than
the van's latest) goes to the history only and is not counted either, so the odometer is never
rewritten after the fact. Both make the odometer a slight under-estimate, never an over-estimate.

Device identifiers (the OsmAnd ``id`` a phone sends) are credentials: only their SHA-256 is kept
(``van_devices``), like API tokens.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import psycopg
from psycopg.rows import dict_row
from pyproj import Geod

from geodata import dispatch, outbox
from geodata.errors import Invalid
from geodata.queries import query
from geodata.workflow import DeadlineRules, Rules

GEOD = Geod(ellps="WGS84")
DEFAULT_MAX_SPEED_KMH = 200.0


@dataclass(frozen=True)
class Ping:
    """One GPS report: WGS-84 degrees, speed in km/h, heading in degrees clockwise from north."""

    van: str
    time: datetime
    lon: float
    lat: float
    speed_kmh: float | None = None
    heading: float | None = None

    def __post_init__(self) -> None:
        # Speed and heading are stored as ``real``: a value below its smallest (1e-300 km/h) is an
        # error there, and 359.99999999999994° rounds up to 360, which the column refuses. A
        # thousandth is finer than any terminal reports; 360° is north, 0°.
        if self.speed_kmh is not None:
            object.__setattr__(self, "speed_kmh", round(self.speed_kmh, 3))
        if self.heading is not None:
            object.__setattr__(self, "heading", round(self.heading, 3) % 360)


@dataclass(frozen=True)
class Fix:
    """A van's latest position after a batch moved it."""

    van: str
    time: datetime
    lon: float
    lat: float
    speed_kmh: float | None
    heading: float | None
    odometer_km: float
    status: str


@dataclass(frozen=True)
class IngestResult:
    received: int
    stored: list[Ping]  # new in the history, oldest first
    moved: dict[str, Fix]  # the vans whose latest position changed
    events: list[dict[str, Any]] = field(default_factory=list)  # arrivals (written to the outbox with the batch)
    # Each van of the batch → its banner (None: the league's; 039_van_banner.sql): its live events
    # carry it, so a banner's screens get only their banner's vans (services/live.py).
    banners: dict[str, str | None] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return self.received - len(self.stored)


class UnknownVan(Invalid):
    """A ping names a van that does not exist (``index``: its place in the batch); nothing written."""

    def __init__(self, van: str, index: int) -> None:
        super().__init__(f"no van with id {van!r}", field=f"positions.{index}.van")
        self.van = van
        self.index = index


class PartitionCache:
    """The months this process knows have a ``van_positions`` partition (one per app)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._months: set[date] = set()

    def missing(self, months: set[date]) -> set[date]:
        with self._lock:
            return months - self._months

    def add(self, months: set[date]) -> None:
        with self._lock:
            self._months |= months


def _months(first: date, last: date) -> set[date]:
    out, month = set(), date(first.year, first.month, 1)
    while month <= last:
        out.add(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return out


def ensure_partitions(conn: psycopg.Connection, times: list[datetime], cache: PartitionCache) -> None:
    """Create the monthly partitions the times fall in, in their own committed transaction.

    A day of margin either side covers the server's time zone (partition bounds are dates).
    Creating partitions is serialised by an advisory lock so two first batches of a new month
    do not both try; a month is remembered once done. Call with no transaction open.
    """
    first, last = (min(times) - timedelta(days=1)).date(), (max(times) + timedelta(days=1)).date()
    todo = cache.missing(_months(first, last))
    if not todo:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('yitu_ensure_month_partitions'))")
        conn.execute("SELECT yitu_ensure_month_partitions('van_positions'::regclass, %s, %s)", (min(todo), max(todo)))
    cache.add(todo)


def _distinct(pings: list[Ping]) -> list[Ping]:
    """First ping per (van, time): a repeat inside one batch is a duplicate too."""
    seen: set[tuple[str, datetime]] = set()
    out = []
    for p in pings:
        if (p.van, p.time) not in seen:
            seen.add((p.van, p.time))
            out.append(p)
    return out


def _batch(pings: list[Ping], km: list[float] | None = None) -> str:
    """The pings as one JSON array of {van, time, lon, lat, speed, heading} (and ``km`` when given:
    the latest fixes' distances) for ``json_to_recordset`` (van_positions_insert.sql,
    van_update_latest.sql): one text parameter, where six arrays cost psycopg four times the Python
    time to dump (0.53 against 0.12 ms for 50 pings; docs/scaling.md)."""
    rows = [
        {"van": p.van, "time": p.time, "lon": p.lon, "lat": p.lat, "speed": p.speed_kmh, "heading": p.heading}
        for p in pings
    ]
    if km is not None:
        for row, k in zip(rows, km, strict=True):
            row["km"] = k
    return orjson.dumps(rows).decode()


def mileage_km(track: list[tuple[float, float, datetime]], max_speed_kmh: float) -> float:
    """Kilometres along ``(lon, lat, time)`` points in time order, leaving out glitch steps."""
    if len(track) < 2:
        return 0.0
    lon = np.array([t[0] for t in track])
    lat = np.array([t[1] for t in track])
    secs = np.array([(t[2] - track[0][2]).total_seconds() for t in track])
    _, _, metres = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    km = np.asarray(metres) / 1000.0
    hours = np.diff(secs) / 3600.0
    plausible = (hours > 0) & (km <= max_speed_kmh * hours)
    return float(km[plausible].sum())


def ingest(
    conn: psycopg.Connection,
    pings: list[Ping],
    *,
    partitions: PartitionCache,
    max_speed_kmh: float = DEFAULT_MAX_SPEED_KMH,
    arrival_radius_m: float = dispatch.DEFAULT_ARRIVAL_RADIUS_M,
    rules: Rules | None = None,
    moved_events: Callable[[IngestResult], Iterable[Mapping[str, Any]]] | None = None,
) -> IngestResult:
    """Store a batch and move the vans; commits (call with no transaction open).

    A van on its way to a case whose newest in-order fix lies within ``arrival_radius_m`` of it
    arrives, in the same transaction (geodata/dispatch.py ``arrive``: one statement per batch);
    late pings never move a van, so they never make it arrive. The batch's events go to the
    outbox in that transaction too: first what ``moved_events`` makes of the result (the screens'
    ``van.moved``, services/vans.py), then the arrivals' (``IngestResult.events``).

    Raises :class:`UnknownVan` (nothing written) if a ping names a van that does not exist.
    """
    if not pings:
        return IngestResult(0, [], {})
    ensure_partitions(conn, [p.time for p in pings], partitions)
    rows = _distinct(pings)
    with conn.transaction():
        with conn.cursor(row_factory=dict_row) as cur:
            vans = {
                r["id"]: r for r in cur.execute(query("van_lock"), {"ids": sorted({p.van for p in rows})}, prepare=True)
            }
        for i, p in enumerate(pings):
            if p.van not in vans:
                raise UnknownVan(p.van, i)
        new = {(r[0], r[1]) for r in conn.execute(query("van_positions_insert"), {"batch": _batch(rows)}, prepare=True)}
        stored = sorted((p for p in rows if (p.van, p.time) in new), key=lambda p: p.time)
        moves = _moves(stored, vans, max_speed_kmh)
        moved: dict[str, Fix] = {}
        events: list[dict[str, Any]] = []
        if moves:
            latest = [m[0] for m in moves]
            params = {"batch": _batch(latest, [m[1] for m in moves])}
            for van, odometer, status in conn.execute(query("van_update_latest"), params, prepare=True):
                p = next(x for x in latest if x.van == van)
                moved[van] = Fix(van, p.time, p.lon, p.lat, p.speed_kmh, p.heading, float(odometer), status)
            events = dispatch.arrive(conn, latest, arrival_radius_m, rules or DeadlineRules(), datetime.now(UTC))
            for e in events:
                if e["type"] == "dispatch.arrived":
                    moved[e["van"]] = replace(moved[e["van"]], status="on_site")
        result = IngestResult(len(pings), stored, moved, events, {v: r["banner"] for v, r in vans.items()})
        outbox.append(conn, [*(moved_events(result) if moved_events else ()), *events])
    return result


def _moves(stored: list[Ping], vans: dict[str, dict[str, Any]], max_speed_kmh: float) -> list[tuple[Ping, float]]:
    """Per van with pings newer than its latest: (the newest ping, the km its in-order pings add)."""
    newer: dict[str, list[Ping]] = defaultdict(list)
    for p in stored:  # oldest first
        last = vans[p.van]["last_seen_at"]
        if last is None or p.time > last:
            newer[p.van].append(p)
    out = []
    for van, ps in sorted(newer.items()):
        v = vans[van]
        track = [(p.lon, p.lat, p.time) for p in ps]
        if v["lon"] is not None and v["last_seen_at"] is not None:
            track.insert(0, (v["lon"], v["lat"], v["last_seen_at"]))
        out.append((ps[-1], mileage_km(track, max_speed_kmh)))
    return out


# The longest trail the vans layer draws (its trail_minutes): the scheduler's first roll of a van
# reaches this far back, and trail points older than this are forgotten.
TRAIL_WINDOW = timedelta(hours=24)
TRAIL_ROLL_FIXES = 1000  # a van's fixes per roll at most: one far behind catches up roll by roll


def roll_trails(conn: psycopg.Connection) -> dict[str, int]:
    """Roll every van's fixes stored since the end of its trail into ``van_trail``, simplified
    together with the trail's newest point (taken off first: geodata/sql/van_trail_take.sql, then
    van_trail_roll.sql), and forget the trail points older than :data:`TRAIL_WINDOW`; one
    transaction. The scheduler's ``trails`` job (services/scheduler.py); returns how many vans moved
    on, how many fixes they had and how many trail points those kept."""
    with conn.transaction():
        taken = [
            {"van": van, "at": at.isoformat(), "lon": lon, "lat": lat}
            for van, at, lon, lat in conn.execute(query("van_trail_take"), prepare=True)
        ]
        params = {"window": TRAIL_WINDOW, "per_van": TRAIL_ROLL_FIXES, "taken": orjson.dumps(taken).decode()}
        rows = conn.execute(query("van_trail_roll"), params, prepare=True).fetchall()
        forgotten = conn.execute("DELETE FROM van_trail WHERE at < now() - %s", (TRAIL_WINDOW,)).rowcount
    return {
        "vans": sum(1 for r in rows if int(r[2])),
        "fixes": sum(int(r[2]) for r in rows),
        "points": sum(int(r[1]) for r in rows),
        "forgotten": max(forgotten, 0),
    }


def van_list(
    conn: psycopg.Connection, *, offline_seconds: float, at: datetime, van: str | None = None, scope: str | None = None
) -> list[dict[str, Any]]:
    """Every van (or ``van`` alone) as the API shows it, of those a reader scoped to ``scope`` sees
    (its banner's and the league's, in the WHERE: 039_van_banner.sql); None: every van."""
    params = {"offline_seconds": offline_seconds, "at": at, "id": van, "scope": scope}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("van_list"), params).fetchall()


def track(conn: psycopg.Connection, van: str, since: datetime, until: datetime, limit: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("van_track"), {"van": van, "since": since, "until": until, "limit": limit}).fetchall()


# --- devices (the OsmAnd credential) -------------------------------------------------------------


# A device identifier is the device's password: short ones (Traccar Client's default is 6 digits)
# could be guessed. ``yitu van register`` and ``yitu import vans`` both refuse them.
MIN_DEVICE_LEN = 8
MAX_DEVICE_LEN = 200


def device_identifier_problem(identifier: str) -> str | None:
    """Why an identifier may not be registered, or None."""
    if not MIN_DEVICE_LEN <= len(identifier) <= MAX_DEVICE_LEN or not identifier.isprintable():
        return f"use {MIN_DEVICE_LEN} to {MAX_DEVICE_LEN} printable characters: the identifier is the device's password"
    return None


def device_hash(identifier: str) -> str:
    return hashlib.sha256(identifier.encode("utf-8")).hexdigest()


def van_of_device(conn: psycopg.Connection, identifier: str) -> str | None:
    row = conn.execute(
        "SELECT van_id FROM van_devices WHERE device_hash = %s", (device_hash(identifier),), prepare=True
    ).fetchone()
    return row[0] if row else None


def register_device(conn: psycopg.Connection, van: str, identifier: str) -> str | None:
    """Let ``identifier`` report for ``van``; returns the van it reported for before, if another.

    Raises ValueError if there is no such van.
    """
    if conn.execute("SELECT 1 FROM vans WHERE id = %s", (van,)).fetchone() is None:
        raise ValueError(f"no van with id {van!r}")
    digest = device_hash(identifier)
    before = conn.execute("SELECT van_id FROM van_devices WHERE device_hash = %s FOR UPDATE", (digest,)).fetchone()
    conn.execute(
        """INSERT INTO van_devices (device_hash, van_id) VALUES (%s, %s)
                    ON CONFLICT (device_hash) DO UPDATE SET van_id = EXCLUDED.van_id, created_at = now()""",
        (digest, van),
    )
    return before[0] if before and before[0] != van else None


def unregister_device(conn: psycopg.Connection, identifier: str) -> str | None:
    """Forget a device; returns the van it reported for, or None if it was not registered."""
    row = conn.execute(
        "DELETE FROM van_devices WHERE device_hash = %s RETURNING van_id", (device_hash(identifier),)
    ).fetchone()
    return row[0] if row else None


# The vans an admin of the reach %(reach)s manages (NULL: every van): its banner's, never the league's
# own (a van of no banner: geodata/sql/039_van_banner.sql); ``{van}`` is the vans row's alias.
# services/identity.py builds the reach of users and tokens on it.
VAN_IN_REACH = (
    "(%(reach)s::text IS NULL OR (yitu_van_banner({van}.base_center_id) IS NOT NULL"
    " AND yitu_van_in_scope(%(reach)s, yitu_van_banner({van}.base_center_id))))"
)


def device_counts(conn: psycopg.Connection, reach: str | None = None) -> list[tuple[str, str, int]]:
    """(van id, name, registered devices) for every van an admin of ``reach`` manages (None: every van;
    else its banner's, never the league's own: services/admin.py ``reach``)."""
    return [
        (r[0], r[1], int(r[2]))
        for r in conn.execute(
            "SELECT v.id, v.name, count(d.device_hash) FROM vans v LEFT JOIN van_devices d ON d.van_id = v.id"
            " WHERE " + VAN_IN_REACH.format(van="v") + " GROUP BY v.id, v.name ORDER BY v.id",
            {"reach": reach},
        )
    ]

"""``/api/v1/vans``: GPS from the roving mediation vans (行走的调解室), their board and their tracks.

Who may post a van's positions: an ``admin`` token, any van; a ``van`` token, only the van whose
id is the token's name (``yitu token create --role van --name V01`` reports for V01 alone). Phones
running Traccar Client post through ``/osmand`` instead (api/osmand.py), with a registered device
identifier as their credential.

A batch is all or nothing: one bad row rejects it whole with a 422 whose ``errors`` name every bad
row (``positions.3.lon``), so a terminal never has to guess what was kept. Pings already stored
are not an error (a terminal resending its buffer is normal): they are counted as ``duplicates``.

Where things go (geodata/tracking.py): the history to PostGIS and each van's latest fix to
``vans`` in one transaction (the only copy of the latest fix, which every reader reads), and in
the same transaction one ``van.moved`` event per stored ping to the outbox (services/vans.py,
geodata/outbox.py), which the relay publishes for the live screens once it commits. Redis is not
on the request's path: when it is down the positions are saved, the request succeeds, and the
events go out when it is back.

A reader scoped to an area sees the vans of its banner and the league's own vans only (a van
belongs to its base centre's banner: 039_van_banner.sql), in the list and in a track: another
banner's van is a 404 naming ``van``, as an unknown one.

Offline is computed when read: a van whose ``last_seen_at`` is older than
``van_offline_seconds`` (or that never reported) shows ``offline``; ``vans.status`` keeps its
dispatch status, so a van that reports again is back as it was. No sweep writes 'offline'.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from api import errors
from api.auth import Principal, principal
from api.cases import require_json
from api.deps import role_in, runtime, services
from api.idempotency import OptionalKey, answered, key_of, keyed
from api.openapi import READ, WRITE, answers
from api.params import Instant
from geodata import idempotency, tracking
from geodata.db import writing
from geodata.idempotency import Key
from geodata.queries import iso, pick
from geodata.tracking import IngestResult, Ping
from services.runtime import Services
from services.vans import moved_events

log = logging.getLogger("yitu.vans")
router = APIRouter(prefix="/api/v1/vans", tags=["vans"])

VAN_ID = r"^[A-Za-z0-9_-]{1,32}$"
MAX_BATCH = 5000
MAX_FUTURE = timedelta(minutes=5)  # terminals' clocks drift a little; more is a clock fault
MAX_AGE = timedelta(days=366)  # older is a clock fault too (and would open partitions for nothing)
MAX_SPEED_KMH = 400.0
POSTERS = frozenset({"admin", "van"})


def check_time(v: datetime, now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    if v > now + MAX_FUTURE:
        raise ValueError(f"{v.isoformat()} is more than 5 minutes in the future (is the terminal's clock right?)")
    if v < now - MAX_AGE:
        raise ValueError(f"{v.isoformat()} is more than a year ago (is the terminal's clock right?)")
    return v


class PositionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    van: str = Field(pattern=VAN_ID, description="The van's id, e.g. V01.")
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="WGS-84 longitude")
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="WGS-84 latitude")
    time: AwareDatetime = Field(description="When the fix was taken (ISO 8601 with an offset, or unix seconds).")
    speed: float | None = Field(default=None, ge=0, le=MAX_SPEED_KMH, allow_inf_nan=False, description="km/h")
    heading: float | None = Field(
        default=None, ge=0, lt=360, allow_inf_nan=False, description="Degrees clockwise from north, [0, 360)."
    )

    @field_validator("time")
    @classmethod
    def _plausible(cls, v: datetime) -> datetime:
        return check_time(v)

    def ping(self) -> Ping:
        return Ping(self.van, self.time, self.lon, self.lat, self.speed, self.heading)


class PositionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    positions: list[PositionIn] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} pings, any vans, any order."
    )


def _partitions(request: Request) -> tracking.PartitionCache:
    cache = getattr(request.app.state, "van_partitions", None)
    if cache is None:
        cache = request.app.state.van_partitions = tracking.PartitionCache()
    return cache


def _options(request: Request) -> dict[str, Any]:
    svc: Services = request.app.state.services
    return {
        "partitions": _partitions(request),
        "max_speed_kmh": svc.settings.van_max_speed_kmh,
        "arrival_radius_m": svc.settings.arrival_radius_m,
        "rules": runtime(request).rules,
        "moved_events": moved_events,  # with the arrivals' dispatch.arrived, case.changed: to the outbox
    }


def accept(request: Request, pings: list[Ping]) -> IngestResult:
    """Store a batch and its events (one transaction); the shared path of both endpoints."""
    svc: Services = request.app.state.services
    with writing(svc.pool) as conn:  # ingest commits itself: a lost COMMIT is outcome_unknown (geodata/db.py)
        return tracking.ingest(conn, pings, **_options(request))


def accept_once(request: Request, pings: list[Ping], key: Key) -> tuple[dict[str, Any], bool]:
    """:func:`accept` with ``key``: the batch, its events and its answer are stored in one
    transaction (geodata/idempotency.py), and a batch stored before under that key gives its
    stored answer: (the answer, replayed?)."""
    svc: Services = request.app.state.services
    options = _options(request)
    with writing(svc.pool) as conn:
        # The months' partitions first, committed on their own (ingest's own call then finds them
        # made); then the key, the batch, its events and its answer in one transaction.
        tracking.ensure_partitions(conn, [p.time for p in pings], options["partitions"])
        with conn.transaction():
            return idempotency.once(conn, key, 200, lambda: positions_answer(tracking.ingest(conn, pings, **options)))


def positions_answer(result: IngestResult) -> dict[str, Any]:
    """The answer to a batch: how many pings came, were stored, were already there; which vans moved."""
    return {
        "received": result.received,
        "stored": len(result.stored),
        "duplicates": result.duplicates,
        "moved": sorted(result.moved),
    }


# --- the endpoints -------------------------------------------------------------------------------

Svc = Annotated[Services, Depends(services)]
Who = Annotated[Principal, Depends(principal)]


def _may_post(who: Principal, body: PositionsIn) -> None:
    if who.role not in POSTERS:
        raise errors.Forbidden(
            f"a {who.role} token cannot report van positions (admin or van only)", field="Authorization"
        )
    if who.role == "van":  # a van's token, or a signed-in crew member (/m/van): that van only
        for i, p in enumerate(body.positions):
            if p.van != who.van:
                raise errors.Forbidden(
                    f"this van crew reports for {who.van} only, not {p.van}", field=f"positions.{i}.van"
                )


@router.post(
    "/positions",
    dependencies=[Depends(role_in(POSTERS, "report van positions (admin or van only)")), Depends(require_json)],
    summary="A batch of GPS pings from vehicle terminals (all or nothing)",
    description="Pings already stored are counted as duplicates, never stored twice. With an Idempotency-Key "
    "a retry of the batch gets the first answer again (with its counts as they were).",
    responses=answers(*WRITE, ok=keyed(200, "What was stored")),
)
def post_positions(
    body: PositionsIn, request: Request, response: Response, who: Who, idempotency_key: OptionalKey = None
) -> dict[str, Any]:
    _may_post(who, body)
    pings = [p.ping() for p in body.positions]
    key = key_of(who, idempotency_key, "POST /api/v1/vans/positions", body.model_dump(mode="json"))
    if key is None:
        return positions_answer(accept(request, pings))
    out, replayed = accept_once(request, pings, key)
    return answered(response, out, replayed)


def van_out(row: dict[str, Any]) -> dict[str, Any]:
    plain = ("id", "name", "plate", "status", "dispatch_status", "lon", "lat", "heading", "speed_kmh", "cases_mediated")
    return {**pick(row, plain), "last_seen_at": iso(row["last_seen_at"]), "odometer_km": round(row["odometer_km"], 3)}


@router.get(
    "",
    summary="Every van the reader's area sees (its banner's and the league's): position, status (offline when "
    "silent), mileage, cases mediated",
    responses=answers(*READ),
)
def list_vans(svc: Svc, who: Who) -> dict[str, Any]:
    now = datetime.now(UTC)
    with svc.reading(alone=True) as conn:
        rows = tracking.van_list(conn, offline_seconds=svc.settings.van_offline_seconds, at=now, scope=who.area)
    return {
        "as_of": now.isoformat(),
        "offline_after_seconds": svc.settings.van_offline_seconds,
        "vans": [van_out(r) for r in rows],
    }


@router.get(
    "/{van}/track",
    summary="A van's pings in [since, until) as GeoJSON, oldest first, for replay",
    responses=answers(*READ),
)
def van_track(
    svc: Svc,
    who: Who,
    van: Annotated[str, Path(pattern=VAN_ID)],
    since: Annotated[
        Instant | None,
        Query(description="Default: an hour before until. Before until, and at most van_track_max_days (7) before it."),
    ] = None,
    until: Annotated[Instant | None, Query(description="Default: now.")] = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 10_000,
) -> dict[str, Any]:
    until = until or datetime.now(UTC)
    try:
        since = since or until - timedelta(hours=1)
    except OverflowError:  # an until in the first hour of year 1
        raise errors.Invalid("until is too early to have an hour before it", field="until") from None
    if since >= until:
        raise errors.Invalid("since must be before until", field="since")
    max_days = svc.settings.van_track_max_days
    if until - since > timedelta(days=max_days):
        raise errors.Invalid(f"ask for at most {max_days:g} days at a time", field="since")
    with svc.reading() as conn:
        known = tracking.van_list(
            conn, offline_seconds=svc.settings.van_offline_seconds, at=until, van=van, scope=who.area
        )
        if not known:  # no such van, or one of another banner: the same answer
            raise errors.NotFound(f"no van with id {van!r}", field="van")
        rows = tracking.track(conn, van, since, until, limit + 1)
    return track_geojson(van, rows[:limit], since, until, truncated=len(rows) > limit)


def track_geojson(
    van: str, rows: list[dict[str, Any]], since: datetime, until: datetime, truncated: bool
) -> dict[str, Any]:
    """A LineString of the whole track (when it has two points or more), then one Point per ping."""
    coords = [[round(r["lon"], 7), round(r["lat"], 7)] for r in rows]
    features: list[dict[str, Any]] = []
    if len(coords) > 1:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": coords},
                "properties": {
                    "van": van,
                    "kind": "track",
                    "start": iso(rows[0]["recorded_at"]),
                    "end": iso(rows[-1]["recorded_at"]),
                },
            }
        )
    features += [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": c},
            "properties": {
                "van": van,
                "kind": "ping",
                "time": iso(r["recorded_at"]),
                "speed_kmh": r["speed_kmh"],
                "heading": r["heading"],
            },
        }
        for c, r in zip(coords, rows)
    ]
    return {
        "type": "FeatureCollection",
        "features": features,
        "properties": {
            "van": van,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "count": len(rows),
            "truncated": truncated,
        },
    }

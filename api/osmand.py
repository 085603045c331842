"""``/osmand``: the OsmAnd protocol, as spoken by the free Traccar Client phone app.

So a phone in the van is enough. Per Traccar's decoder (traccar.org/osmand, OsmAndProtocolDecoder):

- ``GET`` or ``POST /osmand?id=…&lat=…&lon=…&timestamp=…&speed=…&bearing=…``; a POST may carry
  the same parameters form-encoded in its body instead. ``deviceid`` is accepted for ``id``,
  ``heading`` for ``bearing``, ``location=lat,lon`` for the pair.
- ``timestamp``: unix seconds (milliseconds when the number is too large for seconds), ISO 8601
  (``2026-11-22T08:00:00Z``) or ``yyyy-MM-dd HH:mm:ss`` (UTC). Missing: the time it arrived.
- ``speed`` is in **knots** (converted: × 1.852 → km/h); ``bearing`` in degrees.
- ``valid=false`` (no GPS fix) and ``lat=0&lon=0`` (no location) are acknowledged and not stored,
  so the phone does not resend them forever.
- Traccar Client 9 and later POST JSON instead: ``{"device_id": …, "location": {"timestamp": ISO,
  "coords": {"latitude", "longitude", "speed" (m/s), "heading"}}}``; that is read too (``location``
  may also be a list of such objects). Negative speed or heading means "unknown" there.

The app sends no headers, so the device identifier is the credential: it must have been
registered to a van (``yitu van register V01 --device IDENTIFIER``; only its SHA-256 is stored).
A missing identifier is 422, an unknown one 403, a bad value 422 naming the parameter; nothing is
stored then. After 20 unknown identifiers from one address in 15 minutes, that address gets 429 with
Retry-After (guessing is throttled as sign-ins are). A stored ping answers ``200`` with an empty
body, which is all the app looks at.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, overload
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api import errors
from api.openapi import answers
from api.vans import MAX_SPEED_KMH, accept, check_time
from geodata import tracking
from geodata.tracking import Ping
from services import identity
from services.runtime import Services

router = APIRouter(tags=["vans"])

KNOT_KMH = 1.852
MAX_BODY = 64 * 1024
MAX_ID = 200


def parse_time(value: str | None, now: datetime) -> datetime:
    """An OsmAnd timestamp (see the module docstring) as an aware UTC datetime."""
    if value is None or not value.strip():
        return now
    value = value.strip()
    try:
        if value.lstrip("-").isdigit():
            n = int(value)
            t = datetime.fromtimestamp(n / 1000 if n >= 2**31 - 1 else n, tz=UTC)
        else:
            t = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T", 1))
            t = t if t.tzinfo else t.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise errors.Invalid(
            f"timestamp {value[:40]!r} is neither unix seconds nor ISO 8601", field="timestamp"
        ) from None
    try:
        return check_time(t, now)
    except ValueError as exc:
        raise errors.Invalid(str(exc), field="timestamp") from None


@overload
def _number(params: Mapping[str, str], name: str, low: float, high: float, *, required: Literal[True]) -> float: ...
@overload
def _number(
    params: Mapping[str, str], name: str, low: float, high: float, *, high_open: bool = False, required: bool = False
) -> float | None: ...
def _number(
    params: Mapping[str, str], name: str, low: float, high: float, *, high_open: bool = False, required: bool = False
) -> float | None:
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        if required:
            raise errors.Invalid(f"{name} is required", field=name)
        return None
    try:
        v = float(raw)
    except ValueError:
        raise errors.Invalid(f"{name} {raw[:40]!r} is not a number", field=name) from None
    if not math.isfinite(v) or v < low or v > high or (high_open and v == high):
        bound = f"[{low:g}, {high:g}{')' if high_open else ']'}"
        raise errors.Invalid(f"{name} {v:g} is outside {bound}", field=name)
    return v


def device_of(params: Mapping[str, str]) -> str:
    device = (params.get("id") or params.get("deviceid") or "").strip()
    if not device:
        raise errors.Invalid("the device identifier (id) is missing: set it in Traccar Client", field="id")
    if len(device) > MAX_ID:
        raise errors.Invalid("the device identifier is too long", field="id")
    return device


def read_params(params: Mapping[str, str], now: datetime) -> tuple[str, Ping | None]:
    """(the device identifier, the ping, or None when the phone has no fix); 4xx on bad input."""
    device = device_of(params)
    params = dict(params)
    if "location" in params and "lat" not in params:
        lat_text, _, lon_text = params["location"].partition(",")
        params.update(lat=lat_text, lon=lon_text)
    if "bearing" not in params and "heading" in params:
        params["bearing"] = params["heading"]
    lat = _number(params, "lat", -90, 90, required=True)
    lon = _number(params, "lon", -180, 180, required=True)
    knots = _number(params, "speed", 0, MAX_SPEED_KMH / KNOT_KMH)
    bearing = _number(params, "bearing", 0, 360)
    when = parse_time(params.get("timestamp"), now)
    if params.get("valid", "true").strip().lower() in ("false", "0") or (lat == 0 and lon == 0):
        return device, None
    heading = None if bearing is None else bearing % 360
    speed = None if knots is None else round(knots * KNOT_KMH, 3)
    return device, Ping("", when, lon, lat, speed, heading)


def json_params(body: Any) -> list[dict[str, str]]:
    """Traccar Client 9's JSON as OsmAnd parameters (speed converted from m/s to knots)."""
    if not isinstance(body, dict):
        raise errors.Invalid("expected a JSON object with device_id and location", field="body")
    device = str(body.get("device_id") or body.get("id") or "")
    locations = body.get("location")
    locations = locations if isinstance(locations, list) else [locations]
    out = []
    for loc in locations:
        if not isinstance(loc, dict) or not isinstance(loc.get("coords"), dict):
            raise errors.Invalid("location.coords is required", field="location.coords")
        c = loc["coords"]
        p = {"id": device, "lat": c.get("latitude"), "lon": c.get("longitude"), "timestamp": loc.get("timestamp")}
        speed, heading = c.get("speed"), c.get("heading")
        if isinstance(speed, (int, float)) and speed >= 0:
            p["speed"] = speed * 3.6 / KNOT_KMH
        if isinstance(heading, (int, float)) and heading >= 0:
            p["bearing"] = heading
        out.append({k: str(v) for k, v in p.items() if v is not None})
    if not out:
        raise errors.Invalid("location is empty", field="location")
    return out


async def _params_of(request: Request) -> list[dict[str, str]]:
    query = dict(request.query_params)
    if request.method != "POST" or "id" in query or "deviceid" in query:
        return [query]
    body = await request.body()
    if len(body) > MAX_BODY:
        raise errors.Invalid("the body is too large for one position", field="body")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    text = body.decode("utf-8", errors="replace")
    if ctype == "application/json" or text.lstrip().startswith("{"):
        try:
            return json_params(json.loads(text))
        except json.JSONDecodeError:
            raise errors.Invalid("the body is not valid JSON", field="body") from None
    form = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
    return [{**query, **form}]


def _store(request: Request, batch: list[dict[str, str]], now: datetime) -> int:
    svc: Services = request.app.state.services
    device = device_of(batch[0])  # one device per request: the credential comes first
    address = request.client.host if request.client else None
    with svc.pool.connection() as conn:
        # Guessing identifiers is throttled as sign-ins are (services/identity.py): 20 unknown ones
        # from one address in 15 minutes, and that address waits.
        van = identity.unless_guessing(
            conn, "device", address, lambda c: tracking.van_of_device(c, device), what="device identifiers", field="id"
        )
    if van is None:
        raise errors.Forbidden(
            "unknown device identifier: register it with `yitu van register VAN --device IDENTIFIER`", field="id"
        )
    pings: list[Ping] = []
    for params in batch:
        _, ping = read_params(params, now)
        if ping is not None:
            pings.append(Ping(van, ping.time, ping.lon, ping.lat, ping.speed_kmh, ping.heading))
    return len(accept(request, pings).stored) if pings else 0


def _query(name: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


# The protocol's parameters, read by hand above (the route takes them from the query or a form
# body): what Traccar Client sends. The aliases (deviceid, location, heading) are read too.
_PARAMETERS = [
    _query(
        "id",
        "The device identifier registered to a van (alias: deviceid).",
        {"type": "string", "minLength": 1, "maxLength": MAX_ID, "pattern": r"\S"},
        True,
    ),
    _query("lat", "WGS-84 latitude (or location=lat,lon).", {"type": "number", "minimum": -90, "maximum": 90}, True),
    _query("lon", "WGS-84 longitude (or location=lat,lon).", {"type": "number", "minimum": -180, "maximum": 180}, True),
    _query(
        "timestamp",
        "Unix seconds (milliseconds when too large for seconds) or ISO 8601, within the last year and at most "
        "5 minutes ahead; default: when it arrived.",
        {"type": "string"},
    ),
    _query("speed", "Knots.", {"type": "number", "minimum": 0, "maximum": MAX_SPEED_KMH / KNOT_KMH}),
    _query("bearing", "Degrees (alias: heading).", {"type": "number", "minimum": 0, "maximum": 360}),
    _query("valid", "false: no GPS fix (acknowledged, not stored).", {"type": "string", "enum": ["true", "false"]}),
]
_DOC: dict[str, Any] = {
    "response_class": Response,
    "responses": answers(403, 413, 422, 429, 503, ok={200: {"description": "Stored (or a no-fix report): no body"}}),
    "openapi_extra": {"parameters": _PARAMETERS},
}


@router.get("/osmand", operation_id="osmand_get", summary="OsmAnd / Traccar Client position report", **_DOC)
@router.post("/osmand", operation_id="osmand_post", summary="OsmAnd / Traccar Client position report (body)", **_DOC)
async def osmand(request: Request) -> Response:
    batch = await _params_of(request)
    await run_in_threadpool(_store, request, batch, datetime.now(UTC))
    return Response(status_code=200)

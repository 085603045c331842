"""The vans' live state in Redis: each van's latest fix, written after PostGIS commits.

The copy only ever moves forward (a Lua compare on the fix time), so two requests finishing in
the wrong order cannot put a van back. Redis is best effort: when it is down, the positions are
still saved in PostGIS and the request still succeeds (the breaker skips Redis for a few seconds).
Everything here can be rebuilt from ``vans`` in PostGIS.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import redis

from geodata.tracking import Fix, IngestResult
from services.breaker import Breaker

log = logging.getLogger("yitu.vans")


def live_key(van: str) -> str:
    """The Redis hash of a van's latest fix: lon, lat, time, ts (epoch ms), speed_kmh, heading, …"""
    return f"yitu:van:{van}"


# Write the fix only if it is newer than the one held (ARGV[1] = its time in epoch ms).
_FORWARD_ONLY = """
local held = tonumber(redis.call('HGET', KEYS[1], 'ts') or '-1')
if tonumber(ARGV[1]) <= held then return 0 end
redis.call('HSET', KEYS[1], 'ts', ARGV[1], unpack(ARGV, 2))
return 1
"""


_breaker = Breaker()


def _fix_fields(fix: Fix) -> list[str]:
    fields = {
        "van": fix.van,
        "lon": repr(fix.lon),
        "lat": repr(fix.lat),
        "time": fix.time.isoformat(),
        "speed_kmh": "" if fix.speed_kmh is None else repr(fix.speed_kmh),
        "heading": "" if fix.heading is None else repr(fix.heading),
        "odometer_km": repr(round(fix.odometer_km, 3)),
        "status": fix.status,
    }
    return [x for kv in fields.items() for x in kv]


def write_live(client: redis.Redis, fixes: Iterable[Fix]) -> bool:
    """Put each van's latest fix into Redis (forward only); False, logged, if Redis is unavailable."""
    fixes = list(fixes)
    if not fixes:
        return True
    if _breaker.open(client):
        return False
    try:
        script = client.register_script(_FORWARD_ONLY)
        pipe = client.pipeline(transaction=False)
        for f in fixes:
            script(keys=[live_key(f.van)], args=[int(f.time.timestamp() * 1000), *_fix_fields(f)], client=pipe)
        pipe.execute()
    except redis.RedisError as exc:
        _breaker.trip(client)
        log.warning(
            "live van state unavailable; positions saved in PostGIS error=%s vans=%d", type(exc).__name__, len(fixes)
        )
        return False
    _breaker.reset(client)
    return True


def moved_events(result: IngestResult) -> list[dict[str, Any]]:
    """One ``van.moved`` per stored ping; ``latest`` says whether the van now shows it."""
    out = []
    for p in result.stored:
        fix = result.moved.get(p.van)
        latest = fix is not None and fix.time == p.time
        event = {
            "type": "van.moved",
            "van": p.van,
            "lon": p.lon,
            "lat": p.lat,
            "time": p.time.isoformat(),
            "speed_kmh": p.speed_kmh,
            "heading": p.heading,
            "latest": latest,
        }
        if latest and fix is not None:
            event.update(odometer_km=round(fix.odometer_km, 3), status=fix.status)
        out.append(event)
    return out

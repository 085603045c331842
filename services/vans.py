"""The vans' live state as screens see it: one ``van.moved`` event per stored ping on the stream.

A van's latest fix is the ``vans`` row, moved in the same transaction as the history
(geodata/tracking.py), so it is never older than anything Redis could hold: every reader (the
board, ``GET /api/v1/vans``, the dispatch candidates, the van layer) reads it there, in the query
that joins it to what else it needs. The live screens move the vans from the events. No per-van
copy is kept in Redis: written after the commit, it could only ever repeat PostGIS, and nothing
read it.

A van belongs to its base centre's banner (039_van_banner.sql; none: the league's own). Each
``van.moved`` carries that ``banner`` (a code, or null for a league van), and the live hub gives
it only to the screens whose area lies in that banner or holds it (services/live.py): a banner's
screens move only their banner's vans, as their map and board show only those. The event names
the van and where it is, never its crew.
"""

from __future__ import annotations

from typing import Any

from geodata.tracking import IngestResult


def moved_events(result: IngestResult) -> list[dict[str, Any]]:
    """One ``van.moved`` per stored ping; ``latest`` says whether the van now shows it; ``banner``
    whose screens may see it (None: every screen, a league van)."""
    out = []
    for p in result.stored:
        fix = result.moved.get(p.van)
        latest = fix is not None and fix.time == p.time
        event = {
            "type": "van.moved",
            "van": p.van,
            "banner": result.banners.get(p.van),
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

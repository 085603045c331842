"""China time: the one offset every day boundary in yitu is counted in (当天, "today", daily figures).

China keeps no daylight saving, so a fixed +08:00 offset is exact.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

CST = timezone(timedelta(hours=8))


def day_start(d: date | None, *, end: bool = False) -> datetime | None:
    """A calendar day (China time) as the instant it starts; ``end`` gives the next day's start."""
    if d is None:
        return None
    return datetime.combine(d + timedelta(days=1) if end else d, time.min, tzinfo=CST)

"""China time: the one offset every day boundary in yitu is counted in (当天, "today", daily figures).

China keeps no daylight saving, so a fixed +08:00 offset is exact.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

CST = timezone(timedelta(hours=8))


def shown(t: datetime | None, fmt: str = "%Y-%m-%d %H:%M", empty: str = "—") -> str:
    """``t`` as people in the centre read it: China time in ``fmt``; ``empty`` when there is none.

    PostgreSQL hands timestamps back in the session's zone (UTC), so every page, message and
    export shows a time through here, never by formatting the value it got.
    """
    return empty if t is None else t.astimezone(CST).strftime(fmt)


def day_start(d: date | None, *, end: bool = False) -> datetime | None:
    """A calendar day (China time) as the instant it starts; ``end`` gives the next day's start.

    The calendar's ends stay inside what Python and PostgreSQL can hold in UTC: the 1st of January
    of year 1 starts at the first instant there is (its China-time midnight is in year 0 in UTC),
    and the last day of year 9999 ends at its last microsecond.
    """
    if d is None:
        return None
    if end and d == date.max:
        return datetime.combine(d, time.max, tzinfo=CST)
    day = d + timedelta(days=1) if end else d
    if day == date.min:
        return datetime.combine(day, time(8), tzinfo=CST)  # 0001-01-01T00:00:00+00:00
    return datetime.combine(day, time.min, tzinfo=CST)


def day_of(t: datetime | None) -> date | None:
    """The China-time day that starts at ``t``; None when ``t`` is None or not a day's start.

    The KPI counters count by day: a period whose bounds are whole days can be read from them,
    any other needs the cases themselves.
    """
    if t is None:
        return None
    local = t.astimezone(CST)
    return local.date() if local.time() == time.min else None

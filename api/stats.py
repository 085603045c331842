"""``/api/v1/stats/ranking``: the monthly / quarterly / yearly ranking of towns (or villages; or the
banners of a league/city root).

A caller scoped to an area ranks its own area's children (and only areas inside its own).

The formula is in geodata/areas_stats.py (RANKING_FORMULA) and returned with every answer, so
whoever reads the ranking can check it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from api import errors
from api.auth import Principal, principal
from api.cases import AREA
from api.deps import services
from api.openapi import READ, answers
from api.params import Day
from geodata import areas_stats, queries
from geodata.clock import CST
from services.runtime import Services

router = APIRouter(prefix="/api/v1/stats", tags=["stats"], responses=answers(*READ))


@router.get("/ranking", summary="Ranking of the areas of one level (towns by default) for a period")
def get_ranking(
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(principal)],
    level: Annotated[
        int | None,
        Query(
            ge=1,
            le=4,
            description="Default: one level below the parent area (towns of a banner; banners of the league/city root)",
        ),
    ] = None,
    period: Literal["month", "quarter", "year"] = "quarter",
    at: Annotated[Day | None, Query(description="A day in the period, YYYY-MM-DD (default: today, China time)")] = None,
    area: Annotated[
        str | None,
        Query(
            pattern=AREA,
            description="Parent area above `level` (default: the banner, or an area-scoped caller's own area)",
        ),
    ] = None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    start, end = areas_stats.period_bounds(period, at or now.astimezone(CST).date())
    area = area or who.area  # a scoped caller ranks its own area's children
    if area is not None:
        who.require_area(area)
    with svc.reading(alone=True) as conn:
        if area is None:
            found = queries.banner(conn)
            if found is None:
                raise errors.NotFound("no territory loaded", field="area")
            area = found["code"]
            if level is not None and not queries.level_of(area) < level:
                # the territory's banners (level 1) with one banner and no league root: ranked under their
                # league's prefix all the same (codes nest; the root need not exist)
                area = area[: queries.ROOT_DIGITS]
        elif queries.area_summary(conn, area) is None:
            raise errors.NotFound(f"no area with code {area}", field="area")
        level = level or min(4, queries.level_of(area) + 1)
        if who.area is not None and not queries.level_of(who.area) < level:
            # ranking areas of its own level or above compares it with areas it may not see
            raise errors.Forbidden(
                f"a ranking of level {level} compares areas beyond your area {who.area}", field="level"
            )
        if not queries.level_of(area) < level:
            raise errors.Invalid(f"level {level} is not below the level of area {area}", field="level")
        rows = areas_stats.ranking(conn, level, area, start, end, now)
    return {
        "level": level,
        "period": period,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "area": area,
        "formula": areas_stats.RANKING_FORMULA,
        "ranking": rows,
    }

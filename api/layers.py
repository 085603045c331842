"""``GET /api/v1/layers/{grids|cameras|cases|vans|centers}``: the map's big layers, by URL.

GeoJSON by default, geobuf with ``?format=geobuf``; ``bbox=minx,miny,maxx,maxy`` in degrees.
Bad parameters are 422 naming the field. Coordinates are shifted to GCJ-02 when the base map is
an AMap-style one (settings), so overlays and tiles line up.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response

from api.deps import services
from api.errors import Invalid
from layers import cameras, cases, centers, grids, vans
from layers.base import BBox, encode
from services.runtime import Services

router = APIRouter(prefix="/api/v1/layers", tags=["layers"])

Format = Annotated[Literal["geojson", "geobuf"], Query(description="geojson (default) or geobuf")]
BBoxQ = Annotated[str | None, Query(max_length=200, description="minx,miny,maxx,maxy in degrees (WGS-84)")]
STEPS = Literal["reported", "accepted", "dispatched", "handling", "closed", "evaluated"]


def _bbox(text: str | None) -> BBox:
    try:
        return BBox.parse(text)
    except ValueError as exc:
        raise Invalid(str(exc), field="bbox") from None


def _respond(svc: Services, text: str, fmt: str) -> Response:
    body, media = encode(text, fmt, gcj02=svc.settings.basemap == "xyz" and svc.settings.basemap_gcj02)
    return Response(content=body, media_type=media, headers={"Cache-Control": "no-store"})


@router.get("/grids", summary="Grid polygons of one level (by level, or by zoom)")
def get_grids(
    svc: Annotated[Services, Depends(services)],
    bbox: BBoxQ = None,
    level: Annotated[int | None, Query(ge=1, le=4)] = None,
    zoom: Annotated[int | None, Query(ge=0, le=22)] = None,
    parent: Annotated[str | None, Query(pattern=r"^[0-9]{6}([0-9]{3}){0,3}$")] = None,
    format: Format = "geojson",
) -> Response:
    with svc.pool.connection() as conn:
        return _respond(svc, grids.features(conn, _bbox(bbox), level=level, zoom=zoom, parent=parent), format)


@router.get("/grids/stats", summary="Choropleth numbers for every area of a level")
def get_grid_stats(
    svc: Annotated[Services, Depends(services)], level: Annotated[int, Query(ge=1, le=4)]
) -> dict[str, Any]:
    with svc.pool.connection() as conn:
        return grids.stats_cached(conn, svc.redis, level)


@router.get("/cameras", summary="Cameras in a box")
def get_cameras(
    svc: Annotated[Services, Depends(services)],
    bbox: BBoxQ = None,
    status: Annotated[Literal["online", "offline"] | None, Query()] = None,
    kind: Annotated[Literal["dome", "bullet", "mini_dome", "checkpoint"] | None, Query()] = None,
    format: Format = "geojson",
) -> Response:
    with svc.pool.connection() as conn:
        return _respond(svc, cameras.features(conn, _bbox(bbox), status=status, kind=kind), format)


@router.get("/cases", summary="Open case pins in a box (no personal data)")
def get_cases(
    svc: Annotated[Services, Depends(services)],
    bbox: BBoxQ = None,
    step: Annotated[STEPS | None, Query()] = None,
    type: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{1,40}$")] = None,
    overdue: bool = False,
    closed_hours: Annotated[int, Query(ge=0, le=24 * 30)] = 0,
    format: Format = "geojson",
) -> Response:
    with svc.pool.connection() as conn:
        return _respond(
            svc,
            cases.features(conn, _bbox(bbox), step=step, type=type, overdue_only=overdue, closed_hours=closed_hours),
            format,
        )


@router.get("/vans", summary="Vans and their trails")
def get_vans(
    svc: Annotated[Services, Depends(services)],
    trail_minutes: Annotated[int, Query(ge=0, le=24 * 60)] = 60,
    format: Format = "geojson",
) -> Response:
    with svc.pool.connection() as conn:
        return _respond(
            svc,
            vans.features(conn, trail_minutes=trail_minutes, offline_seconds=svc.settings.van_offline_seconds),
            format,
        )


@router.get("/centers", summary="Mediation centres in a box")
def get_centers(
    svc: Annotated[Services, Depends(services)],
    bbox: BBoxQ = None,
    max_level: Annotated[int, Query(ge=1, le=3)] = 3,
    format: Format = "geojson",
) -> Response:
    with svc.pool.connection() as conn:
        return _respond(svc, centers.features(conn, _bbox(bbox), max_level=max_level), format)

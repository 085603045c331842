"""Every router the app serves, in the order they are mounted (before Dash's catch-all)."""

from __future__ import annotations

from fastapi import APIRouter

from api import (
    area_export,
    areas,
    attachments,
    basemap,
    cases,
    deadlines,
    dispatch,
    errors,
    health,
    layers,
    mobile,
    mobile_van,
    osmand,
    roster,
    search,
    signin,
    stats,
    vans,
    welcome,
)


def all_routers() -> list[APIRouter]:
    return [
        health.router,
        signin.router,
        welcome.router,  # /welcome/<code>: an imported account's first password
        layers.make_router(),
        basemap.router,  # the base map's tiles (basemap=own / mbtiles)
        area_export.router,
        cases.router,
        attachments.router,
        areas.router,
        stats.router,
        vans.router,
        osmand.router,
        dispatch.router,
        mobile_van.router,
        search.router,
        mobile.router,  # /m, the grid worker's phone page, and /api/v1/locate
        roster.router,
        deadlines.router,  # /api/v1/deadlines: per banner or for the league
        errors.fallback_router(),  # last: the rest of /api/ is a JSON 404 / 405, never a page
    ]

"""Every router the app serves, in the order they are mounted (before Dash's catch-all)."""

from __future__ import annotations

from fastapi import APIRouter

from api import area_export, areas, cases, dispatch, health, layers, osmand, signin, stats, vans


def all_routers() -> list[APIRouter]:
    return [
        health.router,
        signin.router,
        layers.make_router(),
        area_export.router,
        cases.router,
        areas.router,
        stats.router,
        vans.router,
        osmand.router,
        dispatch.router,
    ]

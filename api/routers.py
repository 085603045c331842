"""Every router the app serves, in the order they are mounted (before Dash's catch-all)."""

from __future__ import annotations

from fastapi import APIRouter

from api import health


def all_routers() -> list[APIRouter]:
    return [health.router]

"""An ASGI factory for running several worker processes (``uvicorn --factory cli.asgi:app --workers N``).

``yitu serve`` runs one process; a deployment (and bench/bench_intake.py) may run several side by
side, each with its own pools, reading the same settings from the environment and ``.env``.
"""

from __future__ import annotations

from fastapi import FastAPI

from dashboard.app import create_app
from services.settings import Settings


def app() -> FastAPI:
    return create_app(Settings())

"""ASGI factories for benches that compare one app with a variant of itself under the same server.

``uvicorn --factory bench.asgi_variants:without_intake_front``: the app ``cli.asgi:app`` builds,
with the intake front (api/intake_front.py) taken out of its middleware before the first request,
so every report goes the framework's way (middleware, routing, dependencies, the route). Used by
bench/bench_intake_rate.py to measure both paths in the same run, on the same server options.
"""

from __future__ import annotations

from fastapi import FastAPI

from api.intake_front import IntakeFront
from cli.asgi import app as deployed


def without_intake_front() -> FastAPI:
    app = deployed()
    # Starlette builds its middleware stack from this list on the first call, not before.
    assert app.middleware_stack is None
    app.user_middleware = [m for m in app.user_middleware if m.cls is not IntakeFront]
    return app

"""Dash's callbacks run in the thread pool, not on the event loop (dashboard/callback_route.py).

Dash 4.4's FastAPI backend called a plain callback inside its ``async`` view: while one callback
waited on PostgreSQL, every other request of the process waited with it. Here a callback is held
inside the database (its table locked by the test) and the same process must answer other requests
meanwhile; the held callback then finishes with its answer when the lock goes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg

from dashboard.pages.wall import Ids

from .conftest import sign_in
from .helpers import wait_for

TYPES_OUTPUT = f"{Ids.FILTER_TYPE}.options"


def _types_request() -> dict[str, Any]:
    """The body the wall page posts for its pin filter's case types (callbacks/wall.py ``_types``)."""
    return {
        "output": TYPES_OUTPUT,
        "outputs": {"id": str(Ids.FILTER_TYPE), "property": "options"},
        "inputs": [{"id": str(Ids.SELECTED), "property": "data", "value": {"code": None}}],
        "state": [{"id": "lang", "property": "data", "value": "zh-CN"}],
        "changedPropIds": [f"{Ids.SELECTED}.data"],
    }


def _waiting_on_the_lock(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            ("%FROM case_types%",),
        ).fetchone()
    return bool(row and row[0])


def test_a_callback_waiting_on_the_database_holds_up_no_other_request(
    live_server: Any, demo_db: str, redis_url: str
) -> None:
    srv = live_server(demo_db, redis_url)
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        sign_in(http, demo_db, "viewer")
        origin = {"Origin": srv.url}
        assert http.post("/_dash-update-component", json=_types_request(), headers=origin).status_code == 200
        with psycopg.connect(demo_db) as locker, ThreadPoolExecutor(1) as pool:
            locker.execute("LOCK TABLE case_types IN ACCESS EXCLUSIVE MODE")  # held until the rollback
            held = pool.submit(http.post, "/_dash-update-component", json=_types_request(), headers=origin)
            wait_for(lambda: _waiting_on_the_lock(demo_db), timeout=15, what="the callback waiting on case_types")
            # the same process answers meanwhile: a page of the API and another callback's route
            with httpx.Client(base_url=srv.url, timeout=5, cookies=http.cookies) as other:
                assert other.get("/healthz").status_code == 200
                assert other.get("/api/v1/vans").status_code == 200
            assert not held.done()  # still inside the database
            locker.rollback()
            answer = held.result(timeout=30)
        assert answer.status_code == 200, answer.text
        options = answer.json()["response"][str(Ids.FILTER_TYPE)]["options"]
        assert {"label": "邻里纠纷", "value": "neighbour"} in options

"""Fixtures for the case workflow tests: an app on a clone of the seeded demo, tokens, points.

Imported by name into the test modules that use them (conftest.py belongs to the foundation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from dashboard.app import create_app
from services.identity import create_token
from services.settings import Settings

from .helpers import app_database


def settings_for(db: str, redis_url: str, tmp_path: Path, **extra: Any) -> Settings:
    """Settings for a test app: no background sweep, no token cache (revocation is immediate)."""
    return Settings(
        **{
            **app_database(db),
            "redis_url": redis_url,
            "home": tmp_path / "home",
            "_env_file": None,
            "scheduler_interval": 0,
            "auth_cache_seconds": 0,
            **extra,
        }
    )


@pytest.fixture
def cases_settings(demo_db: str, redis_url: str, tmp_path: Path) -> Settings:
    return settings_for(demo_db, redis_url, tmp_path)


@pytest.fixture
def client(cases_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(cases_settings), raise_server_exceptions=True) as c:
        yield c


@pytest.fixture
def token(demo_db: str) -> Callable[..., str]:
    """``token(role, area=None, name=...)`` → a new bearer token in the test's database."""

    def make(role: str, area: str | None = None, name: str | None = None) -> str:
        with psycopg.connect(demo_db) as conn:
            return create_token(conn, name=name or f"test-{role}", role=role, area=area)[1]

    return make


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def inner_point(dsn: str, level: int = 4, offset: int = 0, margin_m: float = 200) -> tuple[float, float, str]:
    """A point well inside an area of ``level`` (more than ``margin_m`` from its edge) and the area's code."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            """SELECT ST_X(p), ST_Y(p), code FROM (
                   SELECT code, ST_PointOnSurface(ST_Transform(ST_Buffer(ST_Transform(geom, 32648), -%s), 4326)) AS p
                   FROM areas WHERE level = %s ORDER BY code) s
               WHERE p IS NOT NULL AND NOT ST_IsEmpty(p) ORDER BY code OFFSET %s LIMIT 1""",
            (margin_m, level, offset),
        ).fetchone()
    assert row is not None
    return float(row[0]), float(row[1]), str(row[2])


def case_body(lon: float, lat: float, **extra: Any) -> dict[str, Any]:
    body = {
        "type": "grassland",
        "description": "巴图与乌兰其其格因草场边界发生争议，电话13812345678",
        "lon": lon,
        "lat": lat,
        "channel": "grid_app",
        "parties": [
            {"name": "巴图", "phone": "13812345678", "role": "申请人"},
            {"name": "乌兰其其格", "phone": "15900001111", "role": "被申请人"},
        ],
    }
    return {**body, **extra}


def inner_point_where(dsn: str, wanted: Callable[[str], bool]) -> tuple[float, float, str]:
    """The first of every 40th cell's inner points (as :func:`inner_point`) whose cell code is ``wanted``."""
    return next(p for p in (inner_point(dsn, offset=i) for i in range(0, 400, 40)) if wanted(p[2]))

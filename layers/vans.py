"""Roving mediation vans (行走的调解室): position, status colour, heading, the last hour's trail."""

from __future__ import annotations

from typing import Any

import dash_leaflet as dl
import psycopg
from psycopg.rows import dict_row

from layers.base import feature_collection

LAYER_ID = "layer-vans"


def features(conn: psycopg.Connection, *, trail_minutes: int = 60, offline_seconds: float = 300) -> str:
    return feature_collection(conn, "vans", {"trail_minutes": trail_minutes, "offline_seconds": offline_seconds})


def board(conn: psycopg.Connection, offline_seconds: float = 300) -> list[dict[str, Any]]:
    """The van status board: every van, its status (offline when silent too long) and mileage."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT id, name, plate, yitu_van_status(status, last_seen_at, make_interval(secs => %s)) AS status,
                      odometer_km, cases_mediated, last_seen_at FROM vans ORDER BY id""",
            (offline_seconds,),
        ).fetchall()


def component(url: str, hideout: dict[str, Any]) -> dl.GeoJSON:
    return dl.GeoJSON(
        id=LAYER_ID,
        url=url,
        pointToLayer={"variable": "yitu.map.vanPoint"},
        style={"variable": "yitu.map.trailStyle"},
        onEachFeature={"variable": "yitu.map.count_vans"},
        hideout=hideout,
    )

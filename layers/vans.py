"""Roving mediation vans (行走的调解室): position, status colour, heading, the last hour's trail."""

from __future__ import annotations

from typing import Any

import dash_leaflet as dl
import psycopg
from psycopg.rows import dict_row

from layers.base import feature_collection

LAYER_ID = "layer-vans"


def features(conn: psycopg.Connection, *, trail_minutes: int = 60) -> str:
    return feature_collection(conn, "vans", {"trail_minutes": trail_minutes})


def board(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The van status board: every van, its status and when it was last heard of."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, name, plate, status, odometer_km, cases_mediated, last_seen_at FROM vans ORDER BY id"
        ).fetchall()


def component(url: str, hideout: dict) -> dl.GeoJSON:
    return dl.GeoJSON(
        id=LAYER_ID,
        url=url,
        pointToLayer={"variable": "yitu.map.vanPoint"},
        style={"variable": "yitu.map.trailStyle"},
        onEachFeature={"variable": "yitu.map.count_vans"},
        hideout=hideout,
    )

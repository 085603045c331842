"""Roving mediation vans (行走的调解室): position, status colour, heading, the last hour's trail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from layers.registry import Filter, Layer


def board(conn: psycopg.Connection, offline_seconds: float = 300) -> list[dict[str, Any]]:
    """The van status board: every van, its status (offline when silent too long), mileage and
    where it was last (lon, lat; None before its first fix: the wall focuses the map on it)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT id, name, plate, yitu_van_status(status, last_seen_at, make_interval(secs => %s)) AS status,
                      odometer_km, cases_mediated, last_seen_at, ST_X(geom) AS lon, ST_Y(geom) AS lat
               FROM vans ORDER BY id""",
            (offline_seconds,),
        ).fetchall()


def _card(conn: psycopg.Connection, props: Mapping[str, Any], configured: Mapping[str, Any]) -> dict[str, Any] | None:
    """A van's row of the board (a click on its trail shows nothing)."""
    if props.get("kind") != "van":
        return None
    return next((v for v in board(conn, configured["offline_seconds"]) if v["id"] == str(props.get("id"))), None)


LAYER = Layer(
    name="vans",
    summary="Vans and their trails",
    label={"zh-CN": "调解车", "en": "Vans"},
    geometry="point+line",
    style="vanPoint",
    functions={"style": "trailStyle", "onEachFeature": "vanEach"},
    bbox=False,  # four to a few dozen vans: always all of them
    filters=(Filter("trail_minutes", int, default=60, ge=0, le=24 * 60),),
    settings={"offline_seconds": "van_offline_seconds"},
    card=_card,
    live=("van.", "dispatch."),
    order=50,
)

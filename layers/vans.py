"""Roving mediation vans (行走的调解室): position, status colour, heading, the last hour's trail.

A reader scoped to an area sees the vans of its banner and the league's own (a van belongs to its
base centre's banner, 039_van_banner.sql): the layer's SQL, the board and the card all take the
reader's area as ``scope`` and apply it in the WHERE.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from geodata import tracking
from geodata.queries import Figure, read_figure
from layers.registry import Filter, Layer


def board_figure(offline_seconds: float = 300, scope: str | None = None, van: str | None = None) -> Figure:
    """The van status board: every van a reader scoped to ``scope`` sees (its banner's and the
    league's; None: all), or ``van`` alone, its status (offline when silent too long), mileage and
    where it was last (lon, lat; None before its first fix: the wall focuses the map on it). Read
    every time (the vans' moves do not drop the figures' cache)."""
    stmt = sql.SQL(
        """SELECT id, name, plate,
                  yitu_van_status(status, last_seen_at, make_interval(secs => %(offline)s)) AS status,
                  odometer_km, cases_mediated, last_seen_at, ST_X(geom) AS lon, ST_Y(geom) AS lat
           FROM vans
           WHERE (%(van)s::text IS NULL OR id = %(van)s)
             AND yitu_van_in_scope(%(scope)s::text, yitu_van_banner(base_center_id))
           ORDER BY id"""
    )
    return Figure(stmt, {"offline": offline_seconds, "scope": scope, "van": van}, kept=False)


def board(
    conn: psycopg.Connection, offline_seconds: float = 300, scope: str | None = None, van: str | None = None
) -> list[dict[str, Any]]:
    """:func:`board_figure`, read."""
    rows: list[dict[str, Any]] = read_figure(conn, board_figure(offline_seconds, scope, van))
    return rows


def _card(conn: psycopg.Connection, props: Mapping[str, Any], configured: Mapping[str, Any]) -> dict[str, Any] | None:
    """A van's row of the board (a click on its trail shows nothing); nothing for a van outside the
    reader's area (``configured["scope"]``, which the card's caller adds)."""
    if props.get("kind") != "van" or not props.get("id"):
        return None
    rows = board(conn, configured["offline_seconds"], configured.get("scope"), str(props["id"]))
    return rows[0] if rows else None


LAYER = Layer(
    name="vans",
    summary="Vans and their trails",
    label={"zh-CN": "调解车", "en": "Vans"},
    geometry="point+line",
    style="vanPoint",
    functions={"style": "trailStyle", "onEachFeature": "vanEach"},
    bbox=False,  # four to a few dozen vans: always all of them
    filters=(Filter("trail_minutes", int, default=60, ge=0, le=int(tracking.TRAIL_WINDOW.total_seconds() // 60)),),
    settings={"offline_seconds": "van_offline_seconds"},
    card=_card,
    live=("van.", "dispatch."),
    order=50,
)

"""Case pins: colour by workflow step, a letter for the type, a pulsing ring when overdue."""

from __future__ import annotations

from typing import Any

import dash_leaflet as dl
import psycopg
from psycopg.rows import dict_row

from geodata import masking
from layers.base import BBox, clustered_points, feature_collection

LAYER_ID = "layer-cases"


def features(
    conn: psycopg.Connection,
    bbox: BBox,
    *,
    step: str | None = None,
    type: str | None = None,
    overdue_only: bool = False,
    closed_hours: int = 0,
) -> str:
    return feature_collection(
        conn,
        "cases",
        {**bbox.params(), "step": step, "type": type, "overdue_only": overdue_only, "closed_hours": closed_hours},
    )


def card(conn: psycopg.Connection, code: str, role: str | None = None) -> dict[str, Any] | None:
    """What a click on a pin shows; the parties as a reader of ``role`` may see them
    (geodata/masking.py: masked unless the role handles cases; the room screens pass SCREEN)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """SELECT c.code, c.type, t.name_zh AS type_zh, t.name_en AS type_en, c.step, c.level, c.deadline,
                      c.reported_at, c.grid_code, a.name AS grid_name, c.parties, c.channel, c.attempts,
                      c.deadline < now() AND yitu_step_open(c.step) AS overdue
               FROM cases c JOIN case_types t ON t.code = c.type LEFT JOIN areas a ON a.code = c.grid_code
               WHERE c.code = %s""",
            (code,),
        ).fetchone()
    if row is None:
        return None
    row["parties"] = masking.parties_for(role, row["parties"])
    return row


def component(url: str, hideout: dict[str, Any]) -> dl.GeoJSON:
    return clustered_points(LAYER_ID, url, hideout, js="case", radius=50, max_zoom=14)

"""Case pins: colour by workflow step, a letter for the type, a pulsing ring when overdue."""

from __future__ import annotations

from typing import Any

import dash_leaflet as dl
import psycopg
from psycopg.rows import dict_row

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


def mask_name(name: str) -> str:
    """张三丰 → 张**: the wall screen shows who is involved by surname only."""
    return (name[:1] + "*" * max(1, len(name) - 1)) if name else ""


def mask_phone(phone: str) -> str:
    """13812345678 → 138****5678."""
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****"


def card(conn: psycopg.Connection, code: str) -> dict[str, Any] | None:
    """What a click on a pin shows, with the parties' personal data masked."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """SELECT c.code, c.type, t.name_zh AS type_zh, t.name_en AS type_en, c.step, c.level, c.deadline,
                      c.reported_at, c.grid_code, a.name AS grid_name, c.parties, c.channel, c.attempts,
                      c.deadline < now() AND c.step IN ('reported', 'accepted', 'dispatched', 'handling') AS overdue
               FROM cases c JOIN case_types t ON t.code = c.type LEFT JOIN areas a ON a.code = c.grid_code
               WHERE c.code = %s""",
            (code,),
        ).fetchone()
    if row is None:
        return None
    row["parties"] = [
        {"name": mask_name(p.get("name", "")), "phone": mask_phone(p.get("phone", "")), "role": p.get("role", "")}
        for p in row["parties"] or []
    ]
    return row


def component(url: str, hideout: dict[str, Any]) -> dl.GeoJSON:
    return clustered_points(LAYER_ID, url, hideout, js="case", radius=50, max_zoom=14)

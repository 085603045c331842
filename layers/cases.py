"""Case pins: colour by workflow step, a glyph for the type, a pulsing ring when overdue.

The glyphs are the case types' own (``case_types.glyph``): the page gets them in the layer's hideout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from layers.registry import Cluster, Filter, Layer

# The steps a pin can be filtered by (the open ones and, with closed_hours, the recently closed).
STEPS = ("reported", "accepted", "dispatched", "handling", "closed", "evaluated")


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


def glyphs(conn: psycopg.Connection) -> dict[str, str]:
    """The glyph each case type's pin shows (a type without one shows its name's first character)."""
    return dict(conn.execute("SELECT code, coalesce(glyph, left(name_zh, 1)) FROM case_types ORDER BY code").fetchall())


def _params(values: Mapping[str, Any]) -> dict[str, Any]:
    """The query's parameters: ``?overdue=true`` narrows to the overdue pins (``overdue_only`` in the SQL,
    whose ``overdue`` is a property of each pin)."""
    return {**values, "overdue_only": values["overdue"]}


def _card(conn: psycopg.Connection, props: Mapping[str, Any], _configured: Mapping[str, Any]) -> dict[str, Any] | None:
    return card(conn, props["code"]) if props.get("code") else None


LAYER = Layer(
    name="cases",
    summary="Open case pins in a box (no personal data)",
    label={"zh-CN": "矛盾纠纷", "en": "Cases"},
    geometry="point",
    style="casePoint",
    cluster=Cluster(radius=50, max_zoom=14, style="caseCluster"),
    format="geobuf",
    filters=(
        Filter("step", choices=STEPS),
        Filter("type", pattern=r"^[a-z][a-z0-9_]{1,40}$"),
        Filter("overdue", bool, default=False),
        Filter("closed_hours", int, default=0, ge=0, le=24 * 30),
    ),
    params=_params,
    card=_card,
    page_data=lambda conn: {"glyphs": glyphs(conn)},
    live=("case.", "dispatch."),
    order=40,
)

"""Case pins: colour by workflow step, a glyph for the type, a pulsing ring when overdue, a mark
for a major or 群体性 (group) case.

The glyphs are the case types' own (``case_types.glyph``): the page gets them in the layer's hideout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from geodata import masking, workflow
from layers.registry import Cluster, Filter, Layer

# The steps a pin can have (the open ones and, with closed_hours, the recently closed): a rejected
# report is never a pin.
PIN_STEPS = tuple(step for step in workflow.STEPS if step != "rejected")


def card(
    conn: psycopg.Connection, code: str, role: str | None = None, scope: str | None = None
) -> dict[str, Any] | None:
    """What a click on a pin shows; the parties as a reader of ``role`` may see them
    (geodata/masking.py: masked unless the role handles cases; the room screens pass SCREEN);
    None for a case outside the reader's area ``scope`` (in the WHERE)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """SELECT c.code, c.type, t.name_zh AS type_zh, t.name_en AS type_en, c.step, c.level, c.deadline,
                      c.reported_at, c.grid_code, a.name AS grid_name, c.parties, c.channel, c.attempts,
                      c.severity, c.people_involved, c.amount_yuan, 'group' = ANY(c.flags) AS "group",
                      c.deadline < now() AND yitu_step_open(c.step) AS overdue,
                      (SELECT count(*) FROM attachments x WHERE x.case_id = c.id)::int AS attachments,
                      (SELECT count(*) FROM attachments x WHERE x.case_id = c.id AND x.kind = 'image')::int AS images
               FROM cases c JOIN case_types t ON t.code = c.type LEFT JOIN areas a ON a.code = c.grid_code
               WHERE c.code = %s
                 AND yitu_in_scope(%s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)""",
            (code, scope),
        ).fetchone()
    if row is None:
        return None
    row["parties"] = masking.parties_for(role, row["parties"])
    return row


def glyphs(conn: psycopg.Connection) -> dict[str, str]:
    """The glyph each case type's pin shows (a type without one shows its name's first character)."""
    return dict(conn.execute("SELECT code, coalesce(glyph, left(name_zh, 1)) FROM case_types ORDER BY code").fetchall())


def _params(values: Mapping[str, Any]) -> dict[str, Any]:
    """The query's parameters: ``?overdue=true`` narrows to the overdue pins (``overdue_only`` in the SQL,
    whose ``overdue`` is a property of each pin)."""
    return {**values, "overdue_only": values["overdue"]}


def _card(conn: psycopg.Connection, props: Mapping[str, Any], _configured: Mapping[str, Any]) -> dict[str, Any] | None:
    """A pin's card on a room screen: parties as whoever stands in front of it may see them."""
    return card(conn, props["code"], masking.SCREEN) if props.get("code") else None


LAYER = Layer(
    name="cases",
    summary="Open case pins in a box (no personal data)",
    label={"zh-CN": "矛盾纠纷", "en": "Cases"},
    geometry="point",
    style="casePoint",
    cluster=Cluster(radius=50, max_zoom=14, style="caseCluster"),
    format="geobuf",
    rows=True,  # thousands of pins reloaded after every batch: rows to the wire (layers/base.py Points)
    filters=(
        Filter("step", choices=PIN_STEPS),
        Filter("type", pattern=r"^[a-z][a-z0-9_]{1,40}$"),
        Filter("overdue", bool, default=False),
        Filter("level", choices=workflow.LEVELS),
        Filter("severity", choices=workflow.SEVERITIES),
        Filter("closed_hours", int, default=0, ge=0, le=24 * 30),
    ),
    params=_params,
    card=_card,
    page_data=lambda conn: {"glyphs": glyphs(conn)},
    live=("case.", "dispatch."),
    order=40,
)

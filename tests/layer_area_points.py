"""A small extra layer for tests/test_layer_registry.py, added the documented way (docs/adding-a-layer.md):
this module declaring one Layer, its SQL file beside it, and one style function (layer_area_points.js).

It lives in tests/ rather than layers/, so it joins the registry with ``registry.register(LAYER)``
(a module of layers/ would be found by itself) and leaves again with ``registry.unregister``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from layers.registry import Filter, Layer

SCRIPT = Path(__file__).with_suffix(".js")  # the style function, added to the page by the browser test


def _card(conn: psycopg.Connection, props: Mapping[str, Any], _configured: Mapping[str, Any]) -> dict[str, Any] | None:
    if not props.get("code"):
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT name, code, level FROM areas WHERE code = %s", (props["code"],)).fetchone()


LAYER = Layer(
    name="area_points",
    summary="A point inside each area of one level (a test layer)",
    label={"zh-CN": "区域标注点", "en": "Area points"},
    geometry="point",
    style="areaPoint",
    sql=Path(__file__).with_suffix(".sql"),
    filters=(Filter("level", int, default=2, ge=1, le=4),),
    card=_card,
    order=45,
)

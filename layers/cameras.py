"""Cameras (雪亮工程): clustered points, coloured by online/offline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from layers.registry import Cluster, Filter, Layer


def detail(conn: psycopg.Connection, camera_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT id, device_code, name, kind, status, stream_url, area_code,
                      ST_X(geom) AS lon, ST_Y(geom) AS lat FROM cameras WHERE id = %s""",
            (camera_id,),
        ).fetchone()


def _card(conn: psycopg.Connection, props: Mapping[str, Any], _configured: Mapping[str, Any]) -> dict[str, Any] | None:
    return detail(conn, int(props["id"])) if props.get("id") is not None else None


LAYER = Layer(
    name="cameras",
    summary="Cameras in a box",
    label={"zh-CN": "视频监控", "en": "Cameras"},
    geometry="point",
    style="cameraPoint",
    cluster=Cluster(radius=60, max_zoom=15, style="cameraCluster"),
    format="geobuf",
    filters=(
        Filter("status", choices=("online", "offline")),
        Filter("kind", choices=("dome", "bullet", "mini_dome", "checkpoint")),
    ),
    card=_card,
    order=30,
)

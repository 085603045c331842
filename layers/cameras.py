"""Cameras (雪亮工程): clustered points, coloured by online/offline.

A reader scoped to an area sees the cameras inside it (their ``area_code``, the smallest area
holding the point, under the scope: ``yitu_area_in_scope``), on the layer and on a camera's card;
a camera outside every area only the readers of the whole territory. A camera's stream is a view
into a place: as the cases, it stays with the area's readers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from layers.registry import Cluster, Filter, Layer


def detail(conn: psycopg.Connection, camera_id: int, scope: str | None = None) -> dict[str, Any] | None:
    """A camera, if it lies in the reader's area ``scope`` (None: the whole territory)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT id, device_code, name, kind, status, stream_url, area_code,
                      ST_X(geom) AS lon, ST_Y(geom) AS lat FROM cameras
               WHERE id = %s AND yitu_area_in_scope(%s::text, area_code)""",
            (camera_id, scope),
        ).fetchone()


def _card(conn: psycopg.Connection, props: Mapping[str, Any], configured: Mapping[str, Any]) -> dict[str, Any] | None:
    camera = props.get("id")
    if not isinstance(camera, int) or isinstance(camera, bool):  # what a click sends; anything else: no card
        return None
    return detail(conn, camera, configured.get("scope"))


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

"""Cameras (雪亮工程): clustered points, coloured by online/offline."""

from __future__ import annotations

from typing import Any

import dash_leaflet as dl
import psycopg
from psycopg.rows import dict_row

from layers.base import BBox, clustered_points, feature_collection

LAYER_ID = "layer-cameras"


def features(conn: psycopg.Connection, bbox: BBox, *, status: str | None = None, kind: str | None = None) -> str:
    return feature_collection(conn, "cameras", {**bbox.params(), "status": status, "kind": kind})


def detail(conn: psycopg.Connection, camera_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT id, device_code, name, kind, status, stream_url, area_code,
                      ST_X(geom) AS lon, ST_Y(geom) AS lat FROM cameras WHERE id = %s""",
            (camera_id,),
        ).fetchone()


def component(url: str, hideout: dict[str, Any]) -> dl.GeoJSON:
    return clustered_points(LAYER_ID, url, hideout, js="camera", radius=60, max_zoom=15)

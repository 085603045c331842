"""Mediation centres: the banner centre, town stations and village rooms."""

from __future__ import annotations

from typing import Any

import dash_leaflet as dl
import psycopg

from layers.base import BBox, feature_collection

LAYER_ID = "layer-centers"


def features(conn: psycopg.Connection, bbox: BBox, *, max_level: int = 3) -> str:
    return feature_collection(conn, "centers", {**bbox.params(), "max_level": max_level})


def component(url: str, hideout: dict[str, Any]) -> dl.GeoJSON:
    return dl.GeoJSON(
        id=LAYER_ID,
        url=url,
        pointToLayer={"variable": "yitu.map.centerPoint"},
        onEachFeature={"variable": "yitu.map.count_centers"},
        hideout=hideout,
    )

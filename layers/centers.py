"""Mediation centres: the banner centre, town stations and village rooms."""

from __future__ import annotations

from layers.registry import Filter, Layer

LAYER = Layer(
    name="centers",
    summary="Mediation centres in a box",
    label={"zh-CN": "调解中心", "en": "Mediation centres"},
    geometry="point",
    style="centerPoint",
    filters=(Filter("max_level", int, default=3, ge=1, le=3),),
    order=20,
)

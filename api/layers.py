"""``GET /api/v1/layers/<name>``: the map's big layers, by URL, one route per registered layer.

The routes are made from the layer registry (layers/registry.py) when the app is created: each
layer's filters become its query parameters, with their validation, so a bad parameter is a 422
naming the field and OpenAPI lists every layer with its parameters. GeoJSON by default, geobuf
with ``?format=geobuf``; ``bbox=minx,miny,maxx,maxy`` in degrees for the layers that take a box.
Coordinates are shifted to GCJ-02 when the base map is an AMap-style one (settings), so overlays
and tiles line up. ``/grids/stats`` (the choropleth's numbers) is the one route of its own.
A reader scoped to an area gets only its area's cases and figures, whatever the box: the area
goes into the layer's SQL as ``%(scope)s`` (the principal the guard bound, api/auth.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response

from api.auth import principal
from api.deps import services
from api.errors import Invalid
from api.openapi import GEOBUF, GEOJSON, READ, answers
from geodata import queries
from layers import grids, registry
from layers.base import BBOX_PATTERN, BBox, encode_answer
from layers.registry import Filter, Layer
from services import identity
from services.identity import Principal
from services.runtime import Services

Format = Annotated[Literal["geojson", "geobuf"], Query(description="geojson (default) or geobuf")]
BBoxQ = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern=BBOX_PATTERN,
        description="minx,miny,maxx,maxy in degrees (WGS-84), with minx < maxx and miny < maxy",
    ),
]
RevQ = Annotated[
    str | None,
    Query(
        max_length=20,
        pattern=r"^[0-9a-z]+$",
        description="Which push the page reloads for: the outbox id of the newest event of its batch (an "
        "answer computed after that event may be shared with other screens), or any other token to "
        "only make the URL new (services/layer_answers.py)",
    ),
]
LAYER_ANSWERS = answers(
    *READ,
    ok={
        200: {
            "description": "A FeatureCollection: GeoJSON, or geobuf with format=geobuf",
            "content": {
                GEOJSON: {"schema": {"type": "object"}},
                GEOBUF: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
ServicesDep = Annotated[Services, Depends(services)]
Who = Annotated[Principal, Depends(principal)]  # the guard's principal: a session or a bearer token


def _bbox(text: str | None) -> BBox:
    try:
        return BBox.parse(text)
    except ValueError as exc:
        raise Invalid(str(exc), field="bbox") from None


def _annotation(f: Filter) -> Any:
    """A filter as a FastAPI query parameter: its type (or its choices), optional when it has no default."""
    base: Any = Literal[f.choices] if f.choices else f.type
    if f.default is None:
        base = base | None
    return Annotated[base, Query(description=f.description, ge=f.ge, le=f.le, pattern=f.pattern)]


def _endpoint(layer: Layer) -> Callable[..., Response]:
    """The route of one layer: a function whose signature FastAPI reads for the parameters."""

    def endpoint(
        svc: Services,
        who: Principal,
        format: str = "geojson",
        bbox: str | None = None,
        rev: str | None = None,
        **filters: Any,
    ) -> Response:
        box = _bbox(bbox) if layer.bbox else None
        scope = {"scope": identity.scope_of(who)}  # the reader's area, whatever the box

        def compute() -> tuple[bytes, str]:
            values = {**filters, **layer.configured(svc.settings), **scope}
            gcj02 = svc.settings.basemap == "xyz" and svc.settings.basemap_gcj02
            with svc.reading() as conn:
                got = layer.read(conn, values, box, svc.settings.layer_max_features)
            return encode_answer(got, format, gcj02)  # encoded after the connection is back in the pool

        # The screens that reload after the same events share one answer (services/layer_answers.py):
        # keyed by everything that shapes it: the filters, the reader's area, the box and the format
        # (a layer's answer carries no personal data, so the role does not shape it).
        parts = {**filters, **scope, "bbox": box.params() if box else None, "format": format}
        (body, media), shared = svc.layer_answers.answer(
            svc.redis, layer.name, layer.live, parts, compute, rev=int(rev) if rev and queries.digits(rev) else None
        )
        headers = {"Cache-Control": "no-store", "X-Yitu-Shared": "1" if shared else "0"}
        return Response(content=body, media_type=media, headers=headers)

    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("svc", kw, annotation=ServicesDep), inspect.Parameter("who", kw, annotation=Who)]
    if layer.bbox:
        params.append(inspect.Parameter("bbox", kw, default=None, annotation=BBoxQ))
    params += [inspect.Parameter(f.name, kw, default=f.default, annotation=_annotation(f)) for f in layer.filters]
    params.append(inspect.Parameter("format", kw, default="geojson", annotation=Format))
    params.append(inspect.Parameter("rev", kw, default=None, annotation=RevQ))
    endpoint.__signature__ = inspect.Signature(params, return_annotation=Response)  # type: ignore[attr-defined]
    endpoint.__name__ = endpoint.__qualname__ = f"get_{layer.name}"
    return endpoint


def get_grid_stats(svc: ServicesDep, who: Who, level: Annotated[int, Query(ge=1, le=4)]) -> dict[str, Any]:
    scope = identity.scope_of(who)
    with svc.reading(alone=True) as conn:
        return grids.stats_cached(conn, svc.redis, level, scope)


def make_router() -> APIRouter:
    """The layers' routes for the layers registered now (an app made later sees layers added since)."""
    router = APIRouter(prefix=registry.URL_PREFIX, tags=["layers"])
    for layer in registry.all_layers():
        router.add_api_route(
            f"/{layer.name}",
            _endpoint(layer),
            methods=["GET"],
            summary=layer.summary,
            response_class=Response,
            responses=LAYER_ANSWERS,
        )
        if layer.name == grids.LAYER.name:
            router.add_api_route(
                "/grids/stats",
                get_grid_stats,
                methods=["GET"],
                summary="Choropleth numbers for every area of a level",
                responses=answers(*READ),
            )
    return router

"""``GET /api/v1/basemap/{z}/{x}/{y}.png``: the base map's tiles, from this server.

``basemap=own`` (the default): drawn from the deployment's own roads, land, water and places
(geodata/basemap.py), kept in Redis per generation of the data (an import of roads, areas or water
is drawn at once) and answered with an ETag, so a screen that pans back gets 304s.
``basemap=mbtiles``: the tile of the MBTiles file ``yitu basemap import`` put in the data folder
(geodata/mbtiles.py), TMS row flipped: a raster file's image as stored; a vector file's tile drawn
to PNG like the own map's (geodata/vector_basemap.py), kept in Redis per imported file and answered
with an ETag the same way. A tile with nothing on it (or missing from the file, or unreadable) is the
transparent PNG, never a 404 or a 500: a map does not fill its console with errors over empty steppe.

Tiles show geography, not cases: any signed-in identity and any wall screen may read them
(api/guard.py). The pages reach them on their own origin, so the Content-Security-Policy stays as
strict as without a base map.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import redis
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from redis.client import NEVER_DECODE

from api.deps import services
from api.errors import Invalid, NotFound
from api.openapi import READ, answers
from geodata import basemap, mbtiles, vector_basemap
from geodata.breaker import Breaker
from services.runtime import Services

log = logging.getLogger("yitu.basemap")

TILE_PATH = "/api/v1/basemap/{z}/{x}/{y}"
Y_PATTERN = r"^[0-9]{1,7}(@2x)?\.(png|jpg|webp)$"
_Y = re.compile(Y_PATTERN)
CACHE_PREFIX = "yitu:basemap:"
CACHE_CONTROL = "private, max-age=3600"  # a tile changes only with an import; the ETag tells it
IMAGES = ("image/png", "image/jpeg", "image/webp")
_breaker = Breaker()

router = APIRouter(prefix="/api/v1/basemap", tags=["map"])

TILE_ANSWERS = answers(
    *READ,
    ok={
        200: {
            "description": "The tile: a PNG of basemap=own or of an imported vector MBTiles (transparent "
            "where nothing is), or an imported raster MBTiles' own image (png, jpeg or webp)",
            "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in IMAGES},
        },
        304: {"description": "Not modified: the tile of the If-None-Match ETag is still the one"},
    },
)


def _parse_y(text: str, z: int) -> tuple[int, int]:
    """The row and the scale of ``12.png`` / ``12@2x.png``."""
    if not _Y.match(text):
        raise Invalid(f"{text!r} is not a row and an extension (e.g. 12.png or 12@2x.png)", field="y")
    row = text.split(".", 1)[0]
    scale = 2 if row.endswith("@2x") else 1
    return int(row.removesuffix("@2x")), scale


@router.get(
    "/{z}/{x}/{y}",
    summary="A tile of the base map (XYZ: row 0 at the top), drawn or stored by this server",
    description="Leaflet's URL template is /api/v1/basemap/{z}/{x}/{y}{r}.png ({r}: @2x on screens of two "
    "device pixels per pixel, a 512-pixel tile). x and y must lie in 0..2^z-1 (a 422 naming the field). "
    "The extension does not choose the format: an MBTiles' tiles come in its own.",
    responses=TILE_ANSWERS,
    response_class=Response,
)
def get_tile(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    z: Annotated[int, Path(ge=0, le=basemap.MAX_ZOOM, description="Zoom")],
    x: Annotated[int, Path(ge=0, le=(1 << basemap.MAX_ZOOM) - 1, description="Column, 0..2^z-1")],
    y: Annotated[
        str,
        Path(
            pattern=Y_PATTERN,
            max_length=16,
            description="Row 0..2^z-1, @2x for a 512-pixel tile, and an extension (png, jpg or webp)",
        ),
    ],
    style: Annotated[
        Literal["dark", "light"],
        Query(
            description="basemap=own or a vector MBTiles: dark (the wall, the desk pages) or light (the grid "
            "worker's phone page)"
        ),
    ] = "dark",
) -> Response:
    row, scale = _parse_y(y, z)
    key = basemap.TileKey(z, x, row, scale)  # 422 naming z, x or y out of range
    settings = svc.settings
    if settings.basemap == "mbtiles":
        return _mbtiles_tile(request, svc, key, style)
    if settings.basemap != "own":
        raise NotFound(f"this server draws no base map (YITU_BASEMAP={settings.basemap})", field="basemap")
    return _own_tile(request, svc, key, style)


def _mbtiles_tile(request: Request, svc: Services, key: basemap.TileKey, style: str) -> Response:
    folder = svc.settings.basemap_path()
    try:
        served = mbtiles.served(folder)
    except mbtiles.MbtilesRejected as exc:
        log.warning("basemap=mbtiles: the imported file cannot be served: %s", exc.message)
        return _png(basemap.empty_tile(key.size), None)
    if served is None:
        raise NotFound("no base map imported: `yitu basemap import FILE.mbtiles`", field="basemap")
    if served.info.vector:
        font = basemap.font_path(svc.settings.basemap_font)
        tag = vector_basemap.etag(served.identity, key, font, style)
        cache_key = f"{CACHE_PREFIX}mvt:{served.identity}:{tag.strip(chr(34))}:{key.z}/{key.x}/{key.y}@{key.scale}"
        return _drawn(request, svc, tag, cache_key, lambda: vector_basemap.render(folder, served, key, font, style))
    data = mbtiles.read_tile(folder, key.z, key.x, key.y)
    if data is None:
        return _png(basemap.empty_tile(key.size), None)
    return Response(data, media_type=mbtiles.media_type(data), headers={"Cache-Control": CACHE_CONTROL})


def _png(body: bytes, tag: str | None) -> Response:
    headers = {"Cache-Control": CACHE_CONTROL}
    if tag is not None:
        headers["ETag"] = tag
    return Response(body, media_type="image/png", headers=headers)


def _drawn(request: Request, svc: Services, tag: str, cache_key: str, draw: Callable[[], bytes]) -> Response:
    """A tile this server draws: 304 for the browser's copy, else from Redis, else drawn and kept."""
    if tag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={"ETag": tag, "Cache-Control": CACHE_CONTROL})
    hit = _cache_get(svc, cache_key)
    if hit is not None:
        return _png(hit, tag)
    body = draw()
    _cache_set(svc, cache_key, body)
    return _png(body, tag)


def _own_tile(request: Request, svc: Services, key: basemap.TileKey, style: str) -> Response:
    font = basemap.font_path(svc.settings.basemap_font)
    with svc.reading() as conn:
        gen = basemap.generation(conn)
        tag = basemap.etag(gen, key, font, style)
        cache_key = f"{CACHE_PREFIX}{gen}:{tag.strip(chr(34))}:{key.z}/{key.x}/{key.y}@{key.scale}"
        return _drawn(
            request, svc, tag, cache_key, lambda: basemap.render(conn, key, gen, font, _places(request), style)
        )


def _places(request: Request) -> basemap.Places:
    """The app's places and chosen names (per generation of its database)."""
    state: Any = request.app.state
    places = getattr(state, "basemap_places", None)
    if places is None:
        places = state.basemap_places = basemap.Places()
    return places


def _cache_get(svc: Services, key: str) -> bytes | None:
    if svc.settings.basemap_cache_s == 0 or _breaker.open(svc.redis):
        return None
    try:
        # the process's client decodes replies; a tile is bytes (redis-py's DUMP reads the same way)
        hit = svc.redis.execute_command("GET", key, **{NEVER_DECODE: []})  # type: ignore[no-untyped-call]
    except redis.RedisError as exc:
        _breaker.trip(svc.redis)
        log.warning("basemap cache unavailable error=%s", type(exc).__name__)
        return None
    return hit if isinstance(hit, bytes) else None


def _cache_set(svc: Services, key: str, body: bytes) -> None:
    if svc.settings.basemap_cache_s == 0 or _breaker.open(svc.redis):
        return
    try:
        svc.redis.set(key, body, ex=svc.settings.basemap_cache_s)
    except redis.RedisError as exc:
        _breaker.trip(svc.redis)
        log.warning("basemap tile not cached error=%s", type(exc).__name__)
        return
    _breaker.reset(svc.redis)

"""``yitu basemap``: a real base map from an MBTiles file, served by yitu itself.

``import`` judges the file (every problem at once, nothing written unless it is sound) and copies
it into the data folder (YITU_BASEMAP_DIR, default <YITU_HOME>/basemap); with ``YITU_BASEMAP=mbtiles``
the pages draw it from /api/v1/basemap/… on their own origin. Raster tiles (png, jpg, webp) are
served as stored; vector tiles (pbf) are drawn to PNG by the server in the own map's colours
(geodata/vector_basemap.py). The running servers read the file per tile, so a new import shows
without a restart.

Register the group in cli/main.py ``_register_groups``.
"""

from __future__ import annotations

from pathlib import Path

import click

from geodata import mbtiles, vector_basemap
from services.settings import Settings


def _describe(info: mbtiles.Info) -> str:
    bounds = ", ".join(f"{v:g}" for v in info.bounds) if info.bounds else "not given"
    tiles = f"{info.tiles} tiles, " if info.tiles is not None else ""
    return (
        f"{info.name}: {info.format}, zoom {info.minzoom}-{info.maxzoom}, bounds {bounds}, "
        f"{tiles}{info.size / 1024**2:.1f} MB; {_kind(info)}"
    )


def _kind(info: mbtiles.Info) -> str:
    """Raster or vector, and for vector what of it the server draws."""
    if not info.vector:
        return "raster, served as stored"
    drawn = [name for name in info.layers if name in vector_basemap.LAYERS]
    left = [name for name in info.layers if name not in vector_basemap.LAYERS]
    text = "vector, drawn by yitu"
    if info.layers:
        text += f"; layers drawn: {', '.join(drawn) or 'none'}"
    if left:
        text += f"; not drawn: {', '.join(left)}"
    return text


def _hint(settings: Settings) -> str:
    if settings.basemap == "mbtiles":
        return "the pages draw it now (YITU_BASEMAP=mbtiles)"
    return f"set YITU_BASEMAP=mbtiles to draw it (now YITU_BASEMAP={settings.basemap}) and restart yitu serve"


@click.group("basemap")
def basemap_group() -> None:
    """The base map: an MBTiles file served by yitu (YITU_BASEMAP=mbtiles), or yitu's own (own)."""


@basemap_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def import_(settings: Settings, file: Path) -> None:
    """Check FILE.mbtiles (raster: png, jpg or webp; or vector: pbf) and make it the base map."""
    try:
        info = mbtiles.install(file, settings.basemap_path(), settings.basemap_mbtiles_max_bytes)
    except mbtiles.MbtilesRejected as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"imported {_describe(info)} into {settings.basemap_path() / mbtiles.FILE_NAME}; {_hint(settings)}")


@basemap_group.command("status")
@click.pass_obj
def status(settings: Settings) -> None:
    """What the pages draw under the layers, and the imported MBTiles if there is one."""
    folder = settings.basemap_path()
    click.echo(f"basemap: {settings.basemap}")
    try:
        info = mbtiles.installed(folder, thorough=True)
    except mbtiles.MbtilesRejected as exc:
        raise click.ClickException(f"the imported file cannot be served: {exc.message}") from None
    if info is None:
        click.echo(f"mbtiles: none imported (in {folder})")
        if settings.basemap == "mbtiles":
            raise click.ClickException("YITU_BASEMAP=mbtiles but no MBTiles imported: yitu basemap import FILE")
        return
    click.echo(f"mbtiles: {_describe(info)} ({folder / mbtiles.FILE_NAME})")


@basemap_group.command("remove")
@click.pass_obj
def remove(settings: Settings) -> None:
    """Delete the imported MBTiles (the pages then draw no base map until another import, if
    YITU_BASEMAP=mbtiles)."""
    if not mbtiles.remove(settings.basemap_path()):
        raise click.ClickException(f"no MBTiles imported (in {settings.basemap_path()})")
    click.echo("removed the imported MBTiles" + ("; set YITU_BASEMAP=own" if settings.basemap == "mbtiles" else ""))

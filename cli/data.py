"""``yitu import`` and ``yitu export``: the grid, the cameras and the roads in and out of GIS files,
the roster in.

The logic is in geodata/io.py; this module turns its outcomes into what a terminal user needs:
a summary, warnings on stderr, and on rejection every problem, one a line, with exit code 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from cli.stack import EmbeddedStack, StackError
from geodata import import_report, io, roads, water
from geodata.errors import YituError
from services.settings import Settings

_FILE = click.Path(exists=True, dir_okay=True, path_type=Path)


def _defaults(names: tuple[str, ...]) -> str:
    return "default: the first of " + ", ".join(names) + " present"


def _dsn(ctx: click.Context) -> str:
    """The database as its owner (YITU_DATABASE_OWNER_URL, or the embedded one's: ``yitu db up``):
    an import locks and may replace whole tables."""
    settings = ctx.find_object(Settings)
    try:
        settings = settings or Settings()
        return EmbeddedStack(settings).database_url()
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings: {exc.error_count()} error(s); see .env.example") from None
    except StackError as exc:
        raise click.ClickException(str(exc)) from None


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


def _reading(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every import reads its file with (``io.ReadOptions``)."""
    command = click.option(
        "--gcj02", is_flag=True, help="The coordinates are GCJ-02 (AMap/Tencent): convert them to WGS-84."
    )(command)
    command = click.option(
        "--encoding", help="Text encoding of the attributes, e.g. gbk for a Shapefile without .cpg."
    )(command)
    return click.option("--layer", help="Layer to read (required when the file holds several).")(command)


_CHECK = click.option("--check", is_flag=True, help="Judge the file and print what would change; write nothing.")


@contextmanager
def _answers(path: Path) -> Iterator[None]:
    """An import's failures as a terminal user needs them: a rejection lists every problem (its
    warnings on stderr), an unreachable or unmigrated database says so; each exits with code 1."""
    import psycopg

    try:
        yield
    except import_report.ImportRejected as exc:
        _warn(exc.warnings)
        lines = "\n".join(f"  {p}" for p in exc.problems)
        raise click.ClickException(
            f"{path.name} rejected, {len(exc.problems)} problem(s), nothing was written:\n{lines}"
        ) from None
    except YituError as exc:  # the root asked for cannot be made (geodata/league.py)
        raise click.ClickException(exc.message) from None
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot reach the database: {' '.join(str(exc).split())}") from None
    except psycopg.errors.UndefinedTable:
        raise click.ClickException("the database has no yitu tables yet: run `yitu db migrate` first") from None


def _run_import(
    fn: Callable[..., import_report.ImportReport],
    ctx: click.Context,
    path: Path,
    *args: Any,
    replace: bool,
    check: bool = False,
    **options: Any,
) -> None:
    """Call an import; rejection, unreachable database and the like become exit code 1. ``check``
    (the importers that take it): judge and say what would change, write nothing."""
    hook = _audit_replace(path) if replace and not check else None
    extra = {"check": True, **options} if check else options
    with _answers(path):
        report = fn(_dsn(ctx), path, *args, replace=replace, progress=sys.stderr.isatty(), audit=hook, **extra)
    _warn(report.warnings)
    click.echo(("check only, nothing written; the import would write " if check else "") + report.summary())


def _audit_replace(path: Path) -> import_report.AuditHook:
    """The admin_events row of an ``import … --replace``, written in the import's transaction."""
    from services import audit

    def hook(conn: Any, report: import_report.ImportReport) -> None:
        detail = {"file": path.name, "inserted": report.inserted, "updated": report.updated, "deleted": report.deleted}
        audit.record(conn, None, f"import.{report.what}.replace", report.what, detail)

    return hook


@click.group("import")
def import_group() -> None:
    """Import the four-level grid, the cameras or the roster (units, mediators) from a file.

    Grids and cameras: anything GDAL reads (GeoPackage, GeoJSON, Shapefile, ...) in any CRS. The
    roster: CSV (UTF-8 or GBK), XLSX or GeoPackage. The whole file is checked before anything is
    written and every problem is listed; one transaction writes it all.
    """


@import_group.command("grids")
@click.argument("file", type=_FILE)
@_reading
@click.option("--code-field", help="Field with the NBS area code; " + _defaults(io.CODE_FIELDS) + ".")
@click.option("--name-field", help="Field with the area name; " + _defaults(io.NAME_FIELDS) + ".")
@click.option(
    "--level-field",
    help="Field with the level 1-4; "
    + _defaults(io.LEVEL_FIELDS)
    + "; without one, the code's length says it (6/9/12/15 digits = 1/2/3/4).",
)
@click.option(
    "--parent-field",
    help="Field with the parent's code; "
    + _defaults(io.PARENT_FIELDS)
    + "; without one, the code minus its last 3 digits.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Replace the banners the file is about (their whole grid) with the file; other banners stay. "
    "Default: add to / update the areas already in the database, checking the result as a whole.",
)
@click.option(
    "--root",
    metavar="CODE",
    help="The league/city above the banners (e.g. 150600): made if missing; the file's banners must lie "
    "under it. Without it, a second banner of the same prefix makes the root by itself.",
)
@click.option("--root-name", metavar="NAME", help="The root's name (e.g. 鄂尔多斯市), with --root or when one is made.")
@click.pass_context
def import_grids(
    ctx: click.Context,
    file: Path,
    layer: str | None,
    code_field: str | None,
    name_field: str | None,
    level_field: str | None,
    parent_field: str | None,
    encoding: str | None,
    gcj02: bool,
    replace: bool,
    root: str | None,
    root_name: str | None,
) -> None:
    """Import grid areas (banner, towns, villages, grid cells) from FILE.

    Checks: polygons, valid geometry, unique codes, codes that fit their level and parent
    (6 + 3 digits per level), parents present (in the file or the database), children inside their
    parent, no overlapping siblings and no gaps (全覆盖、不交叉, 1 m² tolerance). A file without a
    CRS is taken as WGS-84 longitude/latitude; Z coordinates are dropped.
    """
    fields = io.GridFields(code_field, name_field, level_field, parent_field)
    _run_import(
        io.import_grids,
        ctx,
        file,
        fields,
        io.ReadOptions(layer, encoding, gcj02),
        replace=replace,
        root=root,
        root_name=root_name,
    )


@import_group.command("cameras")
@click.argument("file", type=_FILE)
@_reading
@click.option(
    "--replace", is_flag=True, help="Replace all cameras with the file. Default: add / update by device code."
)
@click.option(
    "--update-status",
    is_flag=True,
    help="FILE is a status feed (CSV, XLSX or JSON list of {device_code, status}): set only the status "
    "of the cameras it names.",
)
@click.option("--check", is_flag=True, help="With --update-status: judge the feed, print what would change.")
@click.pass_context
def import_cameras(
    ctx: click.Context,
    file: Path,
    layer: str | None,
    encoding: str | None,
    gcj02: bool,
    replace: bool,
    update_status: bool,
    check: bool,
) -> None:
    """Import cameras (points) from FILE, matched on their device code; or, with --update-status,
    their online/offline status from a feed.

    \b
    Fields (the first present of each):
      device code  device_code, 设备编码, 编码, code
      name         name, 名称
      kind         kind, type, 类型: dome/bullet/mini_dome/checkpoint or 球机/枪机/半球/卡口
      status       status, 状态: online/offline or 在线/离线 (default online)
      stream URL   stream_url, 视频流, url: rtsp://, rtmp://, http(s):// (optional)
    Every camera must lie inside the territory; its area becomes the smallest area holding it.

    \b
    A status feed (--update-status): columns device_code (设备编码) and status (状态): online/offline,
    在线/离线 or 1/0; or JSON, a list of {"device_code": ..., "status": ...}. Unknown device codes
    and statuses are listed by row and nothing is written; it prints how many cameras changed.
    """
    if update_status:
        if replace:
            raise click.UsageError("--update-status changes statuses only; it does not take --replace")
        _run_resource(ctx, "camera-status", file, layer, encoding, replace=False, check=check)
        return
    if check:
        raise click.UsageError("--check goes with --update-status")
    _run_import(io.import_cameras, ctx, file, None, io.ReadOptions(layer, encoding, gcj02), replace=replace)


@import_group.command("roads")
@click.argument("file", type=_FILE)
@_reading
@click.option(
    "--class-field",
    help="Field with the road class (ignored for OSM, which has highway=*); " + _defaults(roads.CLASS_FIELDS) + ".",
)
@click.option("--name-field", help="Field with the road name; " + _defaults(roads.NAME_FIELDS) + ".")
@_CHECK
@click.option(
    "--replace", is_flag=True, help="Replace the whole road network with the file. Default: add the file's roads."
)
@click.pass_context
def import_roads(
    ctx: click.Context,
    file: Path,
    layer: str | None,
    encoding: str | None,
    gcj02: bool,
    class_field: str | None,
    name_field: str | None,
    check: bool,
    replace: bool,
) -> None:
    """Import the road network dispatch drives on from FILE: an OpenStreetMap extract (.osm.pbf,
    .osm) or any GDAL line file with a road class field.

    \b
    Classes, by the speed they get (YITU_DISPATCH_SPEED_{TRUNK,COUNTY,VILLAGE}_KMH):
      trunk    国道 省道 高速; OSM motorway trunk primary (and _link)
      county   县道 乡道; OSM secondary tertiary (and _link)
      village  村道 专用公路; OSM unclassified residential road track service living_street
    OSM ways no van drives (footway, path, cycleway, ...) are left out and counted. Lines are cut
    where they share a vertex (OSM ways share their nodes), and ends that meet a road already in
    the database join it. Every problem is listed at once and nothing is written unless all is well.
    """
    fields = roads.RoadFields(class_field, name_field)
    options = io.ReadOptions(layer, encoding, gcj02)
    _run_import(roads.import_roads, ctx, file, fields, options, replace=replace, check=check)


@import_group.command("water")
@click.argument("file", type=_FILE)
@_reading
@click.option(
    "--kind-field", help="Field with the kind of water (ignored for OSM); " + _defaults(water.KIND_FIELDS) + "."
)
@click.option("--name-field", help="Field with the name; " + _defaults(roads.NAME_FIELDS) + ".")
@click.option("--check", is_flag=True, help="Judge the file and print what would change; write nothing.")
@click.option("--replace", is_flag=True, help="Replace the water imported before. Default: add the file's.")
@click.pass_context
def import_water(
    ctx: click.Context,
    file: Path,
    layer: str | None,
    encoding: str | None,
    gcj02: bool,
    kind_field: str | None,
    name_field: str | None,
    check: bool,
    replace: bool,
) -> None:
    """Import rivers, canals, lakes and reservoirs for the base map (YITU_BASEMAP=own) from FILE: an
    OpenStreetMap extract (.osm.pbf, .osm) or any GDAL file with a kind field.

    \b
    Kinds (lines or areas):
      river      河流 江; OSM waterway=river
      stream     溪流 沟; OSM waterway=stream|drain|ditch (drawn from zoom 11)
      canal      渠 运河; OSM waterway=canal
      lake       湖泊 海子 淖尔; OSM natural=water
      reservoir  水库; OSM water=reservoir, landuse=reservoir
      pond       池塘 (from zoom 11)
      wetland    湿地 (from zoom 11)
    Every problem is listed at once and nothing is written unless all is well.
    """
    fields = water.WaterFields(kind_field, name_field)
    options = io.ReadOptions(layer, encoding, gcj02)
    _run_import(water.import_water, ctx, file, fields, options, replace=replace, check=check)


def _run_roster(
    ctx: click.Context, what: str, path: Path, layer: str | None, encoding: str | None, replace: bool
) -> None:
    """A roster import (geodata/roster_import.py) through :func:`_run_import`'s terminal answers."""
    from geodata import roster_import

    def run(dsn: str, file: Path, **kwargs: Any) -> import_report.ImportReport:
        return roster_import.import_roster(dsn, what, file, layer=layer, encoding=encoding, **kwargs)

    _run_import(run, ctx, path, replace=replace)


_ROSTER_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _sheet_reading(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every table import (roster, centres, vans, users) reads its file with."""
    command = click.option("--encoding", help="Text encoding of a CSV (default: UTF-8, else GBK).")(command)
    return click.option("--layer", help="Sheet of a workbook, or layer of a GeoPackage (default: the first).")(command)


def _roster_reading(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--replace",
        is_flag=True,
        help="The file is the whole roster: what it does not hold is deactivated (never deleted). "
        "Default: add / update the rows it holds.",
    )(command)
    return _sheet_reading(command)


@import_group.command("units")
@click.argument("file", type=_ROSTER_FILE)
@_roster_reading
@click.pass_context
def import_units(ctx: click.Context, file: Path, layer: str | None, encoding: str | None, replace: bool) -> None:
    """Import the mediation units (调解组织 and the bodies cases go to) from FILE: CSV, XLSX or GeoPackage.

    \b
    Columns (the first present of each; English or Chinese names):
      name         name, 名称, 单位名称
      kind         kind, 类型: committee/professional/justice_office/police_station/court/petition/
                   hotline/department or 人民调解委员会/行业性专业性调解委员会/司法所/派出所/人民法庭/
                   信访/12345/部门
      area_code    area_code, 区划代码: the area it serves (6/9/12/15 digits, in the database)
      level        level, 级别: banner/town/village/grid or 旗/镇/村/网格 (default: the area's)
      phone        phone, 电话 (optional)
      specialties  specialties, 专长: case type codes or names, separated by , or 、 (optional)
      active       active, 在岗: yes/no, 是/否 (default yes)
    A unit is matched on its area and name. Every problem is listed, naming the row and the field;
    nothing is written unless the whole file is good.
    """
    _run_roster(ctx, "units", file, layer, encoding, replace)


@import_group.command("mediators")
@click.argument("file", type=_ROSTER_FILE)
@_roster_reading
@click.pass_context
def import_mediators(ctx: click.Context, file: Path, layer: str | None, encoding: str | None, replace: bool) -> None:
    """Import the mediators (调解员) from FILE: CSV, XLSX or GeoPackage. Import their units first.

    \b
    Columns (the first present of each; English or Chinese names):
      name         name, 姓名
      area_code    area_code, 区划代码: where they work (6/9/12/15 digits, in the database)
      level        level, 级别: banner/town/village/grid or 旗/镇/村/网格 (default: the area's)
      phone        phone, 电话 (optional)
      unit         unit, 所属单位: a unit's id, or its name in the area or an area above it
      centre       centre, 调解中心: a mediation centre's code (optional)
      van          van, 车辆: the van whose crew they are (optional)
      specialties  specialties, 专长: case type codes or names (optional)
      active       active, 在岗: yes/no, 是/否 (default yes)
      user         user, 用户名: the account they sign in with (optional)
    A mediator is matched on area, name and phone.
    """
    _run_roster(ctx, "mediators", file, layer, encoding, replace)


def _run_resource(
    ctx: click.Context, what: str, path: Path, layer: str | None, encoding: str | None, *, replace: bool, check: bool
) -> None:
    """A centre, van or camera status import (geodata/resource_import.py) through :func:`_run_import`."""
    from geodata import resource_import

    def run(dsn: str, file: Path, **kwargs: Any) -> import_report.ImportReport:
        if what == "camera-status":
            kwargs.pop("replace", None)
            kwargs.pop("audit", None)
            return resource_import.update_camera_status(dsn, file, layer=layer, encoding=encoding, **kwargs)
        fn = resource_import.import_centers if what == "centers" else resource_import.import_vans
        return fn(dsn, file, layer=layer, encoding=encoding, **kwargs)

    _run_import(run, ctx, path, replace=replace, check=check)


def _resource_reading(command: Callable[..., Any]) -> Callable[..., Any]:
    return _roster_reading(_CHECK(command))


def _resource_command(what: str) -> Callable[[Callable[..., None]], click.Command]:
    """``yitu import centers|vans``: the same file options and the same path (:func:`_run_resource`);
    the decorated function gives the command its help (its docstring) and nothing else."""

    def command(doc: Callable[..., None]) -> click.Command:
        @import_group.command(what, help=doc.__doc__)
        @click.argument("file", type=_ROSTER_FILE)
        @_resource_reading
        @click.pass_context
        def run(
            ctx: click.Context, file: Path, layer: str | None, encoding: str | None, replace: bool, check: bool
        ) -> None:
            _run_resource(ctx, what, file, layer, encoding, replace=replace, check=check)

        return run

    return command


@_resource_command("centers")
def import_centers() -> None:
    """Import the mediation centres (调解中心, 站, 室) from FILE: CSV, XLSX, or a GIS point file.

    \b
    Columns (the first present of each; English or Chinese names):
      code         code, 编码, 中心编码: the centre's code (letters, digits, _ -)
      name         name, 名称
      area_code    area_code, 区划代码: the banner, town or village it serves
      level        level, 级别: 1-3 or 旗/镇/村 (default: the area's)
      mediators    mediators, 调解员数 (default 0)
      specialties  specialties, 专长: case type codes or names (optional)
      phone        phone, 电话 (optional)
      lon, lat     lon/经度, lat/纬度 (WGS-84); a GIS file's point geometry instead
    A centre is matched on its code; its point must lie in its area. --replace deletes the centres
    the file does not hold (refused while a van is based or a mediator works at one).
    """


@_resource_command("vans")
def import_vans() -> None:
    """Import the mediation vans (行走的调解室) and their GPS devices from FILE: CSV, XLSX or GeoPackage.

    \b
    Columns (the first present of each; English or Chinese names):
      id       id, 车辆编号: the van's id (1-32 letters, digits, _ -)
      name     name, 名称
      plate    plate, 车牌 (optional)
      base     base, 所属中心: the code of the centre it is based at (optional; import centres first)
      devices  devices, 设备: device identifiers set in Traccar Client, separated by , ; or | (optional;
               at least 8 characters each; stored only as SHA-256, like `yitu van register`)
    A van is matched on its id. --replace: each van's devices become exactly the file's, and the
    vans the file does not hold go offline and lose their devices (never deleted).
    """


@import_group.command("users")
@click.argument("file", type=_ROSTER_FILE)
@_sheet_reading
@_CHECK
@click.option(
    "--links-out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the welcome links to this file (readable by you alone) instead of printing them.",
)
@click.pass_context
def import_users(
    ctx: click.Context, file: Path, layer: str | None, encoding: str | None, check: bool, links_out: Path | None
) -> None:
    """Create the accounts of the people in FILE (CSV or XLSX), each with a one-time welcome link.

    \b
    Columns (the first present of each; English or Chinese names):
      name       name, 姓名, 用户名: the name they sign in with (new: an existing one is a problem)
      role       role, 角色: admin/dispatcher/grid_worker/viewer/van or 管理员/调度员/网格员/只读/车组
      area_code  area_code, area, 区划代码: the area they see (empty: the whole territory)
      van        van, 车辆: the van of a crew member (role van only)
    Nobody gets a password from the file: each account gets a link /welcome/<code>, valid 72
    hours and usable once, where its person sets their own password (at least 10 characters) and
    then signs in. The links are printed once, one line per user (name, role, link), or written to
    --links-out; only their SHA-256 is stored, so a lost or expired link cannot be shown again:
    an administrator then sets a password with `yitu user passwd NAME`.
    """
    import os

    from cli.users import base_url
    from services import welcome

    settings = ctx.find_object(Settings) or Settings()
    with _answers(file):
        report, links = welcome.import_users(
            _dsn(ctx), file, layer=layer, encoding=encoding, check=check, progress=sys.stderr.isatty()
        )
    _warn(report.warnings)
    if check:
        click.echo("check only, nothing written; the import would write " + report.summary())
        return
    rows = [f"{w.name}\t{w.role}\t{base_url(settings)}{welcome.WELCOME_PATH}{w.code}" for w in links]
    if links_out is not None:
        fd = os.open(links_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("".join(row + "\n" for row in rows))
        click.echo(f"{report.summary()}; welcome links (once, 72 hours) written to {links_out}", err=True)
        return
    click.echo(f"{report.summary()}; welcome links, shown only now, each usable once within 72 hours:", err=True)
    for row in rows:
        click.echo(row)


@click.group("export")
def export_group() -> None:
    """Export the grid to a GIS file."""


@export_group.command("grids")
@click.option(
    "--level",
    type=click.IntRange(1, 4),
    required=True,
    help="Which level: 1 banner, 2 towns, 3 villages, 4 grid cells.",
)
@click.argument("out", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@click.pass_context
def export_grids(ctx: click.Context, level: int, out: Path) -> None:
    """Write one level of the grid to OUT (.gpkg or .geojson), EPSG:4326.

    Features carry code, name, level and parent_code: the file re-imports as it is.
    """
    import psycopg

    try:
        io.export_driver(out)
        count = io.export_grids(_dsn(ctx), level, out)
    except io.ExportError as exc:
        raise click.ClickException(str(exc)) from None
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot reach the database: {' '.join(str(exc).split())}") from None
    click.echo(f"exported {count} level-{level} areas to {out}")

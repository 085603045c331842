"""``yitu area``: the league or city (盟/市) above several banners, and the banners under it.

A deployment of one banner needs none of this. With several, the wall opens at the root and ranks
its banners; ``yitu import grids`` makes the root by itself when a second banner of the same prefix
arrives (named by its code): ``yitu area root 150600 鄂尔多斯市`` makes or names it.

Register the group in cli/main.py ``_register_groups``.
"""

from __future__ import annotations

import click
import psycopg

from cli.common import db_errors, dsn, echo_table
from geodata import league
from geodata.errors import YituError


@click.group("area")
def area_group() -> None:
    """The territory's top: the league/city root above several banners."""


@area_group.command("root")
@click.argument("code")
@click.argument("name")
@click.pass_context
@db_errors("areas")
def root(ctx: click.Context, code: str, name: str) -> None:
    """Make or rename the root CODE (e.g. 150600 or 1506) called NAME above the banners.

    Every banner already imported must lie under it (its code starts with the root's 4 digits);
    open screens redraw at once.
    """
    from services import audit

    with psycopg.connect(dsn(ctx, owner=True)) as conn:
        try:
            at = league.set_root(conn, code, name)
        except YituError as exc:
            raise click.ClickException(exc.message) from None
        league.announce(conn, league.banners(conn))
        audit.record(conn, None, "area.root", at, {"name": name})
    click.echo(f"root {at} {name.strip()}")


@area_group.command("list")
@click.pass_context
@db_errors("areas")
def list_top(ctx: click.Context) -> None:
    """The root (if any) and the banners, one a line."""
    with psycopg.connect(dsn(ctx)) as conn:
        rows = conn.execute(
            """SELECT a.code, a.name, a.level, a.parent_code,
                      (SELECT count(*) FROM areas c WHERE starts_with(c.code, a.code) AND c.level = 4) AS cells
               FROM areas a WHERE a.level <= 1 ORDER BY a.level, a.code"""
        ).fetchall()
    echo_table(
        [{"code": r[0], "name": r[1], "level": r[2], "parent": r[3], "cells": r[4]} for r in rows],
        {"code": "code", "name": "name", "level": "level", "parent": "parent", "cells": "cells"},
    )

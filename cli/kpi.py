"""``yitu kpi``: the KPI counters behind the tiles, the ranking, the choropleth and the area panel.

Registered in cli/main.py ``_register_groups``.
"""

from __future__ import annotations

import click
import psycopg

from cli.common import db_errors, dsn, echo_table
from geodata import counters


@click.group("kpi")
def kpi_group() -> None:
    """The KPI counters, kept with each change of a case (rebuild them, or check them)."""


@kpi_group.command("rebuild")
@click.pass_context
@db_errors("case_counters")
def rebuild(ctx: click.Context) -> None:
    """Recompute every counter from the cases, in one transaction (writes to cases wait meanwhile)."""
    with psycopg.connect(dsn(ctx)) as conn:
        rows = counters.rebuild(conn)
    click.echo(f"kpi counters rebuilt: {rows} rows")


@kpi_group.command("check")
@click.pass_context
@db_errors("case_counters")
def check(ctx: click.Context) -> None:
    """Compare the counters with a full count of the cases; print each difference, exit 1 on any."""
    with psycopg.connect(dsn(ctx)) as conn:
        diff = counters.differences(conn)
    if not diff:
        click.echo("kpi counters agree with a full count")
        return
    echo_table(diff, {c: c for c in ("counters", "area_code", "key", "kept", "counted")})
    click.echo(f"kpi counters differ from a full count on {len(diff)} keys", err=True)
    ctx.exit(1)

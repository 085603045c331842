"""``yitu deadlines``: deadlines per banner or for the whole league (issue 16 item 2).

The settings (``YITU_DEADLINE_*_HOURS``, ``YITU_MAX_ATTEMPTS_PER_LEVEL``) are the default; ``set``
gives the league (the root's code) or one banner hours of its own for a level, or its own number of
attempts; ``clear`` gives them back to the level above. ``list`` shows each banner's effective rules
and where each value comes from. Every change writes its admin_events row (actor_kind ``cli``) in its
transaction, through services/deadlines.py as the API's PUT does; a running app picks it up within
seconds. Bad input (a level, hours out of bounds, a town's code, an unknown area) exits 2 naming
the option, with nothing written. Registered in cli/main.py ``_register_groups``.
"""

from __future__ import annotations

from typing import Any

import click
import psycopg

from cli.common import db_errors, dsn
from geodata import deadlines
from geodata.errors import YituError
from geodata.workflow import LEVELS
from services import deadlines as rules
from services.settings import Settings

OPTION = {"area": "--area", "level": "--level", "hours": "--hours", "max_attempts": "--max-attempts"}


def _defaults(ctx: click.Context) -> Any:
    return rules.deadline_rules(ctx.find_object(Settings) or Settings())


def _refused(exc: YituError) -> click.UsageError:
    """A refusal as a usage error (exit 2) naming the option at fault."""
    where = f" ({OPTION.get(exc.field, exc.field)})" if exc.field else ""
    return click.UsageError(f"{exc.message}{where}")


def _cell(value: float | int, source: str) -> str:
    return f"{value:g} ({source})"


@click.group("deadlines")
def deadlines_group() -> None:
    """Deadlines (hours per level, attempts per level) per banner or for the whole league."""


@deadlines_group.command("list")
@click.pass_context
@db_errors("deadline_overrides")
def list_command(ctx: click.Context) -> None:
    """Each banner's effective rules (and the league's), each value with where it comes from:
    settings, league or banner. Hours 0: by the end of the day the case reached the level."""
    with psycopg.connect(dsn(ctx)) as conn:
        shown = rules.listing(conn, _defaults(ctx), None)
    click.echo("\t".join(("area", "name", "level", *LEVELS, "max_attempts")))
    for a in shown["areas"]:
        cells = [_cell(a["hours"][lv], a["source"][lv]) for lv in LEVELS]
        cells.append(_cell(a["max_attempts"], a["source"]["max_attempts"]))
        click.echo("\t".join((a["area_code"], a["name"], "league" if a["level"] == 0 else "banner", *cells)))


@deadlines_group.command("set")
@click.option(
    "--area", required=True, help="A banner's code (6 digits), or the league's (4 digits, or 6 ending in 00)."
)
@click.option("--level", type=click.Choice(LEVELS), help="The level whose hours are set (with --hours).")
@click.option("--hours", type=float, help="Hours at that level; 0: by the end of the day (当天, China time).")
@click.option("--max-attempts", type=int, help="Mediation attempts per level before escalation is proposed.")
@click.pass_context
@db_errors("deadline_overrides")
def set_command(
    ctx: click.Context, area: str, level: str | None, hours: float | None, max_attempts: int | None
) -> None:
    """Give the league or one banner its own hours for a level (and/or its own max attempts)."""
    if (level is None) != (hours is None):
        raise click.UsageError("--level and --hours go together (--level village --hours 48)")
    wanted = deadlines.Change(area, {level: hours} if level and hours is not None else {}, max_attempts)
    _apply(ctx, wanted)


@deadlines_group.command("clear")
@click.option("--area", required=True, help="A banner's code, or the league's.")
@click.option("--level", type=click.Choice(LEVELS), help="Only this level's hours (default: everything the row sets).")
@click.option("--max-attempts", "attempts", is_flag=True, help="Only the max attempts.")
@click.pass_context
@db_errors("deadline_overrides")
def clear_command(ctx: click.Context, area: str, level: str | None, attempts: bool) -> None:
    """Give a level's hours (or the max attempts, or everything) back to the league or the settings."""
    what = {*([level] if level else []), *(["max_attempts"] if attempts else [])}
    _apply(ctx, deadlines.Change(area, clear=frozenset(what or [*LEVELS, "max_attempts"])))


def _apply(ctx: click.Context, wanted: deadlines.Change) -> None:
    try:
        with psycopg.connect(dsn(ctx)) as conn:
            now = rules.change(conn, None, None, wanted, _defaults(ctx))
    except YituError as exc:
        raise _refused(exc) from None
    hours = ", ".join(f"{lv} {now['hours'][lv]:g} h ({now['source'][lv]})" for lv in LEVELS)
    attempts = f"max attempts {now['max_attempts']} ({now['source']['max_attempts']})"
    click.echo(f"deadlines of {now['area_code']}: {hours}; {attempts}")

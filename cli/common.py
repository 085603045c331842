"""What the command groups share: the database in use, and database errors as one clear line."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click
import psycopg
from pydantic import ValidationError

from cli.stack import EmbeddedStack, StackError
from services.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")


def dsn(ctx: click.Context, *, owner: bool = False) -> str:
    """The database in use as the runtime role (the app's: YITU_DATABASE_URL, or the embedded
    one's), or as the owner role (YITU_DATABASE_OWNER_URL) for what only the owner may do."""
    try:
        settings = ctx.find_object(Settings) or Settings()
        stack = EmbeddedStack(settings)
        return stack.database_url() if owner else stack.runtime_url()
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings: {exc.error_count()} error(s); see .env.example") from None
    except StackError as exc:
        raise click.ClickException(str(exc)) from None


def db_errors(table: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """An unreachable or unmigrated database (no ``table``) is one clear line and exit code 1."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except psycopg.errors.UndefinedTable:
                raise click.ClickException(f"the database has no {table} table: run `yitu db migrate`") from None
            except psycopg.OperationalError as exc:
                raise click.ClickException(f"cannot reach the database: {' '.join(str(exc).split())}") from None

        return wrapper

    return decorate


# The list commands' headings and the row keys under them: one vocabulary for ``yitu user|screen|token list``.
HEADINGS = {
    "id": "id",
    "name": "name",
    "role": "role",
    "area": "area_code",
    "created": "created_at",
    "disabled": "disabled_at",
    "revoked": "revoked_at",
    "sessions": "sessions",
    "last_seen": "last_seen_at",
    "van": "van_id",
}


def list_command(
    group: click.Group,
    table: str,
    fetch: Callable[[psycopg.Connection[Any]], Iterable[Mapping[str, Any]]],
    headings: tuple[str, ...],
    help: str,
) -> click.Command:
    """``<group> list``: ``fetch``'s rows under ``headings`` (of :data:`HEADINGS`), as :func:`echo_table`
    prints them; an unreachable database or one without ``table`` is one clear line."""

    @group.command("list", help=help)
    @click.pass_context
    @db_errors(table)
    def command(ctx: click.Context) -> None:
        with psycopg.connect(dsn(ctx)) as conn:
            rows = fetch(conn)
        echo_table(rows, {h: HEADINGS[h] for h in headings})

    return command


def echo_table(rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str]) -> None:
    """Print ``rows`` tab-separated under a header (``columns``: heading → row key), one line each,
    so the list commands read alike and pipe into ``cut``/``awk``: nothing as ``-``, a time to the second."""
    click.echo("\t".join(columns))
    for row in rows:
        click.echo("\t".join(_cell(row[key]) for key in columns.values()))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)

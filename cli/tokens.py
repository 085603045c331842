"""``yitu token``: make, list and revoke the API's bearer tokens.

A token is printed once, when it is made; the database keeps only its SHA-256. Register the
group in cli/main.py ``_register_groups``.
"""

from __future__ import annotations

from typing import Any

import click
import psycopg

from cli.common import db_errors, dsn, list_command
from geodata.workflow import ROLES


@click.group("token")
def token_group() -> None:
    """Bearer tokens of the HTTP API (Authorization: Bearer <token>)."""


@token_group.command("create")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    required=True,
    help="admin: everything; dispatcher: routes cases; grid_worker: reports and handles in its area; "
    "viewer: reads, personal data masked; van: a van crew.",
)
@click.option(
    "--area",
    default=None,
    metavar="CODE",
    help="Limit the token to an area of any level (a 6-, 9-, 12- or 15-digit code).",
)
@click.option("--name", required=True, help="Who holds it (shown as the actor in the audit trail).")
@click.pass_context
@db_errors("api_tokens")
def create(ctx: click.Context, role: str, area: str | None, name: str) -> None:
    """Make a token and print it (once: only its hash is stored)."""
    from services import audit
    from services.identity import create_token

    name = name.strip()
    if not name or len(name) > 100:
        raise click.BadParameter("give a name of 1 to 100 characters", param_hint="--name")
    with psycopg.connect(dsn(ctx)) as conn:
        try:
            token_id, token = create_token(conn, name=name, role=role, area=area)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--area") from None
        audit.record(conn, None, "token.create", f"token:{token_id}", {"name": name, "role": role, "area": area})
    click.echo(f"token {token_id} for {name} ({role}{', area ' + area if area else ''}); shown only now:", err=True)
    click.echo(token)


def _tokens(conn: psycopg.Connection) -> list[dict[str, Any]]:
    from services.identity import list_tokens

    return list_tokens(conn)


list_command(
    token_group,
    "api_tokens",
    _tokens,
    ("id", "name", "role", "area", "created", "revoked"),
    "List the tokens (never the tokens themselves): id, name, role, area, created, revoked.",
)


@token_group.command("revoke")
@click.argument("ident")
@click.pass_context
@db_errors("api_tokens")
def revoke(ctx: click.Context, ident: str) -> None:
    """Revoke the token with this id, or every live token with this name."""
    from services import audit
    from services.identity import revoke_token

    with psycopg.connect(dsn(ctx)) as conn:
        n = revoke_token(conn, ident)
        if n:
            audit.record(conn, None, "token.revoke", ident, {"revoked": n})
    if not n:
        raise click.ClickException(f"no live token with id or name {ident!r}")
    click.echo(f"revoked {n} token(s)")

"""``yitu user`` and ``yitu screen``: the people who sign in, and the wall screens that pair once.

Every change writes its admin_events row (actor_kind ``cli``, the OS user) in its transaction,
through services/admin.py, the same functions the admin page uses.

Passwords come on standard input (``--password-stdin``), never as an argument (the process list
and the shell history would keep them); at a terminal without it, the password is asked twice,
hidden. Only an Argon2id hash is stored. A wall screen gets a one-time pairing link, valid 10
minutes: open it in the wall's browser. Registered in cli/main.py ``_register_groups``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import click
import psycopg

from cli.common import db_errors, dsn, list_command
from geodata.errors import YituError
from services import admin, identity
from services.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

ROLE_HELP = (
    "admin: everything, the admin page; dispatcher: sends vans, handles cases; grid_worker: reports and "
    "handles the cases of its area; viewer: reads, personal data masked; van: a van's crew member (with "
    "--van), who opens /m/van on a phone and sees only the case the van is sent to."
)


def _refusals(fn: Callable[P, R]) -> Callable[P, R]:
    """A refusal (a bad name, a short password, an unknown area, a taken name) is one clear line."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except YituError as exc:
            where = f" ({exc.field})" if exc.field else ""
            raise click.ClickException(f"{exc.message}{where}") from None

    return wrapper


def _password(from_stdin: bool) -> str:
    """The password from standard input (its first line), or asked twice at a terminal."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin: standard input held no password")
    elif sys.stdin.isatty():
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        raise click.UsageError("give the password on standard input with --password-stdin")
    identity.check_password_rules(password)
    return password


def base_url(settings: Settings) -> str:
    """Where people open yitu: YITU_PUBLIC_URL, or the address it serves on."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return f"http://{host}:{settings.port}"


@click.group("user")
def user_group() -> None:
    """People who sign in at /login (passwords of at least 10 characters, stored as Argon2id)."""


@user_group.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(identity.USER_ROLES), required=True, help=ROLE_HELP)
@click.option(
    "--area",
    default=None,
    metavar="CODE",
    help="Limit the user to an area of any level (6-, 9-, 12- or 15-digit code).",
)
@click.option("--van", default=None, metavar="VAN", help="For --role van: the van the crew member rides in (e.g. V01).")
@click.option(
    "--password-stdin",
    "password_stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (e.g. printf '%s\\n' \"$PW\" | yitu user create …).",
)
@click.pass_context
@db_errors("users")
@_refusals
def create(ctx: click.Context, name: str, role: str, area: str | None, van: str | None, password_stdin: bool) -> None:
    """Make a user NAME who signs in with a password."""
    password = _password(password_stdin)
    with psycopg.connect(dsn(ctx)) as conn:
        uid = admin.create_user(conn, None, None, name=name, role=role, area=area, password=password, van=van)
    where = (f", area {area}" if area else "") + (f", van {van.strip()}" if van else "")
    click.echo(f"user {uid} {name.strip()} ({role}{where}) created")


list_command(
    user_group,
    "users",
    identity.list_users,
    ("id", "name", "role", "area", "created", "disabled", "last_seen", "van"),  # van last: scripts keep the rest
    "List the users: id, name, role, area, created, disabled, last seen, van (never a password).",
)


@user_group.command("disable")
@click.argument("name")
@click.pass_context
@db_errors("users")
@_refusals
def disable(ctx: click.Context, name: str) -> None:
    """Disable NAME: their sessions end at once and they cannot sign in (the row stays for the audit)."""
    with psycopg.connect(dsn(ctx)) as conn:
        changed = admin.set_user_disabled(conn, None, None, name, True)
    click.echo(f"user {name} disabled" if changed else f"user {name} was already disabled")


@user_group.command("enable")
@click.argument("name")
@click.pass_context
@db_errors("users")
@_refusals
def enable(ctx: click.Context, name: str) -> None:
    """Let a disabled user sign in again."""
    with psycopg.connect(dsn(ctx)) as conn:
        changed = admin.set_user_disabled(conn, None, None, name, False)
    click.echo(f"user {name} enabled" if changed else f"user {name} was not disabled")


@user_group.command("passwd")
@click.argument("name")
@click.option(
    "--password-stdin", "password_stdin", is_flag=True, help="Read the new password from standard input's first line."
)
@click.pass_context
@db_errors("users")
@_refusals
def passwd(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Set a new password for NAME; their open sessions end."""
    password = _password(password_stdin)
    with psycopg.connect(dsn(ctx)) as conn:
        admin.reset_password(conn, None, None, name, password)
    click.echo(f"password of {name} changed; their sessions ended")


@click.group("screen")
def screen_group() -> None:
    """Wall screens: read-only, masked, optionally area-scoped; paired once through a one-time link."""


@screen_group.command("create")
@click.argument("name")
@click.option("--area", default=None, metavar="CODE", help="Show the screen only this area (a code of any level).")
@click.pass_context
@db_errors("screens")
@_refusals
def screen_create(ctx: click.Context, name: str, area: str | None) -> None:
    """Make a wall screen NAME and print its one-time pairing URL (valid 10 minutes).

    Open the URL in the wall's browser: it gets a long-lived screen session (no idle timeout)
    and shows the wall. The base is YITU_PUBLIC_URL, or the address yitu serves on.
    """
    settings = ctx.find_object(Settings) or Settings()
    with psycopg.connect(dsn(ctx)) as conn:
        sid, code = admin.create_screen(conn, None, None, name, area)
    click.echo(
        f"screen {sid} {name.strip()}{' (area ' + area + ')' if area else ''}; pairing link, once, 10 minutes:",
        err=True,
    )
    click.echo(f"{base_url(settings)}{identity.PAIR_PATH}{code}")


@screen_group.command("pair")
@click.argument("name")
@click.pass_context
@db_errors("screens")
@_refusals
def screen_pair(ctx: click.Context, name: str) -> None:
    """Print a new one-time pairing URL for the screen NAME (another browser, or the link ran out)."""
    settings = ctx.find_object(Settings) or Settings()
    with psycopg.connect(dsn(ctx)) as conn:
        code = admin.pair_screen(conn, None, None, name)
    click.echo(f"screen {name}; pairing link, once, 10 minutes:", err=True)
    click.echo(f"{base_url(settings)}{identity.PAIR_PATH}{code}")


list_command(
    screen_group,
    "screens",
    identity.list_screens,
    ("id", "name", "area", "created", "revoked", "sessions", "last_seen"),
    "List the screens: id, name, area, created, revoked, open sessions, last seen.",
)


@screen_group.command("revoke")
@click.argument("name")
@click.pass_context
@db_errors("screens")
def screen_revoke(ctx: click.Context, name: str) -> None:
    """Revoke the screen NAME: its sessions end, and an open page of it shows the sign-in page within 10 s."""
    with psycopg.connect(dsn(ctx)) as conn:
        done = admin.revoke_screen(conn, None, None, name)
    if not done:
        raise click.ClickException(f"no live screen named {name!r}")
    click.echo(f"screen {name} revoked")


DEMO_ADMIN = "admin"
DEMO_SCREEN = "local-wall"


def demo_identities(database_url: str, base: str) -> list[str]:
    """What ``yitu demo`` prints: a fresh random password for the local admin (made on the first run,
    given a new password on each later one: it is shown only once) and a pairing link for a local
    wall screen. The lines to print."""
    import secrets

    password = secrets.token_urlsafe(12)
    with psycopg.connect(database_url) as conn:  # each change logged, as the commands log theirs
        if conn.execute("SELECT 1 FROM users WHERE name = %s", (DEMO_ADMIN,)).fetchone():
            admin.reset_password(conn, None, None, DEMO_ADMIN, password)
            admin.set_user_disabled(conn, None, None, DEMO_ADMIN, False)
        else:
            admin.create_user(conn, None, None, name=DEMO_ADMIN, role="admin", password=password)
        screen = conn.execute("SELECT revoked_at IS NULL FROM screens WHERE name = %s", (DEMO_SCREEN,)).fetchone()
        if screen is None:
            code: str | None = admin.create_screen(conn, None, None, DEMO_SCREEN, None)[1]
        else:  # revoked by someone: it stays so
            code = admin.pair_screen(conn, None, None, DEMO_SCREEN) if screen[0] else None
    wall = (
        f"wall screen: open {base}{identity.PAIR_PATH}{code} in the wall's browser (once, within 10 minutes; "
        f"`yitu screen pair {DEMO_SCREEN}` for a new link)"
        if code
        else f"wall screen {DEMO_SCREEN} is revoked: `yitu screen create NAME` pairs another"
    )
    return [
        f"sign in: {base}/login  user {DEMO_ADMIN}  password {password}  (shown only now; "
        f"`yitu user passwd {DEMO_ADMIN} --password-stdin` sets your own)",
        wall,
    ]

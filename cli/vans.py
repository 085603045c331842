"""``yitu van``: the devices that may report a van's GPS through ``/osmand`` (Traccar Client).

A device identifier is the only credential a phone running Traccar Client sends, so it is treated
like a password: only its SHA-256 is stored, nothing secret is printed except an identifier made
by ``--generate`` (shown once, to type into the app), and short identifiers are refused (the
app's default 6-digit one could be guessed). Vehicle terminals that post batches use a van token
instead: ``yitu token create --role van --name V01`` (the token's name is the van's id).

Register the group in cli/main.py ``_register_groups``.
"""

from __future__ import annotations

import secrets

import click
import psycopg

from cli.common import db_errors, dsn
from geodata import tracking

MIN_DEVICE_LEN = tracking.MIN_DEVICE_LEN
MAX_DEVICE_LEN = tracking.MAX_DEVICE_LEN


def _record(conn: psycopg.Connection, action: str, van: str, device: str, detail: dict[str, object]) -> None:
    """The admin_events row of a device change, in its transaction: the device is named by the
    start of its hash (enough to tell devices apart in the log, useless as a credential)."""
    from services import audit

    audit.record(conn, None, action, f"van:{van}", {**detail, "device": tracking.device_hash(device)[:12]})


@click.group("van")
def van_group() -> None:
    """The roving mediation vans (行走的调解室): devices that report their GPS."""


@van_group.command("register")
@click.argument("van")
@click.option(
    "--device",
    "device",
    default=None,
    metavar="IDENTIFIER",
    help="The device identifier set in Traccar Client (at least 8 characters; treat it as a password).",
)
@click.option("--generate", is_flag=True, help="Make a random identifier, print it once, register it.")
@click.pass_context
@db_errors("van_devices")
def register(ctx: click.Context, van: str, device: str | None, generate: bool) -> None:
    """Let a device (a phone running Traccar Client) report positions for VAN."""
    if (device is None) == (not generate):
        raise click.UsageError("give either --device IDENTIFIER or --generate")
    if generate:
        device = secrets.token_urlsafe(18)
    assert device is not None
    device = device.strip()
    if (why := tracking.device_identifier_problem(device)) is not None:
        raise click.BadParameter(why, param_hint="--device")
    with psycopg.connect(dsn(ctx)) as conn:
        try:
            before = tracking.register_device(conn, van, device)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="VAN") from None
        _record(conn, "van.device.register", van, device, {"moved_from": before})
    moved = f" (it reported for {before} until now)" if before else ""
    click.echo(f"device registered for van {van}{moved}", err=True)
    if generate:
        click.echo("set this as the device identifier in Traccar Client; shown only now:", err=True)
        click.echo(device)


@van_group.command("unregister")
@click.option("--device", "device", required=True, metavar="IDENTIFIER", help="The identifier to forget.")
@click.pass_context
@db_errors("van_devices")
def unregister(ctx: click.Context, device: str) -> None:
    """Stop accepting positions from a device."""
    with psycopg.connect(dsn(ctx)) as conn:
        van = tracking.unregister_device(conn, device.strip())
        if van is not None:
            _record(conn, "van.device.unregister", van, device.strip(), {})
    if van is None:
        raise click.ClickException("no such device is registered")
    click.echo(f"device unregistered from van {van}")


@van_group.command("list")
@click.pass_context
@db_errors("van_devices")
def list_(ctx: click.Context) -> None:
    """Every van and how many devices may report for it (never the identifiers)."""
    with psycopg.connect(dsn(ctx)) as conn:
        rows = tracking.device_counts(conn)
    click.echo("van\tname\tdevices")
    for van, name, n in rows:
        click.echo(f"{van}\t{name}\t{n}")

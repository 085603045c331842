"""The ``yitu`` command: run the embedded stack, migrate, serve the dashboard.

Every command reads the same settings (``YITU_*`` environment, then ``.env``, then defaults);
with ``YITU_DATABASE_URL`` / ``YITU_REDIS_URL`` set, those servers are used and nothing is started.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, ClassVar, ParamSpec, TypeVar

import click
from pydantic import ValidationError

from cli.logs import setup_logging
from cli.stack import EmbeddedStack, StackError
from services.settings import Settings

log = logging.getLogger("yitu.cli")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"  YITU_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()]
        raise click.ClickException("invalid settings:\n" + "\n".join(lines)) from None


P = ParamSpec("P")
R = TypeVar("R")

# How long `yitu serve` keeps an idle HTTP connection open (uvicorn's default is 5 s). Longer than
# nginx keeps its idle upstream connections (deploy/nginx.conf ``keepalive_timeout 30s``): when the app
# closed first, a request nginx sent on the closing connection got a reset and the client a 502 (seen
# once in a bench_mix run, a case transition).
KEEP_ALIVE_S = 65


def _friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can act on into one clear line and exit code 1, no traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from geodata.demo.seed import SeedError
        from geodata.migrate import MigrationError

        try:
            return fn(*args, **kwargs)
        except (StackError, MigrationError, SeedError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


class _Commands(click.Group):
    """The ``yitu`` group; ``import`` and ``export`` load when asked for.

    They need geopandas and pandas (``geodata.io``): half a second and more at every start of
    ``yitu serve`` or ``yitu simulate``, which never use them.
    """

    _LAZY: ClassVar[dict[str, str]] = {"import": "import_group", "export": "export_group"}  # in cli.data

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._LAZY and cmd_name not in self.commands:
            from cli import data

            for name, attr in self._LAZY.items():
                self.add_command(getattr(data, attr), name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """yitu 一图指挥: the command-centre dashboard of a banner's grid-governance and
    dispute-resolution centre.

    \b
    Quick start:
      yitu demo            start the embedded stack, migrate, serve http://127.0.0.1:8050
      yitu db up           only start the private PostgreSQL+PostGIS and Redis
      yitu serve           serve the dashboard and API against the configured servers

    Settings come from YITU_* environment variables, then .env, then defaults (see .env.example).
    """
    settings = _settings()
    setup_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


@main.group()
def db() -> None:
    """The database and Redis: the embedded stack under .yitu/, or the servers from YITU_*_URL."""


@db.command("up")
@click.pass_obj
@_friendly
def db_up(settings: Settings) -> None:
    """Start the private PostgreSQL (with PostGIS) and Redis, unless they already run.

    Ports: YITU_PG_PORT (55432) and YITU_REDIS_PORT (56379), on 127.0.0.1 only.
    Under root, PostgreSQL runs as the unprivileged user YITU_SERVICE_USER (yitu).
    """
    report = EmbeddedStack(settings).up()
    for name in report.started:
        click.echo(f"{name}: started")
    for name in report.already_running:
        click.echo(f"{name}: already running")
    for name in report.external:
        click.echo(f"{name}: external server from settings, nothing started")


@db.command("down")
@click.option("--purge", is_flag=True, help="Also delete the embedded data (asks no question).")
@click.pass_obj
@_friendly
def db_down(settings: Settings, purge: bool) -> None:
    """Stop the private PostgreSQL and Redis (external servers are never touched)."""
    stack = EmbeddedStack(settings)
    if purge:
        stack.purge()
        click.echo(f"stopped and deleted {stack.run_dir}")
        return
    stopped = stack.down()
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@db.command("status")
@click.pass_obj
@_friendly
def db_status(settings: Settings) -> None:
    """Say what runs: each server, embedded or external, and where."""
    for name, state in EmbeddedStack(settings).status().items():
        click.echo(f"{name}: {state}")


@db.command("url")
@click.option("--redis", "which", flag_value="redis", help="Print the Redis URL instead.")
@click.option(
    "--owner",
    "which",
    flag_value="owner",
    help="Print the owner role's DSN (migrations, imports, seeding; may alter the audit) instead.",
)
@click.pass_obj
@_friendly
def db_url(settings: Settings, which: str | None) -> None:
    """Print the DSN the app connects with: the runtime role, which cannot alter the audit
    (contains the password: keep it to yourself)."""
    stack = EmbeddedStack(settings)
    urls = {"redis": stack.redis_url, "owner": stack.database_url}
    click.echo(urls.get(which or "", stack.runtime_url)())


@db.group("replica")
def replica() -> None:
    """A streaming standby of the embedded PostgreSQL on loopback, for the read-heavy paths.

    \b
    yitu db replica up       make it (pg_basebackup -R from the running primary) and start it
    yitu db replica url      its DSN: give it to the app as YITU_DATABASE_READ_URL
    Port: YITU_PG_REPLICA_PORT (unset: YITU_PG_PORT + 10). Not started by `yitu demo`.
    """


@replica.command("up")
@click.pass_obj
@_friendly
def replica_up(settings: Settings) -> None:
    """Make the standby if need be (a copy of the primary) and start it streaming."""
    stack = EmbeddedStack(settings)
    started = stack.start_replica()
    click.echo(f"postgresql-replica: {'started' if started else 'already running'} (127.0.0.1:{settings.replica_port})")


@replica.command("down")
@click.option("--purge", is_flag=True, help="Also delete its data and drop the primary's replication slot.")
@click.pass_obj
@_friendly
def replica_down(settings: Settings, purge: bool) -> None:
    """Stop the standby (the primary keeps the WAL it needs to catch up, unless --purge)."""
    stopped = EmbeddedStack(settings).stop_replica(purge=purge)
    click.echo("postgresql-replica: " + ("stopped" if stopped else "was not running") + (", purged" if purge else ""))


@replica.command("status")
@click.pass_obj
@_friendly
def replica_status(settings: Settings) -> None:
    """Say whether the standby runs, where, and how far behind the primary it is."""
    click.echo(f"postgresql-replica: {EmbeddedStack(settings).replica_status()}")


@replica.command("url")
@click.pass_obj
@_friendly
def replica_url(settings: Settings) -> None:
    """Print the standby's DSN for the runtime role (YITU_DATABASE_READ_URL; contains the password)."""
    click.echo(EmbeddedStack(settings).replica_url())


@db.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
@_friendly
def db_backup(settings: Settings, file: Path) -> None:
    """Write the whole database to FILE (pg_dump custom format, the schema version inside) and the
    blob store (attachments) to FILE.blobs.tar beside it.

    Neither may exist yet. Restore them with `yitu db restore FILE --into NAME` or `--replace`.
    """
    from cli import backup

    stack = EmbeddedStack(settings)
    click.echo(f"backing up to {file} …")
    done = backup.backup(stack.database_url(), stack.pg_bindir(), file, settings.blob_path())
    click.echo(
        f"backup written: {done.path} ({done.bytes / 1e6:.1f} MB, schema {done.schema_version}, {done.seconds:.1f} s)"
    )
    click.echo(f"blobs written: {done.blobs_path} ({done.blobs} blobs, {done.blobs_bytes / 1e6:.1f} MB)")


@db.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--into", "into", default=None, metavar="NAME", help="Restore into a new database NAME (same server).")
@click.option(
    "--replace",
    is_flag=True,
    help="Restore, then swap it in for the configured database; the old one is kept as <name>_before_<time>.",
)
@click.pass_obj
@_friendly
def db_restore(settings: Settings, file: Path, into: str | None, replace: bool) -> None:
    """Restore a backup of `yitu db backup`, all or nothing (one transaction), and its blobs
    (FILE.blobs.tar, checked whole before anything is touched) into the blob store.

    Refuses a backup from a newer schema than this yitu knows, and a cut-off or damaged blobs
    archive. An older one restores as it is: run `yitu db migrate` on it afterwards.
    """
    from cli import backup

    stack = EmbeddedStack(settings)
    click.echo(f"restoring {file} …")
    name, kept = backup.restore(
        stack.database_url(), stack.pg_bindir(), file, into=into, replace=replace, blob_dir=settings.blob_path()
    )
    click.echo(f"restored into {name}")
    if kept:
        click.echo(f"the database it replaced is kept as {kept} (drop it once you have checked the restore)")


@db.command("migrate")
@click.pass_obj
@_friendly
def db_migrate(settings: Settings) -> None:
    """Apply pending geodata/sql/NNN_*.sql migrations, each in its own transaction, as the owner role
    (YITU_DATABASE_OWNER_URL, or the embedded cluster's superuser)."""
    from geodata.migrate import migrate

    done = migrate(EmbeddedStack(settings).database_url())
    if done:
        for name in done:
            click.echo(f"applied {name}")
    else:
        click.echo("schema up to date")


def _serve(settings: Settings, host: str | None, port: int | None, workers: int = 1) -> None:
    import uvicorn

    from cli.asgi import build

    host = host or settings.host
    port = port or settings.port
    log.info("serving dashboard url=http://%s:%d/ health=http://%s:%d/healthz", host, port, host, port)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,
        "access_log": False,  # uvicorn's line carries the query string (OsmAnd's device id): YITU_ACCESS_LOG's has none
        "timeout_keep_alive": KEEP_ALIVE_S,
    }
    if workers > 1:
        # N processes on one socket (uvicorn's supervisor: it restarts a worker that dies). Each builds
        # the app from the same settings (cli.asgi:app, the factory), applies YITU_TRUSTED_PROXIES itself,
        # and has its own pools, live hub and WebSockets; the scheduler's jobs and the relay run in one.
        log.info("app processes workers=%d", workers)
        uvicorn.run("cli.asgi:app", factory=True, workers=workers, proxy_headers=False, **common)
        return
    uvicorn.run(
        build(settings),
        # X-Forwarded-For / -Proto only from YITU_TRUSTED_PROXIES (nginx on this host: 127.0.0.1), so behind
        # TLS request.url.scheme is https and the client is the browser; from anyone else they are ignored.
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
        **common,
    )


@main.command()
@click.option("--host", default=None, help="Listen address (YITU_HOST, default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (YITU_PORT, default 8050).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="App processes on this host, on the one port (the scheduler and the relay run in one of them).",
)
@click.pass_obj
@_friendly
def serve(settings: Settings, host: str | None, port: int | None, workers: int) -> None:
    """Serve the dashboard, the API and /healthz (starts no database; see `yitu db up`).

    With --workers N, N processes share the port; more hosts (or processes on other ports) go behind
    nginx (deploy/nginx.conf, one `server` line each in its upstream)."""
    _serve(settings, host, port, workers)


@main.command()
@click.option("--host", default=None, help="Listen address (YITU_HOST, default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (YITU_PORT, default 8050).")
@click.option(
    "--no-simulate",
    "no_simulate",
    is_flag=True,
    help="Serve without the simulator that reports cases and drives the vans (YITU_DEMO_SIMULATE=false).",
)
@click.pass_obj
@_friendly
def demo(settings: Settings, host: str | None, port: int | None, no_simulate: bool) -> None:
    """Start the embedded stack, migrate, seed an empty database, serve until Ctrl-C.

    Prints a sign-in for the local admin (user admin and a random password, new at each start,
    shown only then) and a one-time pairing link for a local wall screen.

    Beside the server runs the simulator (`yitu simulate`, YITU_SIM_RATE and YITU_SIM_SPEEDUP),
    which keeps the wall screen alive: new cases, dispatch and handling, vans on the roads.
    On Ctrl-C it stops the simulator and the servers it started (ones that were already running stay up).
    """
    from geodata.migrate import migrate

    stack = EmbeddedStack(settings)
    report = stack.up()
    for name in report.started:
        click.echo(f"{name}: started")
    try:
        for name in migrate(stack.database_url()):
            click.echo(f"applied {name}")
        _seed_if_empty(stack.database_url(), settings)
        from cli.users import base_url, demo_identities

        serving = settings.model_copy(update={"host": host or settings.host, "port": port or settings.port})
        for line in demo_identities(stack.database_url(), base_url(serving)):
            click.echo(line)
        sim = None
        if settings.demo_simulate and not no_simulate:
            from cli.simulate import start_beside_server

            sim = start_beside_server(settings, stack.runtime_url(), host, port)
        try:
            _serve(settings, host, port)
        finally:
            if sim is not None:
                sim.stop()
    finally:
        if report.started:
            stopped = stack.down(only=report.started)
            click.echo("stopped: " + ", ".join(stopped))


def _seed_if_empty(dsn: str, settings: Settings) -> None:
    import psycopg

    from geodata.demo.seed import database_is_empty, seed_demo
    from services.deadlines import deadline_rules

    with psycopg.connect(dsn) as conn:
        empty = database_is_empty(conn)
    if not empty:
        log.info("database already holds a territory; not seeding")
        return
    click.echo("seeding the demo territory (鄂托克前旗) …")
    counts = seed_demo(dsn, "banner", seed=1, progress=sys.stderr.isatty(), rules=deadline_rules(settings))
    click.echo("seeded: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@main.group()
def seed() -> None:
    """Generate demo and benchmark data."""


@seed.command("demo")
@click.option(
    "--seed",
    "seed_value",
    type=click.IntRange(0, 2**32 - 1),
    default=1,
    show_default=True,
    help="Random seed: the same seed and --as-of give the same data.",
)
@click.option(
    "--scale",
    type=click.Choice(["banner", "city", "league"]),
    default="banner",
    show_default=True,
    help="banner: Otog Front Banner (4 towns, 85 villages, 401 cells, 4,000 cameras, 6,000 cases); "
    "city: Dalad-sized for benchmarks (~1,700 cells, 17,000 cameras, 1,000,000 cases); "
    "league: all of Ordos (鄂尔多斯市), its nine banners and districts under the league root "
    "(~4,500 cells, 9,000 cameras, 5,000,000 cases over three years, 4,000 of them open; "
    "--cases N shares N historical cases among them).",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]),
    default=None,
    help="End of the history (a year; three at league scale), UTC (default: now).",
)
@click.option("--cameras", type=click.IntRange(0, 200_000), default=None, help="Override the number of cameras.")
@click.option(
    "--cases", type=click.IntRange(0, 5_000_000), default=None, help="Override the number of historical cases."
)
@click.option("--replace", is_flag=True, help="Wipe the territory, resources and cases already in the database first.")
@click.pass_obj
@_friendly
def seed_demo_cmd(
    settings: Settings,
    seed_value: int,
    scale: str,
    as_of: datetime | None,
    cameras: int | None,
    cases: int | None,
    replace: bool,
) -> None:
    """Seed the demo territory: grid, roads, cameras, mediation centres, vans and a year of cases.

    Writes the territory, resources and cases in one transaction, then rebuilds the KPI counters and
    the search's indexes beside each other on connections of their own; refuses a database that
    already holds data unless --replace.
    """
    import psycopg

    from geodata.demo.seed import seed_demo
    from services import audit
    from services.deadlines import deadline_rules

    when = as_of.replace(tzinfo=UTC) if as_of else None

    def record(conn: psycopg.Connection, counts: dict[str, int], wiped: bool) -> None:
        detail = {"scale": scale, "seed": seed_value, "wiped": wiped, "counts": counts}
        audit.record(conn, None, "seed.demo.replace", scale, detail)

    counts = seed_demo(
        EmbeddedStack(settings).database_url(),
        scale,
        seed=seed_value,
        as_of=when,
        replace=replace,
        progress=True,
        cameras=cameras,
        cases=cases,
        rules=deadline_rules(settings),
        audit=record if replace else None,
    )
    click.echo("seeded: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _register_groups() -> None:
    """Command groups that live in their own modules (``import`` and ``export``: see :class:`_Commands`)."""
    from cli.areas import area_group
    from cli.basemap import basemap_group
    from cli.deadlines import deadlines_group
    from cli.kpi import kpi_group
    from cli.simulate import simulate_command
    from cli.tokens import token_group
    from cli.users import screen_group, user_group
    from cli.vans import van_group

    for group in (
        area_group,
        token_group,
        user_group,
        screen_group,
        van_group,
        basemap_group,
        kpi_group,
        deadlines_group,
        simulate_command,
    ):
        main.add_command(group)


_register_groups()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``yitu simulate``: the simulator that keeps the demo alive (sim/), and the
thread ``yitu demo`` runs it in beside the server.

It talks to the server only through the HTTP API, like the phones and terminals it plays; the
database is read for the territory and the road routes, and written once to make its tokens
(revoked when it stops). Register the command in cli/main.py ``_register_groups``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import click
import psycopg

from cli.common import db_errors, dsn
from services.settings import Settings
from sim import MAX_RATE_PER_HOUR as MAX_RATE
from sim import MAX_SPEEDUP

log = logging.getLogger("yitu.sim")


def _quiet_http_log() -> None:
    """One line per simulated action is the log; httpx's one line per request would drown it."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


def default_url(settings: Settings) -> str:
    """The server ``yitu serve`` would start: YITU_HOST / YITU_PORT (a wildcard address → loopback)."""
    host = settings.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{value!r} is not an http(s)://HOST[:PORT] URL")
    return value.rstrip("/")


def _config(
    settings: Settings,
    url: str | None,
    rate: float | None,
    vans: int | None,
    speedup: float | None,
    seed: int | None,
    duration: float | None,
    sim_start: datetime | None,
) -> Any:
    import random

    from geodata.clock import CST
    from sim.loop import SimConfig
    from sim.roads import DEFAULT_SPEEDS_KMH

    start = datetime.now(CST)
    if sim_start is not None:
        start = start.replace(hour=sim_start.hour, minute=sim_start.minute, second=0, microsecond=0)
    speeds = {
        **DEFAULT_SPEEDS_KMH,
        "trunk": settings.dispatch_speed_trunk_kmh,
        "county": settings.dispatch_speed_county_kmh,
        "village": settings.dispatch_speed_village_kmh,
        "offroad": settings.dispatch_speed_offroad_kmh,
    }
    return SimConfig(
        url=url or default_url(settings),
        rate=rate or settings.sim_rate,
        speedup=speedup or settings.sim_speedup,
        seed=random.SystemRandom().randrange(2**32) if seed is None else seed,
        vans=vans,
        duration=duration,
        start=start,
        speeds=speeds,
    )


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the run cleanly (summary, tokens revoked) instead of a traceback."""

    def handler(signum: int, frame: object) -> None:
        log.info("stopping on %s", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@click.command("simulate")
@click.option(
    "--rate",
    type=click.FloatRange(0, MAX_RATE, min_open=True),
    default=None,
    metavar="N",
    help="New cases per simulated hour, averaged over the day: few at night, most in office hours "
    "(default YITU_SIM_RATE, 6: with the default ×10 about one a real minute).",
)
@click.option(
    "--vans",
    type=click.IntRange(min=0),
    default=None,
    metavar="K",
    help="Drive the first K vans (by id) and report their GPS; 0: no vans, cases go to mediators "
    "(default: every van in the database, 4 in the demo).",
)
@click.option(
    "--speedup",
    type=click.FloatRange(0, MAX_SPEEDUP, min_open=True),
    default=None,
    metavar="X",
    help="Simulated time runs X times faster than real time, for durations and driving; the "
    "timestamps sent stay real (default YITU_SIM_SPEEDUP, 10).",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=None,
    metavar="N",
    help="Random seed: the same seed, rate and --sim-start give the same plan of reports and "
    "decisions (default: a random one, logged, to replay the run).",
)
@click.option(
    "--url",
    default=None,
    callback=_check_url,
    metavar="URL",
    help="The yitu server to talk to (default http://YITU_HOST:YITU_PORT, i.e. http://127.0.0.1:8050).",
)
@click.option(
    "--duration",
    type=click.FloatRange(0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Stop after this many real seconds (default: run until Ctrl-C).",
)
@click.option(
    "--sim-start",
    "sim_start",
    type=click.DateTime(formats=["%H:%M"]),
    default=None,
    metavar="HH:MM",
    help="Simulated time of day (China time) at the start, for the daily rhythm (default: now).",
)
@click.pass_context
@db_errors("vans")
def simulate_command(
    ctx: click.Context,
    rate: float | None,
    vans: int | None,
    speedup: float | None,
    seed: int | None,
    url: str | None,
    duration: float | None,
    sim_start: datetime | None,
) -> None:
    """Keep the demo alive: report cases, play dispatch and handling, drive the vans.

    \b
    Talks to a running server (`yitu serve`) through its HTTP API only:
      - reports new cases (POST /api/v1/cases) around the towns and villages, with the demo's type mix;
      - accepts or rejects them, dispatches them to grid workers, mediators or a van (the best
        dispatchable one of /van-candidates), records attempts, escalates some, closes, evaluates;
      - drives the vans along the roads (pgRouting) and posts their GPS as each van's terminal;
        the server sees them arrive, the crew ends the visit, the van drives back to base.
    Ctrl-C (or SIGTERM, or --duration) stops it with a summary. Server errors and outages are
    logged and backed off from, never fatal.
    """
    try:
        from sim.loop import Simulator
        from sim.plan import SimulationError, load_territory
    except ImportError as exc:  # httpx: a dependency of the simulator only
        raise click.ClickException(f"the simulator cannot run: {exc} (pip install httpx)") from None

    _quiet_http_log()
    settings = ctx.find_object(Settings) or Settings()
    config = _config(settings, url, rate, vans, speedup, seed, duration, sim_start)
    database = dsn(ctx)
    with psycopg.connect(database) as conn:
        try:
            territory = load_territory(conn)
        except SimulationError as exc:
            raise click.ClickException(str(exc)) from None
    if vans is not None and vans > len(territory.vans):
        raise click.BadParameter(f"{vans}: the database has {len(territory.vans)} van(s)", param_hint="'--vans'")
    stop = threading.Event()
    with _stop_on_signals(stop):
        summary = Simulator(config, territory, database).run(stop)
    log.info("simulator stopped")
    click.echo(summary.text())


class BesideServer:
    """The simulator in a thread of ``yitu demo``: it starts once the server answers /healthz and
    stops with it. A failure of the simulator is logged; it never takes the server down."""

    def __init__(self, settings: Settings, database: str, url: str) -> None:
        self.settings = settings
        self.database = database
        self.url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="yitu-simulate", daemon=True)

    def start(self) -> BesideServer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            from sim.client import wait_healthy
            from sim.loop import Simulator
            from sim.plan import load_territory
        except ImportError as exc:  # httpx is not installed
            log.error("the simulator cannot run (%s); the demo goes on without it", exc)
            return
        _quiet_http_log()
        if not wait_healthy(self.url, self._stop):
            return
        try:
            config = _config(self.settings, self.url, None, None, None, None, None, None)
            with psycopg.connect(self.database) as conn:
                territory = load_territory(conn)
            summary = Simulator(config, territory, self.database).run(self._stop)
            log.info("simulator stopped: %s", summary.text())
        except Exception:
            log.exception("the simulator stopped on an error; the server goes on")


def start_beside_server(settings: Settings, database: str, host: str | None, port: int | None) -> BesideServer:
    """Start the simulator for ``yitu demo`` against the server it is about to serve."""
    url = default_url(settings.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v}))
    log.info("the simulator will start once the server is up url=%s (yitu demo --no-simulate: without it)", url)
    return BesideServer(settings, database, url).start()

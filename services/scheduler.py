"""What the case workflow runs beside the requests: the scheduler's jobs and the outbox relay.

``start(services)`` is called from the app's lifespan and returns a :class:`CasesRuntime`
(stopped on shutdown): the outbox relay (services/relay.py, the one publisher of the live stream)
and a :class:`Scheduler` running its jobs in a supervised daemon thread:
- ``overdue``, every ``scheduler_interval`` seconds: flags open cases past their deadline
  ('overdue', an audit row, an event) and, with ``auto_escalate``, escalates them one level;
- ``reconcile``, as often: frees the vans whose case was closed, rejected or escalated by a path
  that did not free them (services/dispatching.py ``reconcile``);
- ``partitions``, at start and every ``housekeeping_interval``: the history tables' monthly
  partitions ahead, old GPS months dropped (geodata/partitions.py), and the outbox's rows sent
  more than ``OUTBOX_KEEP`` ago deleted;
- ``idempotency``, as often: the Idempotency-Keys older than ``idempotency_days`` forgotten,
  reports' keys included (geodata/idempotency.py);
- ``warnings``, every ``scheduler_interval`` seconds: deadline warnings raised for the open cases whose
  deadline passes within ``warn_grid_hours`` (grid level) or ``warn_hours`` (the others), once per
  (case, level, deadline), their events through the outbox (geodata/warnings.py).
- ``trails``, every few seconds (``TRAILS_EVERY``): the vans' fixes since the last roll rolled into
  their trails, simplified, for the vans layer to read (geodata/tracking.py ``roll_trails``).
Beside them, in every process, a thread ``yitu-deadlines`` keeps the process's deadline rules
current (services/deadlines.py: the overrides' generation, every second).
The jobs run once across all app processes: only the process holding the scheduler's advisory lock
(services/leader.py, its own connection) runs them; every other process checks the lock every
``LEAD_POLL`` seconds and idles its jobs, so when the leader dies another one takes over within
seconds and runs the ``at_start`` jobs at once.
With ``notify_webhook_url``, a second supervised thread (``notifier``, job ``notify``, every few
seconds) sends the warnings to the webhook (services/notify.py), so a slow receiver never holds up
the sweeps (it runs in every process: its rows are claimed FOR UPDATE SKIP LOCKED with a lease,
geodata/sql/warnings_claim.sql, so processes delivering at once each send other warnings).
``run_once`` is the overdue sweep for one instant, for tests with a frozen clock and for operators.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import redis
from psycopg_pool import ConnectionPool, PoolTimeout

from geodata import cases, idempotency, outbox, partitions, tracking, warnings
from geodata import deadlines as geodeadlines
from services import dispatching, events, notify
from services.deadlines import POLL as DEADLINES_POLL
from services.deadlines import (
    LiveRules,
    deadline_rules,  # where it was: tests and tools import it here too
)
from services.leader import SCHEDULER_LOCK, Leadership
from services.relay import Relay
from services.runtime import Services
from services.settings import Settings

log = logging.getLogger("yitu.scheduler")

LEAD_POLL = 1.0  # seconds between a follower's tries for the scheduler's lead
OUTBOX_KEEP = timedelta(days=1)  # sent outbox rows kept this long (to look into), then deleted


def run_once(pool: ConnectionPool, settings: Settings, now: datetime | None = None) -> list[dict[str, Any]]:
    """One overdue sweep at ``now`` (default: the clock); returns the events it wrote to the
    outbox, in the sweep's transaction (the relay publishes them once it commits). The deadline
    rules are loaded afresh for it: a case it escalates gets its banner's new deadline."""
    now = now or datetime.now(UTC)
    with pool.connection() as conn:
        book = geodeadlines.load(conn, deadline_rules(settings))
        out = cases.sweep_overdue(conn, now, book, escalate=settings.auto_escalate)
        outbox.append(conn, out)
    if out:
        log.info("overdue sweep events=%d", len(out))
    return out


def warn_rules(settings: Settings) -> warnings.WarnRules:
    """How long before a deadline its warning is raised, from the settings."""
    return warnings.WarnRules.hours(settings.warn_grid_hours, settings.warn_hours)


def raise_warnings(pool: ConnectionPool, settings: Settings, now: datetime | None = None) -> list[dict[str, Any]]:
    """One warnings sweep at ``now`` (default: the clock): the warnings due raised and their events
    written to the outbox, in one transaction. Returns the events."""
    now = now or datetime.now(UTC)
    with pool.connection() as conn:
        out = warnings.raise_due(conn, now, warn_rules(settings), notify=settings.notify_webhook_url is not None)
        outbox.append(conn, out)
    if out:
        log.info("deadline warnings raised=%d", len(out))
    return out


@dataclass
class JobState:
    """What /healthz shows of a job: when it last ran, whether that went well, how often it failed."""

    runs: int = 0
    failures: int = 0
    last_run: datetime | None = None
    last_ok: datetime | None = None
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "failures": self.failures,
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "last_ok": self.last_ok.isoformat() if self.last_ok else None,
            "last_error": self.last_error,
        }


@dataclass
class Job:
    name: str
    every: float  # seconds; the first run is one interval after the start, or at once with ``at_start``
    run: Callable[[], object]
    at_start: bool = False
    state: JobState = field(default_factory=JobState)
    due: float = 0.0


@dataclass
class Scheduler:
    """Runs the jobs in one daemon thread, supervised: any error of a job is logged with its
    traceback and counted, and the job runs again at its next turn (a database outage, a bug in
    one sweep, an unexpected Redis answer: nothing stops the others or the thread). Should the
    loop itself fail, the thread restarts it after a second (``restarts``).

    With ``leadership``, the jobs run only while this process holds the lead (checked every
    ``poll`` seconds); a process that takes the lead starts its jobs afresh, ``at_start`` ones at once."""

    jobs: list[Job]
    name: str = "yitu-scheduler"
    leadership: Leadership | None = None
    poll: float = LEAD_POLL
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    restarts: int = 0

    def start(self) -> None:
        if not self.jobs:
            log.info("scheduler off (YITU_SCHEDULER_INTERVAL=0)")
            return
        self._schedule(time.monotonic())
        self._thread = threading.Thread(target=self._supervise, name=self.name, daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                self._loop()
            except Exception:  # the loop's own failure: log it and start it again
                self.restarts += 1
                log.exception("scheduler loop failed; restarting restarts=%d", self.restarts)
                self._stop.wait(1.0)

    def _loop(self) -> None:
        led = self.leadership is None
        while not self._stop.is_set():
            if self.leadership is not None:
                leads = self.leadership.check()
                if leads and not led:  # just took the lead: the jobs from their start
                    self._schedule(time.monotonic())
                led = leads
                if not leads:
                    self._stop.wait(self.poll)
                    continue
            now = time.monotonic()
            for job in self.jobs:
                if job.due <= now and not self._stop.is_set():
                    self.run_job(job)
                    job.due = time.monotonic() + job.every
            wait = min(job.due for job in self.jobs) - time.monotonic()
            if self.leadership is not None:
                wait = min(wait, self.poll)  # a leader that lost its connection stops within a poll
            self._stop.wait(max(0.05, wait))

    def _schedule(self, now: float) -> None:
        for job in self.jobs:
            job.due = now if job.at_start else now + job.every

    @staticmethod
    def run_job(job: Job) -> None:
        st = job.state
        st.runs += 1
        st.last_run = datetime.now(UTC)
        try:
            job.run()
        except (psycopg.Error, PoolTimeout, redis.RedisError) as exc:  # a server is down: next time
            st.failures += 1
            st.last_error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            log.warning("%s failed error=%s: %s", job.name, type(exc).__name__, str(exc).strip()[:200])
        except Exception as exc:  # anything else is a bug: loud, with its traceback, and still next time
            st.failures += 1
            st.last_error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            log.exception("%s failed unexpectedly; it runs again next time", job.name)
        else:
            st.last_ok = st.last_run
            st.last_error = None

    def status(self) -> dict[str, Any]:
        alive = self._thread is not None and self._thread.is_alive()
        out: dict[str, Any] = {
            "running": alive,
            "restarts": self.restarts,
            "jobs": {job.name: job.state.as_dict() for job in self.jobs},
        }
        if self.leadership is not None:  # this process leads (runs the jobs) or idles them
            out.update(self.leadership.status())
            out["leader_process"] = self.leadership.holder()
        return out

    def stopping(self) -> bool:
        """Asked to stop: a long job ends its round early."""
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.leadership is not None:
            self.leadership.drop()  # the next process takes the lead at once


def housekeeping(svc: Services, now: datetime | None = None) -> dict[str, Any]:
    """The history tables' partitions made ahead and, with ``van_positions_keep_months``, old GPS
    months dropped (geodata/partitions.py); the outbox's rows sent before ``OUTBOX_KEEP`` deleted."""
    now = now or datetime.now(UTC)
    with svc.pool.connection() as conn:
        made = partitions.ensure_ahead(conn, now)
        dropped = partitions.drop_old_gps(conn, now, svc.settings.van_positions_keep_months)
        pruned = outbox.prune(conn, now - OUTBOX_KEEP)
    if made or dropped or pruned:
        log.info("partitions made=%d dropped=%s; outbox rows pruned=%d", made, ",".join(dropped) or "-", pruned)
    return {"made": made, "dropped": dropped, "outbox_pruned": pruned}


def prune_keys(svc: Services, now: datetime | None = None) -> dict[str, int]:
    """Forget the Idempotency-Keys (and their stored answers) older than ``idempotency_days``."""
    now = now or datetime.now(UTC)
    with svc.pool.connection() as conn:
        pruned = idempotency.prune(conn, now - timedelta(days=svc.settings.idempotency_days))
    if any(pruned.values()):
        log.info("idempotency keys pruned keys=%d report_keys=%d", pruned["keys"], pruned["report_keys"])
    return pruned


def jobs(svc: Services) -> list[Job]:
    """The jobs of every app process: the overdue sweep, the reconciler, the partitions and the keys."""
    interval = svc.settings.scheduler_interval
    if interval <= 0:
        return []
    return [
        Job("overdue", interval, lambda: run_once(svc.pool, svc.settings)),
        Job("reconcile", interval, lambda: dispatching.reconcile(svc)),
        Job("partitions", svc.settings.housekeeping_interval, lambda: housekeeping(svc), at_start=True),
        Job("idempotency", svc.settings.housekeeping_interval, lambda: prune_keys(svc), at_start=True),
        Job("warnings", interval, lambda: raise_warnings(svc.pool, svc.settings), at_start=True),
        Job("trails", min(interval, TRAILS_EVERY), lambda: roll_trails(svc), at_start=True),
    ]


TRAILS_EVERY = 5.0  # seconds between the vans' trail rolls: the vans layer reads the fixes since the last one


def roll_trails(svc: Services) -> dict[str, int]:
    """The vans' new fixes rolled into their trails, simplified (geodata/tracking.py ``roll_trails``)."""
    with svc.pool.connection() as conn:
        rolled = tracking.roll_trails(conn)
    if rolled["forgotten"]:
        log.info("van trails: points older than the longest trail forgotten=%d", rolled["forgotten"])
    return rolled


def notifier(svc: Services) -> Scheduler | None:
    """The webhook's own supervised thread (job ``notify``), or None without a webhook or a scheduler."""
    delivery = notify.Delivery.of(svc.settings)
    if delivery is None or svc.settings.scheduler_interval <= 0:
        return None
    every = min(svc.settings.scheduler_interval, notify.POLL_SECONDS)
    runner = Scheduler([], name="yitu-notify")
    runner.jobs.append(
        Job("notify", every, lambda: notify.deliver_due(svc, delivery, stopping=runner.stopping), at_start=True)
    )
    return runner


@dataclass
class CasesRuntime:
    """The per-process parts of the case workflow: the outbox relay, the scheduler, the rules."""

    relay: Relay
    scheduler: Scheduler
    rules: LiveRules  # the deadline rules of each banner (services/deadlines.py)
    notifier: Scheduler | None = None  # the webhook's thread (services/notify.py), when one is configured
    watcher: Scheduler | None = None  # keeps ``rules`` current (job ``deadlines``, in every process)

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.notifier is not None:
            self.notifier.stop()
        self.scheduler.stop()
        self.relay.stop()
        self.relay.stream.close()


def _own_connection(svc: Services) -> tuple[str, dict[str, Any]]:
    """How to open a connection of one's own to the app's database (as the pool's)."""
    kwargs = svc.pool.kwargs() if callable(svc.pool.kwargs) else dict(svc.pool.kwargs or {})
    conninfo = svc.pool.conninfo() if callable(svc.pool.conninfo) else svc.pool.conninfo
    return conninfo, kwargs


def leadership_for(svc: Services) -> Leadership:
    """The scheduler's lead of this process (services/leader.py)."""
    conninfo, kwargs = _own_connection(svc)
    return Leadership(conninfo, SCHEDULER_LOCK, "yitu-scheduler", conn_kwargs=kwargs)


def relay_for(svc: Services) -> Relay:
    """The relay of this process, on a connection of its own to the app's database (as the pool's)."""
    conninfo, kwargs = _own_connection(svc)
    return Relay(
        conninfo,
        events.stream_client(svc.settings.redis_dsn(), svc.settings.events_timeout),
        conn_kwargs={**kwargs, "application_name": "yitu-relay"},
    )


def start(svc: Services) -> CasesRuntime:
    relay = relay_for(svc)
    relay.start()
    scheduler = Scheduler(jobs(svc), leadership=leadership_for(svc))
    scheduler.start()
    sender = notifier(svc)
    if sender is not None:
        sender.start()
    rules = LiveRules(svc.pool, deadline_rules(svc.settings))
    rules.first_load()
    watcher = rules_watcher(rules)
    watcher.start()
    return CasesRuntime(relay, scheduler, rules, sender, watcher)


def rules_watcher(rules: LiveRules) -> Scheduler:
    """The thread of every process that keeps its deadline rules current (job ``deadlines``)."""
    return Scheduler([Job("deadlines", DEADLINES_POLL, rules.look, at_start=True)], name="yitu-deadlines")

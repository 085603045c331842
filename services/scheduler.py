"""What the case workflow runs beside the requests: the overdue sweep and the event publisher.

``start(services)`` is called from the app's lifespan and returns a :class:`CasesRuntime`
(stopped on shutdown). The sweep runs every ``scheduler_interval`` seconds in a daemon thread:
it flags open cases past their deadline ('overdue', an audit row, an event) and, with
``auto_escalate``, escalates them one level. ``run_once`` is the same sweep for one instant,
for tests with a frozen clock and for operators.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
from psycopg_pool import ConnectionPool, PoolTimeout

from geodata import cases
from geodata.workflow import DeadlineRules
from services import events
from services.runtime import Services
from services.settings import Settings

log = logging.getLogger("yitu.scheduler")


def deadline_rules(settings: Settings) -> DeadlineRules:
    """The workflow's deadline rules from the ``# --- cases`` settings."""
    return DeadlineRules(
        hours={
            "grid": settings.deadline_grid_hours,
            "village": settings.deadline_village_hours,
            "town": settings.deadline_town_hours,
            "banner": settings.deadline_banner_hours,
        },
        max_attempts=settings.max_attempts_per_level,
    )


def run_once(
    pool: ConnectionPool, stream: redis.Redis, settings: Settings, now: datetime | None = None
) -> list[dict[str, Any]]:
    """One overdue sweep at ``now`` (default: the clock); returns the events it published."""
    now = now or datetime.now(UTC)
    with pool.connection() as conn:
        out = cases.sweep_overdue(conn, now, deadline_rules(settings), escalate=settings.auto_escalate)
    # committed: now the screens may hear of it
    events.publish_many(stream, out)
    if out:
        log.info("overdue sweep events=%d", len(out))
    return out


@dataclass
class Scheduler:
    pool: ConnectionPool
    stream: redis.Redis
    settings: Settings
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        if self.settings.scheduler_interval <= 0:
            log.info("scheduler off (YITU_SCHEDULER_INTERVAL=0)")
            return
        self._thread = threading.Thread(target=self._loop, name="yitu-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.scheduler_interval):
            try:
                run_once(self.pool, self.stream, self.settings)
            except (psycopg.Error, PoolTimeout) as exc:  # the database is down: try again next time
                log.warning("overdue sweep failed error=%s: %s", type(exc).__name__, str(exc).strip()[:200])

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class CasesRuntime:
    """The per-process parts of the case workflow: the event stream client and the scheduler."""

    stream: redis.Redis
    scheduler: Scheduler
    rules: DeadlineRules

    def stop(self) -> None:
        self.scheduler.stop()
        self.stream.close()


def start(svc: Services) -> CasesRuntime:
    stream = events.stream_client(svc.redis, svc.settings.events_timeout)
    scheduler = Scheduler(svc.pool, stream, svc.settings)
    scheduler.start()
    return CasesRuntime(stream, scheduler, deadline_rules(svc.settings))

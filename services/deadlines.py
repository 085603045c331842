"""Deadlines per banner or for the whole league, as the app processes, the API and the CLI use them.

``deadline_rules(settings)`` is the deployment's default (the ``# --- cases`` settings);
``deadline_overrides`` puts the league's and the banners' rows over it (geodata/deadlines.py).
Each app process keeps one :class:`LiveRules`: the book in memory, answered without I/O on the hot
paths (intake, transitions, the case page), reloaded when the table's generation moves. A thread of
every process (services/scheduler.py ``start``) looks at the generation every ``POLL`` seconds, so
the processes agree within seconds of a change whoever made it (another process, the CLI, psql);
the process that makes a change through the API reloads at once. The overdue sweep loads the book
afresh for each run (services/scheduler.py ``run_once``).

A change (``set``/``clear``) writes its admin_events row in its transaction, as every admin change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from geodata import deadlines
from geodata.errors import Forbidden
from geodata.queries import ROOT_DIGITS
from geodata.workflow import DeadlineRules
from services import audit
from services.identity import Principal
from services.settings import Settings

log = logging.getLogger("yitu.deadlines")

POLL = 1.0  # seconds between a process's looks at the overrides' generation
START_TIMEOUT = 1.0  # seconds the first load may wait for a connection as the app starts


def deadline_rules(settings: Settings) -> DeadlineRules:
    """The workflow's deadline rules from the ``# --- cases`` settings: the deployment's default."""
    return DeadlineRules(
        hours={
            "grid": settings.deadline_grid_hours,
            "village": settings.deadline_village_hours,
            "town": settings.deadline_town_hours,
            "banner": settings.deadline_banner_hours,
        },
        max_attempts=settings.max_attempts_per_level,
        severity_levels=dict(settings.severity_levels),
        group_people=settings.group_dispute_people,
    )


class LiveRules:
    """One process's rules book, kept current by the overrides' generation (a :class:`geodata.workflow.Rules`)."""

    def __init__(self, pool: ConnectionPool[Any], defaults: DeadlineRules) -> None:
        self.pool = pool
        self.defaults = defaults
        self.book = deadlines.RulesBook(defaults)  # the settings' alone until the first load
        self._swap = threading.Lock()
        self.failing = False  # the last look failed (said once in the log, and once when it answers again)

    def of(self, banner: str | None) -> DeadlineRules:
        return self.book.of(banner)

    def own_banners(self) -> Collection[str]:
        return self.book.own_banners()

    def refresh(self, timeout: float | None = None) -> bool:
        """Reload the book if the table changed since it was loaded; whether it did. A database
        that does not answer keeps the book as it is (logged once, not at every look)."""
        try:
            with self.pool.connection(timeout) as conn:
                if self.book.generation and deadlines.generation(conn) == self.book.generation:
                    self._answered()
                    return False
                book = deadlines.load(conn, self.defaults)
        except (psycopg.Error, PoolTimeout) as exc:
            if not self.failing:
                log.warning("deadline rules not reloaded (%s: %s); keeping the ones loaded", type(exc).__name__, exc)
            self.failing = True
            return False
        self._answered()
        with self._swap:  # the API's reload and the watcher's may cross: the newer generation stays
            if book.generation < self.book.generation:
                return False
            changed = book.overrides != self.book.overrides or book.root != self.book.root
            self.book = book  # one assignment: a reader sees the old book or the new one, whole
        if changed:
            log.info("deadline rules reloaded generation=%d overrides=%d", book.generation, len(book.overrides))
        return changed

    def look(self) -> bool:
        """The watcher's look (every :data:`POLL` seconds, services/scheduler.py ``rules_watcher``):
        :meth:`refresh` waiting for a connection no longer than until the next look. With the pool's
        own timeout (10 s), a process stopping while its database is gone waited that long for the
        watcher's thread to end."""
        return self.refresh(POLL)

    def _answered(self) -> None:
        if self.failing:
            log.info("deadline rules: the database answers again")
        self.failing = False

    def first_load(self) -> None:
        """The book as the app starts; a database not answering yet leaves the settings' until the
        watcher's next look (the app starts while the database is down, as its pools do)."""
        self.refresh(START_TIMEOUT)


# --- what the API and the CLI share ------------------------------------------------------------------


def listing(conn: psycopg.Connection[Any], defaults: DeadlineRules, scope: str | None) -> dict[str, Any]:
    """The effective rules of the root and every banner inside ``scope`` (None: all), with where
    each value comes from (settings, league, banner)."""
    book = deadlines.load(conn, defaults)
    return {
        "settings": {"hours": dict(defaults.hours), "max_attempts": defaults.max_attempts},
        "areas": deadlines.described(book, deadlines.areas(conn, scope)),
        "generation": book.generation,
    }


def may_change(who: Principal | None, code: str) -> None:
    """Forbidden unless ``who`` may set ``code``'s rules: an admin, and the root's only when unscoped
    (or scoped to the root), a banner's when it lies in the admin's area. None is the command line."""
    if who is None:
        return
    if who.role != "admin":
        raise Forbidden(f"a {who.role} cannot change deadlines (admin only)", field="Authorization")
    if who.area is None:
        return
    if len(code) == ROOT_DIGITS or not code.startswith(who.area):
        raise Forbidden(f"area {code} is outside your area {who.area}", field="area")


def change(
    conn: psycopg.Connection[Any],
    who: Principal | None,
    address: str | None,
    wanted: deadlines.Change,
    defaults: DeadlineRules,
) -> dict[str, Any]:
    """Apply ``wanted`` in the caller's transaction with its admin_events row; the area's effective
    rules afterwards. Invalid (naming the field) or Forbidden before anything is written."""
    wanted = wanted.checked()
    code, _ = deadlines.target(conn, wanted.area)
    may_change(who, code)
    before, after = deadlines.apply(conn, wanted, audit.os_user() if who is None else who.name)
    detail = {
        "set": {**wanted.hours, **({"max_attempts": wanted.max_attempts} if wanted.max_attempts else {})},
        "cleared": sorted(wanted.clear),
        "before": _shown(before),
        "after": _shown(after),
    }
    action = "deadline.set" if wanted.hours or wanted.max_attempts is not None else "deadline.clear"
    audit.record(conn, who, action, code, detail, address)
    return deadlines.load(conn, defaults).described(code)


def _shown(row: deadlines.Override | None) -> dict[str, Any] | None:
    return None if row is None else {"hours": dict(row.hours), "max_attempts": row.max_attempts}

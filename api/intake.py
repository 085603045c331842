"""The intake lanes: reports that arrive together are written together.

Most of what one intake statement costs PostgreSQL is the statement, not the case: the executor
starting on a plan of a dozen parts, the commit, the round trip. Measured on the city-scale
data (bench/bench_intake.py's raw SQL figures), a batch of 16 costs the server about a third of
the CPU per case that 16 single statements cost, and the app a quarter of the driver work. So
each app process keeps a few *lanes*, each at most one statement in flight: a report that finds
a lane free is written at once, alone (no waiting to fill a batch: a quiet evening costs
nothing); reports that arrive while every lane is busy wait for the next free lane, which takes
all of them (up to ``MAX_BATCH``) into one statement. Under load the batches grow by themselves
and the latency stays that of one statement plus the queue, like PostgreSQL's own group commit.

Each report still gets its own answer: the statement gives one result row per request, a
refusal (unknown type, outside the reporter's area, a reused key) is that request's alone, and a
statement that fails as a whole (a database error) is retried one request at a time, so only the
request that causes an error sees it. The batch's ``case.created`` events are written to the
outbox by the statement itself (case_intake.sql), in the order of the requests: committed with the
cases, published by the relay (services/relay.py) once they are.

The database failing is answered honestly and in time. A batch waits for a connection only until
the deadline of its oldest request (the intake pool's timeout, connect timeout + 2 s, from the
request's arrival, which the guard notes: geodata/db.py), so with the database down the batches
queued behind one another do not each wait a whole pool timeout: every report gets its 503
within the bound. No connection
(or an error from the server, which rolled the statement back): ``service_unavailable``, nothing
was written. The connection lost while the statement was in flight (it is its own transaction,
in autocommit): it may have committed, so ``outcome_unknown`` for every request of the batch,
never a retry one by one (that would write twice what did commit).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from api import errors
from geodata import cases as store
from geodata import db
from geodata.workflow import Rules

log = logging.getLogger("yitu.intake")

LANES = 2  # statements in flight per app process
MAX_BATCH = 64  # requests per statement


@dataclass
class _Waiting:
    req: store.IntakeRequest
    deadline: float  # time.monotonic() by which the request is answered when the database is down
    done: asyncio.Future[store.IntakeResult] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class IntakeLanes:
    """Writes the reports of one app process in batches of what is waiting (see the module)."""

    def __init__(
        self, pool: AsyncConnectionPool, rules: Rules, *, lanes: int = LANES, max_batch: int = MAX_BATCH
    ) -> None:
        if lanes < 1 or max_batch < 1:
            raise ValueError("lanes and max_batch must be at least 1")
        self.pool, self.rules = pool, rules
        self.lanes, self.max_batch = lanes, max_batch
        self._queue: deque[_Waiting] = deque()
        self._active = 0  # lanes running; changed only on the event loop, never across an await
        self._tasks: set[asyncio.Task[None]] = set()  # held so they are not collected while running
        self.batches = 0  # statements run (for the tests and the bench)
        self.requests = 0  # requests written through them
        self.isolated = 0  # batches that failed as a whole and were written one by one

    async def submit(self, req: store.IntakeRequest) -> store.IntakeResult:
        """The request's result once its batch (with its events, in the outbox) has committed.

        Raises :class:`api.errors.Unavailable` when the database cannot be reached (within the
        pool's timeout of the request's arrival), :class:`api.errors.OutcomeUnknown` when the
        connection was lost with its statement in flight, and an error of the request's own (one
        the database raised for it alone) as it is.
        """
        waiting = _Waiting(req, (db.arrival() or time.monotonic()) + self.pool.timeout)
        self._queue.append(waiting)
        if self._active < self.lanes:
            self._active += 1
            # A context of its own: the lane outlives this request, and must not carry its deadline.
            task = asyncio.get_running_loop().create_task(self._lane(), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # The lane sets the result even if this request is cancelled (its client went away):
        # the case is written all the same, as a request cancelled after its statement was sent.
        return await asyncio.shield(waiting.done)

    def _take(self) -> list[_Waiting]:
        """Up to ``max_batch`` waiting requests, oldest first; a second one with the same
        Idempotency-Key waits for the next batch (it then finds the case the first one made)."""
        batch: list[_Waiting] = []
        keys: set[tuple[int, str]] = set()
        later: list[_Waiting] = []
        while self._queue and len(batch) < self.max_batch:
            w = self._queue.popleft()
            ident = (w.req.actor.key_scope, w.req.key) if w.req.key is not None else None
            if ident is not None and ident in keys:
                later.append(w)
                continue
            if ident is not None:
                keys.add(ident)
            batch.append(w)
        self._queue.extendleft(reversed(later))
        return batch

    async def _lane(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                try:
                    await self._write(batch)
                except Exception as exc:
                    for w in batch:
                        if not w.done.done():
                            w.done.set_exception(exc)
                finally:  # the lane cancelled (the app stopping): its requests are told so
                    for w in batch:
                        if not w.done.done():
                            w.done.cancel()
        finally:
            # In the same step as the loop's last look at the queue: a request queued after it
            # finds this lane gone and starts one (a done-callback would run a step later).
            self._active -= 1

    async def _write(self, batch: list[_Waiting]) -> None:
        for attempt in range(3):
            try:
                results = await self._statement([w.req for w in batch], min(w.deadline for w in batch))
                break
            except (errors.Unavailable, errors.OutcomeUnknown):
                raise  # nothing written, or perhaps all of it: not one by one either way
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                # Two batches taking the same rows (a day's first code of two banners, two keys) in
                # opposite order: nothing was written; once more (the statement orders its writes).
                log.info("intake batch rolled back error=%s attempt=%d", type(exc).__name__, attempt + 1)
                if attempt == 2:
                    raise
            except Exception as exc:
                # conversion of its parameters) cannot take: nothing was written, so write them
                # one by one and let that request alone have the error.
                if len(batch) == 1:
                    raise
                self.isolated += 1
                log.warning(
                    "intake batch failed as a whole; writing its %d requests one by one error=%s",
                    len(batch),
                    type(exc).__name__,
                )
                down: errors.Unavailable | None = None
                for w in batch:
                    try:
                        if down is not None:  # the database gone: the rest are not sent
                            raise down
                        await self._write([w])
                    except Exception as one:
                        if isinstance(one, errors.OutcomeUnknown):
                            down = _unavailable(one, 1)
                        elif isinstance(one, errors.Unavailable):
                            down = one
                        if not w.done.done():
                            w.done.set_exception(one)
                return
        else:  # each attempt either breaks with the results or raises
            raise AssertionError("unreachable")
        for w, result in zip(batch, results, strict=True):
            if not w.done.done():
                w.done.set_result(result)

    async def _statement(self, reqs: list[store.IntakeRequest], deadline: float) -> list[store.IntakeResult]:
        """The batch's one statement; waits for a connection until ``deadline`` at most."""
        sent = False
        try:
            async with self.pool.connection(timeout=max(deadline - time.monotonic(), db.MIN_WAIT)) as conn:
                sent = True  # from here on the statement may reach the server (autocommit: it commits)
                results = await store.intake_many_async(conn, reqs, self.rules, datetime.now(UTC))
        except (PoolTimeout, PoolClosed) as exc:
            raise _unavailable(exc, len(reqs)) from exc
        except psycopg.OperationalError as exc:
            if not db.connection_lost(exc):
                raise  # a deadlock, a cancelled statement: the server rolled it back, not an outage
            if sent:
                raise db.in_doubt(exc) from exc
            raise _unavailable(exc, len(reqs)) from exc
        self.batches += 1
        self.requests += len(reqs)
        # A retry's lookup of the case its key made, failed after the statement committed: that
        # request alone is told to send again (its key keeps it from being written twice).
        return [_unavailable(r, 1, _LOOKUP_LOST) if isinstance(r, psycopg.Error) else r for r in results]


_LOOKUP_LOST = (
    "the database became unavailable while finding the case this Idempotency-Key made; "
    "send the report again with the same key"
)


def _unavailable(exc: Exception, n: int, message: str | None = None) -> errors.Unavailable:
    """The 503 of the app's handler (api/errors.py), or one with its own ``message``."""
    if message is None:
        return errors.database_unavailable(exc)
    log.warning("intake: the database is unavailable error=%s requests=%d", type(exc).__name__, n)
    return errors.Unavailable(message)

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
request that causes an error sees it. The batch's events go to the live stream in one pipeline
after the commit, in the order of the requests, before any of them is answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api import errors, events
from geodata import cases as store
from geodata.workflow import DeadlineRules, WorkflowError

log = logging.getLogger("yitu.intake")

LANES = 2        # statements in flight per app process
MAX_BATCH = 64   # requests per statement


@dataclass
class _Waiting:
    req: store.IntakeRequest
    done: asyncio.Future[store.IntakeResult] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class IntakeLanes:
    """Writes the reports of one app process in batches of what is waiting (see the module)."""

    def __init__(self, pool: AsyncConnectionPool, stream: aioredis.Redis, rules: DeadlineRules, *,
                 lanes: int = LANES, max_batch: int = MAX_BATCH) -> None:
        if lanes < 1 or max_batch < 1:
            raise ValueError("lanes and max_batch must be at least 1")
        self.pool, self.stream, self.rules = pool, stream, rules
        self.lanes, self.max_batch = lanes, max_batch
        self._queue: deque[_Waiting] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0     # statements run (for the tests and the bench)
        self.requests = 0    # requests written through them

    async def submit(self, req: store.IntakeRequest) -> store.IntakeResult:
        """The request's result once its batch has committed and its event is published.

        Raises :class:`api.errors.ServiceUnavailable` when the database cannot be reached, and a
        database error of the request's own as it is.
        """
        waiting = _Waiting(req)
        self._queue.append(waiting)
        if len(self._running) < self.lanes:
            task = asyncio.get_running_loop().create_task(self._lane())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        # The lane sets the result even if this request is cancelled (its client went away):
        # the case is written all the same, as a request cancelled after its statement was sent.
        return await asyncio.shield(waiting.done)

    async def _lane(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            try:
                await self._write(batch)
            except Exception as exc:  # noqa: BLE001 - every waiting request gets an answer
                for w in batch:
                    if not w.done.done():
                        w.done.set_exception(exc)
            finally:  # the lane cancelled (the app stopping): its requests are told so
                for w in batch:
                    if not w.done.done():
                        w.done.cancel()

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            results = await self._statement([w.req for w in batch])
        except psycopg.Error as exc:
            if len(batch) == 1:
                raise
            log.warning("intake batch failed as a whole; writing its %d requests one by one error=%s",
                        len(batch), type(exc).__name__)
            for w in batch:  # isolate the request that causes it
                try:
                    await self._write([w])
                except Exception as one:  # noqa: BLE001 - that request's own answer
                    if not w.done.done():
                        w.done.set_exception(one)
            return
        created = [r[0] for r in results if not isinstance(r, WorkflowError) and r[1]]
        if created:
            await events.publish_many_async(
                self.stream, [store.event_of("case.created", row, row["updated_at"], channel=row["channel"])
                              for row in created])
        for w, result in zip(batch, results, strict=True):
            if not w.done.done():
                w.done.set_result(result)

    async def _statement(self, reqs: list[store.IntakeRequest]) -> list[store.IntakeResult]:
        try:
            async with self.pool.connection() as conn:
                results = await store.intake_many_async(conn, reqs, self.rules, datetime.now(timezone.utc))
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("intake: the database is unavailable error=%s requests=%d", type(exc).__name__, len(reqs))
            raise errors.ServiceUnavailable("the database is unavailable; the case was not written, "
                                            "send it again") from exc
        self.batches += 1
        self.requests += len(reqs)
        return results


"""Keep the cyclic garbage collector's full passes short in a serving process.

CPython's collector looks at every container object it tracks on each full (generation 2) pass. A
built yitu app holds about 200,000 of them for good — Dash's component registry and layouts, the
routes, pydantic's validators, the layer registry, imported modules — and under the command centre's
mix (bench/bench_mix.py) the requests' churn set off a full pass every few seconds, each 120–160 ms
with the whole process stopped (the GIL held): every request, WebSocket push and callback of that
process waited behind it: a large part of the tails at p95 and above (docs/scaling.md).

``gc.freeze()`` moves everything alive at that moment to a generation the collector never scans
(the objects are still freed by reference counting when they go). Done once the app is built and
again once it has warmed (the pools' connections, Dash's first requests, the first answers): a full
pass then looks at the few thousand objects the requests keep, in a few milliseconds.

What is frozen is never collected as a cycle: a structure alive at a freeze that later becomes an
unreachable cycle stays in memory. So each freeze collects first (only what is still reachable is
frozen), and they are few and early (``SETTLE_AFTER_S``), never periodic: what that can hold is a
moment's in-flight requests, once per freeze.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterable

log = logging.getLogger("yitu.heap")

# Seconds after start at which the process freezes again: once its first screens and requests have
# made what it keeps (pools, pages, answers), then twice later for what a quiet start left out.
SETTLE_AFTER_S = (30.0, 300.0, 1800.0)


def freeze() -> int:
    """Collect, then freeze what is left; the number of objects frozen in all."""
    start, before = time.perf_counter(), gc.get_freeze_count()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("heap settled frozen=%d added=%d ms=%.0f", frozen, frozen - before, (time.perf_counter() - start) * 1000)
    return frozen


def settle(after_s: Iterable[float] = SETTLE_AFTER_S) -> list[threading.Timer]:
    """Freeze now and again ``after_s`` seconds from now (daemon timers: they never hold a shutdown)."""
    freeze()
    timers = []
    for delay in after_s:
        timer = threading.Timer(delay, freeze)
        timer.daemon = True
        timer.name = f"yitu-heap-settle-{delay:g}s"
        timer.start()
        timers.append(timer)
    return timers

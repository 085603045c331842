"""A serving process moves what it keeps out of the collector's full passes (cli/heap.py)."""

from __future__ import annotations

import gc
import re
import weakref
from collections.abc import Iterator

import pytest

from cli import heap
from tests.helpers import wait_for


class Node:
    """A container that can sit in a reference cycle, and be watched by a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """This test process's heap as it was: the freezes of a test are undone after it."""
    yield
    gc.unfreeze()


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_a_freeze_takes_what_is_alive_out_of_the_full_pass_and_collection_still_works(unfrozen: None) -> None:
    kept = [Node() for _ in range(1000)]
    garbage = _cycle()  # unreachable already: collected before the freeze, not frozen
    frozen = heap.freeze()
    assert garbage() is None
    # (not equal to the count read now: a frozen object of another thread may be freed meanwhile)
    assert frozen >= len(kept) and gc.get_freeze_count() >= len(kept)
    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(o) in tracked for o in kept)  # a full pass no longer looks at them

    # After the freeze the collector does its work as before: a new cycle goes at the next pass,
    # and a frozen object still goes when its last reference does.
    later = _cycle()
    gc.collect()
    assert later() is None
    watched = weakref.ref(kept[0])
    del kept[0]
    assert watched() is None


def test_settle_freezes_now_and_again_later_on_daemon_timers(unfrozen: None) -> None:
    timers = heap.settle(after_s=(0.2,))
    first = gc.get_freeze_count()
    made_since = [Node() for _ in range(500)]  # what a warming process makes after its start
    assert all(t.daemon for t in timers)  # they never hold a shutdown
    wait_for(lambda: gc.get_freeze_count() >= first + len(made_since), timeout=10, what="the second freeze")
    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(o) in tracked for o in made_since)


def test_a_served_process_settles_its_heap_when_built(live_server, db_url: str, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    srv = live_server(db_url, redis_url)
    line = re.search(r"heap settled frozen=(\d+) added=(\d+)", srv.log())
    assert line, srv.log()
    # The built app's objects (Dash, routes, validators, modules: ~200,000), frozen at once.
    assert int(line[1]) == int(line[2]) > 50_000, line[0]

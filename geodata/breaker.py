"""The one Redis circuit breaker: after a failure, a client is left alone for a few seconds.

Redis is best effort where a request uses it beside PostGIS (the cache of figures; the event stream
is published by the outbox relay, off the requests' path, services/relay.py): an outage must cost
requests nothing, so the first failure trips the breaker for that
client and the calls in the next ``seconds`` skip Redis at once instead of each waiting out a
timeout. It sits in geodata/, the lowest package, so every package that talks to Redis uses this one.
"""

from __future__ import annotations

import threading
import time

PAUSE_AFTER_FAILURE = 5.0  # seconds without trying after Redis failed


class Breaker:
    """Remembers a failure per client (by identity) until ``seconds`` have passed."""

    def __init__(self, seconds: float = PAUSE_AFTER_FAILURE) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._until: dict[int, float] = {}

    def open(self, client: object) -> bool:
        """True while the client's last failure is recent: skip Redis."""
        with self._lock:
            return self._until.get(id(client), 0.0) > time.monotonic()

    def trip(self, client: object) -> None:
        with self._lock:
            self._until[id(client)] = time.monotonic() + self.seconds

    def reset(self, client: object) -> None:
        with self._lock:
            self._until.pop(id(client), None)

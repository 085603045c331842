"""A TCP relay between an app and PostgreSQL that cuts a connection on command: the in-doubt commit, for real.

Everything is forwarded byte for byte both ways until :meth:`TcpCut.arm` names a ``trigger``: the
next message from a client that contains it (optionally only on a connection that sent ``after``
earlier, say a marker in the change's parameters and then ``COMMIT``) is

- ``forward=True``: passed on to the server, whose reply is then swallowed (the relay waits for
  its first bytes, so the server has acted on the message), and both sides are closed: the client
  lost its connection after sending, exactly as when a network or a proxy dies under a COMMIT;
- ``forward=False``: not passed on; both sides are closed: lost before it was sent.

Both sides are closed with a FIN (not a reset), so the server reads what it was sent. No mocks: a
real socket between the app's real pool and the real server.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

CHUNK = 65536
REPLY_WAIT = 5.0  # seconds the relay waits for the server's answer to a forwarded trigger


@dataclass
class _Arm:
    trigger: bytes
    after: bytes | None
    forward: bool


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    seen_after: bool = False
    tail: bytes = b""  # the last bytes from the client, for markers split across reads
    swallowing: bool = False  # the cut is under way: the server's bytes go nowhere
    replied: threading.Event = field(default_factory=threading.Event)
    closed: bool = False


class TcpCut:
    """Listens on 127.0.0.1 (``port``) and relays to ``host:target_port``."""

    def __init__(self, host: str, target_port: int) -> None:
        self.target = (host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._arm: _Arm | None = None
        self._links: list[_Link] = []
        self.cuts = 0
        self.cut_done = threading.Event()
        self._stopping = False
        threading.Thread(target=self._accept, name="tcp-cut-accept", daemon=True).start()

    # --- control -------------------------------------------------------------------------------

    def arm(self, trigger: bytes, *, after: bytes | None = None, forward: bool = True) -> None:
        """Cut the next connection whose client sends ``trigger`` (after ``after``, if given)."""
        with self._lock:
            self._arm = _Arm(trigger, after, forward)
            self.cut_done.clear()
            for link in self._links:
                link.seen_after, link.tail = False, b""

    def disarm(self) -> None:
        with self._lock:
            self._arm = None

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            self._close(link)

    def __enter__(self) -> TcpCut:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- relaying ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            link = _Link(client, server)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._upstream, args=(link,), daemon=True).start()
            threading.Thread(target=self._downstream, args=(link,), daemon=True).start()

    def _upstream(self, link: _Link) -> None:
        """Client to server, watching for the trigger."""
        while True:
            try:
                data = link.client.recv(CHUNK)
            except OSError:
                data = b""
            if not data:
                self._close(link)
                return
            seen = link.tail + data
            link.tail = seen[-64:]
            cut: _Arm | None = None
            with self._lock:
                arm = self._arm
                if arm is not None:
                    if arm.after is not None and arm.after in seen:
                        link.seen_after = True
                        seen = seen[seen.index(arm.after) + len(arm.after) :]  # the trigger comes later
                    if (arm.after is None or link.seen_after) and arm.trigger in seen:
                        cut, self._arm = arm, None
            if cut is None:
                try:
                    link.server.sendall(data)
                except OSError:
                    self._close(link)
                    return
                continue
            self._cut(link, data if cut.forward else None)
            return

    def _downstream(self, link: _Link) -> None:
        """Server to client, unless a cut is under way."""
        while True:
            try:
                data = link.server.recv(CHUNK)
            except OSError:
                data = b""
            if data and link.swallowing:
                link.replied.set()  # the server answered the forwarded trigger: it acted on it
                continue
            if not data:
                link.replied.set()
                self._close(link)
                return
            try:
                link.client.sendall(data)
            except OSError:
                self._close(link)
                return

    def _cut(self, link: _Link, forward: bytes | None) -> None:
        link.swallowing = True
        if forward is not None:
            with contextlib.suppress(OSError):
                link.server.sendall(forward)
            link.replied.wait(REPLY_WAIT)
        # Counted before the sockets close: the app sees the close and answers, and a test may read
        # ``cuts`` before this thread runs again (seen with two test workers on two cores).
        with self._lock:
            self.cuts += 1
        self._close(link)
        self.cut_done.set()

    def _close(self, link: _Link) -> None:
        with self._lock:
            if link.closed:
                return
            link.closed = True
            if link in self._links:
                self._links.remove(link)
        for sock in (link.client, link.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

"""Redis that survives a node (issue 17, item 3): a real primary, replica and three Sentinels on
loopback, and an app whose ``YITU_REDIS_URL`` names the Sentinel set.

The app's relay publishes the outbox and its live hub feeds a subscriber (what a screen's WebSocket
callback holds, callbacks/live.py); then the Sentinels fail the master over while changes keep
coming. Publishing resumes on the new master, the stream there holds every event with consecutive
outbox ids (what the old master had not passed on is published again), and the subscriber gets
the events or a resync, then the events after it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from dashboard.app import create_app
from geodata import outbox
from services import events, redisconn
from services.live import LiveHub, Subscription
from services.settings import Settings

from .conftest import make_token
from .helpers import all_published, app_database, free_port, wait_for

MASTER = "yitu"
PASSWORD = "sentinel-test-pw"


@dataclass
class SentinelSet:
    """Two Redis servers (a primary and its replica) and three Sentinels watching them."""

    root: Path
    ports: list[int]  # primary, replica, sentinel × 3
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports[2:])
        return f"redis+sentinel://:{PASSWORD}@{hosts}/{MASTER}/0"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, decode_responses=True, socket_timeout=2)

    def sentinel(self, i: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.ports[2 + i], decode_responses=True, socket_timeout=2)

    def master_port(self) -> int:
        _host, port = self.sentinel().sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        primary, replica = self.ports[:2]
        for port in (primary, replica):
            conf = [
                f"port {port}",
                "bind 127.0.0.1",
                f"requirepass {PASSWORD}",
                f"masterauth {PASSWORD}",
                'save ""',
                "appendonly no",
                f"dir {self.root}",
            ]
            if port == replica:
                conf.append(f"replicaof 127.0.0.1 {primary}")
            self._spawn(server, port, conf)
        for port in self.ports[2:]:
            conf = [
                f"port {port}",
                "bind 127.0.0.1",
                f"dir {self.root}",
                f"sentinel monitor {MASTER} 127.0.0.1 {primary} 2",
                f"sentinel auth-pass {MASTER} {PASSWORD}",
                f"sentinel down-after-milliseconds {MASTER} 1000",
                f"sentinel failover-timeout {MASTER} 10000",
            ]
            self._spawn(server, port, conf, "--sentinel")
        wait_for(
            lambda: self.node(replica).info("replication").get("master_link_status") == "up", what="the replica in sync"
        )
        for i in range(3):  # each Sentinel knows the replica and the two other Sentinels
            wait_for(
                lambda i=i: (
                    len(self.sentinel(i).sentinel_slaves(MASTER)) == 1
                    and len(self.sentinel(i).sentinel_sentinels(MASTER)) == 2
                ),
                what=f"Sentinel {i} seeing the replica and its peers",
            )

    def _spawn(self, server: str, port: int, conf: list[str], *extra: str) -> None:
        path = self.root / f"{port}.conf"  # a Sentinel rewrites its file: one each
        path.write_text("\n".join(conf) + "\n")
        log = open(self.root / f"{port}.log", "wb")  # noqa: SIM115 - the process keeps it
        proc = subprocess.Popen([server, str(path), *extra], stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)

        def up() -> bool:
            if proc.poll() is not None:  # it exited: say why instead of waiting out the timeout
                raise AssertionError(f"redis-server on {port} exited: {(self.root / f'{port}.log').read_text()}")
            return self._answers(port)

        wait_for(up, what=f"Redis on port {port}")

    def _answers(self, port: int) -> bool:
        client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.AuthenticationError:  # a Sentinel has no password: it answers
            return True
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    """The set on five ports free now (a fixed YITU_REDIS_PORT + 10 … + 14 lies in the kernel's
    ephemeral range: a clean clone's run once found the first taken by some connection's own end)."""
    ports: list[int] = []
    while len(ports) < 5:
        if (port := free_port()) not in ports:
            ports.append(port)
    found = SentinelSet(tmp_path, ports)
    try:
        found.start()
        yield found
    finally:
        found.stop()


class Screen:
    """A subscriber of the app's live hub, as a screen's WebSocket callback is (callbacks/live.py):
    it collects the events' codes, and notes each resync."""

    def __init__(self) -> None:
        self.codes: list[str] = []
        self.resyncs = 0
        self.stop = False
        self.sub: Subscription | None = None

    @property
    def resyncing(self) -> bool:
        """Told to resync and not yet done (what it has queued is dropped when it does)."""
        return self.sub is not None and self.sub.resync.is_set()

    async def follow(self, hub: LiveHub) -> None:
        async with hub.subscribe(None) as (sub, _):
            self.sub = sub
            while not self.stop:
                batch = await sub.next(0.2)
                if batch is None:
                    self.resyncs += 1
                    sub.resynced()
                    continue
                self.codes += [str(e.event.get("code")) for e in batch]


def _append(dsn: str, *codes: str) -> None:
    with psycopg.connect(dsn) as conn:
        outbox.append(conn, [{"type": "case.changed", "code": c} for c in codes])


def _stream_ids(url: str) -> list[int]:
    client = redisconn.client(url, timeout=2)
    try:
        return [int(f["outbox_id"]) for _, f in client.xrange(events.STREAM)]
    finally:
        client.close()


def _last_stream_id(url: str) -> str:
    client = redisconn.client(url, timeout=2)
    try:
        return str(client.xrevrange(events.STREAM, count=1)[0][0])
    finally:
        client.close()


def test_a_failover_loses_nothing_publishing_resumes_and_screens_catch_up(
    sentinels: SentinelSet, db_url: str, tmp_path: Path
) -> None:
    assert sentinels.master_port() == sentinels.ports[0]
    settings = Settings(**app_database(db_url), redis_url=sentinels.url, home=tmp_path / "home", _env_file=None)
    admin = {"Authorization": f"Bearer {make_token(db_url, 'admin')}"}
    screen = Screen()
    with TestClient(create_app(settings)) as client, _stopping(screen):
        assert client.portal is not None
        hub: LiveHub = client.app.state.live  # type: ignore[attr-defined]
        wait_for(lambda: hub.healthy, what="the live hub reading the stream")
        client.portal.start_task_soon(screen.follow, hub)
        wait_for(lambda: hub.subscribers == 1, what="the screen subscribed")
        _append(db_url, *[f"B{i}" for i in range(20)])
        all_published(db_url)
        wait_for(lambda: screen.codes[-1:] == ["B19"], what="the screen getting the events")

        # Changes keep coming while the Sentinels fail the master over.
        writing = threading.Event()
        written: list[str] = []

        def write() -> None:
            i = 0
            while not writing.is_set():
                _append(db_url, f"D{i}")
                written.append(f"D{i}")
                i += 1
                time.sleep(0.02)

        writer = threading.Thread(target=write)
        writer.start()
        try:
            wait_for(lambda: len(written) >= 20, what="writes before the failover")
            assert sentinels.sentinel().execute_command("SENTINEL", "FAILOVER", MASTER) in ("OK", b"OK", True)
            wait_for(lambda: sentinels.master_port() == sentinels.ports[1], what="the replica promoted")
            wait_for(
                lambda: sentinels.node(sentinels.ports[0]).info("replication").get("role") == "slave",
                what="the old master following the new one",
            )
            count = len(written)
            wait_for(lambda: len(written) >= count + 20, what="writes after the failover")
        finally:
            writing.set()
            writer.join()
        _append(db_url, "AFTER")
        all_published(db_url, timeout=30)  # every committed event went out: publishing resumed

        ids = _stream_ids(sentinels.url)  # the new master's stream
        with psycopg.connect(db_url) as conn:
            (last,) = conn.execute("SELECT last_id FROM outbox_counter").fetchone() or (0,)
        assert ids == list(range(1, last + 1)), ids  # every event, once, consecutive: nothing lost
        assert last == 20 + len(written) + 1

        # The screen saw every event, or was told to reload from PostGIS (a resync drops what it
        # had queued: the reload has it); and from then on it follows the new master live. "From
        # then on": once the hub has handed the screen the stream's last entry (AFTER) and the
        # screen took the resync that came with it. (Until then a new entry may arrive in the same
        # batch as the gap, and the resync covers it: the hub may read a replica's stream, blocked
        # while that replica loads the new master's data, and get everything since in one read.)
        top = _last_stream_id(sentinels.url)
        wait_for(lambda: hub.delivered == top, what="the hub handing the screen the new master's last entry")
        wait_for(lambda: not screen.resyncing, what="the screen taking its resync")
        assert screen.resyncs > 0 or {*written, "AFTER"} <= set(screen.codes)
        _append(db_url, "LIVE")
        wait_for(lambda: "LIVE" in screen.codes, timeout=20, what="the screen following the new master")
        health = client.get("/healthz", headers=admin).json()
        assert health["redis"] == "ok" and health["outbox"]["pending"] == 0
        screen.stop = True
        wait_for(lambda: hub.subscribers == 0, what="the screen gone")


@contextlib.contextmanager
def _stopping(screen: Screen) -> Iterator[None]:
    """The screen stops with the block, a failing one too (the app's shutdown waits for it)."""
    try:
        yield
    finally:
        screen.stop = True


def test_the_sentinel_url_form_is_checked() -> None:
    spec = redisconn.parse("redis+sentinel://:p%40ss@10.0.0.5:26379,10.0.0.6:26380/yitu/2?sentinel_password=s")
    assert spec is not None
    assert spec.sentinels == (("10.0.0.5", 26379), ("10.0.0.6", 26380))
    assert (spec.master, spec.db, spec.password, spec.sentinel_password) == ("yitu", 2, "p@ss", "s")
    assert redisconn.parse("redis://:x@127.0.0.1:6379/0") is None
    bad_urls = (
        "redis+sentinel://10.0.0.5/yitu",
        "redis+sentinel://10.0.0.5:26379/",
        "redis+sentinel://h:1/m/x",
        "redis+sentinel://h:²/m",  # ² passes str.isdigit, and int() refused it with its own words
        "redis+sentinel://h:1/m/²",
    )
    for bad in bad_urls:
        with pytest.raises(ValueError, match=r"host:port|mastername"):
            Settings(redis_url=bad, _env_file=None)

"""What the bench scripts share: a seeded bench database, a free port, a scratch database cloned
from a template, a server waited for until it answers, the p95 every script prints beside the
median, and where the machine's CPU went during a run (per process, from /proc)."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from playwright.sync_api import BrowserContext
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cli.stack import EmbeddedStack
from geodata.migrate import migrate
from services.identity import PAIR_PATH, create_screen
from services.settings import Settings


def seeded_database(scale: str, name: str) -> str:
    """The DSN of ``name`` on this checkout's embedded stack, created, migrated and seeded at
    ``scale`` (seed 1, with a progress bar) when it holds no territory yet."""
    server = EmbeddedStack(Settings()).database_url()
    with psycopg.connect(make_conninfo(server, dbname="postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(server, dbname=name)
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        empty = conn.execute("SELECT count(*) = 0 FROM areas").fetchone()[0]  # type: ignore[index]
    if empty:
        from geodata.demo.seed import seed_demo

        print(f"seeding {scale} scale into {name}…", file=sys.stderr)
        t0 = time.perf_counter()
        seed_demo(dsn, scale, seed=1, progress=True)
        print(f"seeded in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return dsn


REPO = Path(__file__).resolve().parents[1]


@contextmanager
def worktree(rev: str, packages: Iterable[str], where: Path) -> Iterator[Path]:
    """A temporary ``git worktree`` of ``rev`` at ``where`` (a bench's ``--against REV``), removed
    afterwards (a killed run leaves it registered: ``git worktree prune``). ValueError, saying why,
    when ``rev`` is not a commit here or lacks one of ``packages`` (the editable install would then
    load this checkout's in their place: a mix of the two)."""
    add = ["git", "worktree", "add", "--detach", "-q", str(where), rev]
    if subprocess.run(add, cwd=REPO, check=False).returncode != 0:
        raise ValueError(f"--against {rev}: not a commit of this repository (git's words above)")
    try:
        missing = [name for name in packages if not (where / name).is_dir()]
        if missing:
            raise ValueError(f"--against {rev}: no {', '.join(missing)} there")
        yield where
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=REPO, check=False)


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clone_database(template_dsn: str, prefix: str) -> str:
    """A new database ``<prefix>_<random>`` copied from ``template_dsn``'s (a file copy: seconds even
    for the city scale), so a run that writes leaves the template as it was; its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    template = conninfo_to_dict(template_dsn)["dbname"]
    with psycopg.connect(make_conninfo(template_dsn, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return make_conninfo(template_dsn, dbname=name)


def drop_database(dsn: str) -> None:
    """Drop the database of ``dsn`` (its connections closed first); nothing if it is gone."""
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def wait_healthy(proc: subprocess.Popen[bytes], url: str, seconds: float, log: Path | None = None) -> None:
    """Return once ``url``/healthz answers 200; SystemExit (with the end of the server's ``log``) if
    the server exits or ``seconds`` pass."""

    def tail() -> str:
        return f"; log {log}: …{log.read_text(errors='replace')[-2000:]}" if log else ""

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode} before it answered{tail()}")
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"the server did not answer {url}/healthz within {seconds:.0f} s{tail()}")


def p95(values: list[float]) -> float:
    """The 95th percentile (inclusive method: a run of 20 values gives its 19th)."""
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]


def pair(context: BrowserContext, url: str, dsn: str, name: str = "bench") -> None:
    """Sign a browser context in as a new wall screen (as `yitu screen create` + opening its link),
    so the wall it opens next is measured from its own first request, not the sign-in's redirect."""
    with psycopg.connect(dsn) as conn:
        _, code = create_screen(conn, f"{name}-{uuid.uuid4().hex[:6]}")
    answer = context.request.get(f"{url}{PAIR_PATH}{code}", max_redirects=0)
    if answer.status != 303:
        raise SystemExit(f"pairing a screen failed: {answer.status} {answer.text()[:200]}")


Ticks = dict[int, tuple[int, int, str]]  # pid → (CPU clock ticks so far, parent pid, command line)


def cpu_ticks() -> Ticks:
    """Every process's CPU so far (user + system clock ticks), its parent and its command line."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(entry)] = (int(fields[11]) + int(fields[12]), int(fields[1]), args)
    return out


def descendants(ticks: Ticks, roots: set[int]) -> set[int]:
    """``roots`` and all their children, grandchildren… (a server's workers, a cluster's backends)."""
    found = set(roots)
    while True:
        more = {pid for pid, (_, ppid, _) in ticks.items() if ppid in found} - found
        if not more:
            return found
        found |= more


def cpu_spent(before: Ticks, after: Ticks, groups: dict[str, float], group_of: Callable[[int, str], str]) -> None:
    """Add to ``groups`` the ticks each process spent between the two readings, in the group
    ``group_of(pid, command line)`` names (this process itself is left out: it counts its own)."""
    for pid, (ticks, _, args) in after.items():
        spent = ticks - before.get(pid, (0, 0, ""))[0]
        if spent > 0 and pid != os.getpid():
            groups[group_of(pid, args)] += spent


def cpu_line(groups: dict[str, float], seconds: float) -> str:
    """The groups' ticks as % of one core over ``seconds`` (2 cores = 200%)."""
    hz = os.sysconf("SC_CLK_TCK")
    return ", ".join(f"{k} {v / hz / seconds * 100:.0f}%" for k, v in groups.items())

#!/usr/bin/env python
"""Regenerate the screenshots of docs/screens/: every page at every size, as its user sees it.

The pages and sizes are those of the layout test (PAGES and SIZES in tests/test_layout.py: a page
added there is shot here too), each opened signed in as the role that uses it, shot once its content
is in and its layout has stopped moving (the test's own wait). Names: ``<page>-<width>x<height>.png``,
each made at most --max-kb KB with Pillow (a PNG of 256 colours or fewer; a JPEG if no PNG fits), so
the pictures can live in the repository.

By default it starts what it shoots against and removes it afterwards: the embedded stack of this
checkout (``yitu db up``: only what was not running, stopped again at the end), a database of its
own seeded with the demo (as of now, so deadlines and ages look as on a live demo), and ``yitu
serve`` on a free port. With --url it shoots a running yitu instead; --dsn (default: the configured
database's owner) is where it makes the people it signs in as (``screens-<role>``, password reset at
each run) and pairs a wall screen.

    .venv/bin/python scripts/screens.py                           # every page, every size
    .venv/bin/python scripts/screens.py --pages area,dispatch --sizes 1920x1080
    .venv/bin/python scripts/screens.py --url http://127.0.0.1:8050 --out /tmp/shots
    .venv/bin/python scripts/screens.py --readme                  # also rewrite README.md's "Screens"
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
import psycopg
from PIL import Image
from playwright.sync_api import Browser, sync_playwright
from psycopg import sql
from psycopg.conninfo import make_conninfo

from services import identity
from services.settings import Settings
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_layout import PAGES, PHONE_MAX_WIDTH, SIZES, Shown, page_path, sizes_of, wait_ready

OUT = ROOT / "docs" / "screens"
WHO = {"screen": "on a paired wall screen", "anon": "not signed in"}  # how README names who looks
README = ROOT / "README.md"
REDIS_DB = 13  # the Redis database of the server it starts (the suite's is 15, a demo's 0)
# How the people signed in are called on the pages shot (the header shows the name).
NAMES = {"admin": "陈静", "dispatcher": "王敏", "viewer": "赵主任", "grid_worker": "张伟", "screen": "综治中心大屏"}


@dataclass
class Target:
    """The yitu being shot: its address and the owner's DSN of its database."""

    url: str
    dsn: str
    fresh: bool  # a database made for this run: people get display names, no one else's to clash with
    cookies: dict[tuple[str, str | None], list[dict[str, str]]] = field(default_factory=dict)

    def cookie(self, who: str, area: str | None) -> list[dict[str, str]] | None:
        """The session cookie of ``who`` (made once per run); None for ``anon``."""
        if who == "anon":
            return None
        if (who, area) not in self.cookies:
            value = self._pair(area) if who == "screen" else self._sign_in(who, area)
            self.cookies[(who, area)] = [{"name": "yitu_session", "value": value, "url": self.url}]
        return self.cookies[(who, area)]

    def _sign_in(self, role: str, area: str | None) -> str:
        name = NAMES.get(role, role) if self.fresh else f"screens-{role}"
        password = secrets.token_urlsafe(18)
        with psycopg.connect(self.dsn) as conn:
            taken = conn.execute("SELECT 1 FROM users WHERE name = %s", (name,)).fetchone()
            if taken:  # our own account of an earlier run
                identity.set_password(conn, name, password)
                identity.set_user_role(conn, name, role, area)
            else:
                identity.create_user(conn, name=name, role=role, password=password, area=area)
        r = httpx.post(
            self.url + "/login",
            data={"username": name, "password": password, "next": "/"},
            headers={"Origin": self.url},
            timeout=30,
        )
        cookie = r.cookies.get("yitu_session")
        if r.status_code != 303 or not cookie:
            raise SystemExit(f"signing in as {role} at {self.url} failed: {r.status_code} {r.text[:200]}")
        return cookie

    def _pair(self, area: str | None) -> str:
        with psycopg.connect(self.dsn) as conn:
            name = NAMES["screen"] if self.fresh else f"screens-{secrets.token_hex(3)}"
            _, code = identity.create_screen(conn, name, area)
        r = httpx.get(f"{self.url}/pair/{code}", timeout=30)
        cookie = r.cookies.get("yitu_session")
        if r.status_code != 303 or not cookie:
            raise SystemExit(f"pairing a wall screen at {self.url} failed: {r.status_code}")
        return cookie


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _say(text: str) -> None:
    print(text, flush=True)


@contextlib.contextmanager
def own_server(settings: Settings) -> Iterator[Target]:
    """The embedded stack, a database seeded with the demo and ``yitu serve``; all gone afterwards."""
    from cli.stack import EmbeddedStack
    from geodata.demo.seed import seed_demo
    from geodata.migrate import migrate
    from services.deadlines import deadline_rules

    stack = EmbeddedStack(settings)
    report = stack.up()
    name = f"yitu_screens_{os.getpid()}"
    admin = make_conninfo(stack.database_url(), dbname="postgres")
    dsn = make_conninfo(stack.database_url(), dbname=name)
    proc: subprocess.Popen[bytes] | None = None
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        _say(f"database {name}: migrating and seeding the demo …")
        migrate(dsn)
        seed_demo(dsn, "banner", seed=1, as_of=datetime.now(UTC), rules=deadline_rules(settings))
        port = _free_port()
        redis_url = re.sub(r"/\d*$", "", stack.redis_url()) + f"/{REDIS_DB}"
        env = {
            **os.environ,
            "YITU_DATABASE_URL": make_conninfo(stack.runtime_url(), dbname=name),
            "YITU_DATABASE_OWNER_URL": dsn,
            "YITU_REDIS_URL": redis_url,
            "YITU_HOST": "127.0.0.1",
            "YITU_PORT": str(port),
        }
        log = tempfile.NamedTemporaryFile(prefix="yitu-screens-", suffix=".log", delete=False)  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve"], cwd=ROOT, env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        _wait_serving(url, proc, log.name)
        _say(f"serving {url} (log {log.name})")
        yield Target(url, dsn, fresh=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if report.started:
            stack.down(only=report.started)


def _wait_serving(url: str, proc: subprocess.Popen[bytes], log: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"yitu serve exited with {proc.returncode}: see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/login", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"yitu serve did not answer within {timeout:.0f} s: see {log}")


def _png(image: Image.Image, colours: int, method: Image.Quantize) -> bytes:
    out = io.BytesIO()
    image.quantize(colors=colours, method=method, dither=Image.Dither.NONE).save(out, "PNG", optimize=True)
    return out.getvalue()


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
    return out.getvalue()


def small(png: bytes, max_kb: int) -> tuple[bytes, str]:
    """The screenshot in as few bytes as it takes, legible. Returns (bytes, extension).

    The pages are flat colours and text: a PNG of 256 colours (median cut) keeps them, smaller than
    a JPEG that keeps the text sharp. If it is over ``max_kb``: fast octree, 256 colours then 128
    then 64 (it keeps small saturated areas, a red KPI, that median cut greys at few colours), then
    a JPEG of lowering quality. A picture that is mostly gradient (the sign-in page's background:
    a JPEG of it is under half the PNG) is a JPEG: a palette draws its gradient in rings.
    """
    image = Image.open(io.BytesIO(png)).convert("RGB")
    limit = max_kb * 1024
    best = _png(image, 256, Image.Quantize.MEDIANCUT)
    photo = _jpeg(image, 85)
    if len(photo) < len(best) / 2 and len(photo) <= limit:
        return photo, "jpg"
    for colours in (256, 128, 64):
        if len(best) <= limit:
            return best, "png"
        best = _png(image, colours, Image.Quantize.FASTOCTREE)
    if len(best) <= limit:
        return best, "png"
    for quality in (80, 70, 60, 50, 40, 30):
        photo = _jpeg(image, quality)
        if len(photo) <= limit:
            break
    return photo, "jpg"


def shoot(browser: Browser, target: Target, shown: Shown, size: tuple[int, int], out: Path, max_kb: int) -> Path:
    """One page at one size into ``out``; returns the file written."""
    width, height = size
    page = browser.new_page(viewport={"width": width, "height": height}, reduced_motion="reduce")
    try:
        cookies = target.cookie(shown.who, shown.area)
        if cookies:
            page.context.add_cookies(cookies)  # type: ignore[arg-type]
        page.goto(target.url + page_path(shown, target.dsn))
        wait_ready(page, shown)
        # two frames more: what the last layout moved is painted (the maps draw on a canvas)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        # a phone's page scrolls down: the whole of it (a desk's or a wall's page fits its screen)
        data, ext = small(page.screenshot(full_page=width <= PHONE_MAX_WIDTH), max_kb)
    finally:
        page.close()
    path = out / f"{shown.name}-{width}x{height}.{ext}"
    for stale in out.glob(f"{shown.name}-{width}x{height}.*"):
        stale.unlink()
    path.write_bytes(data)
    return path


def readme_section(out: Path) -> str:
    """README's "Screens" section: the 1920x1080 pictures, and links to the other sizes."""
    rel = out.relative_to(ROOT).as_posix()
    lines = [
        "## Screens",
        "",
        "Every page at 1920×1080, as the person who uses it sees it; its other sizes are linked beside its path.",
        f"`scripts/screens.py` regenerates them (into `{rel}/`, over a demo it starts itself; `--help` says more);",
        "`tests/test_layout.py` asserts the same pages' layout at the same sizes.",
        "",
    ]
    for shown in PAGES:
        files = [f for w, h in sizes_of(shown) for f in sorted(out.glob(f"{shown.name}-{w}x{h}.*"))]
        if not files:
            continue
        main = next((f for f in files if "-1920x1080." in f.name), files[0])
        others = [f"[{f.stem.rsplit('-', 1)[1].replace('x', '×')}]({rel}/{f.name})" for f in files if f != main]
        path = re.sub(r"\{(banner|case)\}", "{code}", shown.path)
        lines += [
            f"**`{path}`**, {WHO.get(shown.who, 'signed in as ' + shown.who)} · " + " · ".join(others),
            "",
            f"![{shown.name} at {main.stem.rsplit('-', 1)[1].replace('x', '×')}]({rel}/{main.name})",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def write_readme(out: Path) -> None:
    """Replace README.md's "## Screens" section (up to the next "## ") with :func:`readme_section`."""
    text = README.read_text()
    section = readme_section(out)
    match = re.search(r"^## Screens\n.*?(?=^## )", text, flags=re.S | re.M)
    if match:
        text = text[: match.start()] + section + "\n" + text[match.end() :]
    else:
        text = text.rstrip() + "\n\n" + section
    README.write_text(text)


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)x(\d+)\s*", part)
        if not m:
            raise argparse.ArgumentTypeError(f"a size is WIDTHxHEIGHT, not {part!r}")
        sizes.append((int(m[1]), int(m[2])))
    return sizes


def main(argv: list[str] | None = None) -> int:
    names = [p.name for p in PAGES]
    ap = argparse.ArgumentParser(
        prog="scripts/screens.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Pages: {', '.join(f'{p.name} ({p.path}, as {p.who})' for p in PAGES)}. "
        f"Sizes: {', '.join(f'{w}x{h}' for w, h in SIZES)}.",
    )
    ap.add_argument("--url", help="shoot this running yitu (default: start one over a fresh demo, remove it after)")
    ap.add_argument("--dsn", help="with --url: its database (owner), where the people signed in as are made")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where the pictures go (default {OUT.relative_to(ROOT)})")
    ap.add_argument("--pages", default=",".join(names), help="comma-separated page names (default: all)")
    ap.add_argument("--sizes", type=_parse_sizes, help="comma-separated WIDTHxHEIGHT (default: each page's sizes)")
    ap.add_argument("--max-kb", type=int, default=400, help="the most a picture may weigh (default 400)")
    ap.add_argument("--readme", action="store_true", help='rewrite the "Screens" section of README.md afterwards')
    args = ap.parse_args(argv)
    unknown = set(args.pages.split(",")) - set(names)
    if unknown:
        ap.error(f"no page {', '.join(sorted(unknown))}; pages: {', '.join(names)}")
    pages = [p for p in PAGES if p.name in args.pages.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    target_cm = (
        contextlib.nullcontext(Target(args.url.rstrip("/"), args.dsn or settings.database_owner_dsn(), fresh=False))
        if args.url
        else own_server(settings)
    )
    shots = sorted(((size, shown) for shown in pages for size in (args.sizes or sizes_of(shown))), key=lambda s: s[0])
    with target_cm as target, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for n, (size, shown) in enumerate(shots, 1):
            started = time.monotonic()
            path = shoot(browser, target, shown, size, args.out, args.max_kb)
            kb = path.stat().st_size / 1024
            heavy = f", more than --max-kb {args.max_kb}" if kb > args.max_kb else ""
            _say(
                f"[{n}/{len(shots)}] {shown.name} {size[0]}x{size[1]} as {shown.who}: "
                f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
                f"({kb:.0f} KB{heavy}, {time.monotonic() - started:.1f} s)"
            )
        browser.close()
    if args.readme:
        write_readme(args.out)
        _say("README.md: Screens rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every page looks right at the sizes it is used at: measured in a real Chromium by element boxes.

A test that reads the DOM never saw the area page's map drawn 76 px high, its table out of sight and
its header at the bottom right. These tests open each page of PAGES at each size of SIZES on
``yitu serve`` over a clone of the seeded demo, signed in as the role that uses it, wait until the
page's content is there and its boxes have stopped moving, then assert with getBoundingClientRect:

* the document does not scroll (nothing lies beyond the viewport), and every key element is shown,
  inside the viewport;
* key elements do not overlap each other (one inside another is nesting, not overlap); the header
  is at the top, its items do not overlap each other and stay inside it;
* nothing is cut off: a key element that hides its overflow has no more content than it shows;
* a map fills at least MAP_SHARE of its panel (its parent) in width and height, is at least
  MAP_MIN_HEIGHT px high, and Leaflet's idea of its size is its box (a map laid out in a box that
  changed size afterwards draws in a corner);
* a table shows at least TABLE_ROWS[size] whole rows without scrolling anything.

On a phone (PHONE: the wall, the area, case, inbox and dispatch pages a leader or a dispatcher opens
from a link) the page is one column that scrolls down: it may be taller than the screen, never wider;
a table's rows count below the fold too, not those its own box clips.

PAGES is the one list of pages: a page is added by one line (scripts/screens.py shoots the same list).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest
import redis
from playwright.sync_api import Browser, Page

from cli.stack import EmbeddedStack

from .browser import SETTLED, Watched, browser, settled  # noqa: F401 - browser is a fixture
from .conftest import ARTIFACTS, DEMO_TEMPLATE, TEST_REDIS_DB, Clones, LiveServer
from .helpers import with_redis_db


class Shown(NamedTuple):
    """One page as the layout tests and scripts/screens.py open it.

    ``path`` may hold ``{banner}`` (the demo banner's code) and ``{case}`` (the code of its most
    recent open case). ``who`` signs in: a role (``admin``, ``dispatcher``, ``viewer``,
    ``grid_worker``, ...), ``screen`` a paired wall screen, ``anon`` nobody. ``ready``: CSS selectors
    present, or JavaScript functions true, once the page has its content. The rest are the key
    elements, by CSS selector.
    """

    name: str  # the screenshot's name: docs/screens/<name>-<width>x<height>.png
    path: str
    who: str
    ready: tuple[str, ...]
    header: str | None = ".yitu-header"
    maps: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    panels: tuple[str, ...] = ()
    area: str | None = None  # the signed-in person's area (a grid worker's), None: the whole territory
    sizes: tuple[tuple[int, int], ...] | None = None  # None: SIZES (a phone page gives its own, e.g. (390, 844))


def _rows_at_least(table: str, n: int) -> str:
    """A ``ready`` condition: the table holds ``n`` rows of data."""
    return f"() => document.querySelectorAll('{table} tr:has(td)').length >= {n}"


SIZES: tuple[tuple[int, int], ...] = ((1920, 1080), (1366, 768), (3840, 2160))
PHONE = (390, 844)
PHONE_MAX_WIDTH = 700  # up to this width the page is a phone's: one column the page scrolls down
DESK_AND_PHONE = (*SIZES, PHONE)  # the desk pages a leader or a dispatcher also opens on a phone


# fmt: off
PAGES: tuple[Shown, ...] = (
    Shown("wall", "/", "screen", (SETTLED, "#kpi-in_progress .yitu-kpi-value"),
          maps=("#yitu-map",), panels=(".yitu-left", ".yitu-right"), sizes=DESK_AND_PHONE),
    Shown("area", "/area/{banner}", "viewer", (settled(["grids", "cases"]), _rows_at_least("#area-table", 20)),
          maps=("#area-map",), tables=("#area-table",), panels=(".yitu-area-table",), sizes=DESK_AND_PHONE),
    Shown("dispatch", "/dispatch", "dispatcher", (settled(["grids", "cases"]), ".yitu-queue-item"),
          maps=("#dispatch-map",), panels=(".yitu-left", ".yitu-right"), sizes=DESK_AND_PHONE),
    Shown("admin", "/admin", "admin",
          ("#admin-users table", "#admin-signins table", _rows_at_least("#admin-mediators", 5)),
          panels=(".yitu-admin-card:has(#admin-users)",)),
    Shown("login", "/login", "anon", ("#username",), header=None, panels=("main.yitu-login",)),
    Shown("case", "/cases/{case}", "dispatcher",
          ("#case-timeline tr", "#case-actions button", "#case-map .leaflet-overlay-pane canvas"),
          maps=("#case-map",), panels=(".yitu-left", ".yitu-case-middle", ".yitu-right"), sizes=DESK_AND_PHONE),
    Shown("inbox", "/inbox", "dispatcher", ("#inbox-list table", _rows_at_least("#inbox-list", 10)),
          tables=(".yitu-inbox-list",), panels=(".yitu-inbox-counts",),  # the list scrolls inside its panel
          sizes=DESK_AND_PHONE),
)
# fmt: on

MAP_SHARE = 0.6  # of its panel, in width and in height
MAP_MIN_HEIGHT = 300  # px, at every size (1366x768 is the smallest)
TABLE_ROWS = {(1920, 1080): 10, (3840, 2160): 10}  # whole rows in sight, nothing scrolled; other sizes 5
SLACK = 1.5  # px: borders that touch, sub-pixel layout


# One evaluation measures everything the assertions read (in the page: the boxes of one moment).
MEASURE = """([keys, scrolls]) => {
  const box = el => { const r = el.getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height}; };
  const shown = el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  // scrolls: a phone's page scrolls down, so a row below the fold counts (not one its box clips)
  const wholeRows = table => {
    const clips = [];  // the boxes of the ancestors that clip what overflows them
    for (let a = table; a && a !== document.body; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.overflowX !== 'visible' || s.overflowY !== 'visible') clips.push(a.getBoundingClientRect());
    }
    return [...table.querySelectorAll('tr')].filter(tr => tr.querySelector('td')).filter(tr => {
      const r = tr.getBoundingClientRect();
      return r.height > 0 && (scrolls || (r.top >= -0.5 && r.bottom <= innerHeight + 0.5))
        && clips.every(c => r.top >= c.top - 0.5 && r.bottom <= c.bottom + 0.5); }).length;
  };
  const out = {vw: innerWidth, vh: innerHeight, docW: document.documentElement.scrollWidth,
               docH: document.documentElement.scrollHeight, els: {}};
  const found = [];
  for (const [sel, kind] of keys) {
    const el = document.querySelector(sel);
    if (!el) { out.els[sel] = null; continue; }
    found.push([sel, el]);
    const s = getComputedStyle(el);
    const e = {kind, shown: shown(el), box: box(el), overflowX: s.overflowX, overflowY: s.overflowY,
               scrollW: el.scrollWidth, clientW: el.clientWidth, scrollH: el.scrollHeight, clientH: el.clientHeight};
    if (kind === 'map') {
      e.panel = box(el.parentElement);
      const maps = (window.yitu && window.yitu.maps) || [];
      const m = maps.find(m => { const c = m.getContainer(); return c === el || el.contains(c); });
      e.leaflet = m ? m.getSize() : null;
    }
    if (kind === 'header') {
      e.items = [...el.children].filter(shown).map(c => ({name: c.id || c.className || c.tagName, box: box(c)}));
    }
    if (kind === 'table') { e.rows = wholeRows(el); }
    out.els[sel] = e;
  }
  out.nested = [];
  for (const [a, ea] of found) for (const [b, eb] of found) if (a !== b && ea.contains(eb)) out.nested.push([a, b]);
  return out;
}"""

# True once the key elements' boxes are the same on three polls in a row (the map fitted, the
# fonts in, the tables filled): the layout the user looks at, not one on its way there.
STILL = """([sels]) => {
  const now = JSON.stringify(sels.map(s => { const e = document.querySelector(s); if (!e) return null;
    const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height].map(Math.round); }));
  const w = window.__yituLayout || (window.__yituLayout = {last: null, same: 0});
  w.same = now === w.last ? w.same + 1 : 0; w.last = now; return w.same >= 3;
}"""


def key_elements(shown: Shown) -> list[tuple[str, str]]:
    """(selector, kind) of the page's key elements."""
    keys = [(shown.header, "header")] if shown.header else []
    keys += (
        [(s, "map") for s in shown.maps] + [(s, "table") for s in shown.tables] + [(s, "panel") for s in shown.panels]
    )
    return keys


def wait_ready(page: Page, shown: Shown, timeout: float = 60_000) -> None:
    """Until the page has its content (``ready``) and its key elements have stopped moving."""
    for cond in shown.ready:
        if cond.lstrip().startswith("()"):
            page.wait_for_function(cond, timeout=timeout)
        else:
            page.wait_for_selector(cond, timeout=timeout)
    page.wait_for_function(STILL, arg=[[s for s, _ in key_elements(shown)]], polling=200, timeout=timeout)


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    w = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
    h = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
    return w > SLACK and h > SLACK


def _inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (
        inner["x"] >= outer["x"] - SLACK
        and inner["y"] >= outer["y"] - SLACK
        and inner["x"] + inner["w"] <= outer["x"] + outer["w"] + SLACK
        and inner["y"] + inner["h"] <= outer["y"] + outer["h"] + SLACK
    )


def layout_problems(m: dict[str, Any], size: tuple[int, int]) -> list[str]:
    """What is wrong with one measured page (MEASURE's answer), in words: empty when it looks right."""
    problems: list[str] = []
    phone = size[0] <= PHONE_MAX_WIDTH
    # a phone's page scrolls down: "the screen" is then the viewport's width and the page's height
    screen = {"x": 0.0, "y": 0.0, "w": float(m["vw"]), "h": float(m["docH"] if phone else m["vh"])}
    if m["docW"] > m["vw"] + SLACK or (m["docH"] > m["vh"] + SLACK and not phone):
        problems.append(f"the page scrolls: {m['docW']}x{m['docH']} in a {m['vw']}x{m['vh']} viewport")
    els = {sel: e for sel, e in m["els"].items() if e is not None}
    problems += [f"{sel}: not on the page" for sel, e in m["els"].items() if e is None]
    for sel, e in els.items():
        b = e["box"]
        if not e["shown"] or b["w"] < 1 or b["h"] < 1:
            problems.append(f"{sel}: not shown ({b['w']:.0f}x{b['h']:.0f})")
            continue
        if not _inside(b, screen):
            problems.append(f"{sel}: outside the viewport at {b}")
        if e["kind"] != "map":  # a map clips its panes by design
            problems += _cut_off(sel, e)
        if e["kind"] == "header":
            problems += _header_problems(sel, e)
            if b["y"] > SLACK:
                problems.append(f"{sel}: not at the top of the page (at y={b['y']:.0f})")
        if e["kind"] == "map":
            problems += _map_problems(sel, e)
        if e["kind"] == "table" and e["rows"] < TABLE_ROWS.get(size, 5):
            problems.append(f"{sel}: {e['rows']} whole rows in sight, fewer than {TABLE_ROWS.get(size, 5)}")
    nested = {tuple(pair) for pair in m["nested"]}
    names = sorted(els)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if (a, b) not in nested and (b, a) not in nested and _overlap(els[a]["box"], els[b]["box"]):
                problems.append(f"{a} and {b} overlap: {els[a]['box']} / {els[b]['box']}")
    return problems


def _cut_off(sel: str, e: dict[str, Any]) -> list[str]:
    out = []
    if e["overflowY"] in ("hidden", "clip") and e["scrollH"] > e["clientH"] + SLACK:
        out.append(f"{sel}: cut off at the bottom ({e['scrollH']} px of content in {e['clientH']})")
    if e["overflowX"] in ("hidden", "clip") and e["scrollW"] > e["clientW"] + SLACK:
        out.append(f"{sel}: cut off at the side ({e['scrollW']} px of content in {e['clientW']})")
    return out


def _header_problems(sel: str, e: dict[str, Any]) -> list[str]:
    out = [f"{sel}: {it['name']} sticks out of the header" for it in e["items"] if not _inside(it["box"], e["box"])]
    items = e["items"]
    for i, a in enumerate(items):
        out += [f"{sel}: {a['name']} and {b['name']} overlap" for b in items[i + 1 :] if _overlap(a["box"], b["box"])]
    return out


def _map_problems(sel: str, e: dict[str, Any]) -> list[str]:
    b, panel, out = e["box"], e["panel"], []
    if b["w"] < MAP_SHARE * panel["w"] or b["h"] < MAP_SHARE * panel["h"]:
        out.append(
            f"{sel}: {b['w']:.0f}x{b['h']:.0f}, less than {MAP_SHARE:.0%} of its panel"
            f" {panel['w']:.0f}x{panel['h']:.0f}"
        )
    if b["h"] < MAP_MIN_HEIGHT:
        out.append(f"{sel}: {b['h']:.0f} px high, less than {MAP_MIN_HEIGHT}")
    leaflet = e["leaflet"]
    if leaflet is None:
        out.append(f"{sel}: no Leaflet map in it")
    elif abs(leaflet["x"] - b["w"]) > 2 or abs(leaflet["y"] - b["h"]) > 2:
        out.append(f"{sel}: Leaflet draws {leaflet['x']}x{leaflet['y']} in a box of {b['w']:.0f}x{b['h']:.0f}")
    return out


def page_path(shown: Shown, dsn: str) -> str:
    """``shown.path`` with its placeholders filled from the database."""
    if "{" not in shown.path:
        return shown.path
    with psycopg.connect(dsn) as conn:
        banner = conn.execute("SELECT code FROM areas WHERE level = 1 ORDER BY code LIMIT 1").fetchone()
        case = conn.execute(
            "SELECT code FROM cases WHERE step IN ('reported', 'accepted', 'dispatched', 'handling')"
            " ORDER BY reported_at DESC LIMIT 1"
        ).fetchone()
    assert banner and case, "the database holds no territory or no open case"
    return shown.path.format(banner=banner[0], case=case[0])


# --- the server: one for the module, over a clone of the seeded demo ---------------------------------


class Site:
    """``yitu serve`` over a demo clone, with a signed-in cookie per (who, area), made once."""

    def __init__(self, srv: LiveServer) -> None:
        self.srv = srv
        self._cookies: dict[tuple[str, str | None], list[dict[str, str]]] = {}

    def cookies(self, who: str, area: str | None) -> list[dict[str, str]] | None:
        if who == "anon":
            return None
        if (who, area) not in self._cookies:
            cookie = self.srv.pair(area=area) if who == "screen" else self.srv.sign_in(who, area)
            self._cookies[(who, area)] = self.srv.browser_cookie(cookie)
        return self._cookies[(who, area)]


@pytest.fixture(scope="module")
def site(
    clones: Clones, demo_dsn: str, stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    from .helpers import as_runtime

    dsn = clones.take(DEMO_TEMPLATE)  # this module's own copy: signing in writes
    url = with_redis_db(stack.redis_url(), TEST_REDIS_DB)
    redis.Redis.from_url(url).flushdb()
    env = {"YITU_DATABASE_URL": as_runtime(dsn), "YITU_DATABASE_OWNER_URL": dsn, "YITU_REDIS_URL": url}
    srv = LiveServer(env, Path(tmp_path_factory.mktemp("layout")) / "serve.log")
    try:
        yield Site(srv)
    finally:
        srv.stop()
        clones.give_back(dsn)


def sizes_of(shown: Shown) -> tuple[tuple[int, int], ...]:
    return shown.sizes or SIZES


SHOTS = [(p, size) for p in PAGES for size in sizes_of(p)]


# A short value (a phone number, a level, a state in the admin page's roster) broken over two lines:
# an inline box that wraps has a rect per line.
WRAPPED = """() => [...document.querySelectorAll('.yitu-roster-short')]
  .filter((e) => e.getClientRects().length > 1).map((e) => e.textContent)"""


@pytest.mark.browser
@pytest.mark.parametrize(("shown", "size"), SHOTS, ids=[f"{p.name}-{w}x{h}" for p, (w, h) in SHOTS])
def test_page_looks_right(site: Site, browser: Browser, shown: Shown, size: tuple[int, int]) -> None:
    w = Watched(browser, site.srv.url, *size, cookies=site.cookies(shown.who, shown.area))
    w.page.goto(site.srv.url + page_path(shown, site.srv.dsn))
    wait_ready(w.page, shown)
    measured = w.page.evaluate(MEASURE, [key_elements(shown), size[0] <= PHONE_MAX_WIDTH])
    problems = layout_problems(measured, size)
    problems += [f"broken over two lines: {text!r}" for text in w.page.evaluate(WRAPPED)]
    if problems:  # the picture of what was measured, for whoever reads the failure
        ARTIFACTS.mkdir(exist_ok=True)
        w.page.screenshot(path=str(ARTIFACTS / f"layout-{shown.name}-{size[0]}x{size[1]}.png"))
    assert problems == [], f"{shown.path} at {size[0]}x{size[1]}:\n" + "\n".join(problems)
    w.close()  # no console error, no CSP violation, nothing fetched from outside


def test_the_checks_see_what_went_wrong_on_the_area_page() -> None:
    """The measurements of the area page as it was (header at the bottom right, map 76 px high,
    table out of sight) fail; as it is now, they pass."""
    size = (1920, 1080)

    def el(kind: str, x: float, y: float, w: float, h: float, **extra: Any) -> dict[str, Any]:
        base = {
            "kind": kind,
            "shown": True,
            "box": {"x": x, "y": y, "w": w, "h": h},
            "overflowX": "visible",
            "overflowY": "visible",
            "scrollW": w,
            "clientW": w,
            "scrollH": h,
            "clientH": h,
        }
        return {**base, **extra}

    def measured(header: dict[str, Any], map_: dict[str, Any], table: dict[str, Any]) -> dict[str, Any]:
        return {
            "vw": 1920,
            "vh": 1080,
            "docW": 1920,
            "docH": 1080,
            "nested": [],
            "els": {".yitu-header": header, "#area-map": map_, "#area-table": table},
        }

    before = measured(
        el("header", 1055, 1024, 865, 56, items=[]),
        el("map", 0, 0, 768, 76, panel={"x": 0, "y": 0, "w": 768, "h": 76}, leaflet={"x": 768, "y": 76}),
        el("table", 768, 0, 1152, 900, rows=0),
    )
    problems = layout_problems(before, size)
    assert any("76 px high" in p for p in problems), problems
    assert any("whole rows" in p for p in problems), problems
    assert any("not at the top" in p for p in problems), problems
    over = measured(  # the header drawn over the table, and its title sticking out of it
        el("header", 0, 0, 1920, 76, items=[{"name": "yitu-title", "box": {"x": 170, "y": 10, "w": 200, "h": 90}}]),
        el("map", 0, 76, 768, 1004, panel={"x": 0, "y": 76, "w": 768, "h": 1004}, leaflet={"x": 768, "y": 1004}),
        el("table", 780, 40, 1128, 830, rows=20),
    )
    assert [p.split(":")[0] for p in layout_problems(over, size)] == [
        ".yitu-header",
        "#area-table and .yitu-header overlap",
    ]
    after = measured(
        el("header", 0, 0, 1920, 76, items=[{"name": "yitu-title", "box": {"x": 170, "y": 10, "w": 200, "h": 50}}]),
        el("map", 0, 76, 768, 1004, panel={"x": 0, "y": 76, "w": 768, "h": 1004}, leaflet={"x": 768, "y": 1004}),
        el("table", 780, 140, 1128, 830, rows=20),
    )
    assert layout_problems(after, size) == []

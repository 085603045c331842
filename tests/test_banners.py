"""Several banners in one deployment (issue 16 item 2): a league/city root above the banners.

A second banner's grid (a small synthetic one, written here) is imported into a clone of the seeded
demo (鄂托克前旗 150623) while it runs: the first banner's areas, cases and screens stay as they
were, the root 1506 is made above both, the import's ``areas.changed`` event goes out with its
commit, the top of the territory becomes the root, KPIs and rankings work at every level (banners
ranked within the league, towns within a banner), case codes keep their banner's prefix, and a
reader scoped to one banner sees nothing of the other (API and wall callbacks).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import psycopg
import pyogrio
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box

from callbacks import pages, wall
from dashboard.pages.wall import Ids
from geodata import io, kpi, league, queries
from geodata.errors import Conflict
from services.identity import Principal, acting_as, create_screen, redeem_pairing
from services.live import Entry
from services.runtime import Services

from .cases_fixtures import auth, case_body, cases_settings, client, token  # noqa: F401
from .conftest import sign_in
from .helpers import keyed

FIRST = "150623"  # the demo's banner
SECOND = "150621"
ROOT = "1506"
SECOND_POINT = (109.65, 40.2)  # inside SECOND's west cell


def second_banner_file(tmp_path: Path, code: str = SECOND, x0: float = 109.6, y0: float = 40.1) -> Path:
    """A four-level grid of one banner: one town, two villages, a cell each (a 0.2° square)."""
    b = box(x0, y0, x0 + 0.2, y0 + 0.2)
    west, east = box(x0, y0, x0 + 0.1, y0 + 0.2), box(x0 + 0.1, y0, x0 + 0.2, y0 + 0.2)
    rows = [
        (code, "示例二旗", b),
        (code + "100", "示例镇", b),
        (code + "100001", "西村", west),
        (code + "100002", "东村", east),
        (code + "100001001", "西村一网格", west),
        (code + "100002001", "东村一网格", east),
    ]
    frame = gpd.GeoDataFrame(
        {"code": [r[0] for r in rows], "name": [r[1] for r in rows]}, geometry=[r[2] for r in rows], crs=4326
    )
    path = tmp_path / f"grid_{code}.geojson"
    pyogrio.write_dataframe(frame, path)
    return path


def _areas_of(dsn: str, banner: str) -> list[tuple[Any, ...]]:
    """A banner's areas as stored (its own parent aside: the root it gets is checked on its own)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT code, name, level, CASE WHEN level > 1 THEN parent_code END, updated_at,
                      md5(ST_AsBinary(geom)) FROM areas
               WHERE left(code, 6) = %s AND level > 0 ORDER BY code""",
            (banner,),
        ).fetchall()


def _cases_of(dsn: str, banner: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT code, step, grid_code, updated_at FROM cases WHERE banner_code = %s ORDER BY code", (banner,)
        ).fetchall()


def _svc(c: TestClient) -> Services:
    return c.app.state.services  # type: ignore[attr-defined]


def _text(component: Any) -> str:
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


def _find(component: Any, wanted: str) -> Any:
    """The component with id ``wanted`` in a layout tree."""
    if getattr(component, "id", None) == wanted:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and not isinstance(child, (str, int, float)):
            found = _find(child, wanted)
            if found is not None:
                return found
    return None


@pytest.fixture
def two_banners(demo_db: str, tmp_path: Path) -> io.ImportReport:
    return io.import_grids(demo_db, second_banner_file(tmp_path))


def test_a_second_banner_leaves_the_first_untouched_and_makes_the_root(demo_db: str, tmp_path: Path) -> None:
    areas_before, cases_before = _areas_of(demo_db, FIRST), _cases_of(demo_db, FIRST)
    with psycopg.connect(demo_db) as conn:
        create_screen(conn, "北墙", FIRST)  # a screen of the first banner, and one of the whole territory
        create_screen(conn, "中墙")
        screens_before = conn.execute("SELECT id, area_code, revoked_at FROM screens ORDER BY id").fetchall()
        last_outbox = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]  # type: ignore[index]
        assert queries.banner(conn)["code"] == FIRST  # type: ignore[index]  # one banner: opens at it

    report = io.import_grids(demo_db, second_banner_file(tmp_path))
    assert (report.inserted, report.updated, report.deleted) == (6, 0, 0)
    assert any(f"root {ROOT} named {ROOT}00" in w for w in report.warnings)

    assert _areas_of(demo_db, FIRST) == areas_before  # not one row of the first banner rewritten
    assert _cases_of(demo_db, FIRST) == cases_before
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT id, area_code, revoked_at FROM screens ORDER BY id").fetchall() == screens_before
        root = conn.execute("SELECT code, level, parent_code FROM areas WHERE level = 0").fetchall()
        assert root == [(ROOT, 0, None)]
        parents = conn.execute("SELECT code, parent_code FROM areas WHERE level = 1 ORDER BY code").fetchall()
        assert parents == [(SECOND, ROOT), (FIRST, ROOT)]
        # the root's outline is its banners' union
        covers = conn.execute(
            """SELECT ST_Equals(r.geom, (SELECT ST_Union(geom) FROM areas WHERE level = 1))
               FROM areas r WHERE r.level = 0"""
        ).fetchone()
        assert covers == (True,)
        # the import's live event was committed with it
        events = conn.execute("SELECT type, event FROM outbox WHERE seq > %s ORDER BY seq", (last_outbox,)).fetchall()
        assert [(t, e["banners"]) for t, e in events] == [(league.AREAS_CHANGED, [SECOND])]
        top = queries.banner(conn)
        assert top is not None and (top["code"], top["level"]) == (ROOT, 0)
        assert [a["code"] for a in queries.area_children(conn, ROOT)] == [SECOND, FIRST]
        assert [a["code"] for a in queries.area_ancestors(conn, SECOND + "100")] == [SECOND, ROOT]

    # Importing it again (or replacing it) still leaves the first banner be.
    again = io.import_grids(demo_db, second_banner_file(tmp_path), replace=True)
    assert (again.inserted, again.deleted) == (6, 6)
    assert _areas_of(demo_db, FIRST) == areas_before


def test_the_root_can_be_named_and_banners_must_lie_under_it(
    demo_db: str, tmp_path: Path, two_banners: io.ImportReport
) -> None:
    with psycopg.connect(demo_db) as conn:
        assert league.set_root(conn, "150600", "鄂尔多斯市") == ROOT
        assert league.root(conn) == (ROOT, "鄂尔多斯市")
        with pytest.raises(Conflict):
            league.set_root(conn, "150700", "包头市")  # one root per deployment
    before = _areas_of(demo_db, FIRST)
    with pytest.raises(io.ImportRejected) as rejected:
        io.import_grids(demo_db, second_banner_file(tmp_path, "152921", 110.0, 40.6))
    assert [p.kind for p in rejected.value.problems] == ["outside-root"]
    assert _areas_of(demo_db, FIRST) == before
    # a second banner overlapping the first is refused as two siblings overlapping
    with psycopg.connect(demo_db) as conn:
        x, y = conn.execute(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM areas WHERE code = %s) s", (FIRST,)
        ).fetchone()  # type: ignore[misc]
    with pytest.raises(io.ImportRejected) as overlap:
        io.import_grids(demo_db, second_banner_file(tmp_path, "150622", x - 0.05, y - 0.05))
    assert any(p.kind == "overlap" and FIRST in p.codes for p in overlap.value.problems)


def test_kpis_rankings_codes_and_scope_across_banners(
    client: TestClient, token: Callable[..., str], demo_db: str, two_banners: io.ImportReport
) -> None:
    dispatcher = auth(token("dispatcher"))
    r = client.post("/api/v1/cases", json=case_body(*SECOND_POINT), headers=keyed(dispatcher))
    assert r.status_code == 201, r.text
    second_code = r.json()["code"]
    assert second_code.startswith(SECOND + "-")  # the case code carries its banner's prefix
    first_code = _cases_of(demo_db, FIRST)[0][0]
    assert first_code.startswith(FIRST + "-")

    # The ranking at the top ranks the banners; each counts its own cases.
    viewer = auth(token("viewer"))
    ranking = client.get("/api/v1/stats/ranking?period=year", headers=viewer).json()
    assert (ranking["area"], ranking["level"]) == (ROOT, 1)
    rows = {row["code"]: row for row in ranking["ranking"]}
    assert set(rows) == {FIRST, SECOND}
    with psycopg.connect(demo_db) as conn:
        open_first = conn.execute(
            "SELECT count(*) FROM cases WHERE banner_code = %s AND yitu_step_open(step)", (FIRST,)
        ).fetchone()[0]  # type: ignore[index]
        assert rows[SECOND]["reported"] == 1 and rows[SECOND]["open"] == 1
        assert rows[FIRST]["open"] == open_first
        # The tiles at the root are the banners' together; a banner ranks its towns.
        root_tiles, first_tiles, second_tiles = (kpi.tiles(conn, c) for c in (ROOT, FIRST, SECOND))
        assert root_tiles["in_progress"] == first_tiles["in_progress"] + second_tiles["in_progress"]
        assert root_tiles["reported_ytd"] == first_tiles["reported_ytd"] + second_tiles["reported_ytd"]
        assert [t["code"] for t in kpi.town_ranking(conn, SECOND)] == [SECOND + "100"]
        assert {t["code"] for t in kpi.town_ranking(conn, ROOT)} == {FIRST, SECOND}
    towns = client.get(f"/api/v1/stats/ranking?area={SECOND}", headers=viewer).json()
    assert [row["code"] for row in towns["ranking"]] == [SECOND + "100"]
    assert client.get(f"/api/v1/areas/{ROOT}/children", headers=viewer).status_code == 200

    # A reader scoped to the second banner sees only it: cases, case pages, ranking.
    scoped = auth(token("viewer", area=SECOND))
    listed = client.get("/api/v1/cases?limit=500", headers=scoped).json()
    codes = [c["code"] for c in listed["cases"]] if isinstance(listed, dict) else [c["code"] for c in listed]
    assert codes == [second_code]
    assert client.get(f"/api/v1/cases/{first_code}", headers=scoped).status_code == 404  # as no such case
    assert client.get(f"/api/v1/areas/{FIRST}", headers=scoped).status_code == 403
    assert client.get("/api/v1/stats/ranking?level=1", headers=scoped).status_code == 403
    # … and a reader scoped to the root sees both banners, as an unscoped one does.
    league_wide = auth(token("viewer", area=ROOT))
    assert client.get(f"/api/v1/cases/{first_code}", headers=league_wide).status_code == 200
    assert client.get(f"/api/v1/cases/{second_code}", headers=league_wide).status_code == 200


def test_the_wall_opens_at_the_root_and_drills_down(client: TestClient, two_banners: io.ImportReport) -> None:
    svc = _svc(client)
    admin = Principal(1, "admin", "admin", None, kind="user")
    with acting_as(admin):
        top = pages.render(svc, "/", None)
        assert _find(top, Ids.SELECTED).data == {"code": ROOT, "banner": ROOT}
        drilled = pages.render(svc, "/", f"?area={SECOND}")
        assert _find(drilled, Ids.SELECTED).data == {"code": SECOND, "banner": ROOT}
        # the root ranks its banners, each row drilling the wall down into its banner
        at_root = wall.ranking_table(svc, wall.ranking_parent(ROOT), "zh-CN")
        assert _text(at_root).count("示例二旗") == 1
        hrefs = [getattr(row, "data-href") for row in at_root.children[1].children]
        assert sorted(hrefs) == [f"/?area={SECOND}", f"/?area={FIRST}"]
        assert "旗区排名" in wall.ranking_title("zh-CN", None, ROOT)
        # inside a banner (at any depth) its towns are ranked
        assert wall.ranking_parent(SECOND + "100001") == SECOND
        in_banner = wall.ranking_table(svc, wall.ranking_parent(SECOND), "zh-CN")
        assert [getattr(row, "data-href") for row in in_banner.children[1].children] == [f"/area/{SECOND}100"]
        # the crumbs lead back to the root
        assert [c.id["code"] for c in wall.crumbs(svc, SECOND + "100", "zh-CN") if hasattr(c, "id")] == [
            ROOT,
            SECOND,
            SECOND + "100",
        ]
        assert wall.kpi_tiles(svc, ROOT, "zh-CN")  # the tiles render at the root
        # at the root, zoomed out, the map shows the banners
        assert wall.grid_url(7, None, at_root=True)[1] == 1
        assert wall.grid_url(7, None)[1] == 2

    scoped = Principal(2, "viewer-2", "viewer", SECOND, kind="user")
    with acting_as(scoped):
        own = pages.render(svc, "/", None)
        assert _find(own, Ids.SELECTED).data == {"code": SECOND, "banner": SECOND}
        # the first banner asked for in the URL is not shown to it
        assert _find(pages.render(svc, "/", f"?area={FIRST}"), Ids.SELECTED).data["code"] == SECOND
        # the root's ranking, asked for, is its own banner's towns
        assert "示例镇" in _text(wall.ranking_table(svc, ROOT, "zh-CN"))
        assert [c.id["code"] for c in wall.crumbs(svc, SECOND, "zh-CN") if hasattr(c, "id")] == [SECOND]


def test_one_banner_keeps_its_wall(client: TestClient, token: Callable[..., str]) -> None:
    # the ranking of the territory's banners works without a root too: the one banner
    banners = client.get("/api/v1/stats/ranking?level=1", headers=auth(token("viewer"))).json()
    assert (banners["level"], [r["code"] for r in banners["ranking"]]) == (1, [FIRST])
    towns = client.get("/api/v1/stats/ranking", headers=auth(token("viewer"))).json()
    assert (towns["area"], towns["level"], len(towns["ranking"])) == (FIRST, 2, 4)
    svc = _svc(client)
    with acting_as(Principal(1, "admin", "admin", None, kind="user")):
        layout = pages.render(svc, "/", None)
        assert _find(layout, Ids.SELECTED).data == {"code": FIRST, "banner": FIRST}
        assert "镇级排名" in wall.ranking_title("zh-CN", None, wall.ranking_parent(FIRST))


def test_the_area_commands_and_the_import_options(db_url: str, redis_url: str, tmp_path: Path) -> None:
    from cli.areas import area_group
    from cli.data import import_group

    from .test_import_export import GOOD, cli

    env = {"YITU_DATABASE_URL": db_url, "YITU_REDIS_URL": redis_url}
    assert cli(import_group, env, "grids", GOOD).exit_code == 0
    listed = cli(area_group, env, "list")
    assert listed.exit_code == 0 and listed.output.splitlines()[1:] == [f"{FIRST}\t示例旗\t1\t-\t8"]

    made = cli(
        import_group, env, "grids", second_banner_file(tmp_path), "--root", "150600", "--root-name", "鄂尔多斯市"
    )
    assert made.exit_code == 0, made.output
    assert cli(area_group, env, "list").output.splitlines()[1:] == [
        f"{ROOT}\t鄂尔多斯市\t0\t-\t10",
        f"{SECOND}\t示例二旗\t1\t{ROOT}\t2",
        f"{FIRST}\t示例旗\t1\t{ROOT}\t8",
    ]
    renamed = cli(area_group, env, "root", "1506", "鄂尔多斯")
    assert renamed.exit_code == 0 and renamed.output.strip() == f"root {ROOT} 鄂尔多斯"
    other = cli(area_group, env, "root", "150700", "包头市")
    assert other.exit_code == 1 and "already 1506" in other.output
    bad = cli(area_group, env, "root", "150621", "达拉特旗")
    assert bad.exit_code == 1 and "not a league or city code" in bad.output
    outside = cli(import_group, env, "grids", second_banner_file(tmp_path, "152921", 110.0, 40.6))
    assert outside.exit_code == 1 and "outside-root: 152921" in outside.output


def test_the_league_demo_shares_its_figures_among_the_nine_banners() -> None:
    from geodata.demo.seed import SCALES, league_parts

    total = SCALES["league"]
    parts = dict(league_parts(total))
    assert sorted(parts) == ["150602", "150603", "150621", "150622", "150623", "150624", "150625", "150626", "150627"]
    assert abs(sum(p.cases for p in parts.values()) - total.cases) <= len(parts)
    assert abs(sum(p.cameras for p in parts.values()) - total.cameras) <= len(parts)
    assert sum(p.vans for p in parts.values()) == total.vans
    # the biggest banner (鄂托克旗, ~20,000 km²) has the most cells, the smallest district the fewest
    assert max(parts, key=lambda c: parts[c].cells) == "150624"
    assert min(parts, key=lambda c: parts[c].cells) == "150603"


def test_users_screens_and_tokens_are_per_banner_or_league_wide(
    client: TestClient, token: Callable[..., str], demo_db: str, two_banners: io.ImportReport
) -> None:
    """Issue 16 item 2: users, screens and tokens are per banner or for the whole league. A banner's
    screen opens the wall at its banner and a league-wide one at the root; a person signed in with a
    banner's area reads only its cases and KPIs; the live push gives a banner's screen only its
    banner's case events (a van's events go to its banner's screens, a league van's to every
    screen: tests/test_van_scope.py; an event without a banner, as here, is a league van's)."""
    dispatcher = auth(token("dispatcher"))
    made = client.post("/api/v1/cases", json=case_body(*SECOND_POINT), headers=keyed(dispatcher))
    assert made.status_code == 201, made.text
    second_code = made.json()["code"]
    first_code = _cases_of(demo_db, FIRST)[0][0]

    # screens: paired as a banner's or the league's (the root's code is stored league-wide)
    with psycopg.connect(demo_db) as conn:
        banner_screen = redeem_pairing(conn, create_screen(conn, "二旗墙", SECOND)[1])
        league_screen = redeem_pairing(conn, create_screen(conn, "市墙", ROOT)[1])
    assert banner_screen is not None and league_screen is not None
    assert (banner_screen.area, league_screen.area) == (SECOND, None)
    svc = _svc(client)
    with acting_as(banner_screen):
        assert _find(pages.render(svc, "/", None), Ids.SELECTED).data == {"code": SECOND, "banner": SECOND}
    with acting_as(league_screen):
        assert _find(pages.render(svc, "/", None), Ids.SELECTED).data == {"code": ROOT, "banner": ROOT}

    # a person signed in with the banner's area: its cases, its KPIs, nothing of the other banner
    sign_in(client, demo_db, "viewer", area=SECOND)
    listed = client.get("/api/v1/cases?limit=500").json()["cases"]
    assert [c["code"] for c in listed] == [second_code]
    assert client.get(f"/api/v1/cases/{first_code}").status_code == 404  # as no such case
    assert client.get(f"/api/v1/areas/{SECOND}/stats").status_code == 200
    assert client.get(f"/api/v1/areas/{FIRST}/stats").status_code == 403
    assert client.get(f"/api/v1/areas/{ROOT}/stats").status_code == 403
    assert [r["code"] for r in client.get("/api/v1/stats/ranking").json()["ranking"]] == [SECOND + "100"]
    client.cookies.clear()
    sign_in(client, demo_db, "viewer", area=ROOT)  # a league-wide person: both banners
    assert client.get(f"/api/v1/cases/{first_code}").status_code == 200
    assert client.get(f"/api/v1/cases/{second_code}").status_code == 200
    assert client.get(f"/api/v1/areas/{ROOT}/stats").status_code == 200
    client.cookies.clear()

    # the live push: the hub's filter for a banner's screen, on the events as committed
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute(
            "SELECT seq, type, event::text FROM outbox WHERE type = 'case.created' AND event->>'code' = %s",
            (second_code,),
        ).fetchall()
        van = conn.execute("SELECT id FROM vans ORDER BY id LIMIT 1").fetchone()
    ((seq, kind, raw),) = rows
    created = Entry(f"{seq}-0", kind, raw, seq)
    first_event = Entry("1-0", "case.changed", json.dumps({"code": first_code, "grid": [None, None, None, FIRST]}))
    moved = Entry("2-0", "van.moved", json.dumps({"van": van[0] if van else "V01"}))
    assert created.visible_in(SECOND) and created.visible_in(None) and not created.visible_in(FIRST)
    assert first_event.visible_in(FIRST) and not first_event.visible_in(SECOND)
    assert moved.visible_in(SECOND) and moved.visible_in(FIRST)


def test_the_league_demo_seeds_every_banner_with_its_own_cases_and_figures(db_url: str) -> None:
    """`yitu seed demo --scale league --cases N` (small N here; five million by default): every case
    inside its banner with its banner's code prefix, years of history beside today's open cases,
    the cases' indexes all back after the bulk load, and counters that agree with a full count."""
    from geodata import counters
    from geodata.demo.seed import SCALES, seed_demo

    as_of = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    with psycopg.connect(db_url) as conn:
        indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'cases'").fetchall()
    counts = seed_demo(db_url, "league", seed=2, as_of=as_of, cases=3000)
    total = SCALES["league"]
    assert abs(counts["cases"] - 3000 - total.open_cases) <= 18
    with psycopg.connect(db_url) as conn:
        q = lambda s, *a: conn.execute(s, a).fetchall()  # noqa: E731
        assert q("SELECT code, level FROM areas WHERE level = 0") == [(ROOT, 0)]
        banners = [r[0] for r in q("SELECT banner_code FROM cases GROUP BY 1 ORDER BY 1")]
        assert len(banners) == 9
        assert q("""SELECT count(*) FROM cases c JOIN areas b ON b.code = c.banner_code
                    WHERE NOT ST_Intersects(b.geom, c.geom)""") == [(0,)]
        assert q("""SELECT count(*) FROM cases c JOIN areas a ON a.code = c.grid_code
                    WHERE NOT ST_Intersects(a.geom, c.geom) OR c.village_code <> a.parent_code
                       OR left(c.code, 7) <> c.banner_code || '-'""") == [(0,)]
        first, opened = q("SELECT min(reported_at), count(*) FILTER (WHERE yitu_step_open(step)) FROM cases")[0]
        assert first < as_of - timedelta(days=2 * 365)  # years of history
        assert abs(opened - total.open_cases) <= 9
        assert q("SELECT count(*) FROM cases WHERE reported_at > %s", as_of) == [(0,)]
        assert q("""SELECT count(*) FROM cases c WHERE NOT EXISTS
                    (SELECT 1 FROM case_events e WHERE e.case_id = c.id AND e.action = 'report')""") == [(0,)]
        assert sorted(q("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'cases'")) == sorted(indexes)
    with psycopg.connect(db_url) as conn:  # what `yitu kpi check` runs, in a transaction of its own
        assert counters.differences(conn) == []

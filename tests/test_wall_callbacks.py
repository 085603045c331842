"""Wall-screen and area-page callbacks called as plain functions on the seeded demo."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from plotly.io.json import to_json_plotly

from callbacks import area as area_cb
from callbacks import wall
from dashboard.app import create_app
from dashboard.i18n import translator
from services.identity import Principal, acting_as
from services.runtime import Services
from services.settings import Settings

from .helpers import app_database


@pytest.fixture
def svc(demo_dsn: str, redis_url: str, tmp_path) -> Iterator[Services]:  # type: ignore[no-untyped-def]
    settings = Settings(**app_database(demo_dsn), redis_url=redis_url, home=tmp_path / "h", _env_file=None)
    with TestClient(create_app(settings)) as client:
        yield client.app.state.services  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _as_a_wall_screen() -> Iterator[None]:
    """The callbacks serve whoever the guard let in (``identity.who_is_asking``, unbound: 401); called
    here as plain functions, they read as a paired wall screen: the whole territory, masked."""
    with acting_as(Principal(1, "wall", "screen", None, kind="screen")):
        yield


def _text(component) -> str:  # type: ignore[no-untyped-def]
    """All the text a component tree shows."""
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, list):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


@pytest.mark.parametrize(("zoom", "level"), [(None, 2), (7, 2), (9, 2), (10, 3), (11, 4), (15, 4)])
def test_grid_url_follows_the_zoom(zoom, level) -> None:  # type: ignore[no-untyped-def]
    url, lvl = wall.grid_url(zoom, [[38.0, 107.0], [38.5, 108.0]])
    assert lvl == level and f"level={level}" in url
    bbox = [float(v) for v in url.split("bbox=")[1].split(",")]
    assert bbox[0] <= 106.5 and bbox[2] >= 108.5 and bbox[1] <= 37.75 and bbox[3] >= 38.75  # padded by half


def test_kpi_tiles_are_true_counts(svc: Services, demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        open_, overdue = conn.execute(
            """SELECT count(*), count(*) FILTER (WHERE deadline < now()) FROM cases
               WHERE town_code = '150623101' AND step IN ('reported','accepted','dispatched','handling')"""
        ).fetchone()
    tiles = wall.kpi_tiles(svc, "150623101", "zh-CN")
    by_id = {t.id: _text(t) for t in tiles if getattr(t, "id", None)}
    assert by_id["kpi-in_progress"].startswith(str(open_))
    assert by_id["kpi-overdue"].startswith(str(overdue))
    assert "办理中" in by_id["kpi-in_progress"]
    english = wall.kpi_tiles(svc, "150623101", "en")
    assert "In progress" in _text(english)


def test_panel_crumbs_and_ranking(svc: Services) -> None:
    cell = "150623100001001"
    panel = _text(wall.area_panel(svc, cell, "zh-CN"))
    assert "150623100001001" in panel and "网格" in panel
    crumbs = [c for c in wall.crumbs(svc, cell, "zh-CN") if getattr(c, "id", None)]
    assert [c.id["code"] for c in crumbs] == ["150623", "150623100", "150623100001", cell]
    ranking = _text(wall.ranking_table(svc, "150623", "zh-CN"))
    for town in ("敖勒召其镇", "上海庙镇", "城川镇", "昂素镇"):
        assert town in ranking
    assert wall.fly_to(svc, cell)["transition"] == "fitBounds"  # one zoom animation, not a flight
    assert wall.fly_to(svc, "150623999999999") is None


def test_case_card_masks_personal_data(svc: Services, demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        code, parties = conn.execute("SELECT code, parties FROM cases WHERE step = 'handling' LIMIT 1").fetchone()
    text = _text(wall.case_card(svc, code, "zh-CN"))
    assert code in text
    for p in parties:
        assert p["phone"] not in text and p["name"] not in text  # never the full name or number
        assert p["name"][0] + "*" in text and "****" + p["phone"][-4:] in text  # four stars whatever the length
        assert p["phone"][:3] + "*" not in text  # the last 4 digits only, no prefix


def test_detail_for_each_point_layer(svc: Services, demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        cam_id, device = conn.execute("SELECT id, device_code FROM cameras ORDER BY id LIMIT 1").fetchone()
    assert device in _text(wall.detail_for(svc, "layer-cameras", {"id": cam_id}, "zh-CN"))
    assert "V02" in _text(wall.detail_for(svc, "layer-vans", {"id": "V02", "kind": "van"}, "zh-CN"))
    assert wall.detail_for(svc, "layer-cases", {"cluster": True, "point_count": 5}, "zh-CN") is wall.no_update


def test_switched_layers() -> None:
    assert wall.switched("/u", True) == ("/u", None)
    assert wall.switched("/u", False) == (None, wall.EMPTY)


def test_area_table_page_sort_and_filters(svc: Services, demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        total = conn.execute("SELECT count(*) FROM cases WHERE village_code = '150623102201'").fetchone()[0]
        grass = conn.execute(
            "SELECT count(*) FROM cases WHERE village_code = '150623102201' AND type = 'grassland'"
        ).fetchone()[0]
    rows, pages, n = area_cb.table_page(svc, "150623102201", None, None, None, None, 0, [], "zh-CN")
    assert n == total and pages == -(-total // 20) and len(rows) == min(20, total)
    assert [r["reported_at"] for r in rows] == sorted((r["reported_at"] for r in rows), reverse=True)
    rows, _, n = area_cb.table_page(
        svc, "150623102201", None, "grassland", None, None, 0, [{"column_id": "code", "direction": "asc"}], "zh-CN"
    )
    assert n == grass and [r["code"] for r in rows] == sorted(r["code"] for r in rows)
    assert area_cb.query_string("handling", None, "2026-10-01", None) == "?step=handling&since=2026-10-01"
    # a malformed date from a hand-edited URL is ignored, not an error
    assert area_cb.table_page(svc, "150623102201", None, None, "2026-99-99", None, 0, [], "zh-CN")[2] == total


def test_choropleth_hideout_carries_the_levels_numbers(svc: Services, demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        overdue = dict(
            conn.execute("""SELECT village_code, count(*) FROM cases
                             WHERE step IN ('reported','accepted','dispatched','handling') AND deadline < now()
                             GROUP BY 1""").fetchall()
        )
    h = wall.grid_hideout(svc, 3, "overdue", "150623100", 10, {"breaks": {"overdue": [0, 1, 2, 4]}})
    assert h["mode"] == "overdue" and h["selected"] == "150623100" and h["breaks"]["overdue"] == [0, 1, 2, 4]
    assert {c: s["overdue"] for c, s in h["stats"].items() if s["overdue"]} == overdue
    plain = wall.grid_hideout(svc, 4, "none", None, 11, h)
    assert plain["stats"] == {} and plain["labels"] is False  # cell names only from zoom 12


def test_the_van_board_makes_a_row_again_only_when_what_it_shows_changes(svc: Services) -> None:
    """The wall's numbers send the board as its rows' JSON, kept per row (callbacks/wall.py
    ``van_board_rows``): the same vans give the very same rows, joined exactly as Dash serializes the
    board; a row whose van shows something else is made anew."""
    first = wall.van_board_rows(svc, "zh-CN", wall.VAN_ROW)
    again = wall.van_board_rows(svc, "zh-CN", wall.VAN_ROW)
    assert len(first) >= 2 and all(a is b for (a, _), (b, _) in zip(first, again, strict=True))
    assert "[" + ",".join(text for _, text in first) + "]" == to_json_plotly([row for row, _ in first])
    english = wall.van_board_rows(svc, "en", wall.VAN_ROW)
    assert all(a is not b for (a, _), (b, _) in zip(first, english, strict=True))  # another language
    t = translator("zh-CN")
    row, text = wall._van_row("V99", "一号车", "available", "12", "zh-CN", wall.VAN_ROW, t)
    assert wall._van_row("V99", "一号车", "available", "12", "zh-CN", wall.VAN_ROW, t)[0] is row
    moved, moved_text = wall._van_row("V99", "一号车", "available", "13", "zh-CN", wall.VAN_ROW, t)  # a kilometre on
    assert moved is not row and "13 km" in moved_text and "12 km" in text
    assert wall._van_row("V99", "一号车", "en_route", "13", "zh-CN", wall.VAN_ROW, t)[0] is not moved  # dispatched

"""Areas and stats against brute force over the seeded demo's rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from geodata.areas_stats import period_bounds
from geodata.clock import CST

from .cases_fixtures import auth, cases_settings, client, token  # noqa: F401

OPEN = {"reported", "accepted", "dispatched", "handling"}
RESOLVED = {"mediated", "judicial_confirmation"}


def _rows(dsn: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT grid_code, village_code, town_code, banner_code, step, type, level, outcome, "
            "deadline, satisfaction, reported_at FROM cases"
        ).fetchall()


def _in(row: dict[str, Any], code: str) -> bool:
    return code in (row["grid_code"], row["village_code"], row["town_code"], row["banner_code"])


def _codes(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        cell = conn.execute(
            "SELECT code FROM areas WHERE level = 4 AND code LIKE '150623101%' ORDER BY code OFFSET 5 LIMIT 1"
        ).fetchone()[0]
    return [cell[:6], cell[:9], cell[:12], cell]


def test_area_stats_equal_a_brute_force_count(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    tok = token("viewer")
    rows = _rows(demo_db)
    for code in _codes(demo_db):
        got = client.get(f"/api/v1/areas/{code}/stats", headers=auth(tok)).json()
        now = datetime.now(UTC)
        mine = [r for r in rows if _in(r, code)]
        resolved = [r for r in mine if r["outcome"] in RESOLVED]
        overdue = [r for r in mine if r["step"] in OPEN and r["deadline"] and r["deadline"] < now]
        assert got["cases"] == len(mine) > 0
        assert got["by_step"] == dict(Counter(r["step"] for r in mine))
        assert got["by_type"] == dict(Counter(r["type"] for r in mine))
        assert {lv: v["cases"] for lv, v in got["by_level"].items() if v["cases"]} == dict(
            Counter(r["level"] for r in mine)
        )
        assert got["open"] == sum(r["step"] in OPEN for r in mine)
        assert got["resolved"] == len(resolved)
        assert got["resolution_rate"] == pytest.approx(len(resolved) / len(mine))
        low = sum(r["level"] in ("grid", "village") for r in resolved)
        assert got["village_share"] == pytest.approx(low / len(resolved))
        assert got["overdue"] == len(overdue)
        assert got["overdue_by_level"] == {
            lv: sum(r["level"] == lv for r in overdue) for lv in ("grid", "village", "town", "banner")
        }


def test_area_stats_for_a_period(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    code = _codes(demo_db)[1]
    got = client.get(
        f"/api/v1/areas/{code}/stats?since=2026-10-01&until=2026-10-31", headers=auth(token("viewer"))
    ).json()
    start, end = period_bounds("month", date(2026, 10, 1))
    expected = [r for r in _rows(demo_db) if _in(r, code) and start <= r["reported_at"] < end]
    assert got["cases"] == len(expected)


def test_area_children_and_ancestors(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    tok = token("viewer")
    _, town, _, cell = _codes(demo_db)
    area = client.get(f"/api/v1/areas/{cell}", headers=auth(tok)).json()
    assert area["level"] == 4 and [a["code"] for a in area["ancestors"]] == [cell[:12], cell[:9], cell[:6]]
    children = client.get(f"/api/v1/areas/{town}/children", headers=auth(tok)).json()["children"]
    with psycopg.connect(demo_db) as conn:
        expected = [r[0] for r in conn.execute("SELECT code FROM areas WHERE parent_code = %s ORDER BY code", (town,))]
    assert [c["code"] for c in children] == expected
    assert client.get("/api/v1/areas/150699", headers=auth(tok)).status_code == 404
    assert client.get("/api/v1/areas/15x", headers=auth(tok)).status_code == 422


def test_area_cases_are_the_areas_own(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    village = _codes(demo_db)[2]
    got = client.get(f"/api/v1/areas/{village}/cases?limit=500&step=evaluated", headers=auth(token("viewer"))).json()
    expected = [r for r in _rows(demo_db) if r["village_code"] == village and r["step"] == "evaluated"]
    assert len(got["cases"]) == min(500, len(expected))
    assert all(c["grid"][1] == village and c["step"] == "evaluated" for c in got["cases"])
    overdue = client.get(
        f"/api/v1/cases?area={village[:9]}&overdue=true&limit=500", headers=auth(token("viewer"))
    ).json()
    assert overdue["cases"] and all(c["overdue"] for c in overdue["cases"])


@pytest.mark.parametrize("period", ["month", "quarter", "year"])
def test_town_ranking_follows_the_formula(
    client: TestClient, token: Callable[..., str], demo_db: str, period: str
) -> None:
    got = client.get(
        f"/api/v1/stats/ranking?level=2&period={period}&at=2026-11-20", headers=auth(token("viewer"))
    ).json()
    assert "60 × R" in got["formula"]
    start, end = period_bounds(period, date(2026, 11, 20))
    now = datetime.now(UTC)
    rows = _rows(demo_db)
    scores = {}
    for town in {r["town_code"] for r in rows if r["town_code"]}:
        mine = [r for r in rows if r["town_code"] == town]
        in_period = [r for r in mine if start <= r["reported_at"] < end]
        opened = [r for r in mine if r["step"] in OPEN]
        rate = sum(r["outcome"] in RESOLVED for r in in_period) / len(in_period) if in_period else 0
        share = sum(r["deadline"] < now for r in opened) / len(opened) if opened else 0
        sat = [r["satisfaction"] for r in in_period if r["satisfaction"] is not None]
        s = sum(sat) / len(sat) if sat else 3
        scores[town] = round(60 * rate + 25 * (1 - share) + 15 * (s - 1) / 4, 1)
    assert {r["code"]: r["score"] for r in got["ranking"]} == pytest.approx(scores, abs=0.051)
    assert [r["score"] for r in got["ranking"]] == sorted(scores.values(), reverse=True)
    assert got["ranking"][0]["rank"] == 1


def test_period_bounds() -> None:
    assert period_bounds("quarter", date(2026, 11, 22)) == (
        datetime(2026, 10, 1, tzinfo=CST),
        datetime(2027, 1, 1, tzinfo=CST),
    )
    assert period_bounds("quarter", date(2026, 5, 2)) == (
        datetime(2026, 4, 1, tzinfo=CST),
        datetime(2026, 7, 1, tzinfo=CST),
    )
    assert period_bounds("month", date(2026, 12, 31)) == (
        datetime(2026, 12, 1, tzinfo=CST),
        datetime(2027, 1, 1, tzinfo=CST),
    )


def test_ranking_input_is_checked(client: TestClient, token: Callable[..., str]) -> None:
    tok = token("viewer")
    assert client.get("/api/v1/stats/ranking?level=0", headers=auth(tok)).status_code == 422
    # level 1 ranks the territory's banners (issue 16: several banners under a league root; here the one)
    assert [r["code"] for r in client.get("/api/v1/stats/ranking?level=1", headers=auth(tok)).json()["ranking"]] == [
        "150623"
    ]
    assert client.get("/api/v1/stats/ranking?period=week", headers=auth(tok)).json()["field"] == "period"
    assert client.get("/api/v1/stats/ranking?level=3&area=150623100", headers=auth(tok)).status_code == 200
    assert client.get("/api/v1/stats/ranking?level=2&area=150623100", headers=auth(tok)).status_code == 422

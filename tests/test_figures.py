"""The wall's figures read together (geodata/queries.py ``read_together``, geodata/kpi.py ``figures``).

A round of the wall's numbers reads its figures by one statement and looks them up in, and keeps
them to, Redis once each: the figures must be those each statement gives alone (as the cache gives
them back: dates as text, numerics as numbers), in their order, with two figures free to give one
placeholder two values; kept only where they may be, and served from the cache when fresh there.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from geodata import kpi, queries
from geodata.clock import CST
from geodata.outbox import LAST_KEY
from layers import vans

BANNER = "150623"
CELL = "150623100001001"


def _figures(code: str) -> dict[str, queries.Figure]:
    """Every kind of figure a round reads, two of them the same statement with other values."""
    today = datetime.now(CST).date() + timedelta(days=1)
    end = datetime(today.year, today.month, today.day, tzinfo=CST)  # whole days, up to today (the demo's span)
    year = (end - timedelta(days=365), end)
    month = (end - timedelta(days=30), end)
    odd = (month[0] + timedelta(hours=6), end)  # not whole days: the scan
    ranking = kpi.town_ranking_figure(code, *year)
    assert ranking is not None
    return {
        "tiles:year": kpi.tiles_figure(code, *year),
        "tiles:month": kpi.tiles_figure(code, *month),
        "tiles:odd": kpi.tiles_figure(code, *odd),
        "types": kpi.top_types_figure(code, year[0].date(), year[1].date()),
        "trend": kpi.trend_figure(code, 30),
        "steps": kpi.steps_figure(code),
        "ranking": ranking,
        "board": vans.board_figure(300, None),
        "ancestors": queries.areas_figure("area_ancestors", CELL),
        "area": queries.area_summary_figure(code),
        "nowhere": queries.area_summary_figure("159999"),
    }


def test_figures_read_together_are_those_read_alone(demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn) as conn:
        wanted = _figures(BANNER)
        together = queries.read_together(conn, wanted)
        alone = {name: kpi._plain(queries.read_figure(conn, f)) for name, f in wanted.items()}
        assert queries.read_together(conn, {}) == {}
    assert list(together) == list(wanted)
    for name in wanted:
        assert together[name] == alone[name], name
    # not vacuous: the demo has figures, two periods give two answers, the lists keep their order
    assert together["tiles:year"]["reported_ytd"] > together["tiles:month"]["reported_ytd"] > 0
    assert len(together["trend"]) == 30 and together["trend"] == sorted(together["trend"], key=lambda r: r["day"])
    scores = [r["score"] for r in together["ranking"]]
    assert len(scores) > 1 and scores == sorted(scores, reverse=True)
    assert len(together["board"]) > 1 and [r["id"] for r in together["board"]] == sorted(
        r["id"] for r in together["board"]
    )
    assert together["area"]["code"] == BANNER and together["nowhere"] is None
    assert [a["code"] for a in together["ancestors"]] == [CELL[:12], CELL[:9], BANNER]  # nearest first


def test_a_hostile_value_stays_a_value(demo_dsn: str) -> None:
    """Every value goes as a parameter, renamed per column, never into the statement's text."""
    code = "150623'); DROP TABLE cases; --"
    with psycopg.connect(demo_dsn) as conn:
        got = queries.read_together(
            conn, {"a": queries.area_summary_figure(code), "b": queries.area_summary_figure(BANNER)}
        )
        assert got["a"] is None and got["b"]["code"] == BANNER
        assert conn.execute("SELECT count(*) FROM cases").fetchone()[0] > 0  # type: ignore[index]


def test_figures_are_kept_served_fresh_and_not_kept_behind_an_event(demo_dsn: str, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    wanted = {"steps:" + BANNER: kpi.steps_figure(BANNER), "board": vans.board_figure(300, None)}
    with psycopg.connect(demo_dsn) as conn:
        first = kpi.figures(client, conn, wanted)
        assert first["steps:" + BANNER] and first["board"]
        kept = client.hgetall(kpi.CACHE_KEY)
        assert set(kept) == {("steps:" + BANNER).encode()}  # the board is read every time, never kept
        assert json.loads(kept[("steps:" + BANNER).encode()])["v"] == first["steps:" + BANNER]

        # a fresh entry is served as it is (a marker no statement could give)
        client.hset(kpi.CACHE_KEY, "steps:" + BANNER, json.dumps({"t": time.time(), "v": {"marker": 1}}))
        assert kpi.figures(client, conn, wanted)["steps:" + BANNER] == {"marker": 1}
        # a stale one is read again and kept again
        client.hset(kpi.CACHE_KEY, "steps:" + BANNER, json.dumps({"t": time.time() - 60, "v": {"marker": 1}}))
        assert kpi.figures(client, conn, wanted)["steps:" + BANNER] == first["steps:" + BANNER]
        assert json.loads(client.hget(kpi.CACHE_KEY, "steps:" + BANNER))["v"] == first["steps:" + BANNER]  # type: ignore[arg-type]

        # an event published after what the read held: answered, not kept (its drop may have come first)
        client.delete(kpi.CACHE_KEY)
        client.hset(LAST_KEY, "case", 10**12)
        assert kpi.figures(client, conn, wanted)["steps:" + BANNER] == first["steps:" + BANNER]
        assert client.hget(kpi.CACHE_KEY, "steps:" + BANNER) is None
    client.close()


def test_figures_without_redis_are_read_and_not_kept(demo_dsn: str) -> None:
    # nothing listens there; one try a call (redis-py retries three times by default)
    away = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    wanted = {"steps:" + BANNER: kpi.steps_figure(BANNER)}
    with psycopg.connect(demo_dsn) as conn:
        expected = kpi._plain(kpi.steps(conn, BANNER))
        assert kpi.figures(away, conn, wanted) == {"steps:" + BANNER: expected}
        assert kpi.figures(away, conn, wanted) == {"steps:" + BANNER: expected}  # the breaker open: no wait


def test_a_cell_ranks_nothing() -> None:
    assert kpi.town_ranking_figure(CELL) is None and kpi.town_ranking_figure(CELL[:12]) is not None

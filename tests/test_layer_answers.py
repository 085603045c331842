"""The live layers' shared answers (services/layer_answers.py): the screens that reload after the
same events get one answer, never one from before the event they reload for, never another
area's, another filter's or another box's."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import geobuf
import orjson
import psycopg
import pytest
import redis
from dash import no_update
from dash.exceptions import PreventUpdate
from fastapi.testclient import TestClient
from plotly.io.json import to_json_plotly

from callbacks import wall
from callbacks.live import batch_message
from geodata.kpi import CACHE_KEY as KPI_CACHE
from services import events
from services.identity import Principal, acting_as
from services.layer_answers import Generation, LayerAnswers, generation
from services.live import Entry

from .cases_fixtures import auth, case_body, cases_settings, client, inner_point, token  # noqa: F401
from .helpers import keyed, stream_entries, wait_for

PINS = "/api/v1/layers/cases?format=geojson"


def _codes(r: object) -> set[str]:
    assert getattr(r, "status_code", None) == 200, getattr(r, "text", r)
    return {f["properties"]["code"] for f in r.json()["features"]}  # type: ignore[attr-defined]


def _report(client: TestClient, reporter: dict[str, str], demo_db: str, redis_url: str) -> tuple[str, int]:
    """A new case reported, and its event's outbox id once the event is in the stream."""
    lon, lat, _ = inner_point(demo_db)
    r = client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(reporter))
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    outbox_id = wait_for(
        lambda: next((i for i, _t, e in stream_entries(redis_url) if e.get("code") == code), None),
        what="the report's event in the stream",
    )
    assert isinstance(outbox_id, int)
    return code, outbox_id


def test_screens_reloading_after_the_same_events_share_one_answer_with_the_new_event_in_it(
    client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    screen = auth(token("viewer", name="wall-1"))
    reporter = auth(token("dispatcher"))
    first = client.get(PINS, headers=screen)
    again = client.get(f"{PINS}&rev=r1", headers=screen)  # another screen, nothing new since
    assert (first.headers["x-yitu-shared"], again.headers["x-yitu-shared"]) == ("0", "1")
    assert again.content == first.content and len(_codes(first)) > 0

    code, outbox_id = _report(client, reporter, demo_db, redis_url)
    # The screens reload because of that event: each gets the new pin, the first computes it.
    after = [client.get(f"{PINS}&rev={outbox_id}", headers=screen) for _ in range(3)]
    assert [a.headers["x-yitu-shared"] for a in after] == ["0", "1", "1"]
    assert all(code in _codes(a) for a in after)
    assert _codes(after[0]) == _codes(first) | {code}


def test_concurrent_screens_wait_for_the_one_computation(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    screen = auth(token("viewer"))
    svc = client.app.state.services  # type: ignore[attr-defined]
    misses = svc.layer_answers.misses
    got: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def ask() -> None:
        r = client.get(f"{PINS}&closed_hours=24", headers=screen)
        with lock:
            got.append((r.headers["x-yitu-shared"], r.content))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(got) == 8
    assert sorted(s for s, _ in got) == ["0"] + ["1"] * 7
    assert len({body for _, body in got}) == 1
    assert svc.layer_answers.misses == misses + 1


def test_an_area_a_filter_a_box_and_a_format_each_have_their_own_answer(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    everyone = auth(token("viewer"))
    _lon, _lat, town = inner_point(demo_db, level=2)
    townsfolk = auth(token("viewer", area=town, name="town-screen"))
    whole = _codes(client.get(PINS, headers=everyone))
    mine = client.get(PINS, headers=townsfolk)  # right after the whole territory's answer was made
    assert mine.headers["x-yitu-shared"] == "0"
    assert 0 < len(_codes(mine)) < len(whole)
    assert all(c in whole for c in _codes(mine))
    # and the other way round: the territory's reader never gets the town's shared answer
    assert _codes(client.get(PINS, headers=everyone)) == whole

    handling = client.get(f"{PINS}&step=handling", headers=everyone)
    assert handling.headers["x-yitu-shared"] == "0"
    assert {f["properties"]["step"] for f in handling.json()["features"]} == {"handling"}

    boxed = client.get(f"{PINS}&bbox=107.40,38.00,107.60,38.20", headers=everyone)
    assert boxed.headers["x-yitu-shared"] == "0" and _codes(boxed) < whole

    buf = client.get("/api/v1/layers/cases?format=geobuf", headers=everyone)
    assert buf.headers["x-yitu-shared"] == "0"
    assert {f["properties"]["code"] for f in geobuf.decode(buf.content)["features"]} == whole


def test_a_layer_without_live_events_is_not_shared(client: TestClient, token: Callable[..., str]) -> None:
    h = auth(token("viewer"))
    shared = [client.get("/api/v1/layers/grids?level=2", headers=h).headers["x-yitu-shared"] for _ in range(2)]
    assert shared == ["0", "0"]


def test_the_generation_moves_with_the_published_events_of_the_layers_families(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert generation(client, ("case", "dispatch")) == Generation((0, 0), 0)  # nothing published yet
        events.publish(client, [(1, "case.created", "{}"), (2, "van.moved", "{}"), (3, "van.moved", "{}")])
        assert generation(client, ("case", "dispatch")) == Generation((1, 0), 3)
        assert generation(client, ("van",)) == Generation((3,), 3)
        answers = LayerAnswers()
        computed: list[int] = []

        def compute() -> int:
            computed.append(1)
            return len(computed)

        pins = (client, "cases", ("case.", "dispatch."), {"scope": None}, compute)
        assert [answers.answer(*pins) for _ in range(2)] == [(1, False), (1, True)]
        events.publish(client, [(4, "van.moved", "{}")], expect=3)  # not a family of the pins
        assert answers.answer(*pins) == (1, True)
        events.publish(client, [(5, "dispatch.created", "{}")], expect=4)
        assert answers.answer(*pins, rev=5) == (2, False)  # reloading for event 5: computed after it
        assert answers.answer(*pins) == (2, True)
        # entries already in the stream are skipped, and so is their family's mark
        events.publish(client, [(5, "case.changed", "{}")], expect=5)
        assert generation(client, ("case", "dispatch")) == Generation((1, 5), 5)
        stale = LayerAnswers(ttl_s=0)  # an answer past its time is computed again
        assert [stale.answer(*pins)[1] for _ in range(2)] == [False, False]
    finally:
        client.close()


def test_under_a_stream_of_gps_fixes_the_screens_of_one_batch_share_the_vans(redis_url: str) -> None:
    """The vans' family moves with every fix: a screen reloading for event R takes any answer
    computed after R, however many fixes came since; one reloading for a later event does not."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        answers = LayerAnswers()
        n = 0

        def compute() -> int:
            nonlocal n
            n += 1
            return n

        vans = (client, "vans", ("van.", "dispatch."), {"scope": None}, compute)
        events.publish(client, [(i, "van.moved", "{}") for i in range(1, 11)])
        assert answers.answer(*vans, rev=10) == (1, False)  # the first screen of the batch up to 10
        events.publish(client, [(i, "van.moved", "{}") for i in range(11, 21)], expect=10)
        assert answers.answer(*vans, rev=10) == (1, True)  # another screen of that batch
        assert answers.answer(*vans, rev=7) == (1, True)  # a screen whose batch ended earlier
        assert answers.answer(*vans, rev=20) == (2, False)  # the next batch
        assert answers.answer(*vans) == (2, True)  # a page opening: nothing new since
        events.publish(client, [(21, "case.created", "{}")], expect=20)  # no family of the vans
        assert answers.answer(*vans, rev=21) == (2, True)  # nothing of theirs since: the same answer
    finally:
        client.close()


def test_a_push_names_the_newest_event_of_its_batch() -> None:
    entries = [
        Entry("1-0", "case.created", "{}", outbox_id=41),
        Entry("1-1", "van.moved", "{}", outbox_id=43),
        Entry("1-2", "dispatch.created", "{}", outbox_id=42),
    ]
    assert batch_message(1, entries, resync=False, numbers=False)["outbox"] == 43
    assert batch_message(2, [], resync=True, numbers=False)["outbox"] is None


def test_a_bad_rev_is_refused_naming_it(client: TestClient, token: Callable[..., str]) -> None:
    h = auth(token("viewer"))
    for rev in ("<b>", "1" * 21, "1;DROP", "%00"):
        r = client.get(f"{PINS}&rev={rev}", headers=h)
        assert r.status_code == 422 and r.json()["field"] == "rev", (rev, r.text)


def test_the_wall_numbers_go_out_serialized_once_as_dash_would_serialize_them(client: TestClient) -> None:
    """callbacks/wall.py ``numbers_wire``: the callback's answer is the shared answer's JSON, made
    once for every screen that shares it, and byte for byte what Dash makes of the components."""
    svc = client.app.state.services  # type: ignore[attr-defined]
    viewer = Principal(1, "wall-viewer", "viewer", None, kind="user", session_id="1")
    year = wall.period_of("year")
    with acting_as(viewer):
        wire = wall.numbers_wire(svc, "150623", "zh-CN", year, None)
        again = wall.numbers_wire(svc, "150623", "zh-CN", year, None)  # another screen
        components = wall.numbers(svc, "150623", "zh-CN", year, None)
    assert again is wire and len(wire) == len(components) == 8
    assert all(isinstance(w, orjson.Fragment) for w in wire)
    response = {"multi": True, "response": {"wall-vans": {"children": wire[6]}, "wall-kpis": {"children": wire[0]}}}
    sent = to_json_plotly(response)  # as dash/_callback.py serializes a callback's response
    assert sent == to_json_plotly(
        {
            "multi": True,
            "response": {"wall-vans": {"children": components[6]}, "wall-kpis": {"children": components[0]}},
        }
    )
    assert '"data-van":"V01"' in sent  # the van board's rows, as the page's click listener reads them


def test_the_wall_numbers_are_shared_by_the_screens_told_of_the_same_event(
    client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    """callbacks/wall.py ``numbers``: computed once for the screens of the same area and scope that
    were told of the same event; a newer event, another area or another reader's scope computes
    again; the new case is counted in the first answer after its event."""
    svc = client.app.state.services  # type: ignore[attr-defined]
    viewer = Principal(1, "wall-viewer", "viewer", None, kind="user", session_id="1")
    town = Principal(2, "town-viewer", "viewer", "150623100", kind="user", session_id="2")
    year = wall.period_of("year")
    reporter = auth(token("dispatcher"))
    _code, rev = _report(client, reporter, demo_db, redis_url)
    misses = svc.layer_answers.misses
    with acting_as(viewer):
        first = wall.numbers(svc, "150623", "zh-CN", year, rev)
        again = wall.numbers(svc, "150623", "zh-CN", year, rev)  # another screen, the same batch
        town_numbers = wall.numbers(svc, "150623100", "zh-CN", year, rev)  # another area
    with acting_as(town):
        scoped = wall.numbers(svc, "150623100", "zh-CN", year, rev)  # another reader's scope
    assert again is first and town_numbers is not first and scoped is not town_numbers
    assert svc.layer_answers.misses == misses + 3
    with psycopg.connect(demo_db) as conn:
        new_today = conn.execute(
            "SELECT count(*) FROM cases WHERE reported_at >= date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai')"
            " AT TIME ZONE 'Asia/Shanghai'"
        ).fetchone()[0]
    tiles = {getattr(c, "id", None): c for c in first[0]}
    assert str(new_today) in str(tiles["kpi-new_today"].to_plotly_json())  # the new case is counted
    _code, newer = _report(client, reporter, demo_db, redis_url)
    with acting_as(viewer):
        after = wall.numbers(svc, "150623", "zh-CN", year, newer)
    assert after is not first and svc.layer_answers.misses == misses + 4


def test_a_screen_is_sent_only_the_numbers_that_changed_since_its_last_round(
    client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    """callbacks/wall.py ``numbers_for``: a screen that opens gets every output and their digests
    (its SHOWN store); the next round with nothing new sends nothing (Dash answers 204); after a
    report only the outputs it changes are sent — the tiles, not the van board."""
    svc = client.app.state.services  # type: ignore[attr-defined]
    viewer = Principal(1, "wall-viewer", "viewer", None, kind="user", session_id="1")
    year = wall.period_of("year")
    with acting_as(viewer):
        opened = wall.numbers_for(svc, "150623", "zh-CN", year, None, None)
        parts, shown = opened[:-1], opened[-1]
        assert len(parts) == 8 and all(isinstance(p, orjson.Fragment) for p in parts)
        assert isinstance(shown, list) and len(shown) == 8 and len(set(shown)) == 8
        with pytest.raises(PreventUpdate):  # nothing new since: nothing sent
            wall.numbers_for(svc, "150623", "zh-CN", year, None, shown)
        assert wall.numbers_for(svc, "150623", "zh-CN", year, None, [*shown[:-1], "other"])[7] is not no_update
        _code, rev = _report(client, auth(token("dispatcher")), demo_db, redis_url)
        svc.redis.delete(KPI_CACHE)  # as the live hub does at a case event (services/live.py; not run here)
        later = wall.numbers_for(svc, "150623", "zh-CN", year, rev, shown)
        full = wall.numbers_wire(svc, "150623", "zh-CN", year, rev)
    sent = {i for i, p in enumerate(later[:-1]) if p is not no_update}
    assert 0 in sent, "the tiles count the new case"
    assert wall.BOARD not in sent, "the van board did not change"
    assert later[-1][wall.BOARD] == shown[wall.BOARD] and later[-1][0] != shown[0]
    # what was sent is the shared answer's JSON, as the full answer has it
    assert later[0] is full[0]


def test_the_wall_numbers_take_one_connection_for_all_their_parts(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """callbacks/wall.py ``_shared_numbers``: the seven parts of a computation share one checkout
    of the pool (each checkout is a round trip to check the connection); a part alone takes its own."""
    svc = client.app.state.services  # type: ignore[attr-defined]
    viewer = Principal(1, "wall-viewer", "viewer", None, kind="user", session_id="1")
    quarter = wall.period_of("quarter")
    here = threading.get_ident()
    checkouts: list[int] = []  # this thread's (the app's own threads take theirs meanwhile)
    take = svc.pool.connection

    def counted(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == here:
            checkouts.append(1)
        return take(*args, **kwargs)

    monkeypatch.setattr(svc.pool, "connection", counted)
    with acting_as(viewer):
        misses = svc.layer_answers.misses
        wall.numbers(svc, "150623", "en", quarter, None)  # an answer no test made yet: computed
        assert svc.layer_answers.misses == misses + 1
        assert len(checkouts) == 1
        wall.van_board(svc, "en")
        assert len(checkouts) == 2


WALL_VIEW = ["150623", "year", None, None, "zh-CN"]


def test_a_screens_numbers_are_pushed_as_what_changed_with_its_warnings(
    client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    """callbacks/wall.py ``pushed_round`` (the live push's round of a wall's numbers, callbacks/live.py):
    a page that shows nothing yet gets every output; the next round with nothing new sends no part;
    after a report only what it changed — the tiles, not the van board. The warnings badge goes every
    round. The round names the view it was made for (the page drops it when it shows another)."""
    svc = client.app.state.services  # type: ignore[attr-defined]
    viewer = Principal(1, "wall-viewer", "viewer", None, kind="user", session_id="1")
    with acting_as(viewer):
        first = wall.pushed_round(svc, {"key": WALL_VIEW, "shown": None}, None)
        assert first is not None and first["key"] == WALL_VIEW and len(first["parts"]) == 8
        assert all(isinstance(p, orjson.Fragment) for p in first["parts"])
        assert isinstance(first["warnings"], orjson.Fragment)
        shown = first["shown"]
        again = wall.pushed_round(svc, {"key": WALL_VIEW, "shown": shown}, None)
        assert again is not None and again["parts"] == [None] * 8 and again["shown"] == shown
        assert isinstance(again["warnings"], orjson.Fragment)
        _code, rev = _report(client, auth(token("dispatcher")), demo_db, redis_url)
        svc.redis.delete(KPI_CACHE)  # as the live hub does at a case event (services/live.py; not run here)
        later = wall.pushed_round(svc, {"key": WALL_VIEW, "shown": shown}, rev)
    assert later is not None
    sent = {i for i, p in enumerate(later["parts"]) if p is not None}
    assert 0 in sent and wall.BOARD not in sent
    assert later["shown"][wall.BOARD] == shown[wall.BOARD] and later["shown"][0] != shown[0]


def test_a_pushed_round_keeps_a_scoped_reader_to_its_area(client: TestClient) -> None:
    """A page scoped to a town whose view names the whole banner is pushed its own town's numbers,
    as its own callback answers it (``in_scope``), never the banner's."""
    svc = client.app.state.services  # type: ignore[attr-defined]
    town = Principal(2, "town-viewer", "viewer", "150623100", kind="user", session_id="2")
    year = wall.period_of("year")
    with acting_as(town):
        pushed = wall.pushed_round(svc, {"key": WALL_VIEW, "shown": None}, None)
        own = wall.numbers_wire(svc, "150623100", "zh-CN", year, None)
        banner = wall.numbers_wire(svc, "150623", "zh-CN", year, None)
    assert pushed is not None
    crumbs = 4  # the crumbs name the area the numbers are of
    assert orjson.dumps(pushed["parts"][crumbs]) == orjson.dumps(own[crumbs])
    assert orjson.dumps(pushed["parts"][0]) == orjson.dumps(own[0]) != orjson.dumps(banner[0])


@pytest.mark.parametrize(
    "data",
    [
        None,
        "150623",
        [WALL_VIEW],
        {"shown": None},
        {"key": "150623"},
        {"key": WALL_VIEW[:4]},
        {"key": [*WALL_VIEW, "x"]},
        {"key": [150623, "year", None, None, "zh-CN"]},
        {"key": [None, "year", None, None, "zh-CN"]},
        {"key": ["15062x", "year", None, None, "zh-CN"]},
        {"key": ["1506231", "year", None, None, "zh-CN"]},
        {"key": ["\u0661\u0665\u0660\u0666\u0662\u0663", "year", None, None, "zh-CN"]},  # Arabic-Indic digits
        {"key": ["150623", "year", None, None, "xx-XX"]},
        {"key": ["150623", "year", None, None, None]},
        {"key": ["150623", "dates", "2026-01-01" * 10, None, "zh-CN"]},
        {"key": ["150623'; DROP TABLE cases; --", "year", None, None, "zh-CN"]},
        {"key": ["150623", {"$gt": 1}, None, None, "zh-CN"]},
    ],
)
def test_a_view_the_wall_could_not_have_written_is_pushed_nothing(client: TestClient, data: object) -> None:
    """The view comes from the page (its store, read over the WebSocket): anything the wall does not
    write — another page's empty store, a wrong shape, a code that is no area code, an unknown
    language, oversized or non-text values — gets no round, and nothing is read for it."""
    svc = client.app.state.services  # type: ignore[attr-defined]
    viewer = Principal(1, "wall-viewer", "viewer", None, kind="user", session_id="1")
    assert wall.view_of(data) is None
    misses = svc.layer_answers.misses
    with acting_as(viewer):
        assert wall.pushed_round(svc, data, None) is None
    assert svc.layer_answers.misses == misses


@pytest.mark.parametrize(
    ("first", "last"),
    [
        ("not a date", "2026-13-45"),
        ("9999-12-31", "9999-12-31"),
        ("0001-01-01", "2026-01-01"),
        ("1999-12-31", "2026-01-01"),
    ],
)
def test_a_view_with_odd_dates_gets_the_default_period_as_the_callback_does(first: str, last: str) -> None:
    """Dates that are no dates, or outside 2000–2100 (9999-12-31 overflowed the day after), give the
    default period — the page's callback and the push read them with the same rule."""
    view = wall.view_of({"key": ["150623", "dates", first, last, "zh-CN"], "shown": [1, 2]})
    assert view is not None and view.period == wall.period_of("year") and view.shown == [1, 2]
    assert wall.period_of("dates", first, last) == wall.period_of("year")


def test_the_screens_of_one_view_share_the_pushed_warnings_badge(
    client: TestClient, token: Callable[..., str], demo_db: str, redis_url: str
) -> None:
    """The warnings badge of a pushed round is made once for the screens of the same area, scope and
    language told of the same event (callbacks/wall.py ``_shared_badge``), as their numbers; a case
    event makes it again."""
    svc = client.app.state.services  # type: ignore[attr-defined]
    viewer = Principal(1, "wall-viewer", "viewer", None, kind="user", session_id="1")
    _code, rev = _report(client, auth(token("dispatcher")), demo_db, redis_url)
    view = {"key": WALL_VIEW, "shown": None}
    with acting_as(viewer):
        misses = svc.layer_answers.misses
        one = wall.pushed_round(svc, view, rev)
        made = svc.layer_answers.misses - misses
        two = wall.pushed_round(svc, view, rev)  # another screen, the same batch
        assert svc.layer_answers.misses - misses == made and made >= 1
        assert one is not None and two is not None and one["warnings"] is two["warnings"]
        _code, newer = _report(client, auth(token("dispatcher")), demo_db, redis_url)
        three = wall.pushed_round(svc, view, newer)
    assert three is not None and three["warnings"] is not one["warnings"]

"""The canary (issue 12): a case whose parties, description and notes carry a known name, mobile,
landline and ID number, read through every route, callback and live push message as each role.

The canary shows unmasked only to the roles that handle cases (admin, dispatcher, the grid worker
of its town, the van crew: geodata/masking.py), masked to a viewer and a wall screen, and not at
all — not even its code — to a grid worker of another town. The room pages (the wall's card, the
dispatch page) show it masked to everyone.

Anonymous readers are refused by the guard (api/guard.py, tests/test_guard.py). The wall screen is
paired through its one-time link and reads the routes a page fetches by URL with its session cookie;
the callbacks, called here as plain functions, read as the principal the guard binds (``acting_as``).
The van crew's token reads the canary because its van is sent to it (a van token sees no other case).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from callbacks import admin as admin_cb
from callbacks import area as area_cb
from callbacks import dispatch as dispatch_page
from callbacks import live as live_cb
from callbacks import pages, wall
from dashboard.app import create_app
from geodata.errors import Forbidden
from geodata.masking import mask_text
from services import events
from services.identity import Principal, acting_as, lookup, session_principal
from services.live import _parse
from services.settings import Settings

from .cases_fixtures import auth, case_body, cases_settings, client, inner_point_where, token  # noqa: F401
from .conftest import pair_screen
from .helpers import keyed, wait_for
from .test_dispatch import offset, place_van
from .test_scope import WHOLE_BANNER, _text

NAME, OTHER = "金丝雀巴特尔", "金丝雀其木格"  # 金丝雀: canary; no demo party is called so
MOBILE, LANDLINE, ID_NUMBER = "13987654321", "0477-8561234", "15062319800101123X"
# What must never show to a reader without the right: the names, the numbers, and their heads
# (a mask that kept a prefix would leak them too).
RAW = (NAME, OTHER, MOBILE, LANDLINE, "8561234", ID_NUMBER, "1398765", "0477-856", "1506231980")
MASKED = ("金*****", "****4321", "****1234", "****123X")
SEES = frozenset({"admin", "dispatcher", "worker_here", "van"})  # the roles that see it as reported
TOWN, OTHER_TOWN = "150623100", "150623101"


@dataclass
class Reading:
    """What one role read: (surface, text) pairs."""

    role: str
    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, surface: str, body: Any) -> None:
        self.texts.append(
            (surface, body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str))
        )

    def raw_leaks(self) -> list[tuple[str, str]]:
        return [(surface, raw) for surface, text in self.texts for raw in RAW if raw in text]


@pytest.fixture
def canary(client: TestClient, token: Callable[..., str], demo_db: str) -> dict[str, str]:
    lon, lat, cell = inner_point_where(demo_db, lambda c: c.startswith(TOWN))
    body = case_body(
        lon,
        lat,
        description=f"{NAME}（身份证{ID_NUMBER}，手机{MOBILE}）与{OTHER}（座机{LANDLINE}）因草场边界发生争议",
        parties=[{"name": NAME, "phone": MOBILE, "role": "申请人"}, {"name": OTHER, "phone": LANDLINE}],
    )
    dispatcher = auth(token("dispatcher", name="canary-clerk"))
    r = client.post("/api/v1/cases", json=body, headers=keyed(dispatcher))
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    note = f"已电话联系{NAME} {MOBILE}，{OTHER}座机{LANDLINE}，核对身份证{ID_NUMBER}"
    r = client.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept", "note": note}, headers=dispatcher)
    assert r.status_code == 200, r.text
    place_van(demo_db, "V01", *offset(lon, lat, 3000))  # a van on line nearby, sent to the canary: the crew's case
    r = client.post("/api/v1/dispatches", json={"case": code, "van": "V01"}, headers=dispatcher)
    assert r.status_code == 201, r.text
    return {"code": code, "cell": cell, "town": cell[:9]}


PRINCIPALS: dict[str, tuple[str, str | None]] = {  # the roles read, as (role, area)
    "screen": ("screen", None),
    "viewer": ("viewer", None),
    "worker_elsewhere": ("grid_worker", OTHER_TOWN),
    "worker_here": ("grid_worker", TOWN),
    "van": ("van", None),
    "dispatcher": ("dispatcher", None),
    "admin": ("admin", None),
}


def _stream_entries(redis_url: str) -> list[Any]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return _parse(r.xrange(events.STREAM))
    finally:
        r.close()


def _read_api(c: TestClient, headers: dict[str, str], canary: dict[str, str], reading: Reading) -> None:
    code, cell, town = canary["code"], canary["cell"], canary["town"]
    for path in (
        f"/api/v1/cases/{code}",
        "/api/v1/cases?limit=100",
        f"/api/v1/cases?area={town}&limit=100",
        f"/api/v1/areas/{cell}/cases",
        f"/api/v1/areas/{town}/cases?limit=100",
        f"/api/v1/cases/{code}/cameras",
        f"/api/v1/cases/{code}/van-candidates",
        "/api/v1/dispatches",
        "/api/v1/vans",
        f"/api/v1/areas/{town}/stats",
        "/api/v1/stats/ranking",
    ):
        r = c.get(path, headers=headers)
        reading.add(path, r.text)


def _read_pages(c: TestClient, headers: dict[str, str], canary: dict[str, str], reading: Reading) -> None:
    """The routes a page's browser fetches by URL (bearer or the guard's principal)."""
    for path in (
        f"/api/v1/layers/cases?bbox={WHOLE_BANNER}",
        f"/api/v1/areas/{canary['cell']}/cases.csv",
        f"/api/v1/areas/{canary['town']}/cases.csv",
        "/api/v1/layers/grids/stats?level=4",
    ):
        r = c.get(path, headers=headers)
        text = r.content.decode("utf-8-sig") if path.endswith(".csv") else r.text
        if path.endswith(".csv") and r.status_code == 200:
            assert "parties" not in next(csv.reader(io.StringIO(text)))  # the CSV carries no personal data
        reading.add(path, text)


def _read_callbacks(c: TestClient, who: Principal, canary: dict[str, str], reading: Reading) -> None:
    svc = c.app.state.services  # type: ignore[attr-defined]
    code, cell = canary["code"], canary["cell"]
    with acting_as(who):
        reading.add("wall.case_card", _text(wall.case_card(svc, code, "zh-CN")))
        reading.add("wall.detail", _text(wall.detail_for(svc, "layer-cases", {"code": code}, "zh-CN")))
        reading.add("wall.panel", _text(wall.area_panel(svc, cell, "zh-CN")))
        reading.add("area.table", area_cb.table_page(svc, cell, None, None, None, None, 0, [], "zh-CN"))
        reading.add("pages.area", repr(pages.render(svc, f"/area/{cell}", None)))
        if who.role in dispatch_page.DISPATCHERS:
            reading.add("dispatch.card", _text(dispatch_page.case_panels(svc, who, code, "zh-CN")))
            reading.add("dispatch.queue", _text(dispatch_page.queue_items(svc, who, code, "zh-CN")))
        # the admin page's logs (callbacks/admin.py): an admin's only; they name cases by code, never their parties
        if who.role == "admin":
            reading.add("admin.changes", _text(admin_cb.changes_view(svc, who, None, 0, "zh-CN")[0]))
            reading.add("admin.signins", _text(admin_cb.signins_view(svc, who, None, 0, "zh-CN")[0]))
            assert not any(raw in text for surface, text in reading.texts[-2:] for raw in RAW)
        else:
            with pytest.raises(Forbidden):
                admin_cb.changes_view(svc, who, None, 0, "zh-CN")


def _read_live(redis_url: str, who: Principal, canary: dict[str, str], reading: Reading) -> None:
    """The live push's message, as the hub filters it for the reader's area."""
    wait_for(lambda: any(e.event.get("code") == canary["code"] for e in _stream_entries(redis_url)), what="the event")
    entries = [e for e in _stream_entries(redis_url) if e.visible_in(who.area)]
    reading.add("live", live_cb.batch_message(1, entries, resync=False, numbers=True))


@pytest.fixture
def readings(
    client: TestClient,
    token: Callable[..., str],
    canary: dict[str, str],
    cases_settings: Settings,
    redis_url: str,
    demo_db: str,
) -> dict[str, Reading]:
    out: dict[str, Reading] = {}
    svc = client.app.state.services  # type: ignore[attr-defined]
    for key, (role, area) in PRINCIPALS.items():
        reading = out[key] = Reading(key)
        if role == "screen":  # no bearer token for a screen: the page's session (the guard's principal)
            with TestClient(create_app(cases_settings)) as page:
                cookie = pair_screen(page, demo_db, "wall", area)
                _read_pages(page, {}, canary, reading)
            with psycopg.connect(demo_db) as conn:
                paired = session_principal(conn, cookie, cases_settings.session_idle_minutes)
            assert paired is not None and paired.role == "screen"
            who = paired
        else:
            raw = token(role, area=area, name="V01" if role == "van" else f"canary-{key}")
            found = lookup(svc, raw)
            assert found is not None
            who = found
            _read_api(client, auth(raw), canary, reading)
            _read_pages(client, auth(raw), canary, reading)
        _read_callbacks(client, who, canary, reading)
        _read_live(redis_url, who, canary, reading)
    return out


def test_the_canary_shows_unmasked_only_where_the_role_may_see_it(
    readings: dict[str, Reading], canary: dict[str, str]
) -> None:
    for key, reading in readings.items():
        if key not in SEES:
            assert reading.raw_leaks() == [], key
    # the roles that handle cases read it as reported, through the API
    for key in SEES:
        case = dict(readings[key].texts)[f"/api/v1/cases/{canary['code']}"]
        assert all(raw in case for raw in (NAME, MOBILE, LANDLINE, ID_NUMBER)), key
    # a viewer reads it masked (names keep their first character, numbers their last four)
    viewer_case = dict(readings["viewer"].texts)[f"/api/v1/cases/{canary['code']}"]
    assert all(m in viewer_case for m in MASKED), viewer_case
    # the room pages show it masked to everyone, those who may see it included
    for key, reading in readings.items():
        for surface, text in reading.texts:
            if surface in ("wall.case_card", "wall.detail", "dispatch.card"):
                assert not any(raw in text for raw in RAW), (key, surface)


def test_the_canary_does_not_exist_outside_its_area(readings: dict[str, Reading], canary: dict[str, str]) -> None:
    outsider = readings["worker_elsewhere"]
    # not in any answer to a request that did not name it (a refusal may repeat the code it was asked for)
    leaked = [s for s, text in outsider.texts if canary["code"] not in s and canary["code"] in text]
    assert leaked == []
    assert not [s for s, text in outsider.texts if NAME[:1] + "*****" in text or NAME in text]
    # asked for by its code, it is not found, as a code that does not exist (a 403 told it existed)
    assert all('"error":"not_found"' in text for s, text in outsider.texts if canary["code"] in s)
    # and where it does exist, each role found it: the pins, the live push, the card
    for key in ("screen", "viewer", "worker_here", "dispatcher", "admin"):
        surfaces = {s for s, text in readings[key].texts if canary["code"] in text}
        assert {f"/api/v1/layers/cases?bbox={WHOLE_BANNER}", "live", "wall.case_card"} <= surfaces, (key, surfaces)


def test_the_live_push_carries_no_personal_data(readings: dict[str, Reading]) -> None:
    for key, reading in readings.items():
        live = dict(reading.texts)["live"]
        assert not any(raw in live for raw in RAW) and "****" not in live, key


def test_the_canary_is_of_the_shapes_the_masks_know() -> None:
    """So that the canary tests the masks: each of its numbers masks to four stars and its last four."""
    masked = mask_text(f"{NAME} {MOBILE} {LANDLINE} {ID_NUMBER}", [{"name": NAME}])
    assert masked == "金***** ****4321 ****1234 ****123X"

"""Search (issue 14, item 4): one box finds cases by code prefix, party name or phone, words of the
description, and areas by name or code — within the reader's scope, with parties only for the
roles that see them (geodata/masking.py), taking every query literally.

The API (``GET /api/v1/search``) and the pages' box (callbacks/search.py, called here through
``acting_as`` and in a real Chromium) give the same answers: both are geodata/search.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from dash import no_update
from fastapi.testclient import TestClient
from playwright.sync_api import Browser

from callbacks import search as search_cb
from services.identity import Principal, acting_as

from .browser import Watched, browser  # noqa: F401 - browser is a fixture
from .cases_fixtures import auth, case_body, cases_settings, client, inner_point_where, token  # noqa: F401
from .helpers import keyed

# Names, a phone and words the seeded demo does not hold (its surnames are single characters or
# Mongolian names; its descriptions come from nine templates).
NAME = "欧阳锦瑟"
OTHER = "司马青衫"
PHONE = "19912340987"
WORDS = "羊圈漏雨殃及草料"
LITERAL = "折扣50%_以上\\按合同"  # LIKE's wildcards and escape, as plain characters of a description


def _body(lon: float, lat: float, description: str = f"{NAME}家{WORDS}，与{OTHER}协商未果") -> dict[str, Any]:
    return case_body(
        lon,
        lat,
        description=description,
        parties=[
            {"name": NAME, "phone": PHONE, "role": "申请人"},
            {"name": OTHER, "phone": "0477-8123456", "role": "被申请人"},
        ],
    )


def _codes(found: dict[str, Any], group: str) -> list[str]:
    return [c["code"] for c in found[group]]


def _all_codes(found: dict[str, Any]) -> set[str]:
    return {c["code"] for g in ("by_code", "by_party", "by_description") for c in found[g]}


@pytest.fixture
def two_cases(client: TestClient, token: Callable[..., str], demo_db: str) -> dict[str, str]:
    """The same report in two towns: {"code_a", "code_b", "town_a", "town_b", "cell_a", "cell_b"}."""
    lon_a, lat_a, cell_a = inner_point_where(demo_db, lambda c: c.startswith("150623100"))
    lon_b, lat_b, cell_b = inner_point_where(demo_db, lambda c: not c.startswith("150623100"))
    dispatcher = auth(token("dispatcher"))
    code_a = client.post("/api/v1/cases", json=_body(lon_a, lat_a), headers=keyed(dispatcher)).json()["code"]
    code_b = client.post("/api/v1/cases", json=_body(lon_b, lat_b), headers=keyed(dispatcher)).json()["code"]
    return {"code_a": code_a, "code_b": code_b, "town_a": cell_a[:9], "town_b": cell_b[:9], "cell_a": cell_a}


def _search(client: TestClient, headers: dict[str, str], q: str, **params: Any) -> dict[str, Any]:
    r = client.get("/api/v1/search", params={"q": q, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_finds_by_code_prefix_party_name_phone_chinese_words_and_area(
    client: TestClient, token: Callable[..., str], two_cases: dict[str, str], demo_db: str
) -> None:
    dispatcher = auth(token("dispatcher"))
    code = two_cases["code_a"]

    found = _search(client, dispatcher, code[:15], limit=50)  # banner and day: every case of that day
    assert code in _codes(found, "by_code")
    assert all(c.startswith(code[:15]) for c in _codes(found, "by_code"))
    whole = _search(client, dispatcher, code)
    assert _codes(whole, "by_code") == [code] and whole["open"] == f"/cases/{code}"
    assert whole["by_code"][0]["href"] == f"/cases/{code}"

    by_name = _search(client, dispatcher, NAME)
    assert {two_cases["code_a"], two_cases["code_b"]} <= set(_codes(by_name, "by_party"))
    assert by_name["by_party"][0]["parties"][0]["name"] == NAME  # a dispatcher sees the parties
    for fragment in ("2340987", "1991234", "0987", "04778123456", "0477-812"):  # any part of a phone
        assert code in _codes(_search(client, dispatcher, fragment), "by_party"), fragment
    for words in ("羊圈", "漏雨殃", "殃及草料", WORDS):  # Chinese substrings of 2, 3 and 4+ characters
        assert code in _codes(_search(client, dispatcher, words), "by_description"), words

    with psycopg.connect(demo_db) as conn:
        village, village_name = conn.execute(
            "SELECT code, name FROM areas WHERE code = %s", (two_cases["cell_a"][:12],)
        ).fetchone()  # type: ignore[misc]
    by_area = _search(client, dispatcher, village_name)
    assert village in [a["code"] for a in by_area["areas"]]
    assert by_area["areas"][0]["href"].startswith("/area/")
    assert village in [a["code"] for a in _search(client, dispatcher, village)["areas"]]


def test_a_viewer_finds_no_case_by_a_partys_name_or_phone(
    client: TestClient, token: Callable[..., str], two_cases: dict[str, str]
) -> None:
    viewer = auth(token("viewer"))
    code = two_cases["code_a"]
    for q in (NAME, OTHER, PHONE, "2340987", "8123456", "0987", "锦瑟家", "锦瑟", f"{NAME}家羊圈"):
        found = _search(client, viewer, q)
        assert found["party_search"] is False and found["by_party"] == []
        assert code not in _all_codes(found), q
    # what a viewer is shown of the case still finds it, masked
    found = _search(client, viewer, "殃及草料")
    assert code in _codes(found, "by_description")
    case = next(c for c in found["by_description"] if c["code"] == code)
    assert NAME not in case["description"] and case["parties"][0]["name"] == "欧***"
    assert PHONE not in str(case)
    assert code in _codes(_search(client, viewer, code), "by_code")  # codes are not personal


def test_a_scoped_reader_finds_nothing_outside_its_area(
    client: TestClient, token: Callable[..., str], two_cases: dict[str, str], demo_db: str
) -> None:
    for role in ("grid_worker", "dispatcher", "viewer"):
        scoped = auth(token(role, area=two_cases["town_a"]))
        for q in (NAME, WORDS, PHONE, two_cases["code_b"], two_cases["code_b"][:15], "150623"):
            found = _search(client, scoped, q, limit=50)
            assert two_cases["code_b"] not in _all_codes(found), (role, q)
            assert all(a["code"].startswith(two_cases["town_a"]) for a in found["areas"]), (role, q)
            assert found["open"] is None or found["open"].endswith(two_cases["code_a"])
        assert two_cases["code_a"] in _all_codes(_search(client, scoped, WORDS))
    with psycopg.connect(demo_db) as conn:
        other_town = conn.execute("SELECT name FROM areas WHERE code = %s", (two_cases["town_b"],)).fetchone()[0]  # type: ignore[index]
    assert _search(client, auth(token("viewer", area=two_cases["town_a"])), other_town)["areas"] == []


@pytest.mark.parametrize(
    "q",
    [
        "%",
        "_",
        "\\",
        "%%",
        "%_",
        "\\%",
        "50%_",
        "'; DROP TABLE cases; --",
        "' OR '1'='1",
        "a' || pg_sleep(5) || '",
        "$1",
        "%(q)s",
        "{scope}",
        "*",
        "\u3000",
        "😀🚀",
        "\ufffd",
        "1",
        "-",
        "150623-",
        "x" * 100,
        "张" * 100,
    ],
)
def test_hostile_queries_are_taken_literally(client: TestClient, token: Callable[..., str], q: str) -> None:
    found = _search(client, auth(token("admin")), q, limit=50)
    assert found["q"] == q.strip(" ")
    for case in [c for g in ("by_party", "by_description") for c in found[g]]:
        text = case["description"] + str(case["parties"])
        assert q.lower() in text.lower() or q.lower() in str(case["parties"]).lower(), (q, case)
    assert all(c["code"].startswith(q) for c in found["by_code"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": ""}, "q"),
        ({"q": " "}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 101}, "q"),
        ({"q": "张" * 101}, "q"),
        ({"q": "a\x00b"}, "q"),
        ({"q": "\x1b[31m"}, "q"),
        ({"q": "line\nbreak"}, "q"),
        ({"q": "tab\t"}, "q"),
        ({"q": "\x7f"}, "q"),
        ({}, "q"),
        ({"q": "x", "limit": 0}, "limit"),
        ({"q": "x", "limit": 51}, "limit"),
        ({"q": "x", "limit": "ten"}, "limit"),
    ],
)
def test_invalid_queries_are_422_naming_the_field(
    client: TestClient, token: Callable[..., str], params: dict[str, Any], field: str
) -> None:
    r = client.get("/api/v1/search", params=params, headers=auth(token("admin")))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_literal_wildcards_find_only_what_holds_them(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    lon, lat, _ = inner_point_where(demo_db, lambda c: True)
    admin = auth(token("admin"))
    code = client.post("/api/v1/cases", json=_body(lon, lat, LITERAL), headers=keyed(admin)).json()["code"]
    for q in ("50%_", "%_以", "上\\按", "\\按"):
        assert _codes(_search(client, admin, q, limit=50), "by_description") == [code], q
    # one character is no word: it finds codes and areas only
    assert _search(client, admin, "\\")["by_description"] == []
    assert code not in _codes(_search(client, admin, "50%x"), "by_description")


def test_a_van_crew_cannot_search_and_anonymous_callers_are_refused(
    client: TestClient, token: Callable[..., str]
) -> None:
    assert client.get("/api/v1/search", params={"q": "x"}, headers=auth(token("van", name="V01"))).status_code == 403
    assert client.get("/api/v1/search", params={"q": "x"}).status_code == 401


def test_a_dispatchers_search_by_party_is_logged_as_a_personal_data_read(
    client: TestClient, token: Callable[..., str], two_cases: dict[str, str], demo_db: str
) -> None:
    _search(client, auth(token("dispatcher", name="查询员")), NAME)
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute(
            "SELECT detail FROM admin_events WHERE actor_name = %s AND target = %s ORDER BY id",
            ("查询员", "GET /api/v1/search"),
        ).fetchall()
    assert rows and two_cases["code_a"] in rows[-1][0]["cases"]


def test_the_search_box_callback_is_the_same_search(
    client: TestClient, two_cases: dict[str, str], demo_db: str
) -> None:
    svc = client.app.state.services  # type: ignore[attr-defined]
    dispatcher = Principal(1, "d", "dispatcher", None, kind="user")
    viewer = Principal(2, "v", "viewer", None, kind="user")
    scoped = Principal(3, "g", "grid_worker", two_cases["town_a"], kind="user")
    with acting_as(dispatcher):
        items, go = search_cb.answer(svc, NAME, submitted=False)
        assert two_cases["code_a"] in str(items) and NAME not in str(items)  # found by name, shown masked
        items, go = search_cb.answer(svc, two_cases["code_a"], submitted=True)
        assert go == f"/cases/{two_cases['code_a']}"
        items, _ = search_cb.answer(svc, "a\x00b", submitted=False)
        assert "控制字符" in str(items)
    with acting_as(viewer):
        items, _ = search_cb.answer(svc, NAME, submitted=False)
        assert two_cases["code_a"] not in str(items)
    with acting_as(scoped):
        items, go = search_cb.answer(svc, two_cases["code_b"], submitted=True)
        assert go is no_update and "/cases/" not in str(items)
        assert "没有找到" in str(items)


def test_the_search_box_in_chromium_types_a_code_and_lands_on_its_link(
    live_server, demo_db: str, redis_url: str, browser: Browser
) -> None:
    srv = live_server(demo_db, redis_url)
    cookies = srv.browser_cookie(srv.sign_in("dispatcher"))
    with psycopg.connect(demo_db) as conn:
        code, town = conn.execute('SELECT code, town_code FROM cases ORDER BY code COLLATE "C" DESC LIMIT 1').fetchone()  # type: ignore[misc]
    w = Watched(browser, srv.url, cookies=cookies)
    page = w.page
    for path in ("/", f"/area/{town}", "/dispatch"):
        page.goto(srv.url + path)
        page.wait_for_selector("input#search")
    page.goto(srv.url + "/")
    box = page.locator("input#search")
    box.fill(code[:15])
    page.wait_for_selector(f"#search-results a[href='/cases/{code}']")
    box.fill(code)
    page.wait_for_selector("#search-results .yitu-search-note")  # 按回车打开案件
    box.press("Enter")
    page.wait_for_url(f"{srv.url}/cases/{code}")
    page.goto(srv.url + f"/area/{town}")
    box = page.locator("input#search")
    box.fill(code)
    link = page.locator(f"#search-results a[href='/cases/{code}']")
    link.click()
    page.wait_for_url(f"{srv.url}/cases/{code}")
    w.close()

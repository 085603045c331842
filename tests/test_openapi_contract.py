"""The API keeps the promises of its ``/openapi.json``: schemathesis, every operation, as each identity.

``yitu serve`` runs on its own clone of the seeded demo; schemathesis reads the schema the server
publishes and runs what its command line (``st run``) runs, through its Python API: for every
operation the schema's examples, the coverage phase's edge cases (every boundary, every missing or
mistyped parameter, the methods the path does not take), generated requests valid and invalid,
and the stateful phase's chains (a case reported, then moved through the loop). **All** of its
checks apply to each answer: no 5xx; every status and content type documented; the body as the
schema says; schema-valid input accepted and schema-violating input refused; a missing or wrong
identity answered 401; 405 with ``Allow`` for an undeclared method. The test fails listing every
distinct finding (operation, check) with a ``curl`` that shows it.

Bounded and deterministic: a fixed seed, :data:`MAX_EXAMPLES` generated requests per operation and
phase, no example database; about 10 s per identity on an idle machine.

Why the engine and not ``@schema.parametrize()``: the schema comes from a server that a fixture
starts, so it must load lazily (``schemathesis.pytest.from_fixture``), and that path of
schemathesis 4.32 fails on pytest 9 (it sets ``request.node._nodeid``, which pytest 9 no longer has).

The identities are a list (:data:`IDENTITIES`): each is signed in its own way and gives the
headers its requests carry: bearer tokens, a person signed in with ``POST /login`` and a wall
screen paired by its link (both the ``yitu_session`` cookie, with the ``Origin`` of the site that a
browser sends with every change made with the cookie). The sign-in form routes themselves are not
in the schema (api/signin.py says why): schemathesis would sign its own session out.

What a schema cannot say: JSON Schema has no way to relate two fields, nor a value to the present
moment or to what exists in the database. The routes document those rules in their descriptions
(``since`` not after ``until``, a bbox's ``minx < maxx``, a track window of at most seven days, a
ranking's level below its area's, a van's fix within the last year and at most 5 minutes ahead, a
report dated since 2000, positions of vans that exist, what each transition needs) and refuse a
request that breaks them with a 422 naming the field; likewise an Idempotency-Key names one request
(the same key with another body is a 422). The hook :func:`_documented_rules` makes schemathesis's
*valid* requests follow them too (a fresh key each); the invalid ones are sent as generated.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
import schemathesis.engine
from PIL import Image
from schemathesis import Case, GenerationMode, HookContext
from schemathesis.engine import events

from services.identity import create_token

from .conftest import DEMO_TEMPLATE, TEST_REDIS_DB, Clones, LiveServer, pair_screen, sign_in
from .helpers import with_redis_db

SEED = 20261205
MAX_EXAMPLES = 10  # generated requests per operation and identity, besides the coverage phase's


@dataclass(frozen=True)
class Identity:
    """Who schemathesis acts as, and how it signs in (``sign_in(server, dsn) -> headers``)."""

    name: str
    sign_in: Callable[[LiveServer, str], dict[str, str]]
    notes: str = field(default="", compare=False)


def _token(role: str, area_level: int | None = None) -> Callable[[LiveServer, str], dict[str, str]]:
    """A bearer token of ``role`` (scoped to the first area of ``area_level`` when given)."""

    def sign_in(_server: LiveServer, dsn: str) -> dict[str, str]:
        with psycopg.connect(dsn) as conn:
            area = None
            if area_level is not None:
                row = conn.execute("SELECT min(code) FROM areas WHERE level = %s", (area_level,)).fetchone()
                assert row is not None and row[0] is not None
                area = str(row[0])
            _, token = create_token(conn, name=f"contract-{role}", role=role, area=area)
        return {"Authorization": f"Bearer {token}"}

    return sign_in


def _session(role: str | None) -> Callable[[LiveServer, str], dict[str, str]]:
    """A new person of ``role`` signed in with ``POST /login`` (None: a wall screen paired by its link):
    the session cookie, and the Origin a browser sends with it."""

    def sign_in_by_cookie(server: LiveServer, dsn: str) -> dict[str, str]:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            cookie = pair_screen(http, dsn) if role is None else sign_in(http, dsn, role)
        return {"Cookie": f"yitu_session={cookie}", "Origin": server.url}

    return sign_in_by_cookie


IDENTITIES = [
    Identity("admin", _token("admin")),
    Identity("viewer", _token("viewer"), notes="reads, masked; every write is a 403"),
    Identity("grid_worker-town", _token("grid_worker", area_level=2), notes="scoped to one town"),
    Identity("dispatcher-session", _session("dispatcher"), notes="a person signed in: the cookie, CSRF by Origin"),
    Identity("screen-session", _session(None), notes="a paired wall screen: reads; every write is a 403"),
]


@dataclass
class ContractServer:
    server: LiveServer
    dsn: str
    vans: list[str]
    db: psycopg.Connection[Any]  # the test's own connection to the server's database (autocommit)


@pytest.fixture(scope="module")
def contract_server(
    clones: Clones, demo_dsn: str, stack: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ContractServer]:
    """``yitu serve`` on a clone of the seeded demo of its own (schemathesis writes: reports, pings)."""
    dsn = clones.take(DEMO_TEMPLATE)
    redis_url = with_redis_db(stack.redis_url(), TEST_REDIS_DB)
    log = tmp_path_factory.mktemp("contract") / "serve.log"
    env = {
        "YITU_DATABASE_URL": dsn,
        "YITU_REDIS_URL": redis_url,
        "YITU_SCHEDULER_INTERVAL": "0",
        "YITU_BLOB_DIR": str(log.parent / "blobs"),  # the uploads schemathesis makes: not the checkout's .yitu
    }
    server = LiveServer(env, log)
    db = psycopg.connect(dsn, autocommit=True)
    vans = [str(r[0]) for r in db.execute("SELECT id FROM vans ORDER BY id").fetchall()]
    try:
        yield ContractServer(server, dsn, vans, db)
    finally:
        db.close()
        server.stop()
        clones.give_back(dsn)


def _schema(contract: ContractServer, headers: dict[str, str]) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": headers,
            "checks": {
                "enabled": True,  # all of them, not only not_a_server_error
                # A report without its required Idempotency-Key is a 428 (Precondition Required, as
                # the schema says): schemathesis's default list for a missing header, and 428.
                "missing_required_header": {"expected-statuses": ["400", "401", "403", "406", "415", "422", "428"]},
            },
            "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "database": "none"},
            "phases": {"enabled": True},  # examples, coverage, fuzzing, stateful
            "workers": 1,
            "request-timeout": 30,
        }
    )
    schema = schemathesis.openapi.from_url(contract.server.url + "/openapi.json", config=config)
    schema.hook(_documented_rules(contract.vans))
    schema.hook(_forget_token_guesses(contract.db))
    return schema


def _forget_token_guesses(db: psycopg.Connection[Any]) -> Callable[[HookContext, Case, Any], None]:
    """An ``after_call`` hook: the unknown bearer tokens just sent are not counted against 127.0.0.1.

    Schemathesis's auth checks send an invalid token to every operation on purpose, some 30 per
    identity: past the guard's 20 guesses in 15 minutes the address gets 429 (tests/test_guard.py
    covers that throttle), and every later probe and every new token of this module would see the
    throttle instead of the answer to its own credentials.
    """

    def after_call(context: HookContext, case: Case, response: Any) -> None:
        db.execute("DELETE FROM signin_attempts WHERE kind = 'token' AND NOT ok")

    return after_call


@dataclass
class Run:
    """What one run sent and found: each distinct finding (operation, failure) with a request that shows it."""

    requests: int = 0
    findings: dict[tuple[str, str], str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"{len(self.findings)} distinct findings in {self.requests} requests:"]
        lines += [f"- {op}: {what}\n    {sample}" for (op, what), sample in sorted(self.findings.items())]
        lines += [f"- error: {e}" for e in self.errors]
        return "\n".join(lines)


def _run(schema: schemathesis.BaseSchema) -> Run:
    """Run schemathesis's engine (the phases and checks its command line runs) and collect what it found."""
    run = Run()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.FatalError):
            raise event.exception
        if isinstance(event, events.NonFatalError):
            run.errors.append(f"{event.label}: {event.info.message}")
        recorder = getattr(event, "recorder", None)
        if not isinstance(event, (events.ScenarioFinished, events.FuzzScenarioFinished)) or recorder is None:
            continue
        run.requests += len(recorder.interactions)
        for checks in recorder.checks.values():
            for check in checks:
                info = check.failure_info
                if info is not None:
                    failure = info.failure
                    key = (failure.operation or recorder.label, f"{failure.code} {failure.title}")
                    run.findings.setdefault(key, info.code_sample.strip())
    return run


# --- the rules the routes document and JSON Schema cannot say ---------------------------------------


def _documented_rules(vans: list[str]) -> Callable[[HookContext, Case], Case]:
    """A ``map_case`` hook: a valid (positive) request made to follow the documented rules."""

    def map_case(context: HookContext, case: Case) -> Case:
        meta = case.meta
        if meta is None or meta.generation.mode is not GenerationMode.POSITIVE:
            return case
        path, query = case.operation.path, case.query
        if query:
            _ordered_days(query)
            if path.startswith("/api/v1/layers/") and isinstance(query.get("bbox"), str):
                _ordered_bbox(query)
            if path == "/api/v1/vans/{van}/track":
                _track_window(query)
            if path == "/api/v1/stats/ranking":
                _ranking_level(query)
        if path == "/api/v1/basemap/{z}/{x}/{y}" and case.path_parameters:
            _tile_address(case.path_parameters)
        if case.headers and "Idempotency-Key" in case.headers:
            case.headers["Idempotency-Key"] = f"contract-{uuid.uuid4().hex}"  # a new key for a new request
        body = case.body
        if path == "/api/v1/cases/{code}/transitions" and isinstance(body, dict):
            _action_inputs(body)
        if path == "/api/v1/vans/positions" and isinstance(body, dict):
            for i, p in enumerate(body.get("positions") or []):
                if isinstance(p, dict):  # a van that exists, a fix of a minute ago
                    p["van"] = vans[i % len(vans)]
                    p["time"] = _iso(datetime.now(UTC) - timedelta(minutes=1))
        if path == "/api/v1/cases/{code}/attachments" and case.method == "POST" and isinstance(body, dict):
            _attachments(case, body)
        if path.startswith(("/api/v1/units", "/api/v1/mediators")) and isinstance(body, dict):
            _roster_body(body)
        if path == "/api/v1/deadlines" and case.method == "PUT" and isinstance(body, dict):
            _deadline_body(body)
        if path == "/api/v1/cases" and case.method == "POST" and isinstance(body, dict) and "reported_at" in body:
            body["reported_at"] = _iso(datetime.now(UTC) - timedelta(hours=1))  # since 2000, not ahead
        return case

    return map_case


def _action_inputs(body: dict[str, Any]) -> None:
    """What each action needs (TransitionIn's description), filled in where the generator left it out."""
    action = body.get("action")
    if action == "reject" and (
        body.get("reason") is None or (body["reason"] == "duplicate" and not body.get("duplicate_of"))
    ):
        body["reason"] = "not_dispute"
    elif action == "dispatch" and body.get("assignee") is None:
        body["assignee"] = {"kind": "unit", "id": "contract-unit"}
    elif action == "attempt" and body.get("result") is None:
        body["result"] = "success"
    elif action == "close":
        body["outcome"] = "withdrawn"  # the one outcome every open step takes
    elif action == "evaluate" and body.get("satisfaction") is None:
        body["satisfaction"] = 4


def _roster_body(body: dict[str, Any]) -> None:
    """What a roster write needs (api/roster.py RULES): an area that exists, the level left to it, case
    types that exist, no unit, centre, van or user that may not."""
    if "area_code" in body:
        body["area_code"] = "150623"  # the demo's banner
    body.pop("level", None)
    if "specialties" in body:
        body["specialties"] = ["neighbour"] if body["specialties"] else []
    for ref in ("unit", "centre", "van", "user"):
        if ref in body:
            body[ref] = None


def _deadline_body(body: dict[str, Any]) -> None:
    """What a deadlines PUT needs (api/deadlines.py RULES): the demo's banner, level and hours together
    (the grid's at most 720), something to change."""
    body["area"] = "150623"
    if "hours" in body and body.get("level") is None:
        body["level"] = "village"
    if body.get("level") is not None and "hours" not in body:
        body["hours"] = 48
    if body.get("level") == "grid" and isinstance(body.get("hours"), int | float):
        body["hours"] = min(body["hours"], 720)
    if "hours" not in body and "max_attempts" not in body:
        body["max_attempts"] = 3


def _tiny_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (2, 2), (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


TINY_PNG = _tiny_png()


def _attachments(case: Case, body: dict[str, Any]) -> None:
    """The files are of an accepted type (judged from their bytes: the description says which), and an
    Idempotency-Key is not one another upload used (that is a 422 naming the header)."""
    files = body.get("file")
    if isinstance(files, list):
        body["file"] = [TINY_PNG for _ in files]
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _ordered_days(query: dict[str, Any]) -> None:
    """``since`` is not after ``until`` (days, YYYY-MM-DD: their text sorts as they do)."""
    since, until = query.get("since"), query.get("until")
    if isinstance(since, str) and isinstance(until, str) and len(since) == len(until) == 10 and since > until:
        query["since"], query["until"] = until, since


def _ordered_bbox(query: dict[str, Any]) -> None:
    """``minx < maxx`` and ``miny < maxy``; a box with no area is left out."""
    minx, miny, maxx, maxy = (float(v) for v in query["bbox"].split(","))
    if minx == maxx or miny == maxy:
        del query["bbox"]
        return
    xs, ys = sorted((minx, maxx)), sorted((miny, maxy))
    query["bbox"] = f"{xs[0]!r},{ys[0]!r},{xs[1]!r},{ys[1]!r}"


def _track_window(query: dict[str, Any]) -> None:
    """``since`` before ``until``, at most 7 days apart (until defaults to now, since to an hour before)."""
    now = datetime.now(UTC)
    until = _instant(query.get("until"))
    since = _instant(query.get("since"))
    if until is not None and until.year < 2:  # an hour before it does not exist
        query.pop("until")
        until = None
    end = until or now
    if since is not None and not (end - timedelta(days=7) <= since < end):
        query.pop("since")


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _ranking_level(query: dict[str, Any]) -> None:
    """The ranked level is below the parent area's (6 digits: the banner, 1; then 3 more per level)."""
    area, level = query.get("area"), query.get("level")
    if isinstance(area, str) and isinstance(level, int) and (len(area) - 3) // 3 >= level:
        query.pop("area")


def _tile_address(params: dict[str, Any]) -> None:
    """A tile's column and row lie in 0..2^z-1 (the route's description). The coverage phase may give
    the path's numbers as text."""
    z, x, y = params.get("z"), params.get("x"), params.get("y")
    if isinstance(z, str) and z.isdigit():
        z = int(z)
    if not (isinstance(z, int) and 0 <= z <= 30):
        return
    side = 1 << z
    if isinstance(x, int) or (isinstance(x, str) and x.isdigit()):
        params["x"] = type(x)(int(x) % side)
    if isinstance(y, str) and (row := y.split(".", 1)[0].removesuffix("@2x")).isdigit():
        params["y"] = f"{int(row) % side}{y[len(row) :]}"


# --- the test --------------------------------------------------------------------------------------


@pytest.mark.parametrize("identity", IDENTITIES, ids=lambda who: who.name)
def test_api_keeps_its_openapi_contract(contract_server: ContractServer, identity: Identity) -> None:
    headers = identity.sign_in(contract_server.server, contract_server.dsn)
    run = _run(_schema(contract_server, headers))
    assert run.requests > 500, run.report()  # it ran: every operation, many requests each
    assert not run.findings and not run.errors, run.report()


def test_the_contract_covers_every_api_route(contract_server: ContractServer) -> None:
    """Every route under /api/ and /osmand is in the schema (a route left out would go untested); the
    sign-in page's form routes (POST /login, /logout) are the browser's, not the API's, and are not."""
    admin = _token("admin")(contract_server.server, contract_server.dsn)  # /openapi.json needs an identity now
    paths = contract_server.server.get("/openapi.json", headers=admin).json()["paths"]
    assert {"/api/v1/cases", "/api/v1/vans/positions", "/osmand", "/api/v1/layers/cases"} <= set(paths)
    assert all(p.startswith(("/api/v1/", "/osmand", "/healthz")) for p in paths), sorted(paths)


def test_unknown_api_paths_and_methods_answer_json(contract_server: ContractServer) -> None:
    srv = contract_server.server
    assert srv.get("/api/v1/no-such-thing").json()["error"] == "unauthorized"  # anonymous: 401, whatever the path
    who = _token("viewer")(srv, contract_server.dsn)
    r = srv.get("/api/v1/no-such-thing", headers=who)
    assert r.status_code == 404 and r.json()["error"] == "not_found"  # not the dashboard's page
    r = srv.get("/api/v1/dispatches/1/cancel", headers=who)
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.json()["error"] == "method_not_allowed"


def test_timestamps_are_iso_text_never_unix_numbers(contract_server: ContractServer) -> None:
    """``until=0`` was the 1st of January 1970: now a 422 naming the field, as any other number."""
    srv, who = contract_server.server, _token("admin")(contract_server.server, contract_server.dsn)
    for path in (
        "/api/v1/cases?until=0",
        "/api/v1/areas/150623/stats?since=20261201",
        "/api/v1/vans/V01/track?until=0",
    ):
        r = srv.get(path, headers=who)
        assert r.status_code == 422 and r.json()["field"] in ("since", "until"), (path, r.text)
    assert srv.get("/api/v1/cases?since=0001-01-01&until=9999-12-31", headers=who).status_code == 200  # the ends
    assert srv.get("/api/v1/vans/V01/track?until=0001-01-01T00:00:00Z", headers=who).status_code == 422


def test_who_asks_is_known_before_the_body_is_read(contract_server: ContractServer) -> None:
    """No identity: 401 whatever the body; a role that may not write: 403 whatever the body."""
    url = contract_server.server.url
    for body, ctype in ((b"{not json", "application/json"), (b"\x80\x81", "application/json"), (b"a=1", "text/plain")):
        for path in ("/api/v1/cases", "/api/v1/dispatches", "/api/v1/vans/positions"):
            r = httpx.post(url + path, content=body, headers={"Content-Type": ctype}, timeout=30)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", (path, body, r.text)
    viewer = _token("viewer")(contract_server.server, contract_server.dsn)
    for path in ("/api/v1/cases", "/api/v1/dispatches", "/api/v1/vans/positions", "/api/v1/dispatches/1/end"):
        r = httpx.post(url + path, json={"no": "such field"}, headers=viewer, timeout=30)
        assert r.status_code == 403 and r.json()["error"] == "forbidden", (path, r.text)
    r = httpx.post(url + "/api/v1/cases", content=b"{not json", headers={**viewer, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"  # known caller: told what is wrong


def test_an_unreadable_body_is_a_400_in_the_one_shape(contract_server: ContractServer) -> None:
    admin = _token("admin")(contract_server.server, contract_server.dsn)
    r = httpx.post(
        contract_server.server.url + "/api/v1/dispatches",
        content=b"\x80\x81",  # not UTF-8
        headers={**admin, "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400 and r.json() == {
        "error": "bad_request",
        "message": "There was an error parsing the body",
        "field": "body",
    }

"""Bearer tokens: the `yitu token` commands, hashing, roles, area scope and masking."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import psycopg
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cli.tokens import token_group
from geodata.masking import mask_name, mask_phone, mask_text
from services.settings import Settings

from .cases_fixtures import auth, case_body, cases_settings, client, inner_point, inner_point_where, token  # noqa: F401
from .helpers import keyed

TOWN = "150623100"


def _cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(token_group, list(args), obj=settings)
    return result.exit_code, result.stdout, result.stderr


def test_token_create_list_revoke(cases_settings: Settings, demo_db: str) -> None:
    code, out, err = _cli(cases_settings, "create", "--role", "grid_worker", "--area", TOWN, "--name", "网格员 巴图")
    assert code == 0, err
    tok = out.strip()
    assert tok.startswith("yitu_") and len(tok) > 40 and "shown only now" in err
    with psycopg.connect(demo_db) as conn:
        row = conn.execute("SELECT token_hash, role, area_code FROM api_tokens WHERE name = '网格员 巴图'").fetchone()
        stored = conn.execute(
            "SELECT count(*) FROM api_tokens WHERE token_hash = %s OR name = %s", (tok, tok)
        ).fetchone()
    assert row == (hashlib.sha256(tok.encode()).hexdigest(), "grid_worker", TOWN)
    assert stored == (0,)  # only the hash is kept
    code, out, _ = _cli(cases_settings, "list")
    assert code == 0 and "网格员 巴图\tgrid_worker\t150623100" in out and tok not in out
    code, out, _ = _cli(cases_settings, "revoke", "网格员 巴图")
    assert code == 0 and "revoked 1" in out
    code, _, err = _cli(cases_settings, "revoke", "网格员 巴图")
    assert code == 1 and "no live token" in err


def test_token_create_refuses_bad_input(cases_settings: Settings) -> None:
    code, _, err = _cli(cases_settings, "create", "--role", "boss", "--name", "x")
    assert code == 2 and "--role" in err
    code, _, err = _cli(cases_settings, "create", "--role", "viewer", "--area", "999999", "--name", "x")
    assert code == 2 and "no area with code" in err
    code, _, err = _cli(cases_settings, "create", "--role", "viewer")
    assert code == 2 and "--name" in err


def test_a_revoked_token_stops_working(client: TestClient, cases_settings: Settings) -> None:
    _, out, _ = _cli(cases_settings, "create", "--role", "dispatcher", "--name", "temp")
    tok = out.strip()
    assert client.get("/api/v1/cases?limit=1", headers=auth(tok)).status_code == 200
    _cli(cases_settings, "revoke", "temp")
    r = client.get("/api/v1/cases?limit=1", headers=auth(tok))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_writes_and_reads_need_a_token(client: TestClient, demo_db: str) -> None:
    lon, lat, _ = inner_point(demo_db)
    assert client.post("/api/v1/cases", json=case_body(lon, lat)).status_code == 401
    assert client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(auth("yitu_nope"))).status_code == 401
    assert (
        client.post("/api/v1/cases", json=case_body(lon, lat), headers={"Authorization": "Basic eDp5"}).status_code
        == 401
    )
    assert client.get("/api/v1/cases").status_code == 401


def test_roles(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    lon, lat, _ = inner_point(demo_db)
    viewer, van, worker, dispatcher = (token(r) for r in ("viewer", "van", "grid_worker", "dispatcher"))
    assert client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(auth(viewer))).status_code == 403
    assert client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(auth(van))).status_code == 403
    code = client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(auth(worker))).json()["code"]
    r = client.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept"}, headers=auth(worker))
    assert r.status_code == 403 and r.json()["field"] == "action"
    assert (
        client.post(f"/api/v1/cases/{code}/transitions", json={"action": "accept"}, headers=auth(viewer)).status_code
        == 403
    )
    assert (
        client.post(
            f"/api/v1/cases/{code}/transitions", json={"action": "accept"}, headers=auth(dispatcher)
        ).status_code
        == 200
    )
    r = client.get(f"/api/v1/cases/{code}", headers=auth(worker)).json()
    assert r["allowed_actions"] == ["escalate", "close"]  # accepted: no dispatching for a grid worker


def test_a_grid_worker_reports_and_reads_only_inside_its_area(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    lon_in, lat_in, cell_in = inner_point(demo_db)
    with psycopg.connect(demo_db) as conn:
        other_town = conn.execute(
            "SELECT code FROM areas WHERE level = 2 AND code <> %s ORDER BY code LIMIT 1", (cell_in[:9],)
        ).fetchone()[0]
        n_before = conn.execute("SELECT count(*) FROM cases").fetchone()[0]
    lon_out, lat_out, _ = inner_point_where(demo_db, lambda cell: cell[:9] == other_town)
    worker = token("grid_worker", area=cell_in[:12])  # its village
    inside = client.post("/api/v1/cases", json=case_body(lon_in, lat_in), headers=keyed(auth(worker)))
    assert inside.status_code == 201
    outside = client.post("/api/v1/cases", json=case_body(lon_out, lat_out), headers=keyed(auth(worker)))
    assert outside.status_code == 403
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT count(*) FROM cases").fetchone()[0] == n_before + 1  # the refused one rolled back
    foreign = client.post(
        "/api/v1/cases", json=case_body(lon_out, lat_out), headers=keyed(auth(token("dispatcher")))
    ).json()
    # another town's case: as a code that does not exist (a 403 told the worker it existed)
    assert client.get(f"/api/v1/cases/{foreign['code']}", headers=auth(worker)).status_code == 404
    r = client.post(f"/api/v1/cases/{foreign['code']}/transitions", json={"action": "start"}, headers=auth(worker))
    assert (r.status_code, r.json()["field"]) == (404, "code")
    listed = client.get("/api/v1/cases?limit=500", headers=auth(worker)).json()
    assert listed["area"] == cell_in[:12] and listed["cases"]
    assert all(c["grid"][1] == cell_in[:12] for c in listed["cases"])
    assert client.get(f"/api/v1/cases?area={other_town}", headers=auth(worker)).status_code == 403
    assert client.get(f"/api/v1/areas/{other_town}/stats", headers=auth(worker)).status_code == 403
    assert client.get(f"/api/v1/areas/{cell_in[:12]}/stats", headers=auth(worker)).status_code == 200


def test_a_viewer_reads_with_personal_data_masked(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    lon, lat, cell = inner_point(demo_db)
    code = client.post("/api/v1/cases", json=case_body(lon, lat), headers=keyed(auth(token("dispatcher")))).json()[
        "code"
    ]
    viewer = token("viewer")
    case = client.get(f"/api/v1/cases/{code}", headers=auth(viewer)).json()
    assert [p["name"] for p in case["parties"]] == ["巴*", "乌****"]
    assert [p["phone"] for p in case["parties"]] == ["****5678", "****1111"]  # the last 4 digits only
    assert "巴图" not in case["description"] and "13812345678" not in case["description"]
    assert case["description"] == "巴*与乌****因草场边界发生争议，电话****5678"
    listed = client.get(f"/api/v1/areas/{cell}/cases", headers=auth(viewer)).json()["cases"]
    assert listed and all(re.fullmatch(r"\*+\d{4}", p["phone"]) for c in listed for p in c["parties"] if p.get("phone"))
    assert not any(c["parties"] and c["parties"][0]["name"] == "巴图" for c in listed)


def test_masking_helpers() -> None:
    assert mask_name("张三丰") == "张**" and mask_name("张三") == "张*" and mask_name("张") == "张"
    assert mask_phone("13812345678") == "****5678" and mask_phone("0477-1234567") == "****4567"
    assert mask_phone("81234567") == "****4567" and mask_phone("1234") == "****"
    assert mask_phone(mask_phone("13812345678")) == "****5678"  # masking twice changes nothing
    assert mask_text("张三丰电话13812345678，张三丰说", [{"name": "张三丰"}]) == "张**电话****5678，张**说"
    assert mask_text("座机0477-8123456或81234567", []) == "座机****3456或****4567"

"""geodata/suggest.py: whom a case could go to, best first — specialty, then level, then load, then
distance — among the roster's active entries that serve the case's area."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from geodata import suggest

LEVELS = ("grid", "village", "town", "banner")


def _mediator(
    conn: psycopg.Connection[Any], name: str, level: str, area: str, specialties: list[str], center: int | None
) -> str:
    row = conn.execute(
        """INSERT INTO mediators (name, level, area_code, specialties, center_id)
           VALUES (%s, %s, %s, %s, %s) RETURNING id""",
        (name, level, area, specialties, center),
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_candidates_come_by_specialty_then_level_then_load_then_distance(demo_db: str) -> None:
    with psycopg.connect(demo_db) as conn:
        code, ctype, level, town, lon, lat = conn.execute(
            """SELECT code, type, level, town_code, ST_X(geom), ST_Y(geom) FROM cases
               WHERE step IN ('reported', 'accepted') AND town_code IS NOT NULL ORDER BY id LIMIT 1"""
        ).fetchone()
        other_town = conn.execute(
            "SELECT code FROM areas WHERE level = 2 AND code <> %s ORDER BY code LIMIT 1", (town,)
        ).fetchone()[0]
        near, far = (
            conn.execute(
                "SELECT id FROM mediation_centers ORDER BY geom <-> ST_SetSRID(ST_MakePoint(%s, %s), 4326) LIMIT 1",
                (lon, lat),
            ).fetchone()[0],
            conn.execute(
                "SELECT id FROM mediation_centers "
                "ORDER BY geom <-> ST_SetSRID(ST_MakePoint(%s, %s), 4326) DESC LIMIT 1",
                (lon, lat),
            ).fetchone()[0],
        )
        assert near != far
        gap1 = LEVELS[LEVELS.index(level) + 1] if level != "banner" else "town"
        far_fit = _mediator(conn, "远而对口", level, town, [ctype], far)
        near_fit = _mediator(conn, "近而对口", level, town, [ctype], near)
        busy_fit = _mediator(conn, "对口但忙", level, town, [ctype], near)
        off_level = _mediator(conn, "对口异级", gap1, town, [ctype], near)
        no_specialty = _mediator(conn, "不对口", level, town, ["__none__"], near)
        _mediator(conn, "别镇的", level, other_town, [ctype], near)  # serves another town: no candidate
        gone = _mediator(conn, "已停用", level, town, [ctype], near)
        conn.execute("UPDATE mediators SET active = false WHERE id = %s", (int(gone),))
        unit = conn.execute(
            "INSERT INTO units (name, kind, level, area_code, specialties) "
            "VALUES ('某镇调委会', 'committee', %s, %s, %s) RETURNING id",
            (level, town, [ctype]),
        ).fetchone()[0]
        # Two open cases already with busy_fit: its load.
        conn.execute(
            """UPDATE cases SET assignee = %s WHERE id IN (
                   SELECT id FROM cases WHERE step IN ('accepted', 'dispatched', 'handling') AND code <> %s
                   ORDER BY id LIMIT 2)""",
            (Jsonb({"kind": "mediator", "id": busy_fit, "name": "对口但忙"}), code),
        )
        ours = {far_fit, near_fit, busy_fit, off_level, no_specialty}
        rows = suggest.candidates(conn, code, "mediator", limit=500)
        order = [r["id"] for r in rows if r["id"] in ours]
        assert order == [near_fit, far_fit, busy_fit, off_level, no_specialty]
        by_id = {r["id"]: r for r in rows}
        assert by_id[busy_fit]["load"] == 2 and by_id[near_fit]["load"] == 0
        assert by_id[near_fit]["distance_m"] < by_id[far_fit]["distance_m"]
        assert by_id[off_level]["level_gap"] == 1 and by_id[no_specialty]["specialty"] is False
        assert {r["name"] for r in rows}.isdisjoint({"别镇的", "已停用"})
        # Both kinds by default; the unit is one of them, and an assignee is made from an active entry only.
        both = suggest.candidates(conn, code, limit=500)
        assert ("unit", str(unit)) in {(r["kind"], r["id"]) for r in both}
        assert suggest.assignee(conn, "mediator", near_fit) == {"kind": "mediator", "id": near_fit, "name": "近而对口"}
        assert suggest.assignee(conn, "mediator", gone) is None
        assert suggest.assignee(conn, "van", "V01") is None
        assert suggest.assignee(conn, "mediator", "²") is None  # str.isdigit took it, int() refused it
        assert suggest.assignee(conn, "mediator", f"{near_fit}\u0662") is None  # a non-ASCII digit
        assert suggest.candidates(conn, "150000-20000101-000000") == []

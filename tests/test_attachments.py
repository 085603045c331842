"""Attachments (issue 15 items 3 and 4): photos and agreements on a case, and every bad input refused.

Real PostGIS, Redis and filesystem: an app on a clone of the seeded demo, its blob store in the
test's own folder. What is checked besides the happy path: the type judged from the bytes (a
script named .jpg), a corrupt, an empty, an oversized file, a broken multipart body, the 21st file,
the area scope (404), the roles that see only the list (403 for content), location data gone from
every served copy, retries stored once, and an upload cut off halfway leaving nothing behind.
"""

from __future__ import annotations

import io
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from callbacks import wall
from dashboard.app import create_app
from geodata import blobs, media
from geodata.attachments import MAX_FILE_BYTES, MAX_PER_CASE
from services.identity import Principal, acting_as
from services.settings import Settings

from .cases_fixtures import auth, case_body, inner_point, settings_for, token  # noqa: F401
from .conftest import LiveServer, pair_screen
from .helpers import wait_for

GPS_IFD = 0x8825
LAT, LON = (40, 1, 2), (108, 3, 4)


@pytest.fixture
def blob_dir(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def settings(demo_db: str, redis_url: str, tmp_path: Path, blob_dir: Path) -> Settings:
    return settings_for(demo_db, redis_url, tmp_path, blob_dir=blob_dir)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=True) as c:
        yield c


# --- files made here -------------------------------------------------------------------------------


def jpeg_with_gps(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A JPEG whose EXIF holds a GPS position (what a phone's camera writes), and an orientation."""
    exif = Image.Exif()
    exif[0x0112] = 1  # orientation: upright
    exif[0x010F] = "TestPhone"  # make
    exif[GPS_IFD] = {1: "N", 2: LAT, 3: "E", 4: LON}
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG", exif=exif)
    data = out.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD), "the test photo carries GPS"
    return data


def png(size: tuple[int, int] = (40, 30), color: tuple[int, int, int, int] = (10, 120, 200, 255)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, color).save(out, format="PNG")
    return out.getvalue()


def webp() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (30, 20), (0, 200, 0)).save(out, format="WEBP", exif=_gps_exif())
    return out.getvalue()


def heic() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 32), (120, 60, 200)).save(out, format="HEIF", exif=_gps_exif())
    return out.getvalue()


def _gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[GPS_IFD] = {1: "N", 2: LAT, 3: "E", 4: LON}
    return exif


XMP_GPS = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="40,1.2N" '
    b'exif:GPSLongitude="108,3.4E"/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)


def pdf_with_xmp() -> bytes:
    """A small valid PDF whose catalog names an uncompressed XMP stream holding a GPS position."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /Metadata 4 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        b"<< /Type /Metadata /Subtype /XML /Length %d >>\nstream\n" % len(XMP_GPS) + XMP_GPS + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _text(component: Any) -> str:
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


# --- helpers --------------------------------------------------------------------------------------------


def new_case(client: TestClient, tok: str, dsn: str, offset: int = 0) -> dict[str, Any]:
    lon, lat, _ = inner_point(dsn, offset=offset)
    r = client.post(
        "/api/v1/cases", json=case_body(lon, lat), headers={**auth(tok), "Idempotency-Key": uuid.uuid4().hex}
    )
    assert r.status_code == 201, r.text
    return r.json()


def upload(
    client: TestClient, tok: str, code: str, *files: tuple[str, bytes, str], key: str | None = None
) -> httpx.Response:
    headers = auth(tok) | ({"Idempotency-Key": key} if key else {})
    return client.post(
        f"/api/v1/cases/{code}/attachments",
        files=[("file", (name, data, ctype)) for name, data, ctype in files],
        headers=headers,
    )


def rows(dsn: str, code: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM attachments a JOIN cases c ON c.id = a.case_id WHERE c.code = %s", (code,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def audit_rows(dsn: str, code: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT e.action, e.from_step, e.to_step, e.actor_kind, e.data FROM case_events e
               JOIN cases c ON c.id = e.case_id WHERE c.code = %s AND e.action = 'attachment' ORDER BY e.id""",
            (code,),
        ).fetchall()


def attached_events(dsn: str, code: str) -> list[dict[str, Any]]:
    """The live events an upload to ``code`` wrote to the outbox (with its rows, in their transaction)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT event FROM outbox WHERE type = 'case.attached' AND event->>'code' = %s ORDER BY seq", (code,)
        ).fetchall()
    return [r[0] for r in rows]


def stored_blobs(blob_dir: Path) -> list[str]:
    return list(blobs.LocalBlobStore(blob_dir).addresses())


def staging_left(blob_dir: Path) -> list[Path]:
    return blobs.LocalBlobStore(blob_dir).staging_files()


def has_gps(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as im:
        return bool(im.getexif().get_ifd(GPS_IFD)) or b"GPS" in data


# --- the happy path -----------------------------------------------------------------------------------


def test_photos_are_stored_listed_and_served_without_location(
    client: TestClient, token: Callable[..., str], demo_db: str, blob_dir: Path
) -> None:
    tok = token("grid_worker")
    case = new_case(client, tok, demo_db)
    photo = jpeg_with_gps()
    r = upload(client, tok, case["code"], ("IMG_0001.jpg", photo, "image/jpeg"), ("map.png", png(), "image/png"))
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["case"] == case["code"] and out["count"] == 2 and out["max"] == MAX_PER_CASE
    first, second = out["attachments"]
    assert first["kind"] == "image" and first["media_type"] == "image/jpeg" and first["size"] == len(photo)
    assert (first["width"], first["height"]) == (64, 48) and first["filename"] == "IMG_0001.jpg"
    assert first["uploaded_by"]["role"] == "grid_worker" and first["uploaded_by"]["kind"] == "token"
    assert first["created_at"] and first["thumbnail_url"] == f"/api/v1/attachments/{first['id']}/thumbnail"
    assert second["media_type"] == "image/png"

    listed = client.get(f"/api/v1/cases/{case['code']}/attachments", headers=auth(tok)).json()
    assert [a["id"] for a in listed["attachments"]] == [first["id"], second["id"]]

    served = client.get(first["url"], headers=auth(tok))
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert not has_gps(served.content) and b"Exif" not in served.content
    with Image.open(io.BytesIO(served.content)) as im:
        assert im.size == (64, 48) and not im.getexif()
    thumb = client.get(first["thumbnail_url"], headers=auth(tok))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert not has_gps(thumb.content)
    png_served = client.get(second["url"], headers=auth(tok))
    assert png_served.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(png_served.content)) as im:
        assert im.mode == "RGBA" and im.size == (40, 30)

    original = client.get(first["url"] + "?original=true", headers=auth(tok))  # a role that sees personal data
    assert original.status_code == 200 and original.content == photo and has_gps(original.content)

    # one audit row on the case for the upload; the step does not change
    (action, from_step, to_step, kind, data), *more = audit_rows(demo_db, case["code"])
    assert not more and action == "attachment" and from_step == to_step == case["step"] and kind == "token"
    assert [a["id"] for a in data["attachments"]] == [first["id"], second["id"]]
    assert client.get(f"/api/v1/cases/{case['code']}", headers=auth(tok)).json()["step"] == case["step"]
    # one live event: a screen showing the case redraws it; no file name, no personal data in it
    (event,) = attached_events(demo_db, case["code"])
    assert event["count"] == 2 and event["step"] == case["step"] and event["grid"] == case["grid"]
    assert "IMG_0001" not in str(event) and "13812345678" not in str(event)
    # original, served copy and thumbnail of each, content-addressed; nothing left in staging
    assert media.sniff(photo) == "image/jpeg"
    assert blobs.address_of(photo) in stored_blobs(blob_dir) and len(stored_blobs(blob_dir)) == 6
    assert staging_left(blob_dir) == []


def test_heic_webp_and_pdf_are_judged_and_served_without_location(
    client: TestClient, token: Callable[..., str], demo_db: str
) -> None:
    tok = token("dispatcher")
    case = new_case(client, tok, demo_db, offset=3)
    pdf = pdf_with_xmp()
    r = upload(
        client,
        tok,
        case["code"],
        ("IMG_0002.HEIC", heic(), "application/octet-stream"),  # what a phone often declares
        ("x.webp", webp(), "image/webp"),
        ("调解协议书.pdf", pdf, "application/pdf"),
    )
    assert r.status_code == 201, r.text
    h, w, p = r.json()["attachments"]
    assert (h["media_type"], h["served_type"]) == ("image/heic", "image/jpeg")
    assert (w["media_type"], p["media_type"], p["kind"]) == ("image/webp", "application/pdf", "pdf")
    assert p["thumbnail_url"] is None and p["filename"] == "调解协议书.pdf"
    heic_served = client.get(h["url"], headers=auth(tok))
    assert heic_served.headers["content-type"] == "image/jpeg" and not has_gps(heic_served.content)
    webp_served = client.get(w["url"], headers=auth(tok))
    assert webp_served.headers["content-type"] == "image/webp" and not has_gps(webp_served.content)
    pdf_served = client.get(p["url"], headers=auth(tok))
    assert pdf_served.headers["content-type"] == "application/pdf"
    assert len(pdf_served.content) == len(pdf) and b"GPSLatitude" not in pdf_served.content
    assert pdf_served.content.startswith(b"%PDF-1.7") and pdf_served.content.rstrip().endswith(b"%%EOF")
    assert b"GPSLatitude" in client.get(p["url"] + "?original=true", headers=auth(tok)).content
    assert client.get(p["url"] + "/thumbnail", headers=auth(tok)).status_code == 404

    # the wall's case card (and the dispatch page's, the same card) says they exist
    svc = client.app.state.services  # type: ignore[attr-defined]
    with acting_as(Principal(1, "wall", "screen", None, kind="screen")):
        card = _text(wall.case_card(svc, case["code"], "zh-CN"))
        assert "附件 3 个（照片 2，文件 1）" in card
        assert "3 attachments (2 photos, 1 documents)" in _text(wall.case_card(svc, case["code"], "en"))


# --- bad input ------------------------------------------------------------------------------------------


def _refused(r: httpx.Response, status: int, field: str = "file") -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field, body
    return body


def test_bad_files_are_refused_naming_the_field_and_nothing_is_kept(
    client: TestClient, token: Callable[..., str], demo_db: str, blob_dir: Path
) -> None:
    tok = token("grid_worker")
    code = new_case(client, tok, demo_db, offset=1)["code"]
    url = f"/api/v1/cases/{code}/attachments"
    photo = jpeg_with_gps()

    big = b"\xff\xd8\xff" + b"\x00" * MAX_FILE_BYTES  # one byte over 10 MiB
    assert "MiB" in _refused(upload(client, tok, code, ("big.jpg", big, "image/jpeg")), 413)["message"]
    script = b"#!/bin/sh\nrm -rf / --no-preserve-root\n"
    body = _refused(upload(client, tok, code, ("photo.jpg", script, "image/jpeg")), 422)
    assert "judged from its content" in body["message"]
    html = b"<html><script>alert(1)</script></html>"
    _refused(upload(client, tok, code, ("ok.png", html, "image/png")), 422)
    corrupt = photo[: len(photo) // 2]  # a photo cut in half
    assert "decode" in _refused(upload(client, tok, code, ("half.jpg", corrupt, "image/jpeg")), 422)["message"]
    garbled = photo[:200] + bytes(len(photo) - 200)
    _refused(upload(client, tok, code, ("zeros.jpg", garbled, "image/jpeg")), 422)
    assert "empty" in _refused(upload(client, tok, code, ("empty.jpg", b"", "image/jpeg")), 422)["message"]
    half_pdf = pdf_with_xmp()[:150]
    _refused(upload(client, tok, code, ("cut.pdf", half_pdf, "application/pdf")), 422)
    # one good file and one bad: the whole request is refused, the good one is not kept either
    _refused(upload(client, tok, code, ("good.jpg", photo, "image/jpeg"), ("bad.jpg", script, "image/jpeg")), 422)

    # a wrong multipart body: no file field, another field, no boundary, a broken body
    _refused(client.post(url, data={"note": "x"}, files={"other": ("a.jpg", photo)}, headers=auth(tok)), 422)
    _refused(client.post(url, data={"note": "x"}, headers={**auth(tok), "Content-Type": "multipart/form-data"}), 422)
    broken = b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n' + photo
    r = client.post(url, content=broken, headers={**auth(tok), "Content-Type": "multipart/form-data; boundary=XYZ"})
    _refused(r, 422)
    none = b"--XYZ--\r\n"
    r = client.post(url, content=none, headers={**auth(tok), "Content-Type": "multipart/form-data; boundary=XYZ"})
    _refused(r, 422)
    _refused(client.post(url, json={"file": "x"}, headers=auth(tok)), 415, "Content-Type")
    # too many in one request
    eleven = [(f"{i}.png", png(color=(i, 0, 0, 255)), "image/png") for i in range(11)]
    _refused(upload(client, tok, code, *eleven), 422)

    assert rows(demo_db, code) == 0 and audit_rows(demo_db, code) == []
    assert stored_blobs(blob_dir) == [] and staging_left(blob_dir) == []


def test_the_21st_file_on_a_case_is_refused(
    client: TestClient, token: Callable[..., str], demo_db: str, blob_dir: Path
) -> None:
    tok = token("dispatcher")
    code = new_case(client, tok, demo_db, offset=2)["code"]
    for batch in range(2):
        files = [(f"{batch}-{i}.png", png(color=(batch, i, 9, 255)), "image/png") for i in range(10)]
        assert upload(client, tok, code, *files).status_code == 201
    body = _refused(upload(client, tok, code, ("21.png", png(color=(99, 9, 9, 255)), "image/png")), 409)
    assert body["max"] == MAX_PER_CASE and body["count"] == MAX_PER_CASE
    assert rows(demo_db, code) == MAX_PER_CASE and len(audit_rows(demo_db, code)) == 2
    assert staging_left(blob_dir) == []


# --- who may see what -------------------------------------------------------------------------------


def _other_town(dsn: str, town: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT min(code) FROM areas WHERE level = 2 AND code <> %s", (town,)).fetchone()
    assert row is not None
    return str(row[0])


def test_scope_and_roles(client: TestClient, token: Callable[..., str], demo_db: str) -> None:
    admin = token("admin")
    case = new_case(client, admin, demo_db, offset=4)
    code = case["code"]
    town = case["grid"][2]
    att = upload(client, admin, code, ("a.jpg", jpeg_with_gps(), "image/jpeg")).json()["attachments"][0]
    url = att["url"]

    # inside the area: a grid worker of the town lists, fetches and uploads
    local = token("grid_worker", area=town)
    assert client.get(f"/api/v1/cases/{code}/attachments", headers=auth(local)).json()["count"] == 1
    assert client.get(url, headers=auth(local)).status_code == 200

    # outside the area, or unknown: not found, for the list, the content, the thumbnail and an upload
    outsider = token("grid_worker", area=_other_town(demo_db, town))
    for path in (f"/api/v1/cases/{code}/attachments", url, url + "/thumbnail", url + "?original=true"):
        _refused(client.get(path, headers=auth(outsider)), 404, "code" if "cases" in path else "attachment_id")
    _refused(upload(client, outsider, code, ("b.png", png(), "image/png")), 404, "code")
    unknown = "150623-20200101-999999"
    _refused(client.get(f"/api/v1/cases/{unknown}/attachments", headers=auth(admin)), 404, "code")
    _refused(upload(client, admin, unknown, ("b.png", png(), "image/png")), 404, "code")
    _refused(client.get("/api/v1/attachments/999999999", headers=auth(admin)), 404, "attachment_id")

    # a viewer sees that the attachment exists, not its content, and uploads nothing
    viewer = token("viewer")
    listed = client.get(f"/api/v1/cases/{code}/attachments", headers=auth(viewer)).json()
    (item,) = listed["attachments"]
    assert item["id"] == att["id"] and item["url"] is None and item["thumbnail_url"] is None
    assert item["original_url"] is None
    assert att["filename"] == "a.jpg" and item["filename"] is None  # the client's name may name the parties
    for path in (url, url + "/thumbnail", url + "?original=true"):
        _refused(client.get(path, headers=auth(viewer)), 403, "attachment_id")
    assert upload(client, viewer, code, ("b.png", png(), "image/png")).status_code == 403

    # a paired wall screen: the list, no content, no upload
    screen = TestClient(client.app)  # the same started app (no second lifespan), its own cookie jar
    pair_screen(screen, demo_db)
    assert screen.get(f"/api/v1/cases/{code}/attachments").json()["count"] == 1
    assert screen.get(url).status_code == 403 and screen.get(url + "/thumbnail").status_code == 403
    r = screen.post(
        f"/api/v1/cases/{code}/attachments",
        files={"file": ("b.png", png(), "image/png")},
        headers={"Origin": "http://testserver"},
    )
    assert r.status_code == 403

    # a van crew: only the case its van is sent to
    van = token("van", name="V01")
    _refused(client.get(f"/api/v1/cases/{code}/attachments", headers=auth(van)), 404, "code")
    _refused(client.get(url, headers=auth(van)), 404, "attachment_id")
    _refused(upload(client, van, code, ("b.png", png(), "image/png")), 404, "code")
    with psycopg.connect(demo_db, autocommit=True) as conn:  # the van is sent to the case
        conn.execute("""UPDATE cases SET assignee = '{"kind": "van", "id": "V01"}' WHERE code = %s""", (code,))
    assert client.get(url, headers=auth(van)).status_code == 200
    assert upload(client, van, code, ("signed.png", png(), "image/png")).status_code == 201
    assert rows(demo_db, code) == 2


# --- retries -----------------------------------------------------------------------------------------


def test_a_retry_with_the_same_key_stores_once(
    client: TestClient, token: Callable[..., str], demo_db: str, blob_dir: Path
) -> None:
    tok = token("grid_worker")
    code = new_case(client, tok, demo_db, offset=5)["code"]
    key = uuid.uuid4().hex
    files = [("a.jpg", jpeg_with_gps(), "image/jpeg"), ("b.png", png(), "image/png")]
    first = upload(client, tok, code, *files, key=key)
    assert first.status_code == 201 and first.json()["count"] == 2
    assert upload(client, tok, code, ("later.png", png(color=(5, 5, 5, 255)), "image/png")).status_code == 201
    again = upload(client, tok, code, *files, key=key)  # the same answer, whatever came since
    assert again.status_code == 200 and again.headers["idempotency-replayed"] == "true"
    assert again.json() == first.json()
    assert rows(demo_db, code) == 3 and len(audit_rows(demo_db, code)) == 2
    assert [e["count"] for e in attached_events(demo_db, code)] == [2, 1]  # the replay pushed nothing

    other = upload(client, tok, code, ("c.png", png(color=(1, 2, 3, 255)), "image/png"), key=key)
    _refused(other, 422, "Idempotency-Key")
    other_case = new_case(client, tok, demo_db, offset=6)["code"]
    _refused(upload(client, tok, other_case, *files, key=key), 422, "Idempotency-Key")
    # another caller's key of the same text is its own
    assert upload(client, token("grid_worker", name="other"), code, *files, key=key).status_code == 201
    for hostile in ("has space", "x" * 201, "tab\there"):
        _refused(upload(client, tok, code, *files, key=hostile), 422, "Idempotency-Key")
    assert rows(demo_db, code) == 5 and rows(demo_db, other_case) == 0
    assert staging_left(blob_dir) == []


def test_two_uploads_with_one_key_at_once_store_once(
    client: TestClient, token: Callable[..., str], demo_db: str, blob_dir: Path
) -> None:
    tok = token("grid_worker")
    code = new_case(client, tok, demo_db, offset=7)["code"]
    key = uuid.uuid4().hex
    files = [(f"{i}.png", png(color=(i, 7, 7, 255)), "image/png") for i in range(3)]
    answers: list[httpx.Response] = []
    go = threading.Barrier(4)

    def send() -> None:
        go.wait()
        answers.append(upload(client, tok, code, *files, key=key))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 201]
    assert len({str(r.json()) for r in answers}) == 1
    assert rows(demo_db, code) == 3 and len(audit_rows(demo_db, code)) == 1
    assert staging_left(blob_dir) == [] and len(stored_blobs(blob_dir)) == 9  # 3 files: original, copy, thumbnail


# --- an upload cut off halfway -------------------------------------------------------------------------


def test_an_upload_cut_off_halfway_leaves_nothing(
    live_server: Callable[..., LiveServer], demo_db: str, redis_url: str, tmp_path: Path, token: Callable[..., str]
) -> None:
    blob_dir = tmp_path / "served-blobs"
    srv = live_server(demo_db, redis_url, YITU_BLOB_DIR=str(blob_dir), YITU_SCHEDULER_INTERVAL="0")
    tok = token("grid_worker")
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        lon, lat, _ = inner_point(demo_db, offset=8)
        r = http.post(
            "/api/v1/cases", json=case_body(lon, lat), headers={**auth(tok), "Idempotency-Key": uuid.uuid4().hex}
        )
        assert r.status_code == 201, r.text
        code = r.json()["code"]

    photo = jpeg_with_gps(size=(1200, 900))
    big = photo + b"\x00" * (2 * 1024 * 1024)  # room to stop in the middle of it
    boundary = "cutcutcut"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    body = head + big + f"\r\n--{boundary}--\r\n".encode()
    port = int(srv.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            (
                f"POST /api/v1/cases/{code}/attachments HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {tok}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
        )
        sock.sendall(body[: len(body) // 2])
        wait_for(lambda: blobs.LocalBlobStore(blob_dir).staging_files(), timeout=30, what="the upload to start")
    # the connection is closed with half the body sent: the server lets go of everything
    wait_for(lambda: not blobs.LocalBlobStore(blob_dir).staging_files(), timeout=30, what="the staging file to go")
    wait_for(lambda: "upload cut off by the client" in srv.log(), timeout=30, what="the server to see the cut")
    assert rows(demo_db, code) == 0 and audit_rows(demo_db, code) == []
    assert stored_blobs(blob_dir) == []
    # and the same upload sent whole afterwards is stored
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        r = http.post(
            f"/api/v1/cases/{code}/attachments", files={"file": ("a.jpg", photo, "image/jpeg")}, headers=auth(tok)
        )
        assert r.status_code == 201, r.text
    assert rows(demo_db, code) == 1 and len(stored_blobs(blob_dir)) == 3


# --- the blob store ---------------------------------------------------------------------------------------


def test_the_local_blob_store_is_content_addressed_and_never_half_written(tmp_path: Path) -> None:
    store = blobs.LocalBlobStore(tmp_path / "b")
    address, new = store.put(b"hello")
    assert address == blobs.address_of(b"hello") and new
    assert store.put(b"hello") == (address, False)
    assert store.exists(address) and store.path_of(address).parent.parent.name == address[:2]
    with store.open(address) as f:
        assert f.read() == b"hello"
    assert list(store.addresses()) == [address]
    with store.stage() as staged:
        staged.write(b"never committed")
        assert len(store.staging_files()) == 1
    assert store.staging_files() == [] and list(store.addresses()) == [address]
    assert store.delete(address) and not store.exists(address) and not store.delete(address)
    with pytest.raises(blobs.BlobNotFound):
        store.open(address)
    with pytest.raises(ValueError):
        store.path_of("../../etc/passwd")

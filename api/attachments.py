"""Attachments: photos from the field and signed agreements, on a case.

- ``POST /api/v1/cases/{code}/attachments``: multipart, one or more files in the field ``file``
  (at most :data:`MAX_FILES_PER_REQUEST` a request, :data:`MAX_FILE_BYTES` each, and
  :data:`geodata.attachments.MAX_PER_CASE` on a case). The body is read as it streams: each file
  goes straight into a staging file of the blob store, hashed on the way, and a file passing its
  size is refused (413 naming ``file``) before the rest is read. What a file is comes from its
  bytes (geodata/media.py), never its name or declared type. Then, in one transaction with the
  case's row locked: the rows, the audit row on the case, the blobs renamed into the store. A
  request cut off, refused or failed leaves no row, no blob and no staging file.
- ``GET /api/v1/cases/{code}/attachments``: the list (id, kind, size, who, when, the URLs), for
  anyone who may see the case; ``GET /api/v1/attachments/{id}`` and ``…/thumbnail``: the content,
  for the roles that may see it (geodata/masking.py: viewers and wall screens get 403). Every copy
  served is the one without location data; ``?original=true`` gives the file as uploaded, to the
  roles that may see personal data, logged as a read of personal data.
- A case outside the caller's area (or, for a van crew, not its van's case) is not found (404):
  the scope is in the SQL (geodata/attachments.py).
- ``Idempotency-Key`` (optional, scoped to the caller): the same key with the same case and files
  replays the first answer (200, ``Idempotency-Replayed: true``) and stores nothing; the same key
  with anything else is a 422 naming the header.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from api import errors
from api.auth import Principal, principal
from api.cases import CODE, client_address
from api.deps import role_in, services
from api.idempotency import OptionalKey
from api.openapi import READ, WRITE, answers
from geodata import attachments as store
from geodata import masking, media
from geodata.blobs import BlobNotFound, LocalBlobStore, Staged
from geodata.db import writing
from geodata.errors import OutcomeUnknown
from geodata.queries import iso
from services import audit
from services.runtime import Services

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

log = logging.getLogger("yitu.attachments")

MAX_FILE_BYTES = store.MAX_FILE_BYTES
MAX_FILES_PER_REQUEST = store.MAX_FILES_PER_REQUEST
FIELD = "file"
# Who may add a file to a case: the roles that handle cases (a van crew: its van's case only).
UPLOADERS = frozenset({"admin", "dispatcher", "grid_worker", "van"})

router = APIRouter(tags=["attachments"])

Who = Annotated[Principal, Depends(principal)]


# --- the answers' shapes (documented; the routes build them as dicts) -------------------------------


class Uploader(BaseModel):
    kind: str
    id: int | None
    name: str
    role: str


class AttachmentOut(BaseModel):
    id: int
    case: str
    kind: str
    media_type: str
    served_type: str
    size: int
    width: int | None
    height: int | None
    filename: str | None = Field(
        description="The name the file was sent with; null for the roles that do not see the content."
    )
    sha256: str
    uploaded_by: Uploader
    created_at: str
    url: str | None
    thumbnail_url: str | None
    original_url: str | None


class AttachmentsOut(BaseModel):
    case: str
    count: int = Field(description="How many attachments this answer lists (a list: all of the case's)")
    max: int = Field(description="How many a case may have")
    attachments: list[AttachmentOut]


def blob_store(svc: Services) -> LocalBlobStore:
    """The process's blob store (the local filesystem: ``YITU_BLOB_DIR``, else ``<home>/blobs``)."""
    return LocalBlobStore(svc.settings.blob_path())


def _case(conn: psycopg.Connection, code: str, who: Principal, *, lock: bool = False) -> dict[str, Any]:
    """The case ``code`` if ``who`` may see it (its area in the SQL, a van crew's case by
    Principal.sees_case); 404 otherwise, unknown or not: outside the scope nothing is found."""
    case = store.case_for(conn, code, who.area, lock=lock)
    if case is None or not who.sees_case(case):
        raise errors.NotFound(f"no case with code {code}", field="code")
    return case


def _item(row: dict[str, Any], who: Principal) -> dict[str, Any]:
    content = masking.sees_attachment_content(who.role)
    url = f"/api/v1/attachments/{row['id']}"
    return {
        "id": row["id"],
        "case": row["case_code"],
        "kind": row["kind"],
        "media_type": row["media_type"],
        "served_type": row["served_type"],
        "size": row["size"],
        "width": row["width"],
        "height": row["height"],
        # the client's own name for the file may name the parties ("张三身份证.jpg"): only to the
        # readers of its content, as the content
        "filename": row["filename"] if content else None,
        "sha256": row["sha256"],
        "uploaded_by": {
            "kind": row["actor_kind"],
            "id": row["actor_id"],
            "name": row["actor_name"],
            "role": row["actor_role"],
        },
        "created_at": iso(row["created_at"]),
        "url": url if content else None,
        "thumbnail_url": url + "/thumbnail" if content and row["thumb_sha256"] else None,
        "original_url": url + "?original=true" if masking.sees_personal_data(who.role) else None,
    }


def _listing(code: str, rows: list[dict[str, Any]], total: int, who: Principal) -> dict[str, Any]:
    return {"case": code, "count": total, "max": store.MAX_PER_CASE, "attachments": [_item(r, who) for r in rows]}


# --- reading the multipart body as it streams -----------------------------------------------------------


@dataclass
class Upload:
    """One file of the request: its staging file in the blob store and the name the client gave it."""

    staged: Staged
    filename: str | None


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    upload: Upload | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def _clean_filename(raw: bytes | None) -> str | None:
    """The client's file name, for showing: its last path part, printable, at most 200 characters."""
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C").strip()
    return text[:200] or None


class _Reader:
    """The multipart body of an upload, parsed while it streams, each file written to the blob store's staging."""

    def __init__(self, blobs: LocalBlobStore) -> None:
        self.blobs = blobs
        self.uploads: list[Upload] = []
        self._part = _Part()
        self._name = b""
        self._value = b""
        self.ended = False  # the closing boundary was read

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_part_data": self._data,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_end": self._end,
        }

    def _end(self) -> None:
        self.ended = True

    def _begin(self) -> None:
        self._part = _Part()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._part.headers.append((self._name.lower(), self._value))
        self._name, self._value = b"", b""

    def _headers_finished(self) -> None:
        disposition = next((v for k, v in self._part.headers if k == b"content-disposition"), b"")
        _, options = parse_options_header(disposition)
        name = options.get(b"name")
        if name is None:
            raise errors.Invalid("a multipart part without a name: send the files in the field file", field=FIELD)
        self._part.name = name.decode("utf-8", errors="replace")
        if self._part.name != FIELD:
            raise errors.Invalid(
                f"unknown multipart field {self._part.name[:50]!r}: send the files in the field file", field=FIELD
            )
        if len(self.uploads) >= MAX_FILES_PER_REQUEST:
            raise errors.Invalid(f"at most {MAX_FILES_PER_REQUEST} files in one request", field=FIELD)
        upload = Upload(self.blobs.stage(), _clean_filename(options.get(b"filename")))
        self.uploads.append(upload)
        self._part.upload = upload

    def _data(self, data: bytes, start: int, end: int) -> None:
        upload = self._part.upload
        if upload is None:
            raise errors.Invalid("file data before its part's headers", field=FIELD)
        if upload.staged.size + (end - start) > MAX_FILE_BYTES:
            raise errors.PayloadTooLarge(
                f"file {len(self.uploads)} ({upload.filename or 'no name'}) is larger than "
                f"{MAX_FILE_BYTES // (1024 * 1024)} MiB",
                field=FIELD,
                extra={"max": MAX_FILE_BYTES},
            )
        upload.staged.write(data[start:end])

    def discard(self) -> None:
        for upload in self.uploads:
            upload.staged.discard()


def _boundary(request: Request) -> bytes:
    ctype = request.headers.get("content-type", "")
    kind, options = parse_options_header(ctype)
    if kind != b"multipart/form-data":
        raise errors.UnsupportedMediaType(
            f"send the files as multipart/form-data in the field file (got {ctype.split(';')[0] or 'no content type'})",
            field="Content-Type",
        )
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise errors.Invalid("a multipart body needs its boundary (Content-Type: …; boundary=…)", field=FIELD)
    return boundary


async def _read_files(request: Request, blobs: LocalBlobStore) -> list[Upload]:
    """The request's files, staged; raises (and removes what it staged) on any refusal or a cut-off body."""
    boundary = _boundary(request)
    reader = _Reader(blobs)
    parser = MultipartParser(boundary, reader.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if not reader.ended:
            raise errors.Invalid("the multipart body ends before its closing boundary (cut off?)", field=FIELD)
        if not reader.uploads:
            raise errors.Invalid("no file: send one or more files in the multipart field file", field=FIELD)
        for i, upload in enumerate(reader.uploads, 1):
            if upload.staged.size == 0:
                raise errors.Invalid(f"file {i} ({upload.filename or 'no name'}) is empty", field=FIELD)
            upload.staged.finish()
    except MultipartParseError as exc:
        reader.discard()
        raise errors.Invalid(f"the multipart body cannot be read: {exc}", field=FIELD) from None
    except BaseException:  # a refusal, a client gone mid-body (ClientDisconnect), the body cap: nothing kept
        reader.discard()
        raise
    return reader.uploads


# --- storing ------------------------------------------------------------------------------------------------


def _request_hash(code: str, uploads: list[Upload]) -> str:
    text = "\n".join([code, *(u.staged.address for u in uploads)])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Prepared:
    """A judged file and its copies, staged: nothing of it is stored until the transaction commits."""

    upload: Upload
    judged: media.Judged
    served: Staged
    served_type: str
    thumb: Staged | None

    def discard(self) -> None:
        for staged in (self.upload.staged, self.served, self.thumb):
            if staged is not None:
                staged.discard()


def _prepare(blobs: LocalBlobStore, uploads: list[Upload]) -> list[_Prepared]:
    """Judge every file and make its served copy and thumbnail (staged); refuses the whole request
    at the first file that is not what it must be."""
    out: list[_Prepared] = []
    try:
        for i, upload in enumerate(uploads, 1):
            label = f"file {i} ({upload.filename or 'no name'})"
            judged = media.judge(upload.staged.path, label)
            data, served_type = media.served_copy(upload.staged.path, judged)
            served = blobs.stage()
            served.write(data)
            thumb = None
            if judged.kind == "image":
                thumb = blobs.stage()
                thumb.write(media.thumbnail(data))
            out.append(_Prepared(upload, judged, served, served_type, thumb))
    except BaseException:
        for p in out:
            p.served.discard()
            if p.thumb is not None:
                p.thumb.discard()
        raise
    return out


def _new_rows(prepared: list[_Prepared]) -> list[store.NewAttachment]:
    return [
        store.NewAttachment(
            sha256=p.upload.staged.address,
            served_sha256=p.served.address,
            thumb_sha256=p.thumb.address if p.thumb is not None else None,
            kind=p.judged.kind,
            media_type=p.judged.media_type,
            served_type=p.served_type,
            size=p.upload.staged.size,
            served_size=p.served.size,
            width=p.judged.width,
            height=p.judged.height,
            filename=p.upload.filename,
        )
        for p in prepared
    ]


def _replay(rows: list[dict[str, Any]], code: str, request_hash: str) -> list[dict[str, Any]]:
    """The rows of an earlier upload with this key, if this request is its retry; 422 if it is another."""
    if rows[0]["request_hash"] != request_hash or rows[0]["case_code"] != code:
        raise errors.Invalid(
            "this Idempotency-Key was used for another upload (other files or another case): use a new key",
            field="Idempotency-Key",
        )
    return rows


def _too_many(code: str, present: int, adding: int) -> errors.Conflict:
    return errors.Conflict(
        f"case {code} has {present} attachments; at most {store.MAX_PER_CASE} (this upload of {adding} would pass it)",
        field=FIELD,
        extra={"max": store.MAX_PER_CASE, "count": present},
    )


def _store(
    svc: Services, blobs: LocalBlobStore, code: str, who: Principal, uploads: list[Upload], key: str | None
) -> tuple[int, dict[str, Any]]:
    """Judge, copy and store an upload in one transaction: (201 or 200 for a replay, the answer)."""
    request_hash = _request_hash(code, uploads)
    with svc.pool.connection() as conn:  # the cheap refusals first: a retry, a full case
        if key is not None and (rows := store.by_key(conn, who.actor.key_scope, key)):
            return 200, _listing(code, _replay(rows, code, request_hash), len(rows), who)
        case = _case(conn, code, who)
        present = store.count(conn, case["id"])
        if present + len(uploads) > store.MAX_PER_CASE:
            raise _too_many(code, present, len(uploads))
    prepared = _prepare(blobs, uploads)
    created: list[str] = []
    try:
        with writing(svc.pool) as conn:  # its COMMIT's connection lost: 503 outcome_unknown (geodata/db.py)
            case = _case(conn, code, who, lock=True)  # uploads to this case take turns from here
            if key is not None and (rows := store.by_key(conn, who.actor.key_scope, key)):
                return 200, _listing(code, _replay(rows, code, request_hash), len(rows), who)
            present = store.count(conn, case["id"])
            if present + len(prepared) > store.MAX_PER_CASE:
                raise _too_many(code, present, len(prepared))
            rows = store.add(conn, case, _new_rows(prepared), who.actor, key=key, request_hash=request_hash)
            for p in prepared:  # the blobs, last: the rows that name them commit right after
                for staged in (p.upload.staged, p.served, p.thumb):
                    if staged is not None and not staged.committed:
                        address, new = blobs.commit(staged)
                        if new:
                            created.append(address)
        log.info("attachments stored case=%s files=%d by=%s", code, len(rows), who.ident)
        return 201, _listing(code, rows, len(rows), who)
    except OutcomeUnknown:
        raise  # the rows may have committed: their blobs stay (an unnamed blob is harmless, a lost one is not)
    except BaseException as exc:
        _forget(svc, blobs, created)
        if isinstance(exc, psycopg.errors.UniqueViolation) and key is not None:
            # another request with this key committed between our look and our rows: answer as its retry
            with svc.pool.connection() as conn:
                rows = store.by_key(conn, who.actor.key_scope, key)
            if rows:
                return 200, _listing(code, _replay(rows, code, request_hash), len(rows), who)
        raise
    finally:  # a replay found under the lock, a refusal, a failure: no staging file stays (a stored blob does)
        for p in prepared:
            p.discard()


def _forget(svc: Services, blobs: LocalBlobStore, created: list[str]) -> None:
    """Remove the blobs an upload that did not commit had put in the store (none another row names)."""
    if not created:
        return
    try:
        with svc.pool.connection() as conn:
            keep = store.referenced(conn, created)
    except (psycopg.Error, OSError) as exc:  # the database is gone: a blob no row names is harmless, keep it
        log.warning("could not check %d new blobs of a failed upload error=%s", len(created), type(exc).__name__)
        return
    for address in created:
        if address not in keep:
            blobs.delete(address)


# --- the routes ------------------------------------------------------------------------------------------------

_MULTIPART = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "maxItems": MAX_FILES_PER_REQUEST,
                            "description": f"JPEG, PNG, WebP, HEIC or PDF (judged from the content), at most "
                            f"{MAX_FILE_BYTES // (1024 * 1024)} MiB each",
                        }
                    },
                    "additionalProperties": False,
                }
            }
        },
    }
}
_CONTENT = {
    "description": "The file without location data (or, with original=true, as uploaded)",
    "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(set(media.SERVED_TYPE.values()))}
    | {"image/heic": {"schema": {"type": "string", "format": "binary"}}},
}
_THUMB = {
    "description": "A JPEG of at most 320 pixels a side",
    "content": {"image/jpeg": {"schema": {"type": "string"}}},
}


@router.post(
    "/api/v1/cases/{code}/attachments",
    status_code=201,
    dependencies=[Depends(role_in(UPLOADERS, "add attachments"))],
    summary="Attach photos or a signed agreement to a case (multipart, field file)",
    description=f"JPEG, PNG, WebP, HEIC or PDF, judged from the content (not the name or the declared type); "
    f"at most {MAX_FILE_BYTES // (1024 * 1024)} MiB a file, {MAX_FILES_PER_REQUEST} files a request and "
    f"{store.MAX_PER_CASE} on a case (409 naming file past it). A file that is too big is a 413 naming file; "
    "one that is not an accepted type or does not decode whole, an empty one or a malformed body a 422 "
    "naming file. Idempotency-Key: the same key with the same case and files replays the first answer (200); "
    "with anything else it is a 422 naming the header.",
    openapi_extra=_MULTIPART,
    response_model=None,
    responses=answers(
        *WRITE,
        ok={
            201: {"model": AttachmentsOut, "description": "Stored: the case's attachments added by this request"},
            200: {"model": AttachmentsOut, "description": "A retry with the same Idempotency-Key: the first answer"},
        },
    ),
)
async def upload(
    code: Annotated[str, Path(pattern=CODE)], request: Request, who: Who, idempotency_key: OptionalKey = None
) -> Response:
    svc = services(request)
    blobs = blob_store(svc)

    def in_scope() -> None:
        blobs.sweep_staging()  # staging files a killed process left (older than an hour)
        with svc.pool.connection() as conn:
            _case(conn, code, who)

    await run_in_threadpool(in_scope)  # 404 before a byte of the body is read
    try:
        uploads = await _read_files(request, blobs)
    except ClientDisconnect:
        log.info("upload cut off by the client case=%s by=%s", code, who.ident)
        return Response(status_code=400)  # nobody is listening; nothing was kept
    try:
        status, body = await run_in_threadpool(_store, svc, blobs, code, who, uploads, idempotency_key)
    finally:
        for u in uploads:
            u.staged.discard()  # a committed blob stays; a staging file never does
    headers = {"Idempotency-Replayed": "true"} if status == 200 else None
    return JSONResponse(body, status_code=status, headers=headers)


@router.get(
    "/api/v1/cases/{code}/attachments",
    summary="The attachments of a case (content URLs for the roles that may see it)",
    response_model=AttachmentsOut,
    responses=answers(*READ),
)
def list_attachments(code: Annotated[str, Path(pattern=CODE)], request: Request, who: Who) -> dict[str, Any]:
    svc = services(request)
    with svc.pool.connection() as conn:
        rows = store.of_case(conn, _case(conn, code, who)["id"])
    return _listing(code, rows, len(rows), who)


AttachmentId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _content_row(svc: Services, attachment_id: int, who: Principal, what: str) -> dict[str, Any]:
    with svc.pool.connection() as conn:
        row = store.get(conn, attachment_id, who.area)
    if row is None or not who.sees_case(row):
        raise errors.NotFound(f"no attachment {attachment_id}", field="attachment_id")
    if not masking.sees_attachment_content(who.role):
        raise errors.Forbidden(f"a {who.role} sees that attachments exist, not their {what}", field="attachment_id")
    return row


def _blob_response(blobs: LocalBlobStore, address: str, media_type: str, filename: str) -> Response:
    headers = {
        "Cache-Control": "private, max-age=3600",
        "ETag": f'"{address}"',
        "Content-Disposition": f'inline; filename="{filename}"',
    }
    path = blobs.path_of(address)
    if path.is_file():
        return FileResponse(path, media_type=media_type, headers=headers)
    try:
        f = blobs.open(address)
    except BlobNotFound:
        log.error("blob missing from the store address=%s", address)
        raise errors.NotFound("the attachment's file is missing from the blob store", field="attachment_id") from None
    return StreamingResponse(_chunks(f), media_type=media_type, headers=headers)


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    with f:
        while chunk := f.read(256 * 1024):
            yield chunk


@router.get(
    "/api/v1/attachments/{attachment_id}",
    summary="An attachment's file, without location data (original=true: as uploaded, for the roles "
    "that may see personal data)",
    response_class=Response,
    responses={200: _CONTENT, **answers(*READ)},
)
def get_attachment(
    attachment_id: AttachmentId,
    request: Request,
    who: Who,
    original: Annotated[bool, Query(description="The file as uploaded (it may hold the phone's position)")] = False,
) -> Response:
    svc = services(request)
    row = _content_row(svc, attachment_id, who, "content")
    if original and not masking.sees_personal_data(who.role):
        raise errors.Forbidden(f"a {who.role} gets no original files", field="original")
    with svc.pool.connection() as conn:
        audit.record(
            conn,
            who,
            audit.PERSONAL_DATA_READ,
            "GET /api/v1/attachments/{attachment_id}",
            {"cases": [row["case_code"]], "count": 1, "attachment": row["id"], "original": original},
            client_address(request),
        )
    if original:
        return _blob_response(
            LocalBlobStore(svc.settings.blob_path()),
            row["sha256"],
            row["media_type"],
            f"{row['id']}-original.{media.EXTENSION[row['media_type']]}",
        )
    return _blob_response(
        blob_store(svc), row["served_sha256"], row["served_type"], f"{row['id']}.{media.EXTENSION[row['served_type']]}"
    )


@router.get(
    "/api/v1/attachments/{attachment_id}/thumbnail",
    summary="An image attachment's thumbnail (JPEG, at most 320 pixels a side; a PDF has none: 404)",
    response_class=Response,
    responses={200: _THUMB, **answers(*READ)},
)
def get_thumbnail(attachment_id: AttachmentId, request: Request, who: Who) -> Response:
    svc = services(request)
    row = _content_row(svc, attachment_id, who, "thumbnails")
    if row["thumb_sha256"] is None:
        raise errors.NotFound(
            f"attachment {attachment_id} is a {row['kind']}: it has no thumbnail", field="attachment_id"
        )
    return _blob_response(blob_store(svc), row["thumb_sha256"], "image/jpeg", f"{row['id']}-thumb.jpg")

"""The blob store: bytes kept by their content address (SHA-256), behind one small interface.

Attachments (photos, signed agreements) are too big for PostgreSQL rows and never change, so the
database keeps their SHA-256 and the bytes live here. :class:`BlobStore` is what the rest of yitu
uses; :class:`LocalBlobStore` keeps the blobs in a folder of the local filesystem (the default:
``YITU_BLOB_DIR``, else ``<YITU_HOME>/blobs``). An S3-compatible store (MinIO, OSS, COS) can take
its place later by implementing the same methods; nothing outside this module knows where a blob
lives, except :meth:`LocalBlobStore.path_of`, which the HTTP layer uses to hand a file to the
server directly when it has one.

Never half-written: a blob is first written to a staging file (:meth:`BlobStore.stage`) in the
store's own ``tmp`` folder, on the same filesystem, hashed while it is written, flushed and
``fsync``-ed, and only then renamed to its address (``<aa>/<bb>/<sha256>``; a rename within one
filesystem is atomic) and its folder ``fsync``-ed. A reader sees a whole blob or none; a crash
leaves at most a staging file, never a blob under a wrong or partial address. Staging files of a
request that failed are removed by the request (:meth:`Staged.discard`); those of a process killed
mid-write by :meth:`LocalBlobStore.sweep_staging` (older than an hour).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO, Protocol

ADDRESS = re.compile(r"^[0-9a-f]{64}$")
STAGING = "tmp"
_CHUNK = 1024 * 1024


class BlobNotFound(LookupError):
    """No blob at that address."""


def address_of(data: bytes) -> str:
    """The content address of ``data``: its SHA-256, lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def check_address(address: str) -> str:
    """``address`` if it is a content address (64 hex digits); ValueError otherwise (never a path)."""
    if not ADDRESS.match(address):
        raise ValueError(f"{address!r} is not a blob address (64 lower-case hex digits)")
    return address


class Staged:
    """A blob being written: bytes go to a staging file and into its hash; nothing is stored yet.

    Hand it to :meth:`BlobStore.commit` to store it (then it is gone from staging), or
    :meth:`discard` it. Used as a context manager it is discarded unless committed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = open(path, "xb")  # noqa: SIM115 - closed by finish()/discard()
        self._hash = hashlib.sha256()
        self.size = 0
        self.committed = False

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError("this staged blob is finished")
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    @property
    def address(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """Flush, fsync and close the staging file (before it is renamed into the store)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def discard(self) -> None:
        """Forget it: the staging file goes (a committed blob stays stored)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.discard()


class BlobStore(Protocol):
    """What yitu needs of a blob store: content-addressed, immutable blobs."""

    def stage(self) -> Staged:
        """A new staging file to write a blob into (:meth:`commit` stores it)."""
        ...

    def commit(self, staged: Staged) -> tuple[str, bool]:
        """Store a staged blob under its address: (the address, whether it is new to the store).

        A blob already stored under that address is kept as it is (same address, same bytes).
        """
        ...

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data``: (its address, whether it is new to the store)."""
        ...

    def open(self, address: str) -> BinaryIO:
        """The blob for reading; :class:`BlobNotFound` when there is none."""
        ...

    def exists(self, address: str) -> bool: ...

    def delete(self, address: str) -> bool:
        """Remove a blob (True if there was one). Only for blobs no row names."""
        ...

    def addresses(self) -> Iterator[str]:
        """Every stored address (for backups), in no particular order."""
        ...


class LocalBlobStore:
    """Blobs as files under ``root``: ``<root>/<aa>/<bb>/<sha256>``, staging in ``<root>/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / STAGING

    def _ready(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)

    def path_of(self, address: str) -> Path:
        """Where the blob of ``address`` is (or would be) on this filesystem."""
        check_address(address)
        return self.root / address[:2] / address[2:4] / address

    def stage(self) -> Staged:
        self._ready()
        return Staged(self.staging / f"{secrets.token_hex(12)}.part")

    def commit(self, staged: Staged) -> tuple[str, bool]:
        staged.finish()
        address = staged.address
        target = self.path_of(address)
        if target.exists():
            staged.discard()
            staged.committed = True
            return address, False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, target)  # atomic within the filesystem: the whole blob or none
        _fsync_dir(target.parent)
        staged.committed = True
        return address, True

    def put(self, data: bytes) -> tuple[str, bool]:
        with self.stage() as staged:
            staged.write(data)
            return self.commit(staged)

    def open(self, address: str) -> BinaryIO:
        try:
            return open(self.path_of(address), "rb")
        except FileNotFoundError:
            raise BlobNotFound(address) from None

    def exists(self, address: str) -> bool:
        return self.path_of(address).is_file()

    def delete(self, address: str) -> bool:
        path = self.path_of(address)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def addresses(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for first in sorted(self.root.iterdir()):
            if first.name == STAGING or not first.is_dir():
                continue
            for path in sorted(first.glob("*/*")):
                if ADDRESS.match(path.name) and path.is_file():
                    yield path.name

    def staging_files(self) -> list[Path]:
        """The staging files present now (none once every request has ended)."""
        return sorted(self.staging.glob("*")) if self.staging.is_dir() else []

    def sweep_staging(self, older_than_s: float = 3600) -> int:
        """Remove staging files left by a process that died mid-write; returns how many."""
        cutoff = time.time() - older_than_s
        gone = 0
        for path in self.staging_files():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    gone += 1
            except FileNotFoundError:
                continue
        return gone


def _fsync_dir(folder: Path) -> None:
    """Make a rename (or an unlink) in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_into(store: BlobStore, source: IO[bytes]) -> tuple[str, bool]:
    """Store what ``source`` holds (read in chunks): (its address, whether it is new)."""
    with store.stage() as staged:
        while chunk := source.read(_CHUNK):
            staged.write(chunk)
        return store.commit(staged)

"""A real base map from an MBTiles file (``yitu basemap import``, ``basemap=mbtiles``).

An MBTiles file (https://github.com/mapbox/mbtiles-spec, 1.3) is an SQLite database: a
``metadata`` table of name/value pairs and a ``tiles`` table of (zoom_level, tile_column,
tile_row, tile_data), its rows counted from the bottom as in TMS: row ``2**z - 1 - y`` of the
XYZ row ``y`` the browser asks for.

Raster tiles (png, jpg, webp) are served as they are. Vector tiles (pbf: Mapbox Vector Tiles,
gzip'd or not) are drawn to PNG on the server by the painter of yitu's own map
(geodata/vector_basemap.py), so the browser needs no vector renderer (MapLibre GL, some 800 kB) and
the pages keep their one tile layer. A vector file is judged further: no tile over
:data:`geodata.mvt.MAX_STORED` bytes, and a sample of tiles (each zoom's first, last and largest) must
read whole as vector tiles, within :data:`geodata.mvt.MAX_INFLATED` bytes inflated; the serving side
reads every tile as untrusted all the same.

As the other importers: the file is judged whole and every problem is named at once; nothing
is written unless it is sound; the file is copied in under a temporary name and moved into place
in one rename, so the processes serving the old one never read half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from geodata import mvt
from geodata.errors import Invalid

FILE_NAME = "basemap.mbtiles"
SQLITE_MAGIC = b"SQLite format 3\x00"
RASTER = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
VECTOR = "pbf"
FORMATS = (*RASTER, VECTOR)
FORMAT_ALIASES = {"jpeg": "jpg", "mvt": "pbf"}
FIRST_OF_ZOOM = "SELECT tile_column, tile_row FROM tiles WHERE zoom_level = ? ORDER BY tile_column, tile_row LIMIT 1"
LAST_OF_ZOOM = (
    "SELECT tile_column, tile_row FROM tiles WHERE zoom_level = ? ORDER BY tile_column DESC, tile_row DESC LIMIT 1"
)
MAX_BAD_TILES = 5  # tiles named in a refusal; past them: "and more"
TILE_MAGIC = {"png": (b"\x89PNG\r\n\x1a\n",), "jpg": (b"\xff\xd8\xff",), "webp": (b"RIFF",)}
MAX_ZOOM = 24
TILES_COLUMNS = {"zoom_level", "tile_column", "tile_row", "tile_data"}


class MbtilesRejected(Invalid):
    """The file was judged and refused; nothing was written. ``problems`` lists every defect."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"{path.name} rejected, {len(problems)} problem(s), nothing was written:\n{lines}", field="file"
        )


@dataclass(frozen=True)
class Info:
    """What an MBTiles file holds, as its metadata (checked) and its tiles say."""

    name: str
    format: str  # png | jpg | webp | pbf
    minzoom: int
    maxzoom: int
    bounds: tuple[float, float, float, float] | None  # west, south, east, north (degrees)
    tiles: int | None  # None: not counted (a quick look at a file already judged)
    size: int  # bytes
    attribution: str
    layers: tuple[str, ...] = ()  # a vector file's layers (its metadata's vector_layers, else those sampled)

    @property
    def vector(self) -> bool:
        return self.format == VECTOR

    @property
    def media_type(self) -> str:
        """What the server answers: a raster file's own images, a vector file drawn to PNG."""
        return RASTER["png"] if self.vector else RASTER[self.format]


@contextmanager
def _open(path: Path) -> Iterator[sqlite3.Connection]:
    """Read-only and without a journal: the file may sit on a read-only disk and is never changed."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    with closing(conn):
        yield conn


def _columns(conn: sqlite3.Connection, table: str) -> set[str] | None:
    row = conn.execute("SELECT type FROM sqlite_master WHERE name = ? AND type IN ('table', 'view')", (table,))
    if row.fetchone() is None:
        return None
    return {r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))}


def _int(value: str | None, what: str, problems: list[str]) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        problems.append(f"metadata {what} {value!r} is not a whole number")
        return None
    if not 0 <= number <= MAX_ZOOM:
        problems.append(f"metadata {what} {number} is not a zoom in 0..{MAX_ZOOM}")
        return None
    return number


def _bounds(value: str | None, problems: list[str]) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        w, s, e, n = (float(v) for v in value.split(","))
    except ValueError:
        problems.append(f"metadata bounds {value!r} is not 'west,south,east,north' in degrees")
        return None
    if not (-180 <= w < e <= 180 and -85.06 <= s < n <= 85.06):
        problems.append(
            f"metadata bounds {value!r} is not a box in degrees (west < east within ±180, south < north within ±85.06)"
        )
        return None
    return w, s, e, n


def _format(value: str | None, problems: list[str]) -> str | None:
    if value is None:
        problems.append("metadata has no 'format' (png, jpg, webp or pbf)")
        return None
    fmt = FORMAT_ALIASES.get(value.strip().lower(), value.strip().lower())
    if fmt not in FORMATS:
        problems.append(f"metadata format {value!r} is not one of png, jpg, webp, pbf")
        return None
    return fmt


def _layers(value: str | None) -> tuple[str, ...]:
    """The layer ids of a vector file's metadata ``json`` (its ``vector_layers``); none when it says none."""
    try:
        described = json.loads(value or "{}")
    except ValueError:
        return ()
    layers = described.get("vector_layers") if isinstance(described, dict) else None
    if not isinstance(layers, list):
        return ()
    return tuple(str(layer["id"]) for layer in layers if isinstance(layer, dict) and "id" in layer)


def _xyz(z: int, x: int, row: int) -> str:
    """A stored tile's address as the browser asks for it (the TMS row flipped)."""
    return f"{z}/{x}/{(1 << z) - 1 - row}"


def inspect(path: Path, max_bytes: int, thorough: bool = True) -> Info:
    """Judge ``path`` as an MBTiles, raster or vector; every problem at once (:class:`MbtilesRejected`).

    ``thorough``: also check every page of the database, count the tiles and, for a vector file,
    read a sample of them (minutes for a big file: an import does it, a look at the file already
    imported does not)."""
    problems: list[str] = []
    if not path.is_file():
        raise MbtilesRejected(path, [f"{path} is not a file"])
    size = path.stat().st_size
    if size > max_bytes:
        raise MbtilesRejected(
            path, [f"the file has {size} bytes, over the {max_bytes} allowed (YITU_BASEMAP_MBTILES_MAX_BYTES)"]
        )
    with path.open("rb") as f:
        if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise MbtilesRejected(path, ["not an SQLite database (an MBTiles file is one)"])
    try:
        with _open(path) as conn:
            return _judge(conn, path, size, problems, thorough)
    except sqlite3.DatabaseError as exc:
        raise MbtilesRejected(path, [*problems, f"the SQLite database is damaged: {exc}"]) from None


def _judge(conn: sqlite3.Connection, path: Path, size: int, problems: list[str], thorough: bool) -> Info:
    check = conn.execute("PRAGMA quick_check").fetchall() if thorough else [("ok",)]
    if check != [("ok",)]:
        damage = "; ".join(str(r[0]) for r in check[:3])
        raise MbtilesRejected(path, [f"the SQLite database is damaged: {damage}"])
    meta_cols = _columns(conn, "metadata")
    tile_cols = _columns(conn, "tiles")
    if meta_cols is None:
        problems.append("no 'metadata' table")
    elif not {"name", "value"} <= meta_cols:
        problems.append(f"table metadata has columns {sorted(meta_cols)}, not name and value")
    if tile_cols is None:
        problems.append("no 'tiles' table")
    elif missing := TILES_COLUMNS - tile_cols:
        problems.append(f"table tiles lacks the column(s) {', '.join(sorted(missing))}")
    if problems:
        raise MbtilesRejected(path, problems)
    meta = {str(k): (None if v is None else str(v)) for k, v in conn.execute("SELECT name, value FROM metadata")}
    if not (meta.get("name") or "").strip():
        problems.append("metadata has no 'name'")
    fmt = _format(meta.get("format"), problems)
    bounds = _bounds(meta.get("bounds"), problems)
    minzoom = _int(meta.get("minzoom"), "minzoom", problems)
    maxzoom = _int(meta.get("maxzoom"), "maxzoom", problems)
    if thorough:
        count, lo, hi = conn.execute("SELECT count(*), min(zoom_level), max(zoom_level) FROM tiles").fetchone()
    else:
        lo, hi = conn.execute("SELECT min(zoom_level), max(zoom_level) FROM tiles").fetchone()
        count = None if lo is not None else 0
    if count == 0:
        problems.append("table tiles is empty")
    else:
        minzoom = lo if minzoom is None else minzoom
        maxzoom = hi if maxzoom is None else maxzoom
        if not (0 <= lo <= hi <= MAX_ZOOM):
            problems.append(f"the tiles' zoom levels {lo}..{hi} are not in 0..{MAX_ZOOM}")
    if minzoom is not None and maxzoom is not None and minzoom > maxzoom:
        problems.append(f"metadata minzoom {minzoom} is above maxzoom {maxzoom}")
    layers = _layers(meta.get("json"))
    if fmt is not None and count != 0:
        first = conn.execute("SELECT tile_data FROM tiles LIMIT 1").fetchone()[0]
        head = bytes(first or b"")[:12]
        if fmt == VECTOR:
            if head and not mvt.looks_vector(head):
                problems.append("metadata says format pbf, but the first tile is not a vector tile (gzip'd or plain)")
            elif thorough:
                seen = _judge_vector_tiles(conn, problems)
                layers = layers or tuple(sorted(seen))
        elif mvt.looks_vector(head):
            problems.append(f"metadata says format {fmt}, but the tiles are vector (pbf) data")
        elif not any(head.startswith(m) for m in TILE_MAGIC[fmt]) or (fmt == "webp" and head[8:12] != b"WEBP"):
            problems.append(f"metadata says format {fmt}, but the first tile is not a {fmt} image")
    if problems:
        raise MbtilesRejected(path, problems)
    assert fmt is not None
    assert minzoom is not None
    assert maxzoom is not None
    return Info(
        name=(meta.get("name") or "").strip(),
        format=fmt,
        minzoom=minzoom,
        maxzoom=maxzoom,
        bounds=bounds,
        tiles=None if count is None else int(count),
        size=size,
        attribution=(meta.get("attribution") or "").strip(),
        layers=layers if fmt == VECTOR else (),
    )


def _judge_vector_tiles(conn: sqlite3.Connection, problems: list[str]) -> set[str]:
    """Every tile within MAX_STORED bytes, and a sample read whole: each zoom's first, last and
    largest tile (the largest is where a tool's limits were pushed). The layers the sample holds."""
    bad: list[str] = []
    for z, x, row, size in conn.execute(
        "SELECT zoom_level, tile_column, tile_row, length(tile_data) FROM tiles WHERE length(tile_data) > ? "
        "ORDER BY zoom_level, tile_column, tile_row LIMIT ?",
        (mvt.MAX_STORED, MAX_BAD_TILES + 1),
    ):
        bad.append(f"tile {_xyz(z, x, row)} has {size} bytes, over the {mvt.MAX_STORED} a vector tile may have")
    seen: set[str] = set()
    for z, x, row in _sample(conn):
        if len(bad) > MAX_BAD_TILES:
            break
        data = conn.execute(
            "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?", (z, x, row)
        ).fetchone()[0]
        data = bytes(data or b"")
        if len(data) > mvt.MAX_STORED:
            continue  # named above
        try:
            tile = mvt.Tile(data)
            mvt.check(tile)
        except mvt.TileUnreadable as exc:
            bad.append(f"tile {_xyz(z, x, row)} cannot be read: {exc}")
            continue
        seen.update(tile.layer_names)
    if len(bad) > MAX_BAD_TILES:
        bad[MAX_BAD_TILES:] = ["and more tiles like these"]
    problems.extend(bad)
    return seen


def _sample(conn: sqlite3.Connection) -> list[tuple[int, int, int]]:
    """Each zoom's first, last and largest tile (z, column, TMS row), once each."""
    picked: dict[tuple[int, int, int], None] = {}
    largest = conn.execute(
        "SELECT zoom_level, tile_column, tile_row, max(length(tile_data)) FROM tiles GROUP BY zoom_level"
    ).fetchall()
    for z, x, row, _ in largest:
        for query in (FIRST_OF_ZOOM, LAST_OF_ZOOM):
            first = conn.execute(query, (z,)).fetchone()
            picked[(z, first[0], first[1])] = None
        picked[(z, x, row)] = None
    return list(picked)


def install(path: Path, folder: Path, max_bytes: int) -> Info:
    """Judge ``path`` and, when sound, put a copy in ``folder`` in place of the one there."""
    inspect(path, max_bytes, thorough=False)  # the quick refusals before a copy of gigabytes
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".import-", suffix=".mbtiles", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, path.open("rb") as src:
            shutil.copyfileobj(src, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        try:  # the copy is what will be served: every page of it is checked
            copied = inspect(Path(tmp), max_bytes)
        except MbtilesRejected as exc:
            raise MbtilesRejected(path, exc.problems) from None
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / FILE_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return copied


def installed(folder: Path, thorough: bool = False) -> Info | None:
    """The imported base map's description (judged again when ``thorough``), or None when there is none."""
    path = folder / FILE_NAME
    if not path.is_file():
        return None
    return inspect(path, path.stat().st_size, thorough)


def remove(folder: Path) -> bool:
    """Delete the imported base map; False when there was none."""
    path = folder / FILE_NAME
    if not path.is_file():
        return False
    path.unlink()
    return True


def media_type(tile: bytes) -> str:
    """The image type of a stored tile, from its first bytes (the import checked the file's format)."""
    if tile.startswith(TILE_MAGIC["jpg"]):
        return RASTER["jpg"]
    if tile.startswith(b"RIFF") and tile[8:12] == b"WEBP":
        return RASTER["webp"]
    return RASTER["png"]


def read_tile(folder: Path, z: int, x: int, y: int) -> bytes | None:
    """The tile at XYZ ``z/x/y`` (TMS row flipped), or None when the file has none there."""
    return read_tiles(folder, z, [(x, y)]).get((x, y))


def read_tiles(folder: Path, z: int, cells: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The tiles of zoom ``z`` at XYZ ``(x, y)`` cells that the file has, read over one connection
    (a vector tile's drawing reads its neighbours' place names too)."""
    path = folder / FILE_NAME
    found: dict[tuple[int, int], bytes] = {}
    if not path.is_file():
        return found
    with _open(path) as conn:
        for x, y in cells:
            row = conn.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                (z, x, (1 << z) - 1 - y),
            ).fetchone()
            if row is not None:
                found[(x, y)] = bytes(row[0] or b"")
    return found


@dataclass(frozen=True)
class Served:
    """The imported file as the server draws from it: its description and its identity (another
    file has another, so a tile drawn from the file before is never taken for one after; the same
    file imported on several hosts has the same, so they share Redis and browsers' ETags)."""

    info: Info
    identity: str


FINGERPRINT_BYTES = 1024 * 1024


def _fingerprint(path: Path, size: int) -> str:
    """The file's identity from its size, its first and its last MiB: SQLite counts every change
    in its header (the file change counter, on the first page), so a file changed in place or
    another file reads differently there, and a few MiB read once per import cost nothing."""
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(FINGERPRINT_BYTES))
        f.seek(max(0, size - FINGERPRINT_BYTES))
        digest.update(f.read(FINGERPRINT_BYTES))
    return digest.hexdigest()[:16]


_served_lock = threading.Lock()
_served: dict[Path, tuple[tuple[int, int, int], Served]] = {}


def served(folder: Path) -> Served | None:
    """The imported file's description, looked at once per import in this process (its stat says
    whether the file in place is still the one looked at: an import moves a new one in)."""
    path = folder / FILE_NAME
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _served_lock:
        known = _served.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    info = inspect(path, st.st_size, thorough=False)
    result = Served(info, _fingerprint(path, st.st_size))
    with _served_lock:
        _served[path] = (stamp, result)
    return result

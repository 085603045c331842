"""Import what a banner runs on besides its grid and roster: mediation centres, vans with their
devices, and the cameras' status feed.

Each is read by the roster's table reader (geodata/roster_import.py ``read_sheet``: CSV in UTF-8 or
GBK, XLSX, GeoPackage and other GDAL files), every row judged, and every problem reported at once,
naming the row and the field, as the grid importer does. Nothing is written unless the whole file
is good; then one transaction writes it. ``check`` judges under the same locks and rolls back, so
it says exactly what the import would write.

- Centres are matched on their code. ``replace``: the centres the file does not hold are deleted,
  unless a van is based at one or a mediator works at one (then that is a problem: keep it in the
  file, or move them first).
- Vans are matched on their id. A device identifier is a credential: only its SHA-256 is stored
  (geodata/tracking.py, as ``yitu van register`` does) and short ones are refused. ``replace``:
  the vans the file does not hold are taken off the road (status offline, their devices
  unregistered) — never deleted, since dispatches and tracks name them — and each van's devices
  become exactly the file's.
- The camera status feed (``yitu import cameras FILE --update-status``) changes only the status
  of cameras known by device code; it is also read from JSON, a list of {device_code, status}.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import psycopg
from psycopg import sql
from tqdm import tqdm

from geodata import roster, tracking
from geodata.import_report import AuditHook, ImportRejected, ImportReport, Problem
from geodata.queries import digits
from geodata.roster_import import MAX_FILE_BYTES, MAX_ROWS, Sheet, cell_problems, read_sheet

CENTRE_LEVELS: Mapping[str, int] = {
    "1": 1,
    "2": 2,
    "3": 3,
    "banner": 1,
    "town": 2,
    "village": 3,
    "旗": 1,
    "旗级": 1,
    "镇": 2,
    "镇级": 2,
    "乡": 2,
    "苏木": 2,
    "街道": 2,
    "村": 3,
    "村级": 3,
    "嘎查": 3,
    "社区": 3,
}
CAMERA_STATUSES: Mapping[str, str] = {
    "online": "online",
    "offline": "offline",
    "在线": "online",
    "离线": "offline",
    "1": "online",
    "0": "offline",
    "true": "online",
    "false": "offline",
}
CENTRE_CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
VAN_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # the vans.id CHECK
NAME_MAX = 100
PLATE_MAX = 20
DEVICE_SPLIT = re.compile(r"[,;|\s，；]+")
MAX_DEVICES = 20  # per van: a terminal and a few crew phones


def _where(sheet: Sheet, n: int, f: str | None = None) -> str:
    return f"{sheet.unit} {n}" + (f", {f}" if f else "")


def _label(cells: Mapping[str, Any], *keys: str) -> tuple[str, ...]:
    for key in keys:
        text = roster.text_of(cells.get(key))
        if text:
            return (text[:40],)
    return ()


def _text(
    cells: Mapping[str, Any], f: str, where: str, problems: list[Problem], label: tuple[str, ...], *, limit: int
) -> str | None:
    text = roster.text_of(cells.get(f))
    if text is not None and len(text) > limit:
        problems.append(Problem(f"bad-{f}", label, where, f"{len(text)} characters; at most {limit}"))
        return None
    return text


def _key_and_name(
    sheet: Sheet,
    n: int,
    cells: Mapping[str, Any],
    label: tuple[str, ...],
    problems: list[Problem],
    key: str,
    pattern: re.Pattern[str],
    rule: str,
    shown: int,
) -> tuple[str | None, str | None]:
    """A row's key (``key``, matching ``pattern``; ``rule`` says how, the first ``shown`` characters
    are echoed) and its name (required, at most NAME_MAX characters); each fault added to ``problems``."""
    value = roster.text_of(cells.get(key))
    if value is None or not pattern.fullmatch(value):
        echoed = repr(value[:shown]) if value else "missing"
        problems.append(Problem(f"bad-{key}", label, _where(sheet, n, key), f"{echoed}: {rule}"))
    name = _text(cells, "name", _where(sheet, n, "name"), problems, label, limit=NAME_MAX)
    if roster.text_of(cells.get("name")) is None:
        problems.append(Problem("bad-name", label, _where(sheet, n, "name"), "the name is missing"))
    return value, name


# --- the camera status feed ----------------------------------------------------------------------


def _read_json_feed(path: Path) -> Sheet:
    """A JSON status feed: a list of objects, each with device_code and status."""
    where = path.name
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ImportRejected([Problem("too-large", (), where, f"at most {MAX_FILE_BYTES} bytes")])
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportRejected([Problem("unreadable", (), where, f"not JSON: {exc}")]) from None
    if isinstance(data, dict) and isinstance(data.get("cameras"), list):
        data = data["cameras"]
    if not isinstance(data, list) or not data:
        raise ImportRejected([Problem("malformed", (), where, "expected a list of {device_code, status}")])
    if len(data) > MAX_ROWS:
        raise ImportRejected([Problem("too-large", (), where, f"{len(data)} items; at most {MAX_ROWS}")])
    rows: list[tuple[int, dict[str, Any]]] = []
    problems: list[Problem] = []
    for n, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            problems.append(Problem("malformed", (), f"item {n}", "not an object with device_code and status"))
            continue
        rows.append((n, {"device_code": item.get("device_code"), "status": item.get("status")}))
    if problems:
        raise ImportRejected(problems)
    return Sheet(rows, "item", [])


def update_camera_status(
    dsn: str,
    path: str | Path,
    *,
    layer: str | None = None,
    encoding: str | None = None,
    check: bool = False,
    progress: bool = False,
) -> ImportReport:
    """Set the status of the cameras a feed names (by device code); the report's ``updated`` counts
    the cameras whose status changed. Unknown codes and statuses are problems; nothing is written
    unless the whole feed is good."""
    p = Path(path)
    sheet = _read_json_feed(p) if p.suffix.lower() == ".json" else read_sheet(p, "camera-status", layer=layer)
    with psycopg.connect(dsn) as conn:
        conn.execute("LOCK TABLE cameras IN SHARE ROW EXCLUSIVE MODE")
        known: dict[str, str] = dict(conn.execute("SELECT device_code, status FROM cameras").fetchall())
        problems: list[Problem] = []
        wanted: dict[str, str] = {}
        first: dict[str, int] = {}
        for n, cells in tqdm(sheet.rows, disable=not progress, file=sys.stderr, unit="row", leave=False):
            bad = cell_problems(n, sheet.unit, cells)
            problems += bad
            if bad:
                continue
            code = roster.text_of(cells.get("device_code"))
            status_text = roster.text_of(cells.get("status"))
            label = (code[:40],) if code else ()
            status = CAMERA_STATUSES.get((status_text or "").lower())
            if code is None:
                problems.append(Problem("bad-device_code", (), _where(sheet, n, "device_code"), "missing"))
            elif code not in known:
                problems.append(Problem("unknown-camera", label, _where(sheet, n, "device_code"), "no such camera"))
            elif code in first:
                problems.append(
                    Problem("duplicate", label, _where(sheet, n), f"the same camera as {sheet.unit} {first[code]}")
                )
            if status is None:
                shown = repr(status_text[:20]) if status_text else "missing"
                problems.append(
                    Problem(
                        "bad-status", label, _where(sheet, n, "status"), f"{shown}: one of online/offline/在线/离线/1/0"
                    )
                )
            if code is not None and status is not None and code in known and code not in first:
                first[code] = n
                wanted[code] = status
        if problems:
            raise ImportRejected(problems, sheet.warnings)
        changed = {c: s for c, s in wanted.items() if known[c] != s}
        if changed:
            conn.execute(
                """UPDATE cameras c SET status = f.status, updated_at = now()
                   FROM unnest(%s::text[], %s::text[]) AS f(device_code, status)
                   WHERE c.device_code = f.device_code""",
                (list(changed), list(changed.values())),
            )
        counts: dict[str, int] = {}
        for s in changed.values():
            counts[s] = counts.get(s, 0) + 1
        report = ImportReport("camera status", 0, len(changed), 0, dict(sorted(counts.items())), sheet.warnings)
        if check:
            conn.rollback()
    return report


# --- mediation centres ---------------------------------------------------------------------------


@dataclass
class CentreIn:
    code: str
    name: str
    level: int
    area_code: str
    mediators: int
    specialties: list[str]
    phone: str | None
    lon: float
    lat: float


def _coordinate(value: Any, low: float, high: float) -> float | None:
    """None when the cell is empty; NaN when it is not a number in [low, high]."""
    text = roster.text_of(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return math.nan
    return number if low <= number <= high else math.nan


def _check_centre(
    sheet: Sheet, n: int, cells: Mapping[str, Any], known: roster.Known
) -> tuple[CentreIn | None, list[Problem]]:
    label = _label(cells, "code", "name")
    problems: list[Problem] = []
    code, name = _key_and_name(sheet, n, cells, label, problems, "code", CENTRE_CODE, "letters, digits, _ or -", 20)
    found: list[roster.Problem] = []
    area = roster._area(cells.get("area_code"), known, found)
    phone = roster._phone(cells.get("phone"), found)
    specialties = roster._specialties(cells.get("specialties"), known, found)
    problems += [Problem(f"bad-{p.field}", label, _where(sheet, n, p.field), p.message) for p in found]
    level_text = roster.text_of(cells.get("level"))
    implied = (len(area) - 6) // 3 + 1 if area else None
    level: int | None
    if level_text is None:
        level = implied if implied is not None and implied <= 3 else None
        if area and level is None:
            problems.append(
                Problem("bad-level", label, _where(sheet, n, "level"), "a centre serves a banner, town or village")
            )
    else:
        level = CENTRE_LEVELS.get(level_text.lower())
        if level is None:
            problems.append(
                Problem("bad-level", label, _where(sheet, n, "level"), f"{level_text[:20]!r}: 1-3 or 旗/镇/村")
            )
        elif implied is not None and level != implied:
            problems.append(
                Problem("bad-level", label, _where(sheet, n, "level"), f"level {level} does not fit area {area}")
            )
            level = None
    mediators_text = roster.text_of(cells.get("mediators"))
    mediators = 0
    if mediators_text is not None:
        if digits(mediators_text) and int(mediators_text) < 100_000:
            mediators = int(mediators_text)
        else:
            problems.append(
                Problem("bad-mediators", label, _where(sheet, n, "mediators"), f"{mediators_text[:20]!r}: a count")
            )
    lon = _coordinate(cells.get("lon"), -180, 180)
    lat = _coordinate(cells.get("lat"), -90, 90)
    if lon is None or lat is None:
        problems.append(
            Problem("no-point", label, _where(sheet, n), "no point: give lon and lat columns, or a point geometry")
        )
    else:
        if math.isnan(lon):
            problems.append(Problem("bad-lon", label, _where(sheet, n, "lon"), "not a longitude (-180 to 180)"))
        if math.isnan(lat):
            problems.append(Problem("bad-lat", label, _where(sheet, n, "lat"), "not a latitude (-90 to 90)"))
    if problems or code is None or name is None or area is None or level is None or lon is None or lat is None:
        return None, problems
    return CentreIn(code, name, level, area, mediators, specialties, phone, lon, lat), problems


_UPSERT_CENTRE = """INSERT INTO mediation_centers (code, name, level, area_code, mediators, specialties, phone, geom)
VALUES (%(code)s, %(name)s, %(level)s, %(area_code)s, %(mediators)s, %(specialties)s, %(phone)s,
        ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326))
ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, level = EXCLUDED.level, area_code = EXCLUDED.area_code,
    mediators = EXCLUDED.mediators, specialties = EXCLUDED.specialties, phone = EXCLUDED.phone, geom = EXCLUDED.geom
RETURNING id, (xmax = 0) AS inserted"""
# Points outside the area they name: the map would show the centre in another town.
_OUTSIDE = """SELECT f.n FROM unnest(%s::int[], %s::text[], %s::float8[], %s::float8[]) AS f(n, area, lon, lat)
JOIN areas a ON a.code = f.area
WHERE NOT ST_Covers(a.geom, ST_SetSRID(ST_MakePoint(f.lon, f.lat), 4326)) ORDER BY f.n"""
# Centres a --replace would delete that something still points at.
_HELD = """SELECT c.code,
    (SELECT string_agg(v.id, ', ' ORDER BY v.id) FROM vans v WHERE v.base_center_id = c.id),
    (SELECT count(*) FROM mediators m WHERE m.center_id = c.id)
FROM mediation_centers c WHERE NOT (c.code = ANY(%s))
  AND (EXISTS (SELECT 1 FROM vans v WHERE v.base_center_id = c.id)
       OR EXISTS (SELECT 1 FROM mediators m WHERE m.center_id = c.id))
ORDER BY c.code"""


Good = list[tuple[int, Any]]  # the rows judged good: (row number, what it holds)


def _judge_all(
    sheet: Sheet, check_row: Any, key: str, what: str, known: roster.Known, progress: bool
) -> tuple[Good, list[Problem]]:
    good: Good = []
    problems: list[Problem] = []
    first: dict[str, int] = {}
    for n, cells in tqdm(sheet.rows, disable=not progress, file=sys.stderr, unit="row", leave=False):
        bad = cell_problems(n, sheet.unit, cells)
        problems += bad
        if bad:
            continue
        item, found = check_row(sheet, n, cells, known)
        problems += found
        if item is None:
            continue
        k = getattr(item, key)
        if k in first:
            problems.append(
                Problem("duplicate", (k,), _where(sheet, n, key), f"the same {what} as {sheet.unit} {first[k]}")
            )
            continue
        first[k] = n
        good.append((n, item))
    return good, problems


def _centre_problems(conn: psycopg.Connection, sheet: Sheet, good: Good, replace: bool) -> list[Problem]:
    """What only the database knows: a point outside its area; with ``replace``, a centre the file
    drops that a van or a mediator still points at."""
    problems: list[Problem] = []
    if good:
        rows = conn.execute(
            _OUTSIDE,
            ([n for n, _ in good], [c.area_code for _, c in good], [c.lon for _, c in good], [c.lat for _, c in good]),
        ).fetchall()
        by_n = dict(good)
        for (n,) in rows:
            c = by_n[n]
            problems.append(
                Problem("outside-area", (c.code,), _where(sheet, n), f"the point lies outside area {c.area_code}")
            )
    if replace:
        for code, vans, mediators in conn.execute(_HELD, ([c.code for _, c in good],)).fetchall():
            held = ([f"van(s) {vans} are based there"] if vans else []) + (
                [f"{mediators} mediator(s) work there"] if mediators else []
            )
            problems.append(
                Problem("still-used", (code,), "not in the file", "; ".join(held) + ": keep it, or move them first")
            )
    return problems


def _write_centres(conn: psycopg.Connection, sheet: Sheet, good: Good, replace: bool, progress: bool) -> ImportReport:
    inserted = deleted = 0
    with conn.cursor() as cur:
        for _, centre in tqdm(good, disable=not progress, file=sys.stderr, unit="centre", leave=False):
            row = cur.execute(_UPSERT_CENTRE, centre.__dict__).fetchone()
            assert row is not None
            inserted += bool(row[1])
        if replace:
            deleted = cur.execute(
                "DELETE FROM mediation_centers WHERE NOT (code = ANY(%s))", ([c.code for _, c in good],)
            ).rowcount
    counts: dict[str, int] = {}
    for _, c in good:
        key = roster.LEVELS[c.level - 1]
        counts[key] = counts.get(key, 0) + 1
    return ImportReport("centres", inserted, len(good) - inserted, deleted, counts, sheet.warnings)


def import_centers(dsn: str, path: str | Path, **options: Unpack[ImportOptions]) -> ImportReport:
    """Read, judge and upsert mediation centres (by code) in one transaction."""
    return _import(_CENTRES, dsn, path, **options)


# --- vans and their devices ----------------------------------------------------------------------


@dataclass
class VanIn:
    id: str
    name: str
    plate: str | None
    base_center_id: int | None
    devices: list[str] = field(default_factory=list)
    devices_given: bool = False


def _check_van(
    sheet: Sheet, n: int, cells: Mapping[str, Any], known: roster.Known
) -> tuple[VanIn | None, list[Problem]]:
    label = _label(cells, "id", "name")
    problems: list[Problem] = []
    van_id, name = _key_and_name(sheet, n, cells, label, problems, "id", VAN_ID, "1-32 letters, digits, _ or -", 40)
    plate = _text(cells, "plate", _where(sheet, n, "plate"), problems, label, limit=PLATE_MAX)
    base = roster.text_of(cells.get("base"))
    base_id = None
    if base is not None:
        base_id = known.centres.get(base)
        if base_id is None:
            problems.append(
                Problem("bad-base", label, _where(sheet, n, "base"), f"no mediation centre with code {base!r}")
            )
    raw = cells.get("devices")
    text = roster.text_of(raw)
    devices = [d for d in DEVICE_SPLIT.split(text) if d] if text else []
    for i, device in enumerate(devices, start=1):
        why = tracking.device_identifier_problem(device)
        if why is not None:
            # never echo the identifier: it is a credential
            problems.append(Problem("bad-device", label, _where(sheet, n, "devices"), f"device {i}: {why}"))
    if len(devices) > MAX_DEVICES:
        problems.append(Problem("bad-devices", label, _where(sheet, n, "devices"), f"at most {MAX_DEVICES} devices"))
    if problems or van_id is None or name is None:
        return None, problems
    return VanIn(van_id, name, plate, base_id, list(dict.fromkeys(devices)), "devices" in cells), problems


_UPSERT_VAN = """INSERT INTO vans (id, name, plate, base_center_id)
VALUES (%(id)s, %(name)s, %(plate)s, %(base_center_id)s)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, plate = EXCLUDED.plate,
    base_center_id = EXCLUDED.base_center_id, updated_at = now()
RETURNING (xmax = 0) AS inserted"""


def _van_problems(conn: psycopg.Connection, sheet: Sheet, good: Good, replace: bool) -> list[Problem]:
    """A device given to two vans of the file."""
    problems: list[Problem] = []
    owner: dict[str, int] = {}
    for n, van in good:
        for device in van.devices:
            digest = tracking.device_hash(device)
            if digest in owner and owner[digest] != n:
                problems.append(
                    Problem(
                        "duplicate", (van.id,), _where(sheet, n, "devices"), f"a device of {sheet.unit} {owner[digest]}"
                    )
                )
            owner.setdefault(digest, n)
    return problems


def _write_vans(conn: psycopg.Connection, sheet: Sheet, good: Good, replace: bool, progress: bool) -> ImportReport:
    warnings = list(sheet.warnings)
    ids = [v.id for _, v in good]
    inserted = devices = deleted = 0
    with conn.cursor() as cur:
        for _, van in tqdm(good, disable=not progress, file=sys.stderr, unit="van", leave=False):
            row = cur.execute(_UPSERT_VAN, van.__dict__).fetchone()
            assert row is not None
            inserted += bool(row[0])
            if replace and van.devices_given:
                keep = [tracking.device_hash(d) for d in van.devices]
                cur.execute("DELETE FROM van_devices WHERE van_id = %s AND NOT (device_hash = ANY(%s))", (van.id, keep))
            for device in van.devices:
                before = tracking.register_device(conn, van.id, device)
                devices += 1
                if before is not None:
                    warnings.append(f"van {van.id}: a device moved to it from van {before}")
        if replace:
            deleted = cur.execute(
                """UPDATE vans SET status = 'offline', updated_at = now()
                   WHERE NOT (id = ANY(%s)) AND status <> 'offline'""",
                (ids,),
            ).rowcount
            cur.execute("DELETE FROM van_devices WHERE NOT (van_id = ANY(%s))", (ids,))
    return ImportReport("vans", inserted, len(good) - inserted, deleted, {"devices": devices}, warnings)


def import_vans(dsn: str, path: str | Path, **options: Unpack[ImportOptions]) -> ImportReport:
    """Read, judge and upsert vans (by id) and register their devices (hashes only), in one transaction."""
    return _import(_VANS, dsn, path, **options)


# --- the one path of both ------------------------------------------------------------------------


class ImportOptions(TypedDict, total=False):
    """The options of :func:`import_centers` and :func:`import_vans` (``yitu import centers|vans``)."""

    layer: str | None
    encoding: str | None
    replace: bool
    check: bool
    progress: bool
    audit: AuditHook | None


@dataclass(frozen=True)
class _Kind:
    """One importer of this module: the sheet it reads, the tables it locks from judging to commit,
    how a row is judged (and its key, unique in the file), what only the database can judge, and
    how the good rows are written."""

    sheet: str
    tables: tuple[str, ...]
    check_row: Callable[[Sheet, int, Mapping[str, Any], roster.Known], tuple[Any, list[Problem]]]
    key: str
    noun: str
    judge: Callable[[psycopg.Connection, Sheet, Good, bool], list[Problem]]
    write: Callable[[psycopg.Connection, Sheet, Good, bool, bool], ImportReport]


_CENTRES = _Kind("centers", ("mediation_centers",), _check_centre, "code", "centre", _centre_problems, _write_centres)
_VANS = _Kind("vans", ("vans", "van_devices"), _check_van, "id", "van", _van_problems, _write_vans)


def _import(
    kind: _Kind,
    dsn: str,
    path: str | Path,
    *,
    layer: str | None = None,
    encoding: str | None = None,
    replace: bool = False,
    check: bool = False,
    progress: bool = False,
    audit: AuditHook | None = None,
) -> ImportReport:
    """Read and judge the whole file under the locks; every problem at once, or the rows written
    (``check``: rolled back) and the caller's audit row in the same transaction."""
    sheet = read_sheet(path, kind.sheet, layer=layer, encoding=encoding)
    with psycopg.connect(dsn) as conn:
        for table in kind.tables:
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(table)))
        good, problems = _judge_all(sheet, kind.check_row, kind.key, kind.noun, roster.Known.read(conn), progress)
        problems += kind.judge(conn, sheet, good, replace)
        if problems:
            raise ImportRejected(problems, sheet.warnings)
        report = kind.write(conn, sheet, good, replace, progress)
        if check:
            conn.rollback()
        elif audit is not None:
            audit(conn, report)
    return report


__all__ = ["CAMERA_STATUSES", "CENTRE_LEVELS", "import_centers", "import_vans", "update_camera_status"]

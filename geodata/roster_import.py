"""Import the roster — units, then mediators — from the spreadsheets a justice bureau keeps.

A roster reaches a banner centre as an Excel sheet, a CSV saved by WPS in GBK, or a GeoPackage table
from the GIS office. Each is read into rows of text, every row judged with the rules the forms use
(geodata/roster.py) and the file as a whole (duplicates), and every problem is reported at once,
naming the row and the field, as the grid importer does (geodata/io.py). Nothing is written unless
the whole file is good; then one transaction upserts it (units by area and name, mediators by area,
name and phone). With ``replace`` the file is the whole roster: the rows it does not hold are
deactivated — never deleted, since old cases' timelines name them.

Hostile input is refused, not cleaned: control characters, and text a spreadsheet would run as a
formula (``=cmd|' /C calc'!A0``, ``@SUM(…)``) when the roster is exported and opened again.
"""

from __future__ import annotations

import csv
import io as _io
import sys
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from tqdm import tqdm

from geodata import roster
from geodata.import_report import AuditHook, ImportRejected, ImportReport, Problem

MAX_FILE_BYTES = 20 * 1024 * 1024  # a banner's roster is a few hundred kB; more is not a roster
MAX_ROWS = 50_000
MAX_CELL = 1000  # characters: the longest field (specialties) is far shorter
CSV_SUFFIXES = (".csv", ".txt")
XLSX_SUFFIXES = (".xlsx", ".xlsm")

# Column names tried for each field (compared without case and spaces).
COLUMNS: Mapping[str, tuple[str, ...]] = {
    "name": ("name", "名称", "姓名", "单位名称", "调解员", "调解员姓名", "中心名称", "车辆名称", "用户名", "账号"),
    "kind": ("kind", "type", "类型", "类别", "单位类型"),
    "level": ("level", "级别", "层级"),
    "area_code": ("area_code", "area", "区划代码", "区域代码", "行政区划代码", "网格编码", "所在区域"),
    "phone": ("phone", "电话", "联系电话", "手机", "手机号"),
    "specialties": ("specialties", "specialty", "专长", "擅长", "调解专长", "业务范围"),
    "unit": ("unit", "所属单位", "单位", "调委会"),
    "centre": ("centre", "center", "调解中心", "中心", "中心编码"),
    "van": ("van", "车辆", "调解车", "车辆编号"),
    "active": ("active", "在岗", "是否在岗", "状态", "启用"),
    "user": ("user", "用户", "账号", "用户名"),
    # mediation centres, vans, accounts and the cameras' status feed (geodata/resource_import.py,
    # services/welcome.py)
    "code": ("code", "编码", "中心编码", "代码", "编号"),
    "mediators": ("mediators", "调解员数", "调解员人数", "人数"),
    "lon": ("lon", "lng", "longitude", "x", "经度"),
    "lat": ("lat", "latitude", "y", "纬度"),
    "id": ("id", "van_id", "van", "车辆编号", "编号"),
    "plate": ("plate", "车牌", "车牌号", "车牌号码"),
    "base": ("base", "base_center", "base_centre", "centre", "center", "所属中心", "调解中心", "中心编码", "驻地"),
    "devices": ("devices", "device", "设备", "设备标识", "终端"),
    "role": ("role", "角色"),
    "device_code": ("device_code", "设备编码", "设备编号", "编码", "code"),
    "status": ("status", "状态", "在线状态"),
}
UNIT_FIELDS = ("name", "kind", "level", "area_code", "phone", "specialties", "active")
MEDIATOR_FIELDS = ("name", "phone", "unit", "centre", "van", "level", "area_code", "specialties", "active", "user")
CENTRE_FIELDS = ("code", "name", "level", "area_code", "mediators", "specialties", "phone", "lon", "lat")
VAN_FIELDS = ("id", "name", "plate", "base", "devices")
USER_FIELDS = ("name", "role", "area_code", "van")
STATUS_FIELDS = ("device_code", "status")
FIELDS: Mapping[str, tuple[str, ...]] = {
    "units": UNIT_FIELDS,
    "mediators": MEDIATOR_FIELDS,
    "centers": CENTRE_FIELDS,
    "vans": VAN_FIELDS,
    "users": USER_FIELDS,
    "camera-status": STATUS_FIELDS,
}
REQUIRED = {
    "units": ("name", "kind", "area_code"),
    "mediators": ("name", "area_code"),
    "centers": ("code", "name", "area_code"),
    "vans": ("id", "name"),
    "users": ("name", "role"),
    "camera-status": ("device_code", "status"),
}


@dataclass(frozen=True)
class Sheet:
    """A file as rows of cells by field, each with the row number a user finds it at."""

    rows: list[tuple[int, dict[str, Any]]]
    unit: str  # "row" (a spreadsheet's line) or "feature"
    warnings: list[str]


def _rejected(where: str, kind: str, message: str) -> ImportRejected:
    return ImportRejected([Problem(kind, (), where, message)])


def _match_columns(
    header: Sequence[str], fields: Sequence[str], what: str, where: str
) -> tuple[dict[int, str], list[str]]:
    """Which column holds which field; missing required fields are problems, unknown columns warnings."""
    by_name = {alias.lower().replace(" ", ""): f for f in fields for alias in COLUMNS[f]}
    chosen: dict[int, str] = {}
    warnings: list[str] = []
    for i, name in enumerate(header):
        key = str(name or "").strip().lstrip("\ufeff").lower().replace(" ", "")
        f = by_name.get(key)
        if f is not None and f not in chosen.values():
            chosen[i] = f
        elif key:
            warnings.append(f"column {str(name)[:40]!r} is not read")
    missing = [f for f in REQUIRED[what] if f not in chosen.values()]
    if missing:
        tried = "; ".join(f"{f}: {', '.join(COLUMNS[f])}" for f in missing)
        raise ImportRejected(
            [Problem("missing-field", (), where, f"no column for {', '.join(missing)} (tried {tried})")]
        )
    return chosen, warnings


def _decode(data: bytes, encoding: str | None, where: str) -> str:
    """UTF-8 (with or without its BOM), else GBK (GB18030, its superset), unless told otherwise."""
    tries = [encoding] if encoding else ["utf-8-sig", "gb18030"]
    for name in tries:
        try:
            return data.decode(name)
        except LookupError:
            raise _rejected(where, "unreadable", f"unknown text encoding {name!r}") from None
        except UnicodeDecodeError:
            continue
    raise _rejected(where, "unreadable", "the text is neither UTF-8 nor GBK (pass --encoding)")


def _delimiter(text: str) -> str:
    """Comma, unless the header line is plainly tab- or semicolon-separated (Excel's exports in some locales).
    Not csv.Sniffer: it guesses from the data, and a hostile cell can make it guess wrong."""
    header = text.split("\n", 1)[0]
    if "," in header:
        return ","
    return "\t" if "\t" in header else ";" if ";" in header else ","


def _read_csv(path: Path, fields: Sequence[str], what: str, encoding: str | None) -> Sheet:
    where = path.name
    text = _decode(path.read_bytes(), encoding, where)
    if "\x00" in text:
        raise _rejected(where, "unreadable", "the file holds NUL bytes: it is not a CSV text file")
    reader = csv.reader(_io.StringIO(text, newline=""), delimiter=_delimiter(text))
    try:
        lines = list(reader)
    except csv.Error as exc:
        raise _rejected(where, "malformed", f"line {reader.line_num}: {exc}") from None
    lines = [line for line in lines if any(cell.strip() for cell in line)]
    if not lines:
        raise _rejected(where, "empty", "the file holds no rows")
    chosen, warnings = _match_columns(lines[0], fields, what, where)
    rows: list[tuple[int, dict[str, Any]]] = []
    problems: list[Problem] = []
    for n, line in enumerate(lines[1:], start=2):
        if len(line) > len(lines[0]) and any(c.strip() for c in line[len(lines[0]) :]):
            problems.append(
                Problem("malformed", (), f"row {n}", f"{len(line)} cells under {len(lines[0])} column names")
            )
            continue
        rows.append((n, {f: line[i] for i, f in chosen.items() if i < len(line)}))
    if problems:
        raise ImportRejected(problems)
    return Sheet(rows, "row", warnings)


def _read_xlsx(path: Path, fields: Sequence[str], what: str, sheet: str | None) -> Sheet:
    import openpyxl  # lazily: only spreadsheets need it
    from openpyxl.utils.exceptions import InvalidFileException

    where = path.name
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except (InvalidFileException, zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        raise _rejected(where, "unreadable", f"not an Excel workbook: {' '.join(str(exc).split())[:200]}") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise _rejected(where, "unreadable", f"no sheet {sheet!r}; the workbook has {', '.join(book.sheetnames)}")
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        lines: list[tuple[int, list[Any]]] = []
        for n, cells in enumerate(ws.iter_rows(), start=1):
            values = [_xlsx_value(c) for c in cells]
            if any(v is not None and str(v).strip() for v in values):
                lines.append((n, values))
            if len(lines) > MAX_ROWS + 1:
                raise _rejected(where, "too-large", f"more than {MAX_ROWS} rows")
    finally:
        book.close()
    if not lines:
        raise _rejected(where, "empty", "the sheet holds no rows")
    chosen, warnings = _match_columns([str(v or "") for v in lines[0][1]], fields, what, where)
    rows = [(n, {f: values[i] for i, f in chosen.items() if i < len(values)}) for n, values in lines[1:]]
    return Sheet(rows, "row", warnings)


@dataclass(frozen=True)
class Formula:
    """A cell that holds a formula: refused whatever it computes."""

    text: str

    def __str__(self) -> str:
        return self.text


def _xlsx_value(cell: Any) -> Any:
    if getattr(cell, "data_type", None) == "f":
        return Formula(str(cell.value))
    return cell.value


def _read_vector(path: Path, fields: Sequence[str], what: str, layer: str | None, encoding: str | None) -> Sheet:
    import pyogrio

    where = path.name
    points = "lon" in fields  # a table of places: its point geometry gives lon/lat
    try:
        frame: Any = (
            pyogrio.read_dataframe(path, layer=layer, encoding=encoding)
            if points
            else pyogrio.read_dataframe(path, layer=layer, encoding=encoding, read_geometry=False)
        )
    except (RuntimeError, OSError, ValueError, UnicodeError) as exc:
        raise _rejected(where, "unreadable", f"GDAL cannot read it: {' '.join(str(exc).split())[:200]}") from None
    if len(frame) == 0:
        raise _rejected(where, "empty", "the layer holds no features")
    geometry = None
    reprojected: list[str] = []
    if points and getattr(frame, "geometry", None) is not None:
        *geometry, reprojected = _points_of(frame, where)
        frame = frame.drop(columns=frame.geometry.name)
    header = [str(c) for c in frame.columns]
    chosen, warnings = _match_columns(header, fields, what, where)
    columns = {f: frame.iloc[:, i].tolist() for i, f in chosen.items()}
    if geometry is not None:
        columns["lon"], columns["lat"] = geometry
        warnings += reprojected
    rows = [(n + 1, {f: values[n] for f, values in columns.items()}) for n in range(len(frame))]
    return Sheet(rows, "feature", warnings)


def _points_of(frame: Any, where: str) -> tuple[list[Any], list[Any], list[str]]:
    """Longitudes and latitudes (WGS-84) of a layer's points, and a warning if they were reprojected;
    None for a feature without a point, a text for one that is not a point (the judging names it)."""
    from geodata.io import geometries_wgs84  # the GIS stack, loaded when a layer is read (geodata/import_report.py)

    geoms, warnings = geometries_wgs84(frame, where)  # the importers' one reader: the same warnings
    lons: list[Any] = []
    lats: list[Any] = []
    for geom in geoms:
        if geom is None or geom.is_empty:
            lons.append(None)
            lats.append(None)
        elif geom.geom_type != "Point":
            lons.append(f"a {geom.geom_type}, not a point")
            lats.append(f"a {geom.geom_type}, not a point")
        else:
            lons.append(float(geom.x))
            lats.append(float(geom.y))
    return lons, lats, warnings


def read_sheet(path: str | Path, what: str, *, layer: str | None = None, encoding: str | None = None) -> Sheet:
    """Read a table file (CSV, XLSX, or anything GDAL reads) into rows of the fields ``what`` has
    (FIELDS: a roster, centres, vans, accounts, a camera status feed); ImportRejected when it cannot."""
    p = Path(path)
    fields = FIELDS[what]
    if not p.is_file():
        raise _rejected(p.name, "unreadable", f"no such file: {p}")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise _rejected(p.name, "too-large", f"{size} bytes; a roster file is at most {MAX_FILE_BYTES} bytes")
    suffix = p.suffix.lower()
    if suffix in CSV_SUFFIXES:
        sheet = _read_csv(p, fields, what, encoding)
    elif suffix in XLSX_SUFFIXES:
        sheet = _read_xlsx(p, fields, what, layer)
    else:
        sheet = _read_vector(p, fields, what, layer, encoding)
    if len(sheet.rows) > MAX_ROWS:
        raise _rejected(p.name, "too-large", f"{len(sheet.rows)} rows; at most {MAX_ROWS}")
    if not sheet.rows:
        raise _rejected(p.name, "empty", "the file holds a header and no rows")
    return sheet


# --- judging --------------------------------------------------------------------------------------


def cell_problems(n: int, unit: str, cells: Mapping[str, Any]) -> list[Problem]:
    """What no field may hold, whatever it is: a formula, control characters, a cell too long."""
    out: list[Problem] = []
    for f, value in cells.items():
        where = f"{unit} {n}, {f}"
        if isinstance(value, Formula):
            out.append(Problem("formula", (), where, f"the cell is a formula ({str(value)[:30]!r}): type the value"))
            continue
        text = roster.text_of(value)
        if text is None:
            continue
        if len(text) > MAX_CELL:
            out.append(Problem("too-long", (), where, f"{len(text)} characters; at most {MAX_CELL}"))
        elif f != "phone" and (why := roster.hostile(text)) is not None:
            out.append(Problem("hostile-text", (), where, f"the value {why}"))
        elif f == "phone" and (text.startswith(("=", "@")) or roster.hostile(text.lstrip("+")) is not None):
            out.append(Problem("hostile-text", (), where, "the value is not a phone number"))
    return out


def _key(what: str, item: Any) -> tuple[Any, ...]:
    if what == "units":
        return (item.area_code, item.name)
    return (item.area_code, item.name, item.phone or "")


def judge(
    sheet: Sheet, what: str, known: roster.Known, progress: bool = False
) -> tuple[list[tuple[int, Any]], list[Problem]]:
    """Every row judged; the good ones (with their row numbers) and every problem of the file."""
    check: Callable[[Mapping[str, object], roster.Known], tuple[Any, list[roster.Problem]]] = (
        roster.check_unit if what == "units" else roster.check_mediator
    )
    good: list[tuple[int, Any]] = []
    problems: list[Problem] = []
    first: dict[tuple[Any, ...], int] = {}
    users: dict[int, int] = {}
    for n, cells in tqdm(sheet.rows, disable=not progress, file=sys.stderr, unit="row", leave=False):
        bad = cell_problems(n, sheet.unit, cells)
        problems += bad
        if bad:
            continue
        item, found = check(cells, known)
        label = (str(roster.text_of(cells.get("name")))[:40],) if roster.text_of(cells.get("name")) else ()
        problems += [Problem(f"bad-{p.field}", label, f"{sheet.unit} {n}, {p.field}", p.message) for p in found]
        if item is None:
            continue
        key = _key(what, item)
        if key in first:
            problems.append(
                Problem("duplicate", label, f"{sheet.unit} {n}", f"the same {what[:-1]} as {sheet.unit} {first[key]}")
            )
            continue
        first[key] = n
        user = getattr(item, "user_id", None)
        if user is not None:
            if user in users:
                problems.append(
                    Problem(
                        "duplicate", label, f"{sheet.unit} {n}, user", f"the same user as {sheet.unit} {users[user]}"
                    )
                )
                continue
            users[user] = n
        good.append((n, item))
    return good, problems


# --- writing --------------------------------------------------------------------------------------

_UPSERT_UNIT = """INSERT INTO units (name, kind, level, area_code, phone, specialties, active)
VALUES (%(name)s, %(kind)s, %(level)s, %(area_code)s, %(phone)s, %(specialties)s, %(active)s)
ON CONFLICT (area_code, name) DO UPDATE SET kind = EXCLUDED.kind, level = EXCLUDED.level,
    phone = EXCLUDED.phone, specialties = EXCLUDED.specialties, active = EXCLUDED.active, updated_at = now()
RETURNING id, (xmax = 0) AS inserted"""
_UPSERT_MEDIATOR = """INSERT INTO mediators (name, phone, unit_id, center_id, van_id, level, area_code, specialties,
    active, user_id)
VALUES (%(name)s, %(phone)s, %(unit_id)s, %(center_id)s, %(van_id)s, %(level)s, %(area_code)s, %(specialties)s,
    %(active)s, %(user_id)s)
ON CONFLICT (area_code, name, (coalesce(phone, ''))) DO UPDATE SET unit_id = EXCLUDED.unit_id,
    center_id = EXCLUDED.center_id, van_id = EXCLUDED.van_id, level = EXCLUDED.level,
    specialties = EXCLUDED.specialties, active = EXCLUDED.active, user_id = EXCLUDED.user_id, updated_at = now()
RETURNING id, (xmax = 0) AS inserted"""
_RETIRE = {
    "units": "UPDATE units SET active = false, updated_at = now() WHERE active AND NOT (id = ANY(%s))",
    "mediators": "UPDATE mediators SET active = false, updated_at = now() WHERE active AND NOT (id = ANY(%s))",
}
_LOCKS = {
    "units": ("LOCK TABLE units IN SHARE ROW EXCLUSIVE MODE",),
    "mediators": ("LOCK TABLE units IN SHARE MODE", "LOCK TABLE mediators IN SHARE ROW EXCLUSIVE MODE"),
}
# Before a --replace of the mediators, the user links of those it retires are released (a person
# signs in as one mediator: the file's may take over a user another row held).
_RELEASE_USERS = "UPDATE mediators SET user_id = NULL WHERE user_id IS NOT NULL AND user_id = ANY(%s)"


def _counts(what: str, items: Iterable[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        key = item.kind if what == "units" else item.level
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def import_roster(
    dsn: str,
    what: str,
    path: str | Path,
    *,
    layer: str | None = None,
    encoding: str | None = None,
    replace: bool = False,
    progress: bool = False,
    audit: AuditHook | None = None,
) -> ImportReport:
    """Read, judge and write a roster file (``what``: units or mediators) in one transaction."""
    if what not in ("units", "mediators"):
        raise ValueError(what)
    sheet = read_sheet(path, what, layer=layer, encoding=encoding)
    statement = _UPSERT_UNIT if what == "units" else _UPSERT_MEDIATOR
    columns = roster.UNIT_COLUMNS if what == "units" else roster.MEDIATOR_COLUMNS
    with psycopg.connect(dsn) as conn:
        for lock in _LOCKS[what]:
            conn.execute(lock)
        good, problems = judge(sheet, what, roster.Known.read(conn), progress)
        if problems:
            raise ImportRejected(problems, sheet.warnings)
        items = [item for _, item in good]
        if replace and what == "mediators":
            users = [i.user_id for i in items if i.user_id is not None]
            conn.execute(_RELEASE_USERS, (users,))
        ids: list[int] = []
        inserted = 0
        with conn.cursor() as cur:
            for n, item in tqdm(good, disable=not progress, file=sys.stderr, unit=what[:-1], leave=False):
                try:
                    with conn.transaction():
                        row = cur.execute(statement, {c: getattr(item, c) for c in columns}).fetchone()
                except psycopg.errors.UniqueViolation:
                    raise ImportRejected(
                        [
                            Problem(
                                "duplicate", (item.name,), f"{sheet.unit} {n}, user", "the user is another mediator's"
                            )
                        ],
                        sheet.warnings,
                    ) from None
                assert row is not None, "an upsert … RETURNING answers its row"
                ids.append(int(row[0]))
                inserted += bool(row[1])
            deleted = cur.execute(_RETIRE[what], (ids,)).rowcount if replace else 0
        report = ImportReport(what, inserted, len(ids) - inserted, deleted, _counts(what, items), sheet.warnings)
        if audit is not None:
            audit(conn, report)
    return report


__all__ = [
    "FIELDS",
    "MAX_FILE_BYTES",
    "MAX_ROWS",
    "Formula",
    "Sheet",
    "cell_problems",
    "import_roster",
    "judge",
    "read_sheet",
]

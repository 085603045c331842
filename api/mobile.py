"""``/m``: the grid worker's phone page, and what it needs from the server.

A plain server-rendered page, one vanilla script and a stylesheet (``api/static/m/``), Leaflet from
``api/static/vendor/`` — no Dash: a phone on the steppe must open the page with no network at all,
so its shell is a handful of fixed files a service worker keeps (``/m/sw.js``, scope ``/m``), and a
web app manifest (``/m/manifest.webmanifest``) makes it installable. Nothing comes from another
origin: the map shows the deployment's own grid polygons (``/api/v1/layers/grids``) over the base map
this server draws (services/basemap.py, light style; none with ``YITU_BASEMAP=none``).

The shell (page, script, style, worker, manifest, icons, Leaflet) holds no data: the same files
for everyone, so the worker may keep them. The page's data comes from:

- ``GET /m/api/state``: who I am, the case types, the server's clock (the phone compares its own:
  a report carries the phone's ``reported_at`` only when the two agree within
  :data:`CLOCK_TOLERANCE_SECONDS`), which triage fields the report API takes, and my lists —
  my reports (by identity, geodata/field.py) and my tasks (the cases dispatched to the mediator I
  am: ``mediators.user_id``), each in the API's case shape, masked for my role.
- ``GET /api/v1/locate?lon=&lat=``: the grid cell a point falls in (or outside the territory),
  shown before a report is sent.
- ``GET /m/events``: the live push (Server-Sent Events from this process's live hub, the same
  Redis stream the wall's WebSocket reads; case events only, scoped to my area, no personal data):
  the page reloads its lists when one of its cases changes. The stream ends every
  :data:`EVENTS_SECONDS` and the browser reconnects (``Last-Event-ID``: nothing is missed), so an
  ended session stops it within that time, as the guard refuses the reconnect.

Writes go through the ordinary API (``POST /api/v1/cases`` with an Idempotency-Key, the
attachments upload with one, the transitions with one): the page keeps each report in IndexedDB
with its keys and photos until the server has both (api/static/m/outbox.js), so a report made
without network is sent once, photos included, whenever the network comes back.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api import errors
from api.auth import Principal, principal
from api.cases import CaseIn, case_out
from api.deps import services
from api.guard import FIELD_PAGE
from api.openapi import READ, answers
from api.page_head import page_head
from geodata import field, queries
from geodata.attachments import MAX_FILE_BYTES
from geodata.gcj02 import CHINA_LAT, CHINA_LON
from services.basemap import phone_tiles
from services.live import LiveHub
from services.runtime import Services
from services.scheduler import CasesRuntime

log = logging.getLogger("yitu.mobile")
router = APIRouter()  # only /api/v1/locate is in the schema (tag "areas"): one tag, one block in /docs

STATIC = Path(__file__).resolve().parent / "static"
SHELL = STATIC / "m"
VENDOR = STATIC / "vendor"
# Who the page is for: the people who report and handle cases in the field (and those who stand in).
ROLES = FIELD_PAGE
MAX_PHOTOS = 9  # a report's photos (the attachments API takes 10 a request, 20 a case)
CLOCK_TOLERANCE_SECONDS = 180  # the phone's clock is trusted for reported_at within this of the server's
EVENTS_SECONDS = 60  # one live stream's length: the reconnect re-checks the session (api/guard.py), and
# a server stopping waits for open streams: at most this long
HEARTBEAT_SECONDS = 15.0
# The report API's optional triage fields (issue 14 item 5), sent by the page only once CaseIn has
# them (before that CaseIn forbids unknown fields, and the page folds them into the description).
TRIAGE_FIELDS = tuple(name for name in ("severity", "people_involved") if name in CaseIn.model_fields)

FILES = {  # the shell's files: path → (file, media type)
    "/m/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/m/outbox.js": ("outbox.js", "text/javascript; charset=utf-8"),
    "/m/app.css": ("app.css", "text/css; charset=utf-8"),
    "/m/icon-192.png": ("icon-192.png", "image/png"),
    "/m/icon-512.png": ("icon-512.png", "image/png"),
}
LEAFLET = ("leaflet/leaflet.js", "leaflet/leaflet.css")

TEXTS: dict[str, str] = {
    "title": "一图指挥 · 网格员",
    "short": "网格员",
    "tab_report": "上报",
    "tab_reports": "我的上报",
    "tab_tasks": "我的任务",
    "online": "在线",
    "offline": "离线",
    "locate": "定位",
    "locating": "正在定位…",
    "tap_hint": "点击“定位”取得手机位置，或在地图上点选事发地点",
    "in_grid": "所在网格：{name}（{code}）",
    "in_grid_offline": "所在网格（离线判断）：{name}（{code}）",
    "outside": "不在本辖区范围内",
    "outside_china": "位置不在中国境内（经度 {lon}，纬度 {lat}），无法上报",
    "out_of_scope": "该位置不在您负责的区域内",
    "where_unknown": "离线：所在网格待联网后确定",
    "geo_denied": "无法取得手机位置（{reason}），请在地图上点选",
    "type": "纠纷类型",
    "type_pick": "请选择",
    "severity": "严重程度",
    "severity_none": "未评估",
    "severity_simple": "简易",
    "severity_ordinary": "一般",
    "severity_complex": "复杂",
    "severity_major": "重大",
    "people": "涉及人数",
    "description": "情况描述",
    "description_ph": "时间、地点、起因、诉求……",
    "parties": "当事人",
    "party_name": "姓名",
    "party_phone": "电话",
    "party_role": "身份",
    "party_applicant": "申请人",
    "party_respondent": "被申请人",
    "party_add": "添加当事人",
    "party_remove": "删除",
    "photos": "现场照片（最多 {max} 张）",
    "photo_add": "拍照 / 选照片",
    "photo_remove": "移除",
    "submit": "上报",
    "need_place": "请先定位或在地图上点选事发地点",
    "need_type": "请选择纠纷类型",
    "need_description": "请填写情况描述",
    "too_many_photos": "最多 {max} 张照片，第 {n} 张未加入",
    "photo_too_big": "照片“{name}”超过 {mb} MB，未加入",
    "photo_not_image": "“{name}”不是照片（JPEG、PNG、WebP 或 HEIC），未加入",
    "photo_corrupt": "照片“{name}”已损坏，无法打开，未加入",
    "saved": "已保存在手机上，正在发送",
    "outbox": "等待发送",
    "waiting": "等待发送",
    "sending": "正在发送…",
    "refused": "被服务器拒绝：{message}",
    "photos_refused": "案件已上报，照片被拒绝：{message}",
    "retry_later": "网络恢复后自动发送（已尝试 {n} 次）",
    "offline_waiting": "离线：{n} 条上报等待发送，网络恢复后自动发送",
    "delete": "删除",
    "delete_confirm": "删除这条未发送的上报？",
    "sent": "已上报 {code}",
    "signed_out": "登录已过期：请重新登录，未发送的上报会保留并在登录后发送",
    "sign_in": "重新登录",
    "other_user": "{user} 的上报，待其登录后发送",
    "clock_off": "手机时间与服务器相差 {minutes} 分钟：上报时间以服务器收到的时间为准，请校准手机时间",
    "no_reports": "还没有上报",
    "no_tasks": "没有分派给您的案件",
    "not_mediator": "您的账号未登记为调解员，没有分派的任务",
    "step_reported": "采集上报",
    "step_accepted": "核实立案",
    "step_dispatched": "指挥派遣",
    "step_handling": "处理反馈",
    "step_closed": "核查结案",
    "step_evaluated": "考核评价",
    "step_rejected": "不予受理",
    "level_grid": "网格",
    "level_village": "村（社区）",
    "level_town": "苏木乡镇",
    "level_banner": "旗",
    "deadline": "期限",
    "overdue": "已超期",
    "photos_n": "照片 {n} 张",
    "act_start": "开始处理",
    "act_attempt": "记录调解",
    "act_close": "调解结案",
    "act_evaluate": "回访",
    "act_escalate": "上报上级",
    "attempt_success": "调解成功",
    "attempt_failed": "调解未成",
    "outcome": "结案方式",
    "outcome_mediated": "调解成功",
    "outcome_judicial_confirmation": "司法确认",
    "outcome_litigation": "转诉讼",
    "outcome_arbitration": "转仲裁",
    "outcome_withdrawn": "当事人撤回",
    "agreement_photo": "调解协议书照片",
    "need_agreement": "请拍摄签字的调解协议书",
    "satisfaction": "满意度",
    "followup_note": "回访记录",
    "note": "备注",
    "confirm": "确定",
    "cancel": "取消",
    "done": "已完成",
    "action_failed": "操作未成功：{message}",
    "action_queued": "网络不通：联网后请重试",
    "err_lon": "位置不在中国境内，无法上报",
    "err_type": "纠纷类型无效",
    "err_description": "情况描述无效（1–4000 字）",
    "err_parties": "当事人信息有误（姓名必填，电话为数字）",
    "err_reported_at": "上报时间有误（手机时间不准）",
    "err_file_413": "照片过大（每张不超过 10 MB）",
    "err_file_409": "照片已达上限（每案最多 20 个附件）",
    "err_file": "照片无法识别或已损坏",
    "err_403": "无权限进行此操作",
    "err_404": "找不到该案件（或不在您的辖区）",
    "err_409": "案件状态已变化，请刷新后再试",
    "err_other": "{message}",
    "refused_page": "此页面供网格员、调度员和管理员使用",
    "role_grid_worker": "网格员",
    "role_dispatcher": "调度员",
    "role_admin": "管理员",
    "mediator": "调解员",
}


def _texts_json() -> str:
    """The page's strings as a JSON data block (never executed: no script hash needed by the CSP)."""
    data = {**TEXTS, "_max_photos": MAX_PHOTOS, "_max_mb": MAX_FILE_BYTES // (1024 * 1024)}
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


@cache
def _page() -> str:
    """The shell: the same for everyone (the worker keeps it), data comes from /m/api/state."""
    esc = html.escape
    t = TEXTS
    severities = "".join(
        f'<option value="{v}">{esc(t["severity_" + v])}</option>' for v in ("simple", "ordinary", "complex", "major")
    )
    head = page_head(
        "zh-CN",
        t["title"],
        [
            ("manifest", "/m/manifest.webmanifest"),
            ("icon", "/m/icon-192.png"),
            ("apple-touch-icon", "/m/icon-192.png"),
            ("stylesheet", "/static/vendor/leaflet/leaflet.css"),
            ("stylesheet", "/m/app.css"),
        ],
        theme="#0b1f33",
        app=True,
    )
    return f"""{head}
<body class="m">
<header class="m-top">
<h1>{esc(t["title"])}</h1>
<span id="m-net" class="m-net" data-online="true">{esc(t["online"])}</span>
</header>
<p id="m-who" class="m-who"></p>
<p id="m-clock" class="m-banner" data-kind="warn" role="status" hidden></p>
<p id="m-banner" class="m-banner" role="status" hidden></p>
<nav class="m-tabs" role="tablist">
<button type="button" role="tab" data-tab="report" aria-selected="true">{esc(t["tab_report"])}</button>
<button type="button" role="tab" data-tab="reports" aria-selected="false">{esc(t["tab_reports"])}
 <b id="m-count-reports" class="m-count"></b></button>
<button type="button" role="tab" data-tab="tasks" aria-selected="false">{esc(t["tab_tasks"])}
 <b id="m-count-tasks" class="m-count"></b></button>
</nav>
<main>
<section id="tab-report" class="m-tab" data-tab="report">
<section id="m-outbox" class="m-outbox" hidden>
<h2>{esc(t["outbox"])}</h2>
<ul id="m-outbox-list"></ul>
</section>
<div id="m-map" class="m-map" aria-label="地图"></div>
<div class="m-where">
<button type="button" data-action="locate">{esc(t["locate"])}</button>
<span id="m-where" data-state="none">{esc(t["tap_hint"])}</span>
</div>
<form id="m-report" novalidate>
<label for="m-type">{esc(t["type"])}</label>
<select id="m-type" name="type" required><option value="">{esc(t["type_pick"])}</option></select>
<div class="m-row">
<div><label for="m-severity">{esc(t["severity"])}</label>
<select id="m-severity" name="severity"><option value="">{esc(t["severity_none"])}</option>{severities}</select></div>
<div><label for="m-people">{esc(t["people"])}</label>
<input id="m-people" name="people_involved" type="number" min="1" max="100000" inputmode="numeric"></div>
</div>
<label for="m-description">{esc(t["description"])}</label>
<textarea id="m-description" name="description" maxlength="4000" rows="4" required
 placeholder="{esc(t["description_ph"])}"></textarea>
<fieldset id="m-parties" class="m-parties">
<legend>{esc(t["parties"])}</legend>
<div id="m-party-rows"></div>
<button type="button" data-action="add-party">{esc(t["party_add"])}</button>
</fieldset>
<label class="m-photo-pick">{esc(t["photos"].format(max=MAX_PHOTOS))}
<input id="m-photos" name="photos" type="file" accept="image/*" capture="environment" multiple>
<span class="m-photo-button">{esc(t["photo_add"])}</span>
</label>
<ul id="m-thumbs" class="m-thumbs"></ul>
<p id="m-form-error" class="m-error" role="alert"></p>
<button type="submit" class="m-submit" data-action="submit-report">{esc(t["submit"])}</button>
</form>
</section>
<section id="tab-reports" class="m-tab" data-tab="reports" hidden>
<ul id="m-reports" class="m-cases"></ul>
</section>
<section id="tab-tasks" class="m-tab" data-tab="tasks" hidden>
<ul id="m-tasks" class="m-cases"></ul>
</section>
</main>
<dialog id="m-dialog" class="m-dialog"></dialog>
<script type="application/json" id="m-texts">{_texts_json()}</script>
<script src="/static/vendor/leaflet/leaflet.js"></script>
<script src="/m/outbox.js"></script>
<script src="/m/app.js"></script>
</body>
</html>
"""


@cache
def shell_version() -> str:
    """A digest of every file of the shell: a new one installs a new worker with fresh copies."""
    digest = hashlib.sha256(_page().encode())
    for name, _ in sorted(FILES.values()):
        digest.update((SHELL / name).read_bytes())
    for name in LEAFLET:
        digest.update((VENDOR / name).read_bytes())
    return digest.hexdigest()[:16]


def _refused_page() -> str:
    esc = html.escape
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(TEXTS["title"])}</title><link rel="stylesheet" href="/m/app.css"></head>'
        f'<body class="m"><p class="m-refused" id="refused">{esc(TEXTS["refused_page"])}</p>'
        '<form method="post" action="/logout"><button type="submit">退出登录</button></form></body></html>'
    )


# --- the shell ----------------------------------------------------------------------------------------


@router.get("/m", include_in_schema=False)
def page(who: Annotated[Principal, Depends(principal)]) -> HTMLResponse:
    """The page (signed in: the guard sends anyone else to /login?next=/m and back)."""
    if who.role not in ROLES:
        return HTMLResponse(_refused_page(), status_code=403, headers={"Cache-Control": "no-store"})
    return HTMLResponse(_page(), headers={"Cache-Control": "no-cache"})


def _file(path: str) -> Response:
    name, media_type = FILES[path]
    return Response((SHELL / name).read_bytes(), media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/m/app.js", include_in_schema=False)
def app_js() -> Response:
    return _file("/m/app.js")


@router.get("/m/outbox.js", include_in_schema=False)
def outbox_js() -> Response:
    return _file("/m/outbox.js")


@router.get("/m/app.css", include_in_schema=False)
def app_css() -> Response:
    return _file("/m/app.css")


@router.get("/m/icon-192.png", include_in_schema=False)
def icon_192() -> Response:
    return _file("/m/icon-192.png")


@router.get("/m/icon-512.png", include_in_schema=False)
def icon_512() -> Response:
    return _file("/m/icon-512.png")


@router.get("/m/sw.js", include_in_schema=False)
def service_worker() -> Response:
    """The service worker, with the shell's version; allowed the scope ``/m`` (the page itself,
    which the default scope of a script under /m/ would not include)."""
    text = (SHELL / "sw.js").read_text(encoding="utf-8").replace("__VERSION__", shell_version())
    return Response(
        text,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/m"},
    )


@router.get("/m/manifest.webmanifest", include_in_schema=False)
def manifest() -> JSONResponse:
    body = {
        "name": TEXTS["title"],
        "short_name": TEXTS["short"],
        "lang": "zh-CN",
        "start_url": "/m",
        "scope": "/m",
        "display": "standalone",
        "orientation": "portrait",
        "background_color": "#0b1f33",
        "theme_color": "#0b1f33",
        "icons": [
            {"src": "/m/icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any maskable"},
            {"src": "/m/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any maskable"},
        ],
    }
    return JSONResponse(body, media_type="application/manifest+json", headers={"Cache-Control": "no-cache"})


@router.get("/static/vendor/{path:path}", include_in_schema=False)
def vendor(path: str) -> Response:
    """Vendored libraries (Leaflet): files under api/static/vendor only, nothing else."""
    target = (VENDOR / path).resolve()
    if not target.is_relative_to(VENDOR) or not target.is_file() or target.suffix not in _VENDOR_TYPES:
        raise errors.NotFound(f"no vendored file {path[:100]}", field="path")
    return Response(
        target.read_bytes(), media_type=_VENDOR_TYPES[target.suffix], headers={"Cache-Control": "max-age=86400"}
    )


_VENDOR_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


# --- the data -----------------------------------------------------------------------------------------


def _field_user(who: Principal) -> None:
    if who.role not in ROLES:
        raise errors.Forbidden(f"a {who.role} has no phone page", field="Authorization")


def _state(svc: Services, rules: Any, who: Principal, lists: bool) -> dict[str, Any]:
    now = datetime.now(UTC)
    out: dict[str, Any] = {
        "now": now.isoformat(),
        "me": {"ident": who.ident, "name": who.name, "role": who.role, "area": who.area, "mediator": None},
        "clock_tolerance_seconds": CLOCK_TOLERANCE_SECONDS,
        "triage_fields": list(TRIAGE_FIELDS),
        "max_photos": MAX_PHOTOS,
        "china": {"lon": list(CHINA_LON), "lat": list(CHINA_LAT)},
        "tiles": phone_tiles(svc.settings, light=True),  # the base map under the cells (light), or None
    }
    if not lists:
        return out
    with svc.pool.connection() as conn:
        mediator = field.mediator_of(conn, who.token_id) if who.kind == "user" else None
        reports = field.my_reports(conn, who.kind, who.token_id, who.area)
        tasks = field.my_tasks(conn, who.token_id, who.area) if mediator is not None else []
        out["types"] = [{"code": r["code"], "name": r["name_zh"]} for r in field.case_types(conn)]
    out["me"]["mediator"] = {"id": mediator["id"], "name": mediator["name"]} if mediator else None
    out["reports"] = [case_out(r, who, rules, now) for r in reports]
    out["tasks"] = [case_out(r, who, rules, now) for r in tasks]
    return out


@router.get("/m/api/state", include_in_schema=False)
async def state(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    lists: Annotated[bool, Query(description="false: only who I am and the clock (the outbox's check)")] = True,
) -> JSONResponse:
    """Who I am, the clock, the case types, my reports and my tasks."""
    _field_user(who)
    svc = services(request)
    rt: CasesRuntime = request.app.state.cases_runtime
    body = await run_in_threadpool(_state, svc, rt.rules, who, lists)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _locate(svc: Services, lon: float, lat: float, who: Principal) -> dict[str, Any]:
    with svc.pool.connection() as conn:
        chain = queries.grid_chain(conn, lon, lat)
    links = [{"code": link.code, "name": link.name, "level": link.level} for link in chain.links]
    return {
        "lon": lon,
        "lat": lat,
        "inside": not chain.outside,
        "grid": links[0] if links and links[0]["level"] == 4 else None,
        "chain": links,
        "in_scope": who.area is None or any(link["code"] == who.area for link in links),
        "near_boundary": chain.near_boundary,
    }


@router.get(
    "/api/v1/locate",
    tags=["areas"],
    summary="Where a point falls: its grid cell and chain, or outside the territory",
    description="The grid chain a report at this point would get (deepest level first), whether the caller's "
    "area holds it, and whether it lies within a few metres of a boundary. A point outside China is a 422 "
    "naming lon or lat, as for a report.",
    responses=answers(*READ),
)
async def locate(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    lon: Annotated[float, Query(ge=CHINA_LON[0], le=CHINA_LON[1], description="WGS-84 longitude, in China")],
    lat: Annotated[float, Query(ge=CHINA_LAT[0], le=CHINA_LAT[1], description="WGS-84 latitude, in China")],
) -> dict[str, Any]:
    return await run_in_threadpool(_locate, services(request), lon, lat, who)


# --- the live push ----------------------------------------------------------------------------------


async def _events(hub: LiveHub, who: Principal, cursor: str | None, request: Request) -> AsyncIterator[bytes]:
    yield b"retry: 3000\n\n"
    ends = time.monotonic() + EVENTS_SECONDS
    async with hub.subscribe(cursor, who.area) as (sub, missed):
        pending = missed
        while time.monotonic() < ends and not await request.is_disconnected():
            for entry in pending:
                if entry.type.startswith("case."):
                    data = json.dumps(entry.as_json(), ensure_ascii=False)
                    yield f"id: {entry.id}\nevent: case\ndata: {data}\n\n".encode()
            got = await sub.next(HEARTBEAT_SECONDS)
            if got is None:  # continuity lost (Redis restarted, a gap): the page reloads its lists
                sub.resynced()
                yield b"event: resync\ndata: {}\n\n"
                pending = []
            elif not got:
                yield b": alive\n\n"
                pending = []
            else:
                pending = got


@router.get("/m/events", include_in_schema=False)
async def events(request: Request, who: Annotated[Principal, Depends(principal)]) -> StreamingResponse:
    """The page's live push: case events (codes, steps, levels; no personal data) in my area."""
    _field_user(who)
    hub: LiveHub = request.app.state.live
    cursor = request.headers.get("last-event-id") or None
    return StreamingResponse(
        _events(hub, who, cursor, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


__all__ = ["ROLES", "router", "shell_version"]

"""``/m/van``: the van crew's phone page (车组), and the one read it lives on.

A crew member signs in at /login like everyone (a user of role ``van`` riding in one van:
``yitu user create NAME --role van --van V01``, 028_van_crew.sql) and opens ``/m/van`` on a phone.
The page is plain server-rendered HTML with one script and one style sheet of its own
(``api/static/mvan/``) and Leaflet from ``/static/vendor/leaflet/`` (api/mobile.py): nothing from another origin,
nothing inline (the app's Content-Security-Policy, api/budgets.py), so it loads on a thin link.

What the page does, all through the API everyone uses:

- ``GET /api/v1/vans/{van}/dispatch`` (here): the van, its active visit, and while the van is on
  its way the route (the pgRouting path from the van's latest fix to the case, with the dispatch
  ranking's distance and ETA: geodata/dispatch.py ``route_to_case``). Polled every few seconds:
  the arrival (geodata/dispatch.py ``arrive``, from the van's own GPS) shows within one poll.
- the case itself: ``GET /api/v1/cases/{code}`` (masked by role, audited as a read of personal data).
- sharing the phone's GPS: ``watchPosition`` → ``POST /api/v1/vans/positions`` in batches (every
  5 s or 10 fixes), each batch kept in the phone's localStorage with its own Idempotency-Key until
  the server has it, so a gap in the network loses no fix and a resent batch is stored once.
- ending the visit: the photos to ``POST /api/v1/cases/{code}/attachments`` first (while the case is
  still the van's to see), then ``POST /api/v1/dispatches/{id}/end`` with result, outcome and note,
  each with an Idempotency-Key kept across retries.

Least privilege is the van token's (services/identity.py ``Principal.sees_case``): a crew member
reads its own van and the case that van is sent to, nothing else. Dispatchers and admins may open
``/m/van?van=V01`` to see what a crew sees (within their area: only the vans of their banner and
the league's, 039_van_banner.sql; another banner's van is a 404 naming ``van``).
"""

from __future__ import annotations

import html
import json
import mimetypes
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse

from api import errors
from api.auth import Principal, principal
from api.deps import services
from api.openapi import READ, answers
from api.page_head import page_head
from api.vans import VAN_ID, van_out
from geodata import dispatch, tracking
from geodata.queries import rounded
from services.basemap import phone_tiles
from services.dispatching import DISPATCHERS, dispatch_out, routing
from services.identity import CREW_ROLE
from services.runtime import Services
from services.settings import Settings

router = APIRouter(tags=["van crew"])

STATIC = FsPath(__file__).resolve().parent / "static"
MVAN = STATIC / "mvan"
POLL_SECONDS = 5  # how often the page asks again (the arrival shows within this)
GPS_BATCH_SECONDS = 5  # a batch of fixes goes out this often, or at GPS_BATCH_FIXES fixes
GPS_BATCH_FIXES = 10

Svc = Annotated[Services, Depends(services)]
Who = Annotated[Principal, Depends(principal)]

TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "车组 · 行走的调解室",
        "logout": "退出",
        "no_van": "请选择车辆",
        "loading": "正在读取任务…",
        "none": "暂无派车任务。收到派车后这里会自动显示。",
        "case": "案件",
        "type": "类型",
        "description": "纠纷描述",
        "parties": "当事人",
        "distance": "路程",
        "eta": "预计到达",
        "en_route": "前往现场",
        "on_site": "已到达现场",
        "arrived_at": "到达时间",
        "radius": "到达半径 {m} 米",
        "gps_share": "共享本机位置",
        "gps_stop": "停止共享位置",
        "gps_off": "未共享位置",
        "gps_on": "正在共享位置",
        "gps_waiting": "待发送 {n} 条",
        "gps_sent": "已发送 {n} 条",
        "gps_denied": "无法获取位置：{msg}",
        "gps_unsupported": "此浏览器不支持定位",
        "offline": "网络中断，定位点已保存在本机，恢复后自动补发",
        "net_down": "网络中断，正在重试…",
        "end_title": "结束走访",
        "result": "调解结果",
        "result_none": "不记录",
        "result_success": "调解成功",
        "result_failed": "调解未成",
        "outcome": "结案方式",
        "outcome_none": "暂不结案",
        "outcome_mediated": "调解结案",
        "outcome_judicial_confirmation": "司法确认",
        "outcome_litigation": "转诉讼",
        "outcome_arbitration": "转仲裁",
        "outcome_withdrawn": "撤回",
        "note": "走访记录",
        "photos": "现场照片 / 协议书",
        "photos_hint": "最多 10 张",
        "photos_pick": "拍照 / 选择照片",
        "photos_count": "已选 {n} 张",
        "end": "结束走访",
        "ending": "正在提交…",
        "ended": "走访已结束",
        "uploading": "正在上传照片…",
        "failed": "提交失败：{msg}",
        "stale": "数据更新于 {t}",
        "route_road": "道路",
        "route_great_circle": "直线估算",
        "no_route": "车辆暂无位置，无法规划路线",
        "min": "分钟",
        "km": "公里",
        "van": "车辆",
        "status_available": "空闲",
        "status_en_route": "途中",
        "status_on_site": "在现场",
        "status_offline": "离线",
        "status_maintenance": "维护",
    },
    "en": {
        "title": "Van crew",
        "logout": "Sign out",
        "no_van": "Choose a van",
        "loading": "Loading…",
        "none": "No dispatch. It shows here by itself when the van is sent.",
        "case": "Case",
        "type": "Type",
        "description": "Description",
        "parties": "Parties",
        "distance": "Distance",
        "eta": "ETA",
        "en_route": "On the way",
        "on_site": "Arrived on site",
        "arrived_at": "Arrived",
        "radius": "arrival radius {m} m",
        "gps_share": "Share this phone's position",
        "gps_stop": "Stop sharing",
        "gps_off": "Position not shared",
        "gps_on": "Sharing position",
        "gps_waiting": "{n} waiting",
        "gps_sent": "{n} sent",
        "gps_denied": "No position: {msg}",
        "gps_unsupported": "This browser cannot locate",
        "offline": "No network: fixes are kept on the phone and sent when it is back",
        "net_down": "No network; trying again…",
        "end_title": "End the visit",
        "result": "Result",
        "result_none": "Not recorded",
        "result_success": "Mediated",
        "result_failed": "Not mediated",
        "outcome": "Close as",
        "outcome_none": "Leave open",
        "outcome_mediated": "Mediated",
        "outcome_judicial_confirmation": "Judicial confirmation",
        "outcome_litigation": "Litigation",
        "outcome_arbitration": "Arbitration",
        "outcome_withdrawn": "Withdrawn",
        "note": "Note",
        "photos": "Photos / signed agreement",
        "photos_hint": "up to 10",
        "photos_pick": "Take or choose photos",
        "photos_count": "{n} chosen",
        "end": "End the visit",
        "ending": "Sending…",
        "ended": "Visit ended",
        "uploading": "Uploading photos…",
        "failed": "Not sent: {msg}",
        "stale": "As of {t}",
        "route_road": "road",
        "route_great_circle": "straight-line estimate",
        "no_route": "The van has no position yet: no route",
        "min": "min",
        "km": "km",
        "van": "Van",
        "status_available": "available",
        "status_en_route": "en route",
        "status_on_site": "on site",
        "status_offline": "offline",
        "status_maintenance": "maintenance",
    },
}

RESULTS = ("success", "failed")
OUTCOMES = ("mediated", "judicial_confirmation", "litigation", "arbitration", "withdrawn")


def _lang(settings: Settings) -> str:
    return settings.lang if settings.lang in TEXTS else "zh-CN"


def crew_van(who: Principal, van: str | None) -> str:
    """The van ``who`` may look at: a crew member's own (another is 403 naming ``van``); for the
    people who send them any van their area sees (applied in the SQL: :func:`van_scope`)."""
    if who.role == CREW_ROLE:
        if who.van is None:
            raise errors.Forbidden("this van crew identity has no van", field="van")
        if van is not None and van != who.van:
            raise errors.Forbidden(f"this van crew is {who.van}'s, not {van}'s", field="van")
        return who.van
    if who.role not in DISPATCHERS:
        raise errors.Forbidden(f"a {who.role} has no van page", field="Authorization")
    if van is None:
        raise errors.Invalid("give the van, e.g. ?van=V01", field="van")
    return van


# --- the read ------------------------------------------------------------------------------------


def _line(points: list[tuple[float, float]]) -> list[list[float]]:
    return [[round(x, 6), round(y, 6)] for x, y in points]


def van_scope(who: Principal) -> str | None:
    """The area the vans ``who`` may open are read within: none for a crew member (its own van,
    wherever its area lies: :func:`crew_van` already holds it to that van), else the reader's."""
    return None if who.role == CREW_ROLE else who.area


def crew_state(svc: Services, who: Principal, van: str, now: datetime) -> dict[str, Any]:
    """The van, its active visit (within the reader's area) and, on the way, its route and ETA."""
    settings = svc.settings
    route_rules = routing(settings)
    area = van_scope(who)
    with svc.pool.connection() as conn:
        vans = tracking.van_list(conn, offline_seconds=settings.van_offline_seconds, at=now, van=van, scope=area)
        if not vans:  # no such van, or another banner's: the same answer
            raise errors.NotFound(f"no van with id {van!r}", field="van")
        active = dispatch.dispatches(conn, active=True, van=van, area=area, limit=1)
        d = active[0] if active else None
        route = None
        case_type: dict[str, Any] = {}
        if d is not None:
            row = conn.execute(
                "SELECT t.code, t.name_zh, t.name_en FROM cases c JOIN case_types t ON t.code = c.type WHERE c.id = %s",
                (d["case_id"],),
            ).fetchone()
            if row is not None:
                case_type = {"case_type": row[0], "case_type_name": row[1] if _lang(settings) == "zh-CN" else row[2]}
            if d["status"] == "en_route" and d["case_lon"] is not None:
                route = dispatch.route_to_case(
                    conn, d["case_code"], van, (d["case_lon"], d["case_lat"]), route_rules, now
                )
    return {
        "as_of": now.isoformat(),
        "van": van_out(vans[0]),
        "arrival_radius_m": settings.arrival_radius_m,
        "offline_after_seconds": settings.van_offline_seconds,
        "dispatch": {**dispatch_out(d), **case_type} if d is not None else None,
        "route": None
        if route is None
        else {
            "method": route["method"],
            "distance_m": rounded(route["distance_m"]),  # as the candidates and the dispatch show them
            "eta_s": rounded(route["eta_s"], 0),
            "line": _line(route["line"]),
        },
    }


@router.get(
    "/api/v1/vans/{van}/dispatch",
    summary="A van's active visit with its route (pgRouting) and ETA: the crew page's read (van crew, dispatchers)",
    description="A van crew (token or signed-in crew member) reads its own van only (403 naming van otherwise); "
    "admins and dispatchers the vans of their area's banner and the league's (404 naming van otherwise), "
    "the visit only within their area. dispatch is null when the van is "
    "not on a visit; route is null once the van is on site or when it has no position.",
    responses=answers(*READ),
)
def van_dispatch(van: Annotated[str, Path(pattern=VAN_ID)], svc: Svc, who: Who) -> dict[str, Any]:
    return crew_state(svc, who, crew_van(who, van), datetime.now(UTC))


# --- the page and its files ----------------------------------------------------------------------


def _options(t: dict[str, str], name: str, values: tuple[str, ...]) -> str:
    esc = html.escape
    none = f'<option value="">{esc(t[name + "_none"])}</option>'
    return none + "".join(f'<option value="{v}">{esc(t[f"{name}_{v}"])}</option>' for v in values)


def page_html(settings: Settings, who: Principal, van: str) -> str:
    """The page: a frame the script fills; its settings and texts in data attributes (no inline script)."""
    lang = _lang(settings)
    t = TEXTS[lang]
    esc = html.escape
    config = {
        "van": van,
        "poll_ms": POLL_SECONDS * 1000,
        "batch_ms": GPS_BATCH_SECONDS * 1000,
        "batch_fixes": GPS_BATCH_FIXES,
        "tiles": phone_tiles(settings),
        "lang": lang,
        "user": who.name,
    }
    styles = ["/theme.css", "/static/vendor/leaflet/leaflet.css", "/m/van/app.css"]
    head = page_head(lang, t["title"], [("stylesheet", s) for s in styles], theme="#050b18", app=True)
    return f"""{head}
<body class="mvan" data-config="{esc(json.dumps(config, ensure_ascii=False))}"
 data-texts="{esc(json.dumps(t, ensure_ascii=False))}">
<header class="mvan-head">
<div class="mvan-who"><strong id="mvan-van">{esc(t["van"])} {esc(van)}</strong>
<span id="mvan-van-status" class="mvan-badge"></span></div>
<form method="post" action="/logout"><button type="submit" class="mvan-link">{esc(t["logout"])}</button></form>
</header>
<div id="mvan-net" class="mvan-net" hidden></div>
<div id="mvan-map" class="mvan-map" role="img" aria-label="map"></div>
<section class="mvan-gps">
<button type="button" data-action="share-gps" class="mvan-button" aria-pressed="false">{esc(t["gps_share"])}</button>
<p id="mvan-gps-status" class="mvan-muted" role="status">{esc(t["gps_off"])}</p>
</section>
<section id="mvan-dispatch" class="mvan-card" data-state="loading">
<p class="mvan-muted">{esc(t["loading"])}</p>
</section>
<section id="mvan-end" class="mvan-card" hidden>
<h2>{esc(t["end_title"])}</h2>
<form id="mvan-end-form">
<label for="mvan-result">{esc(t["result"])}</label>
<select id="mvan-result" name="result">{_options(t, "result", RESULTS)}</select>
<label for="mvan-outcome">{esc(t["outcome"])}</label>
<select id="mvan-outcome" name="outcome">{_options(t, "outcome", OUTCOMES)}</select>
<label for="mvan-note">{esc(t["note"])}</label>
<textarea id="mvan-note" name="note" rows="3" maxlength="2000"></textarea>
<span class="mvan-label">{esc(t["photos"])} <span class="mvan-muted">({esc(t["photos_hint"])})</span></span>
<input id="mvan-photos" name="photos" type="file" accept="image/*" capture="environment" multiple class="mvan-file">
<label for="mvan-photos" class="mvan-button mvan-pick">{esc(t["photos_pick"])}</label>
<p id="mvan-photos-count" class="mvan-muted"></p>
<button type="submit" data-action="end-visit" class="mvan-button mvan-primary">{esc(t["end"])}</button>
<p id="mvan-end-status" class="mvan-status" role="status"></p>
</form>
</section>
<p id="mvan-asof" class="mvan-muted mvan-foot"></p>
<script src="/static/vendor/leaflet/leaflet.js"></script>
<script src="/m/van/app.js"></script>
</body>
</html>
"""


@router.get("/m/van", include_in_schema=False)
def crew_page(
    request: Request, who: Who, svc: Svc, van: Annotated[str | None, Query(pattern=VAN_ID)] = None
) -> HTMLResponse:
    """The crew's page for their van (a dispatcher or admin: ``?van=V01``, or a list of the vans)."""
    offline = svc.settings.van_offline_seconds
    if who.role in DISPATCHERS and van is None:
        with svc.pool.connection() as conn:
            every = tracking.van_list(conn, offline_seconds=offline, at=datetime.now(UTC), scope=van_scope(who))
        return HTMLResponse(picker_html(svc.settings, every), headers={"Cache-Control": "no-store"})
    chosen = crew_van(who, van)
    with svc.pool.connection() as conn:
        known = tracking.van_list(conn, offline_seconds=offline, at=datetime.now(UTC), van=chosen, scope=van_scope(who))
    if not known:
        raise errors.NotFound(f"no van with id {chosen!r}", field="van")
    return HTMLResponse(page_html(svc.settings, who, chosen), headers={"Cache-Control": "no-store"})


def picker_html(settings: Settings, vans: list[dict[str, Any]]) -> str:
    """For a dispatcher or admin: which van's crew page to open."""
    lang = _lang(settings)
    t = TEXTS[lang]
    esc = html.escape
    items = "".join(
        f'<li><a href="/m/van?van={esc(v["id"])}">{esc(v["id"])} · {esc(v["name"])}</a>'
        f' <span class="mvan-muted">{esc(t.get("status_" + str(v["status"]), str(v["status"])))}</span></li>'
        for v in vans
    )
    return f"""<!DOCTYPE html>
<html lang="{esc(lang)}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(t["title"])}</title>
<link rel="stylesheet" href="/theme.css"><link rel="stylesheet" href="/m/van/app.css"></head>
<body class="mvan"><main class="mvan-card"><h1>{esc(t["no_van"])}</h1><ul class="mvan-vans">{items}</ul></main></body>
</html>
"""


def _file(path: FsPath, media_type: str | None = None) -> Response:
    kind = media_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Response(path.read_bytes(), media_type=kind, headers={"Cache-Control": "no-cache"})


@router.get("/m/van/app.js", include_in_schema=False)
def crew_script() -> Response:
    return _file(MVAN / "app.js", "text/javascript")


@router.get("/m/van/app.css", include_in_schema=False)
def crew_style() -> Response:
    return _file(MVAN / "app.css", "text/css")

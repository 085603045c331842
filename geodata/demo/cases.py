"""A year of dispute cases with the shape DOMAIN.md describes, plus today's open workload.

The mix follows the seeds: ~70% settled inside the grid, >90% at village level or below, ~93%
resolved (mediated or judicially confirmed), the rest guided to litigation/arbitration or
withdrawn. Reports follow a weekly rhythm (quiet weekends), a seasonal one (spring grazing and
land-transfer disputes, wage and lending disputes before the Spring Festival) and office hours.
Arrays are drawn with numpy so that the city scale (a million cases) stays fast; rows are
yielded ready for COPY.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
import shapely

from geodata.clock import CST
from geodata.demo.territory import Territory
from geodata.workflow import LEVELS, OPEN_STEPS, STEPS, DeadlineRules, Rules

# A COPY row of ``cases`` (the columns seed.py names) and one of ``case_events``.
CaseRow = tuple[object, ...]
EventRow = tuple[int, datetime, str, str, str, str | None, str | None, str, str]
# The workflow columns of a case: level, step, deadline, attempts, outcome, satisfaction, note,
# reported_at, closed_at, updated_at.
CaseState = tuple[str, str, datetime, int, str | None, int | None, str | None, datetime, datetime | None, datetime]

# Deadlines are the workflow's (DeadlineRules: the grid the same day, the village 3 days, the town
# 5, the banner 7 by default), so a seeded case is due when a case reported through the API would
# be. A same-day level (0 hours) gives a case about this long when the generator spreads handling
# times and places open cases before their deadlines.
SAME_DAY_HOURS = 12.0

TYPE_WEIGHTS: dict[str, float] = {
    "neighbour": 15,
    "marriage_family": 13,
    "grassland": 11,
    "private_lending": 8,
    "land_transfer": 8,
    "housing_land": 7,
    "contract": 6,
    "labour": 6,
    "damages": 5,
    "herder_enterprise": 4,
    "business": 3,
    "forest_land": 3,
    "traffic": 3,
    "seed_corn": 2,
    "consumer": 1.5,
    "medical": 1,
    "expropriation": 1,
    "pollution": 1,
    "property_mgmt": 1,
    "other": 2.5,
}
# How much more often a type climbs above the grid (complex matters go to town or banner).
ESCALATION_PROPENSITY = {
    "expropriation": 3.0,
    "herder_enterprise": 2.5,
    "labour": 2.0,
    "medical": 2.5,
    "pollution": 2.5,
    "grassland": 1.4,
    "land_transfer": 1.3,
    "contract": 1.3,
}
CHANNELS = {"grid_app": 0.55, "hotline_12345": 0.15, "window": 0.15, "visit": 0.10, "petition": 0.05}
OUTCOMES = {
    "mediated": 0.880,
    "judicial_confirmation": 0.054,
    "litigation": 0.037,
    "arbitration": 0.010,
    "withdrawn": 0.019,
}
SURNAMES = list(
    "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
) + ["乌兰", "巴图", "其木格", "苏和", "额尔敦", "敖日格乐"]
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英文辉力建华玉梅红海鹏飞")
TEMPLATES = {
    "grassland": "{v}牧户{a}与{b}因草场边界和禁牧期放牧发生争议",
    "herder_enterprise": "{v}牧民{a}与企业因占用草场补偿标准发生纠纷",
    "land_transfer": "{v}村民{a}与承包方{b}因土地流转租金拖欠发生纠纷",
    "seed_corn": "{v}种植户{a}与制种企业因玉米种子质量和收购价发生争议",
    "private_lending": "{a}与{b}民间借贷到期未还，双方对利息有争议",
    "marriage_family": "{v}{a}与{b}夫妻因赡养老人和财产分割发生矛盾",
    "neighbour": "{v}{a}与邻居{b}因院墙排水和通行问题发生口角",
    "labour": "{a}等务工人员反映{b}拖欠工资",
    "traffic": "{v}路段{a}与{b}因交通事故赔偿发生争议",
}


def _day_weights(start: datetime, days: int) -> np.ndarray:
    doy = np.asarray([(start + timedelta(days=i)).timetuple().tm_yday for i in range(days)])
    wd = np.asarray([(start + timedelta(days=i)).weekday() for i in range(days)])
    season = (
        1.0
        + 0.45 * np.exp(-(((doy - 105) / 28.0) ** 2))  # spring grazing, land transfer
        + 0.35 * np.exp(-(((doy - 25) / 14.0) ** 2))  # before the Spring Festival
        + 0.15 * np.exp(-(((doy - 275) / 12.0) ** 2))  # autumn harvest and sales
        - 0.15 * np.exp(-(((doy - 200) / 25.0) ** 2))
    )  # midsummer lull
    week = np.where(wd == 5, 0.6, np.where(wd == 6, 0.45, 1.0))
    w: np.ndarray = season * week
    return w / float(w.sum())


HOUR_W = np.asarray([1, 0.5, 0.3, 0.3, 0.3, 0.5, 1, 3, 8, 11, 11, 9, 5, 6, 9, 10, 9, 7, 4, 3, 2.5, 2, 1.5, 1.2])
HOUR_W = HOUR_W / HOUR_W.sum()


def _points_in_cells(territory: Territory, cell_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cells = territory.level(4)
    out = np.empty((len(cell_idx), 2))
    order = np.argsort(cell_idx, kind="stable")
    sorted_idx = cell_idx[order]
    bounds = np.searchsorted(sorted_idx, np.arange(len(cells) + 1))
    for c, cell in enumerate(cells):
        lo, hi = bounds[c], bounds[c + 1]
        need = hi - lo
        if not need:
            continue
        geom = cell.geom
        shapely.prepare(geom)
        minx, miny, maxx, maxy = geom.bounds
        got: list[np.ndarray] = []
        have = 0
        while have < need:
            cand = rng.uniform((minx, miny), (maxx, maxy), size=(max(16, 3 * (need - have)), 2))
            cand = cand[shapely.contains_xy(geom, cand[:, 0], cand[:, 1])]
            got.append(cand)
            have += len(cand)
        out[order[lo:hi]] = np.concatenate(got)[:need]
    return out


def _person(rng: np.random.Generator) -> dict[str, str]:
    name = SURNAMES[rng.integers(len(SURNAMES))] + "".join(
        GIVEN[i] for i in rng.integers(len(GIVEN), size=rng.integers(1, 3))
    )
    phone = "1" + str(rng.choice([3, 5, 7, 8, 9])) + f"{rng.integers(0, 10**9):09d}"
    return {"name": name, "phone": phone}


def _allowed(rules: DeadlineRules, level: str) -> timedelta:
    """About how long a level has for a case under ``rules`` (a same-day level: SAME_DAY_HOURS)."""
    hours = rules.hours[level]
    return timedelta(hours=hours if hours > 0 else SAME_DAY_HOURS)


def generate_cases(
    territory: Territory,
    n_history: int,
    n_open: int,
    as_of: datetime,
    rng: np.random.Generator,
    first_id: int = 1,
    rules: Rules | None = None,
) -> Iterator[tuple[list[CaseRow], list[EventRow]]]:
    """Yield (case rows, event rows) in chunks, oldest first; ids start at ``first_id``; deadlines
    by ``rules`` of the territory's banner (the workflow's defaults unless given)."""
    cells = territory.level(4)
    banner = territory.level(1)[0]
    own = (rules or DeadlineRules()).of(banner.code)
    names = {a.code: a.name for a in territory.areas}
    kinds = {a.code: a.props.get("kind") for a in territory.level(3)}
    cw = np.asarray([4.0 if kinds.get(c.parent_code or "") == "community" else 1.0 for c in cells])
    types = list(TYPE_WEIGHTS)
    tw = np.asarray(list(TYPE_WEIGHTS.values()))
    start = (as_of - timedelta(days=365)).astimezone(CST).replace(hour=0, minute=0, second=0, microsecond=0)
    n = n_history + n_open
    day = rng.choice(365, size=n_history, p=_day_weights(start, 365))
    secs = rng.choice(24, size=n_history, p=HOUR_W) * 3600 + rng.integers(0, 3600, size=n_history)
    t_hist = np.sort(day * 86400 + secs)
    # open cases: reported over the last ten days
    span = max(1.0, (as_of - start).total_seconds())
    t_open = np.sort(span - rng.exponential(3 * 86400, size=n_open).clip(600, 10 * 86400))
    t_all = np.concatenate([t_hist, t_open])
    cell_i = rng.choice(len(cells), size=n, p=cw / cw.sum())
    pts = _points_in_cells(territory, cell_i, rng)
    type_i = rng.choice(len(types), size=n, p=tw / tw.sum())
    chan = rng.choice(list(CHANNELS), size=n, p=list(CHANNELS.values()))
    day_seq: dict[str, int] = {}
    chunk_rows: list[CaseRow] = []
    chunk_events: list[EventRow] = []
    for k in range(n):
        reported = start + timedelta(seconds=float(t_all[k]))
        if reported >= as_of:
            reported = as_of - timedelta(minutes=5)
        ctype = types[type_i[k]]
        cell = cells[cell_i[k]]
        drawn = _Drawn(first_id + k, ctype, cell.code, reported, str(chan[k]))
        row, events = (_history_case if k < n_history else _open_case)(rng, drawn, as_of, own)
        local_day = row[7].astimezone(CST).strftime("%Y%m%d")  # the report time the case really has
        day_seq[local_day] = day_seq.get(local_day, 0) + 1
        code = f"{banner.code}-{local_day}-{day_seq[local_day]:06d}"
        lon, lat = pts[k]
        parties = [_person(rng) | {"role": "申请人"}, _person(rng) | {"role": "被申请人"}]
        desc = TEMPLATES.get(ctype, "{v}{a}与{b}发生纠纷，申请调解").format(
            v=names[cell.parent_code], a=parties[0]["name"], b=parties[1]["name"]
        )
        chunk_rows.append(
            (
                first_id + k,
                code,
                ctype,
                desc,
                json.dumps(parties, ensure_ascii=False),
                f"SRID=4326;POINT({lon:.6f} {lat:.6f})",
                cell.code,
                cell.code[:12],
                cell.code[:9],
                banner.code,
                str(chan[k]),
                f"gw:{cell.code}" if chan[k] == "grid_app" else str(chan[k]),
                *row,
            )
        )
        chunk_events.extend(events)
        if len(chunk_rows) >= 20000:
            yield chunk_rows, chunk_events
            chunk_rows, chunk_events = [], []
    if chunk_rows:
        yield chunk_rows, chunk_events


def _final_level(rng: np.random.Generator, ctype: str) -> int:
    p = ESCALATION_PROPENSITY.get(ctype, 1.0)
    up = np.asarray([0.18, 0.06, 0.025]) * p
    probs = np.concatenate([[max(0.05, 1 - up.sum())], up])
    return int(rng.choice(4, p=probs / probs.sum()))


def _handling_time(rng: np.random.Generator, rules: DeadlineRules, level: str) -> timedelta:
    """How long a level took: mostly well within its time, one case in 25 past it."""
    late = rng.random() < 0.04
    frac = rng.uniform(1.02, 1.6) if late else rng.beta(2.0, 3.0)
    return _allowed(rules, level) * float(frac)


def _ev(
    case_id: int,
    when: datetime,
    actor: str,
    role: str,
    action: str,
    frm: str | None,
    to: str | None,
    level: str,
    note: str = "",
) -> EventRow:
    return (case_id, when, actor, role, action, frm, to, level, note)


class _Drawn(NamedTuple):
    """One case as the caller drew it: id, type, grid cell, report time and channel."""

    cid: int
    ctype: str
    cell: str
    reported: datetime
    channel: str


def _report(case: _Drawn, when: datetime, level: str) -> EventRow:
    """The report: a grid worker's from the app, else a clerk's who took the call or the visit."""
    by_app = case.channel == "grid_app"
    actor, role = (f"gw:{case.cell}", "grid_worker") if by_app else ("clerk", "dispatcher")
    return _ev(case.cid, when, actor, role, "report", None, "reported", level)


def _escalate(cid: int, when: datetime, lv: int) -> EventRow:
    note = f"{LEVELS[lv - 1]}→{LEVELS[lv]}"
    return _ev(cid, when, "dispatcher", "dispatcher", "escalate", "handling", "handling", LEVELS[lv], note)


def _history_case(
    rng: np.random.Generator, case: _Drawn, as_of: datetime, rules: DeadlineRules
) -> tuple[CaseState, list[EventRow]]:
    cid, cell, reported = case.cid, case.cell, case.reported
    final = _final_level(rng, case.ctype)
    t = reported
    ev = [_report(case, t, "grid")]
    t += timedelta(minutes=float(rng.integers(5, 90)))
    ev.append(_ev(cid, t, "dispatcher", "dispatcher", "accept", "reported", "accepted", "grid"))
    t += timedelta(minutes=float(rng.integers(5, 60)))
    ev.append(_ev(cid, t, "dispatcher", "dispatcher", "dispatch", "accepted", "dispatched", "grid"))
    t += timedelta(minutes=float(rng.integers(10, 240)))
    ev.append(_ev(cid, t, f"gw:{cell}", "grid_worker", "start", "dispatched", "handling", "grid"))
    level_start = t
    for lv in range(1, final + 1):
        t = level_start + _handling_time(rng, rules, LEVELS[lv - 1]) * 0.6
        ev.append(_escalate(cid, t, lv))
        level_start = t
    level = LEVELS[final]
    closed = level_start + _handling_time(rng, rules, level)
    if closed >= as_of:
        closed = as_of - timedelta(minutes=1)
    outcome = str(rng.choice(list(OUTCOMES), p=list(OUTCOMES.values())))
    attempts = int(rng.integers(1, 4))
    ev.append(_ev(cid, closed, "mediator", "dispatcher", "close", "handling", "closed", level, outcome))
    evaluated = closed + timedelta(days=float(rng.uniform(1, 10)))
    step, satisfaction, note, updated = "closed", None, None, closed
    if evaluated < as_of:
        step = "evaluated"
        satisfaction = int(rng.choice([1, 2, 3, 4, 5], p=[0.01, 0.02, 0.07, 0.30, 0.60]))
        note = "回访：当事人对调解结果表示认可" if satisfaction >= 4 else "回访：当事人仍有意见"
        ev.append(_ev(cid, evaluated, "dispatcher", "dispatcher", "evaluate", "closed", "evaluated", level, note))
        updated = evaluated
    deadline = rules.deadline(level, level_start)
    return (level, step, deadline, attempts, outcome, satisfaction, note, reported, closed, updated), ev


# The standing workload by open step (every one of the workflow's OPEN_STEPS; a test checks).
OPEN_STEP_SHARE = {"reported": 0.15, "accepted": 0.20, "dispatched": 0.25, "handling": 0.40}
OPEN_ORDER = [s for s in STEPS if s in OPEN_STEPS]
OPEN_OVERDUE_SHARE = 0.15
OPEN_LEVEL_SHARE = (0.12, 0.50, 0.28, 0.10)


def _open_case(
    rng: np.random.Generator, case: _Drawn, as_of: datetime, rules: DeadlineRules
) -> tuple[CaseState, list[EventRow]]:
    """An open case: its level's clock started so that about one in seven is past its deadline.

    The report time drawn by the caller is replaced: open cases are placed backwards from
    ``as_of`` so that step, level and deadline agree with each other.
    """
    step = str(rng.choice(OPEN_ORDER, p=[OPEN_STEP_SHARE[s] for s in OPEN_ORDER]))
    # The grid settles its matters the same day, so the standing workload sits mostly higher up.
    final = int(rng.choice(4, p=OPEN_LEVEL_SHARE))
    level = LEVELS[final]
    escalated = final if step == "handling" else 0  # earlier steps: taken in directly at that level
    overdue = rng.random() < OPEN_OVERDUE_SHARE
    limit = _allowed(rules, level)
    if final == 0 and not overdue:  # the grid's deadline is the end of the local day
        since_midnight = as_of - as_of.astimezone(CST).replace(hour=0, minute=0, second=0, microsecond=0)
        level_start = as_of - since_midnight * float(rng.uniform(0.05, 0.95))
    elif overdue:
        level_start = as_of - limit * float(rng.uniform(1.05, 1.8))
    else:
        level_start = as_of - limit * float(rng.uniform(0.05, 0.9))
    before = sum((_allowed(rules, LEVELS[lv]) * float(rng.uniform(0.3, 0.9)) for lv in range(escalated)), timedelta())
    reported = level_start - before
    cid = case.cid
    ev = [_report(case, reported, LEVELS[final - escalated])]
    t = reported
    gap = max(timedelta(minutes=2), (as_of - reported) / 8)
    for i, s in enumerate(OPEN_ORDER[1 : OPEN_ORDER.index(step) + 1], start=1):
        t = min(as_of - timedelta(seconds=1), t + gap * float(rng.uniform(0.2, 1.0)))
        action = {"accepted": "accept", "dispatched": "dispatch", "handling": "start"}[s]
        ev.append(_ev(cid, t, "dispatcher", "dispatcher", action, OPEN_ORDER[i - 1], s, LEVELS[final - escalated]))
    t_lv = reported
    for lv in range(1, escalated + 1):
        t_lv += _allowed(rules, LEVELS[lv - 1]) * float(rng.uniform(0.3, 0.9))
        t_lv = max(t_lv, t + timedelta(minutes=1))
        t_lv = level_start if lv == escalated else t_lv
        ev.append(_escalate(cid, t_lv, lv))
    attempts = int(rng.integers(0, 3)) if step == "handling" else 0
    deadline = rules.deadline(level, level_start)
    return (level, step, deadline, attempts, None, None, None, reported, None, max(t, t_lv)), ev

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
DEFAULT_TEMPLATE = "{v}{a}与{b}发生纠纷，申请调解"


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


# --- the history, a batch of arrays at a time ------------------------------------------------------

CHUNK = 50_000  # cases per batch: ~300,000 events, a few tens of MB of COPY text
_SEC = 1_000_000  # times are int64 microseconds since the epoch (UTC)
_DAY = 86_400 * _SEC
_CST = 8 * 3600 * _SEC  # China time is UTC+8 all year
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The events of a closed case, in order; the escalations and the follow-up visit only where they happened.
_SLOTS = ("report", "accept", "dispatch", "start", "escalate", "escalate", "escalate", "close", "evaluate")
_FROM = (None, "reported", "accepted", "dispatched", "handling", "handling", "handling", "handling", "closed")
_TO = ("reported", "accepted", "dispatched", "handling", "handling", "handling", "handling", "closed", "evaluated")
_NOTE_GOOD, _NOTE_BAD = "回访：当事人对调解结果表示认可", "回访：当事人仍有意见"


def _us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def _allowed_us(rules: DeadlineRules) -> np.ndarray:
    """:func:`_allowed` of every level, in microseconds."""
    return np.asarray([_allowed(rules, lv) // timedelta(microseconds=1) for lv in LEVELS], dtype=np.int64)


def _deadlines(rules: DeadlineRules, level: np.ndarray, since: np.ndarray) -> np.ndarray:
    """``rules.deadline`` of each case (its level's index, the start of that level), vectorised."""
    hours = np.asarray([rules.hours[lv] for lv in LEVELS])
    span = np.asarray([round(h * 3600 * _SEC) for h in hours], dtype=np.int64)
    end_of_day = (since + _CST) // _DAY * _DAY + (86_399 * _SEC) - _CST  # 23:59:59 of the local day
    due: np.ndarray = np.where(hours[level] > 0, since + span[level], end_of_day)
    return due


def _stamp(us: np.ndarray) -> np.ndarray:
    """COPY text of timestamps (UTC)."""
    return np.char.add(np.datetime_as_string(us.astype("datetime64[us]"), unit="us"), "+00")


def _names(rng: np.random.Generator, k: int) -> tuple[list[str], list[str]]:
    """``k`` people: a surname and one or two given characters each, and a mobile number."""
    sur = rng.integers(len(SURNAMES), size=k)
    two = rng.integers(1, 3, size=k) == 2
    g1, g2 = rng.integers(len(GIVEN), size=k), rng.integers(len(GIVEN), size=k)
    names = [SURNAMES[s] + GIVEN[a] + (GIVEN[b] if t else "") for s, a, b, t in zip(sur, g1, g2, two, strict=True)]
    second = np.asarray([3, 5, 7, 8, 9])[rng.integers(5, size=k)]
    phones = [f"1{a}{b:09d}" for a, b in zip(second, rng.integers(0, 10**9, size=k), strict=True)]
    return names, phones


class _World(NamedTuple):
    """What every batch of one banner's history shares."""

    cells: list[str]
    villages: list[str]  # the name of each cell's village
    banner: str
    start: int  # µs
    as_of: int  # µs
    rules: DeadlineRules


@dataclass
class HistoryBatch:
    """Closed and evaluated cases with their trails, as columns: COPY text for the seeder (no
    Python object per value), rows for a check."""

    ids: np.ndarray
    code: list[str]
    type: list[str]
    description: list[str]
    parties: list[str]
    lon: np.ndarray
    lat: np.ndarray
    cell: list[str]
    channel: list[str]
    level: np.ndarray  # index into LEVELS
    deadline: np.ndarray
    attempts: np.ndarray
    outcome: list[str]
    satisfaction: np.ndarray  # 0: none given
    reported: np.ndarray
    closed: np.ndarray
    updated: np.ndarray
    banner: str
    # the trail: one row per event, case by case in order
    ev_case: np.ndarray
    ev_slot: np.ndarray  # index into _SLOTS
    ev_at: np.ndarray
    ev_cell: list[str]
    ev_app: np.ndarray  # the report came from the grid worker's app
    ev_level: np.ndarray
    ev_note: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def _case_columns(self) -> list[list[str]]:
        sat = self.satisfaction
        return [
            self.ids.astype(str).tolist(),
            self.code,
            self.type,
            self.description,
            self.parties,
            [f"SRID=4326;POINT({x:.6f} {y:.6f})" for x, y in zip(self.lon.tolist(), self.lat.tolist(), strict=True)],
            self.cell,
            [c[:12] for c in self.cell],
            [c[:9] for c in self.cell],
            [self.banner] * len(self),
            self.channel,
            [f"gw:{c}" if ch == "grid_app" else ch for c, ch in zip(self.cell, self.channel, strict=True)],
            [LEVELS[i] for i in self.level.tolist()],
            ["evaluated" if s else "closed" for s in sat.tolist()],
            _stamp(self.deadline).tolist(),
            self.attempts.astype(str).tolist(),
            self.outcome,
            [str(s) if s else "\\N" for s in sat.tolist()],
            [(_NOTE_GOOD if s >= 4 else _NOTE_BAD) if s else "\\N" for s in sat.tolist()],
            _stamp(self.reported).tolist(),
            _stamp(self.closed).tolist(),
            _stamp(self.updated).tolist(),
        ]

    def _event_columns(self) -> list[list[str]]:
        slot = self.ev_slot.tolist()
        app = self.ev_app.tolist()
        actor = [
            (f"gw:{c}" if a else "clerk") if s == 0 else f"gw:{c}" if s == 3 else "mediator" if s == 7 else "dispatcher"
            for s, a, c in zip(slot, app, self.ev_cell, strict=True)
        ]
        role = ["grid_worker" if (s == 0 and a) or s == 3 else "dispatcher" for s, a in zip(slot, app, strict=True)]
        return [
            self.ev_case.astype(str).tolist(),
            _stamp(self.ev_at).tolist(),
            actor,
            role,
            [_SLOTS[s] for s in slot],
            [_FROM[s] or "\\N" for s in slot],
            [_TO[s] for s in slot],
            [LEVELS[i] for i in self.ev_level.tolist()],
            self.ev_note,
        ]

    def copy_text(self) -> tuple[bytes, bytes]:
        """The cases and the events as COPY text, in the columns seed.py names."""

        def text(cols: list[list[str]]) -> bytes:
            return ("\n".join(map("\t".join, zip(*cols, strict=True))) + "\n").encode()

        return text(self._case_columns()), text(self._event_columns())

    def rows(self) -> tuple[list[CaseRow], list[EventRow]]:
        """The same as Python values (NULL as None), as the open cases come."""

        def value(v: str) -> str | None:
            return None if v == "\\N" else v

        cols = self._case_columns()
        cases: list[CaseRow] = []
        for i, r in enumerate(zip(*cols, strict=True)):
            sat = int(self.satisfaction[i])
            cases.append(
                (
                    int(self.ids[i]),
                    *r[1:14],
                    _dt(self.deadline[i]),
                    int(self.attempts[i]),
                    r[16],
                    sat or None,
                    value(r[18]),
                    _dt(self.reported[i]),
                    _dt(self.closed[i]),
                    _dt(self.updated[i]),
                )
            )
        ev = self._event_columns()
        events: list[EventRow] = [
            (int(self.ev_case[i]), _dt(self.ev_at[i]), a, ro, ac, value(f), t, lv, n)
            for i, (_, _, a, ro, ac, f, t, lv, n) in enumerate(zip(*ev, strict=True))
        ]
        return cases, events


def _history(
    w: _World,
    rng: np.random.Generator,
    first_id: int,
    t: np.ndarray,
    cell_i: np.ndarray,
    pts: np.ndarray,
    type_i: np.ndarray,
    chan_i: np.ndarray,
    day_seq: dict[str, int],
) -> HistoryBatch:
    """One batch of closed cases reported at ``t`` (seconds after the start, sorted), drawn as the
    workflow runs: accepted, dispatched and started at the grid, escalated a level at a time (most
    never are), closed within their level's time (one in 25 late), evaluated some days later."""
    k = len(t)
    types, channels, outcomes = list(TYPE_WEIGHTS), list(CHANNELS), list(OUTCOMES)
    minute = 60 * _SEC
    reported = np.minimum(w.start + (t * _SEC).astype(np.int64), w.as_of - 5 * minute)
    # the level it was settled at: a type's propensity to climb
    prop = np.asarray([ESCALATION_PROPENSITY.get(ty, 1.0) for ty in types])[type_i]
    up = np.asarray([0.18, 0.06, 0.025])[None, :] * prop[:, None]
    probs = np.concatenate([np.maximum(0.05, 1 - up.sum(axis=1))[:, None], up], axis=1)
    cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    final = (rng.random(k)[:, None] > cum[:, :3]).sum(axis=1)
    at = np.zeros((k, len(_SLOTS)), dtype=np.int64)
    at[:, 0] = reported
    at[:, 1] = at[:, 0] + rng.integers(5, 90, size=k) * minute
    at[:, 2] = at[:, 1] + rng.integers(5, 60, size=k) * minute
    at[:, 3] = at[:, 2] + rng.integers(10, 240, size=k) * minute
    allowed = _allowed_us(w.rules)

    def handling(level: np.ndarray) -> np.ndarray:
        late = rng.random(k) < 0.04
        frac = np.where(late, rng.uniform(1.02, 1.6, size=k), rng.beta(2.0, 3.0, size=k))
        took: np.ndarray = (allowed[level] * frac).astype(np.int64)
        return took

    level_start = at[:, 3].copy()
    for lv in (1, 2, 3):
        step = (handling(np.full(k, lv - 1)) * 0.6).astype(np.int64)
        climbs = final >= lv
        level_start = np.where(climbs, level_start + step, level_start)
        at[:, 3 + lv] = level_start
    closed = np.minimum(level_start + handling(final), w.as_of - minute)
    at[:, 7] = closed
    outcome_i = rng.choice(len(outcomes), size=k, p=list(OUTCOMES.values()))
    attempts = rng.integers(1, 4, size=k)
    evaluated = closed + (rng.uniform(1, 10, size=k) * _DAY).astype(np.int64)
    was_evaluated = evaluated < w.as_of
    satisfaction = np.where(was_evaluated, rng.choice(5, size=k, p=[0.01, 0.02, 0.07, 0.30, 0.60]) + 1, 0)
    at[:, 8] = evaluated
    # codes: the banner, the local day of the report and its number that day (numbered on across batches)
    local_days = np.datetime_as_string((reported + _CST).astype("datetime64[us]"), unit="D")
    day_str = np.char.replace(local_days, "-", "").tolist()
    codes: list[str] = []
    for d in day_str:
        n = day_seq.get(d, 0) + 1
        day_seq[d] = n
        codes.append(f"{w.banner}-{d}-{n:06d}")
    applicants, phones_a = _names(rng, k)
    respondents, phones_b = _names(rng, k)
    type_names = [types[i] for i in type_i.tolist()]
    cells = [w.cells[i] for i in cell_i.tolist()]
    descriptions = [
        TEMPLATES.get(ty, DEFAULT_TEMPLATE).format(v=w.villages[c], a=a, b=b)
        for ty, c, a, b in zip(type_names, cell_i.tolist(), applicants, respondents, strict=True)
    ]
    parties = [
        f'[{{"name": "{a}", "phone": "{pa}", "role": "申请人"}}, '
        f'{{"name": "{b}", "phone": "{pb}", "role": "被申请人"}}]'
        for a, pa, b, pb in zip(applicants, phones_a, respondents, phones_b, strict=True)
    ]
    # the trail: which slots happened, case by case
    happened = np.ones((k, len(_SLOTS)), dtype=bool)
    for lv in (1, 2, 3):
        happened[:, 3 + lv] = final >= lv
    happened[:, 8] = was_evaluated
    row, slot = np.nonzero(happened)
    ev_level = np.where(slot < 4, 0, np.where(slot < 7, slot - 3, final[row]))
    outcome_names = [outcomes[i] for i in outcome_i.tolist()]
    sat = satisfaction.tolist()
    notes = [
        f"{LEVELS[s - 4]}→{LEVELS[s - 3]}"
        if 4 <= s <= 6
        else outcome_names[r]
        if s == 7
        else (_NOTE_GOOD if sat[r] >= 4 else _NOTE_BAD)
        if s == 8
        else ""
        for r, s in zip(row.tolist(), slot.tolist(), strict=True)
    ]
    ids = np.arange(first_id, first_id + k, dtype=np.int64)
    return HistoryBatch(
        ids=ids,
        code=codes,
        type=type_names,
        description=descriptions,
        parties=parties,
        lon=pts[:, 0],
        lat=pts[:, 1],
        cell=cells,
        channel=[channels[i] for i in chan_i.tolist()],
        level=final,
        deadline=_deadlines(w.rules, final, level_start),
        attempts=attempts,
        outcome=outcome_names,
        satisfaction=satisfaction,
        reported=reported,
        closed=closed,
        updated=np.where(was_evaluated, evaluated, closed),
        banner=w.banner,
        ev_case=ids[row],
        ev_slot=slot,
        ev_at=at[row, slot],
        ev_cell=[cells[r] for r in row.tolist()],
        ev_app=np.asarray([c == "grid_app" for c in channels])[chan_i][row],
        ev_level=ev_level,
        ev_note=notes,
    )


class OpenBatch(NamedTuple):
    """Today's open cases: few, drawn one by one (their steps, levels and deadlines agree)."""

    cases: list[CaseRow]
    events: list[EventRow]

    def rows(self) -> tuple[list[CaseRow], list[EventRow]]:
        return self.cases, self.events


def generate(
    territory: Territory,
    n_history: int,
    n_open: int,
    as_of: datetime,
    rng: np.random.Generator,
    first_id: int = 1,
    rules: Rules | None = None,
    days: int = 365,
    chunk: int = CHUNK,
) -> Iterator[HistoryBatch | OpenBatch]:
    """The history over ``days`` days before ``as_of`` in batches of arrays, oldest first, then the
    open cases; ids start at ``first_id``; deadlines by ``rules`` of the territory's banner (the
    workflow's defaults unless given; a book gives the banner's own, geodata/deadlines.py).

    The history is drawn a batch at a time with numpy (five million cases in a minute or two):
    :class:`HistoryBatch` renders itself as COPY text for the seeder, or as rows for a test."""
    cells = territory.level(4)
    banner = territory.level(1)[0]
    own = (rules or DeadlineRules()).of(banner.code)
    names = {a.code: a.name for a in territory.areas}
    kinds = {a.code: a.props.get("kind") for a in territory.level(3)}
    cw = np.asarray([4.0 if kinds.get(c.parent_code or "") == "community" else 1.0 for c in cells])
    tw = np.asarray(list(TYPE_WEIGHTS.values()))
    start = (as_of - timedelta(days=days)).astimezone(CST).replace(hour=0, minute=0, second=0, microsecond=0)
    day = rng.choice(days, size=n_history, p=_day_weights(start, days))
    secs = rng.choice(24, size=n_history, p=HOUR_W) * 3600 + rng.integers(0, 3600, size=n_history)
    t_hist = np.sort(day * 86400 + secs)
    world = _World(
        [c.code for c in cells], [names[c.parent_code or ""] for c in cells], banner.code, _us(start), _us(as_of), own
    )
    day_seq: dict[str, int] = {}
    for lo in range(0, n_history, chunk):
        t = t_hist[lo : lo + chunk]
        k = len(t)
        cell_i = rng.choice(len(cells), size=k, p=cw / cw.sum())
        batch = _history(
            world,
            rng,
            first_id + lo,
            t,
            cell_i,
            _points_in_cells(territory, cell_i, rng),
            rng.choice(len(tw), size=k, p=tw / tw.sum()),
            rng.choice(len(CHANNELS), size=k, p=list(CHANNELS.values())),
            day_seq,
        )
        yield batch
    if n_open:
        yield _open_batch(territory, n_open, as_of, rng, first_id + n_history, own, start, day_seq)


def generate_cases(
    territory: Territory,
    n_history: int,
    n_open: int,
    as_of: datetime,
    rng: np.random.Generator,
    first_id: int = 1,
    rules: Rules | None = None,
    days: int = 365,
) -> Iterator[tuple[list[CaseRow], list[EventRow]]]:
    """:func:`generate` as (case rows, event rows) per batch: Python values, for checks and tests."""
    for batch in generate(territory, n_history, n_open, as_of, rng, first_id, rules, days):
        yield batch.rows()


def _open_batch(
    territory: Territory,
    n_open: int,
    as_of: datetime,
    rng: np.random.Generator,
    first_id: int,
    rules: DeadlineRules,
    start: datetime,
    day_seq: dict[str, int],
) -> OpenBatch:
    """The open cases, reported over the last ten days, their codes numbered on from the history's."""
    cells = territory.level(4)
    banner = territory.level(1)[0]
    names = {a.code: a.name for a in territory.areas}
    kinds = {a.code: a.props.get("kind") for a in territory.level(3)}
    cw = np.asarray([4.0 if kinds.get(c.parent_code or "") == "community" else 1.0 for c in cells])
    types = list(TYPE_WEIGHTS)
    tw = np.asarray(list(TYPE_WEIGHTS.values()))
    span = max(1.0, (as_of - start).total_seconds())
    t_open = np.sort(span - rng.exponential(3 * 86400, size=n_open).clip(600, 10 * 86400))
    cell_i = rng.choice(len(cells), size=n_open, p=cw / cw.sum())
    pts = _points_in_cells(territory, cell_i, rng)
    type_i = rng.choice(len(types), size=n_open, p=tw / tw.sum())
    chan = rng.choice(list(CHANNELS), size=n_open, p=list(CHANNELS.values()))
    rows: list[CaseRow] = []
    events: list[EventRow] = []
    for k in range(n_open):
        reported = start + timedelta(seconds=float(t_open[k]))
        if reported >= as_of:
            reported = as_of - timedelta(minutes=5)
        ctype = types[type_i[k]]
        cell = cells[cell_i[k]]
        drawn = _Drawn(first_id + k, ctype, cell.code, reported, str(chan[k]))
        row, evs = _open_case(rng, drawn, as_of, rules)
        local_day = row[7].astimezone(CST).strftime("%Y%m%d")  # the report time the case really has
        day_seq[local_day] = day_seq.get(local_day, 0) + 1
        code = f"{banner.code}-{local_day}-{day_seq[local_day]:06d}"
        lon, lat = pts[k]
        parties = [_person(rng) | {"role": "申请人"}, _person(rng) | {"role": "被申请人"}]
        desc = TEMPLATES.get(ctype, DEFAULT_TEMPLATE).format(
            v=names[cell.parent_code], a=parties[0]["name"], b=parties[1]["name"]
        )
        rows.append(
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
        events.extend(evs)
    return OpenBatch(rows, events)


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

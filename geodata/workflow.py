"""The six-step closed loop (六步闭环) as a pure state machine, with the deadline rules.

Nothing here touches a database or a clock: callers pass the case's state, the action and
``now``, and get back the change to write (or an :class:`IllegalTransition` naming the actions
that are allowed instead). That keeps every rule testable with a frozen clock, and lets the
API, the scheduler and the tests share one definition of the loop.

Steps: reported (采集上报) → accepted (核实立案) → dispatched (指挥派遣) → handling (处理反馈)
→ closed (核查结案) → evaluated (考核评价, 回访); ``rejected`` at intake. Escalation climbs
grid → village → town → banner and restarts the deadline with the new level's.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol

from geodata.clock import CST
from geodata.errors import Invalid, TransitionConflict, YituError

LEVELS: tuple[str, ...] = ("grid", "village", "town", "banner")
STEPS: tuple[str, ...] = ("reported", "accepted", "dispatched", "handling", "closed", "evaluated", "rejected")
OPEN_STEPS: frozenset[str] = frozenset({"reported", "accepted", "dispatched", "handling"})
ACTIONS: tuple[str, ...] = (
    "accept",
    "reject",
    "dispatch",
    "start",
    "attempt",
    "escalate",
    "close",
    "evaluate",
    "reopen",
)
OUTCOMES: tuple[str, ...] = ("mediated", "judicial_confirmation", "litigation", "arbitration", "withdrawn")
RESOLVED_OUTCOMES: frozenset[str] = frozenset({"mediated", "judicial_confirmation"})
CHANNELS: tuple[str, ...] = ("grid_app", "hotline_12345", "window", "visit", "petition")
REJECT_REASONS: tuple[str, ...] = ("not_dispute", "duplicate")
ROLES: tuple[str, ...] = ("admin", "dispatcher", "grid_worker", "viewer", "van")

# Which step each action may start from, and where it leads. ``attempt`` stays in handling;
# ``escalate`` puts the case in the next level's queue (accepted, to be dispatched there);
# ``reopen`` resumes handling a closed case, or takes a rejected report back for verification.
FROM_STEPS: Mapping[str, frozenset[str]] = {
    "accept": frozenset({"reported"}),
    "reject": frozenset({"reported"}),
    "dispatch": frozenset({"accepted", "dispatched"}),
    "start": frozenset({"dispatched"}),
    "attempt": frozenset({"handling"}),
    "escalate": frozenset({"accepted", "dispatched", "handling"}),
    "close": frozenset({"accepted", "dispatched", "handling"}),
    "evaluate": frozenset({"closed"}),
    "reopen": frozenset({"closed", "evaluated", "rejected"}),
}
# Who may do what. Grid workers and van crews mediate on the spot (就地能调): they start, record
# attempts, escalate and close; a grid worker also makes the follow-up visit (回访) of a closed case
# in their grid, from the phone page's tasks. Verifying and routing stay with the dispatchers.
ROLE_ACTIONS: Mapping[str, frozenset[str]] = {
    "admin": frozenset(ACTIONS),
    "dispatcher": frozenset(ACTIONS),
    "grid_worker": frozenset({"start", "attempt", "escalate", "close", "evaluate"}),
    "van": frozenset({"start", "attempt", "close"}),
    "viewer": frozenset(),
}
ROLES_THAT_REPORT: frozenset[str] = frozenset({"admin", "dispatcher", "grid_worker"})
# Triage at intake (研判分级): how serious a dispute is, least first; each sets the level the case
# starts at (DeadlineRules.severity_levels). A case involving GROUP_FLAG's number of people or more
# is 群体性 and carries the flag ``group``.
SEVERITIES: tuple[str, ...] = ("simple", "ordinary", "complex", "major")
DEFAULT_SEVERITY_LEVELS: Mapping[str, str] = {
    "simple": "grid",
    "ordinary": "village",
    "complex": "town",
    "major": "banner",
}
GROUP_FLAG = "group"


@dataclass(frozen=True)
class DeadlineRules:
    """Hours allowed per level; 0 for a level means "by the end of the day it started" (当天)."""

    hours: Mapping[str, float] = field(default_factory=lambda: {"grid": 0, "village": 72, "town": 120, "banner": 168})
    max_attempts: int = 3
    # Triage: the level a report of each severity starts at, and from how many people involved a
    # dispute is 群体性. Here because they decide the first deadline, as the hours do.
    severity_levels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SEVERITY_LEVELS))
    group_people: int = 5

    def start_level(self, severity: str | None) -> str:
        """The lowest level a report of ``severity`` may start at (grid without one: older clients)."""
        return "grid" if severity is None else self.severity_levels[severity]

    def is_group(self, people_involved: int | None) -> bool:
        """Whether a dispute involving that many people is 群体性 (unknown: not)."""
        return people_involved is not None and people_involved >= self.group_people

    def deadline(self, level: str, start: datetime) -> datetime:
        """When a case that reached ``level`` at ``start`` is due."""
        hours = self.hours[level]
        if hours <= 0:
            local = start.astimezone(CST)
            return datetime.combine(local.date(), time(23, 59, 59), tzinfo=CST).astimezone(UTC)
        return start + timedelta(hours=hours)

    def of(self, banner: str | None) -> DeadlineRules:
        """The rules of a case in ``banner``: these, whatever the banner (one set for the deployment)."""
        return self

    def own_banners(self) -> tuple[str, ...]:
        """The banners whose rules differ from ``of(None)``'s: none."""
        return ()


class Rules(Protocol):
    """Where the deadline rules of a case come from: its banner's (geodata/deadlines.py RulesBook,
    services/deadlines.py LiveRules), or one :class:`DeadlineRules` for every banner."""

    def of(self, banner: str | None) -> DeadlineRules:
        """The rules of a case in ``banner`` (None: the league's default)."""
        ...

    def own_banners(self) -> Collection[str]:
        """The banners that have rules of their own; every other one follows ``of(None)``."""
        ...


@dataclass(frozen=True)
class CaseState:
    """The part of a case the loop decides on."""

    step: str
    level: str
    attempts: int
    deadline: datetime | None
    flags: tuple[str, ...] = ()


class WorkflowError(YituError):
    """A transition that cannot happen; ``field`` names the input at fault when there is one.
    Each subclass also derives from the kind of refusal it is (geodata/errors.py)."""


class IllegalTransition(WorkflowError, TransitionConflict):
    """The action does not apply to the case as it is now; ``allowed`` lists what does."""

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message, field="action", extra={"allowed": allowed})
        self.allowed = allowed


class MissingInput(WorkflowError, Invalid):
    """The action needs a field the request did not give (or gave with a wrong value)."""


@dataclass(frozen=True)
class Change:
    """What to write: the new column values, the audit row's note and data, and a proposal."""

    action: str
    from_step: str
    to_step: str
    level: str
    values: dict[str, Any]
    data: dict[str, Any]
    propose: str | None = None


def next_level(level: str) -> str | None:
    i = LEVELS.index(level)
    return LEVELS[i + 1] if i + 1 < len(LEVELS) else None


def is_overdue(step: str, deadline: datetime | None, now: datetime) -> bool:
    return step in OPEN_STEPS and deadline is not None and now > deadline


def allowed_actions(state: CaseState, rules: DeadlineRules, role: str = "admin") -> list[str]:
    """The actions that apply to ``state`` for ``role``, in loop order."""
    out = []
    for action in ACTIONS:
        if action not in ROLE_ACTIONS.get(role, frozenset()) or state.step not in FROM_STEPS[action]:
            continue
        if action == "escalate" and next_level(state.level) is None:
            continue
        if action == "attempt" and state.attempts >= rules.max_attempts:
            continue
        out.append(action)
    return out


def _without(flags: Iterable[str], *drop: str) -> list[str]:
    return [f for f in flags if f not in drop]


def apply(
    state: CaseState, action: str, params: Mapping[str, Any], now: datetime, rules: DeadlineRules, role: str = "admin"
) -> Change:
    """The change ``action`` makes to a case in ``state`` at ``now``; raises when it may not."""
    if action not in ACTIONS:
        raise MissingInput(f"unknown action {action!r}; one of {', '.join(ACTIONS)}", field="action")
    if action not in allowed_actions(state, rules, "admin"):
        allowed = allowed_actions(state, rules, role)
        why = _why_not(state, action, rules)
        raise IllegalTransition(
            f"cannot {action} a case that is {why}; allowed: {', '.join(allowed) or 'none'}", allowed
        )
    return _HANDLERS[action](state, params, now, rules)


def _why_not(state: CaseState, action: str, rules: DeadlineRules) -> str:
    if action == "escalate" and state.step in FROM_STEPS[action]:
        return "already at the banner level"
    if action == "attempt" and state.step == "handling":
        return f"past its {rules.max_attempts} attempts at the {state.level} level (escalate or close it)"
    return state.step


def _change(
    state: CaseState,
    action: str,
    to_step: str,
    values: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    level: str | None = None,
    propose: str | None = None,
) -> Change:
    return Change(action, state.step, to_step, level or state.level, values or {}, data or {}, propose)


def _accept(state: CaseState, p: Mapping[str, Any], now: datetime, rules: DeadlineRules) -> Change:
    return _change(state, "accept", "accepted")


def _reject(state: CaseState, p: Mapping[str, Any], now: datetime, rules: DeadlineRules) -> Change:
    reason = p.get("reason")
    if reason not in REJECT_REASONS:
        raise MissingInput(f"reject needs a reason: one of {', '.join(REJECT_REASONS)}", field="reason")
    dup = p.get("duplicate_of")
    if reason == "duplicate" and not dup:
        raise MissingInput("a duplicate needs duplicate_of: the code of the other case", field="duplicate_of")
    return _change(
        state,
        "reject",
        "rejected",
        {
            "duplicate_of": dup if reason == "duplicate" else None,
            "closed_at": now,
            "flags": _without(state.flags, "overdue"),
        },
        {"reason": reason, "duplicate_of": dup},
    )


def _dispatch(state: CaseState, p: Mapping[str, Any], now: datetime, rules: DeadlineRules) -> Change:
    assignee = p.get("assignee")
    if not assignee:
        raise MissingInput(
            'dispatch needs an assignee: {"kind": "unit"|"mediator", "id": ..., "name": ...}', field="assignee"
        )
    return _change(state, "dispatch", "dispatched", {"assignee": dict(assignee)}, {"assignee": dict(assignee)})


def _start(state: CaseState, p: Mapping[str, Any], now: datetime, rules: DeadlineRules) -> Change:
    return _change(state, "start", "handling")


def _attempt(state: CaseState, p: Mapping[str, Any], now: datetime, rules: DeadlineRules) -> Change:
    result = p.get("result")
    if result not in ("success", "failed"):
        raise MissingInput("attempt needs a result: success or failed", field="result")
    attempts = state.attempts + 1
    flags = list(state.flags)
    propose = None
    # 三个三: after the last failed attempt at a level, propose the next level (or, at the banner,
    # guiding the parties to litigation or arbitration).
    if result == "failed" and attempts >= rules.max_attempts:
        propose = "escalate" if next_level(state.level) else "close"
        if "escalation_proposed" not in flags:
            flags.append("escalation_proposed")
    return _change(
        state,
        "attempt",
        "handling",
        {"attempts": attempts, "flags": flags},
        {"result": result, "attempt": attempts},
        propose=propose,
    )


def _escalate(state: CaseState, p: Mapping[str, Any], now: datetime, rules: DeadlineRules) -> Change:
    up = next_level(state.level)
    assert up is not None  # allowed_actions refuses escalation at the banner
    return _change(
        state,
        "escalate",
        "accepted",
        {
            "level": up,
            "attempts": 0,
            "deadline": rules.deadline(up, now),
            "assignee": None,
            "flags": _without(state.flags, "overdue", "escalation_proposed"),
        },
        {"from_level": state.level, "to_level": up},
        level=up,
    )


def _close(state: CaseState, p: Mapping[str, Any], now: datetime, rules: DeadlineRules) -> Change:
    outcome = p.get("outcome")
    if outcome not in OUTCOMES:
        raise MissingInput(f"close needs an outcome: one of {', '.join(OUTCOMES)}", field="outcome")
    if state.step != "handling" and outcome != "withdrawn":
        raise MissingInput(
            f"a case that is {state.step} can only be closed as withdrawn; start handling first", field="outcome"
        )
    return _change(
        state,
        "close",
        "closed",
        {"outcome": outcome, "closed_at": now, "flags": _without(state.flags, "overdue", "escalation_proposed")},
        # A mediated agreement's number (调解协议书编号) stays in the audit row, beside the outcome.
        {"outcome": outcome, **({"agreement_no": p["agreement_no"]} if p.get("agreement_no") else {})},
    )


def _evaluate(state: CaseState, p: Mapping[str, Any], now: datetime, rules: DeadlineRules) -> Change:
    score = p.get("satisfaction")
    if not isinstance(score, int) or not 1 <= score <= 5:
        raise MissingInput("evaluate needs satisfaction: 1 to 5", field="satisfaction")
    note = p.get("followup_note") or p.get("note")
    return _change(
        state, "evaluate", "evaluated", {"satisfaction": score, "followup_note": note}, {"satisfaction": score}
    )


def _reopen(state: CaseState, p: Mapping[str, Any], now: datetime, rules: DeadlineRules) -> Change:
    if state.step == "rejected":
        return _change(
            state,
            "reopen",
            "reported",
            {"closed_at": None, "duplicate_of": None, "deadline": rules.deadline(state.level, now)},
        )
    return _change(
        state,
        "reopen",
        "handling",
        {
            "outcome": None,
            "closed_at": None,
            "satisfaction": None,
            "followup_note": None,
            "deadline": rules.deadline(state.level, now),
        },
    )


_HANDLERS = {
    "accept": _accept,
    "reject": _reject,
    "dispatch": _dispatch,
    "start": _start,
    "attempt": _attempt,
    "escalate": _escalate,
    "close": _close,
    "evaluate": _evaluate,
    "reopen": _reopen,
}


def time_in(events: Sequence[Mapping[str, Any]], now: datetime, closed: bool) -> dict[str, dict[str, float]]:
    """Seconds spent in each step and at each level, read from the audit trail (oldest first).

    The last stretch runs to ``now`` unless the case is closed, evaluated or rejected.
    """
    steps: dict[str, float] = {}
    levels: dict[str, float] = {}
    for cur, nxt in zip(events, [*events[1:], None]):
        if nxt is None and closed:
            break
        end = nxt["occurred_at"] if nxt else now
        secs = max(0.0, (end - cur["occurred_at"]).total_seconds())
        if cur.get("to_step"):
            steps[cur["to_step"]] = steps.get(cur["to_step"], 0.0) + secs
        if cur.get("level"):
            levels[cur["level"]] = levels.get(cur["level"], 0.0) + secs
    return {"steps": steps, "levels": levels}

"""The closed loop as a pure state machine: every transition, deadlines, escalation, attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from geodata import workflow
from geodata.clock import CST
from geodata.workflow import CaseState, DeadlineRules, IllegalTransition, MissingInput

RULES = DeadlineRules()
NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # 10:00 China time
PARAMS = {
    "reason": "not_dispute",
    "assignee": {"kind": "unit", "id": "town-station"},
    "result": "failed",
    "outcome": "mediated",
    "satisfaction": 5,
}
# step → the actions allowed from it (at the grid level, no attempts yet), and where each leads.
EXPECTED = {
    "reported": {"accept": "accepted", "reject": "rejected"},
    "accepted": {"dispatch": "dispatched", "escalate": "accepted", "close": "closed"},
    "dispatched": {"dispatch": "dispatched", "start": "handling", "escalate": "accepted", "close": "closed"},
    "handling": {"attempt": "handling", "escalate": "accepted", "close": "closed"},
    "closed": {"evaluate": "evaluated", "reopen": "handling"},
    "evaluated": {"reopen": "handling"},
    "rejected": {"reopen": "reported"},
}


def _state(step: str, level: str = "grid", attempts: int = 0) -> CaseState:
    return CaseState(step, level, attempts, RULES.deadline(level, NOW))


@pytest.mark.parametrize("step", workflow.STEPS)
@pytest.mark.parametrize("action", workflow.ACTIONS)
def test_every_transition(step: str, action: str) -> None:
    state = _state(step)
    params = {**PARAMS, "outcome": "withdrawn"} if action == "close" and step != "handling" else PARAMS
    if action in EXPECTED[step]:
        change = workflow.apply(state, action, params, NOW, RULES)
        assert (change.from_step, change.to_step) == (step, EXPECTED[step][action])
    else:
        with pytest.raises(IllegalTransition) as err:
            workflow.apply(state, action, params, NOW, RULES)
        assert err.value.allowed == [a for a in workflow.ACTIONS if a in EXPECTED[step]]
        assert action in err.value.message and step in err.value.message


def test_allowed_actions_follow_the_role() -> None:
    handling = _state("handling")
    assert workflow.allowed_actions(handling, RULES, "grid_worker") == ["attempt", "escalate", "close"]
    assert workflow.allowed_actions(handling, RULES, "van") == ["attempt", "close"]
    assert workflow.allowed_actions(handling, RULES, "viewer") == []
    assert workflow.allowed_actions(_state("reported"), RULES, "grid_worker") == []
    # the follow-up visit (回访) of a closed case is a grid worker's task too (the phone page's tasks)
    assert workflow.allowed_actions(_state("closed"), RULES, "grid_worker") == ["evaluate"]
    assert workflow.allowed_actions(_state("closed"), RULES, "van") == []


def test_close_before_handling_only_as_withdrawn() -> None:
    with pytest.raises(MissingInput) as err:
        workflow.apply(_state("accepted"), "close", {"outcome": "mediated"}, NOW, RULES)
    assert err.value.field == "outcome"
    assert workflow.apply(_state("accepted"), "close", {"outcome": "withdrawn"}, NOW, RULES).to_step == "closed"


@pytest.mark.parametrize(
    ("action", "params", "field"),
    [
        ("reject", {}, "reason"),
        ("reject", {"reason": "duplicate"}, "duplicate_of"),
        ("dispatch", {}, "assignee"),
        ("attempt", {"result": "maybe"}, "result"),
        ("close", {"outcome": "won"}, "outcome"),
        ("evaluate", {"satisfaction": 6}, "satisfaction"),
        ("fly", {}, "action"),
    ],
)
def test_missing_inputs_name_the_field(action: str, params: dict, field: str) -> None:
    step = {
        "reject": "reported",
        "dispatch": "accepted",
        "attempt": "handling",
        "close": "handling",
        "evaluate": "closed",
        "fly": "reported",
    }[action]
    with pytest.raises(MissingInput) as err:
        workflow.apply(_state(step), action, params, NOW, RULES)
    assert err.value.field == field


def test_deadlines_per_level() -> None:
    assert RULES.deadline("grid", NOW) == datetime(2026, 11, 22, 23, 59, 59, tzinfo=CST)  # the same day (当天)
    late = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)  # 23:30 China time: still that day
    assert RULES.deadline("grid", late) == datetime(2026, 11, 22, 23, 59, 59, tzinfo=CST)
    assert RULES.deadline("village", NOW) == NOW + timedelta(days=3)
    assert RULES.deadline("town", NOW) == NOW + timedelta(days=5)
    assert RULES.deadline("banner", NOW) == NOW + timedelta(days=7)
    custom = DeadlineRules(hours={"grid": 4, "village": 24, "town": 48, "banner": 96})
    assert custom.deadline("grid", NOW) == NOW + timedelta(hours=4)


def test_overdue_is_open_and_past_the_deadline() -> None:
    deadline = RULES.deadline("village", NOW)
    assert not workflow.is_overdue("handling", deadline, deadline)
    assert workflow.is_overdue("handling", deadline, deadline + timedelta(seconds=1))
    assert not workflow.is_overdue("closed", deadline, deadline + timedelta(days=1))
    assert not workflow.is_overdue("handling", None, NOW)


def test_escalation_through_all_levels_restarts_the_deadline() -> None:
    state = _state("handling", attempts=2)
    seen = []
    t = NOW
    for expected in ("village", "town", "banner"):
        t += timedelta(hours=30)
        change = workflow.apply(state, "escalate", {}, t, RULES)
        assert change.level == expected and change.to_step == "accepted"
        assert change.values["deadline"] == RULES.deadline(expected, t) and change.values["attempts"] == 0
        assert change.data == {"from_level": state.level, "to_level": expected}
        seen.append(expected)
        state = CaseState("handling", expected, 0, change.values["deadline"])
    assert seen == ["village", "town", "banner"]
    with pytest.raises(IllegalTransition) as err:
        workflow.apply(state, "escalate", {}, t, RULES)
    assert "escalate" not in err.value.allowed and "banner" in err.value.message


def test_three_failed_attempts_propose_escalation() -> None:
    state = _state("handling", "village")
    for n in (1, 2, 3):
        change = workflow.apply(state, "attempt", {"result": "failed"}, NOW, RULES)
        assert change.values["attempts"] == n
        assert change.propose == ("escalate" if n == 3 else None)
        state = CaseState("handling", "village", n, state.deadline, tuple(change.values["flags"]))
    assert "escalation_proposed" in state.flags
    with pytest.raises(IllegalTransition) as err:
        workflow.apply(state, "attempt", {"result": "failed"}, NOW, RULES)
    assert err.value.allowed == ["escalate", "close"]
    escalated = workflow.apply(state, "escalate", {}, NOW, RULES)
    assert "escalation_proposed" not in escalated.values["flags"]


def test_at_the_banner_the_last_failed_attempt_proposes_closing() -> None:
    state = _state("handling", "banner", attempts=2)
    assert workflow.apply(state, "attempt", {"result": "failed"}, NOW, RULES).propose == "close"


def test_a_successful_attempt_proposes_nothing() -> None:
    state = _state("handling", "village", attempts=2)
    assert workflow.apply(state, "attempt", {"result": "success"}, NOW, RULES).propose is None


def test_reopen_restarts_the_deadline_and_clears_the_outcome() -> None:
    later = NOW + timedelta(days=10)
    change = workflow.apply(_state("evaluated", "town"), "reopen", {}, later, RULES)
    assert change.to_step == "handling"
    assert change.values["deadline"] == later + timedelta(days=5)
    assert change.values["outcome"] is None and change.values["satisfaction"] is None


def test_time_in_steps_and_levels() -> None:
    t0 = NOW
    events = [
        {"occurred_at": t0, "to_step": "reported", "level": "grid"},
        {"occurred_at": t0 + timedelta(hours=1), "to_step": "accepted", "level": "grid"},
        {"occurred_at": t0 + timedelta(hours=3), "to_step": "accepted", "level": "village"},
        {"occurred_at": t0 + timedelta(hours=4), "to_step": "closed", "level": "village"},
    ]
    spent = workflow.time_in(events, t0 + timedelta(hours=10), closed=True)
    assert spent["steps"] == {"reported": 3600.0, "accepted": 3 * 3600.0}
    assert spent["levels"] == {"grid": 3 * 3600.0, "village": 3600.0}
    still_open = workflow.time_in(events[:3], t0 + timedelta(hours=5), closed=False)
    assert still_open["levels"]["village"] == 2 * 3600.0

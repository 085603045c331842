"""Moving a case through the closed loop, as the API and the case page both do it.

``POST /api/v1/cases/{code}/transitions`` (api/cases.py) and the buttons of the case page
(callbacks/case.py) call :func:`move`: one transaction with the idempotency claim, the locked case,
the audit row, the read of personal data the answer shows and the event in the outbox; then the van
of a visit the action ended is freed. Two copies of this path would drift (one would forget the
outbox, and a second screen would never hear of the change), so it lives here, below both.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg

from geodata import casefile, idempotency, masking, outbox, workflow
from geodata import cases as store
from geodata.db import writing
from geodata.errors import Forbidden
from geodata.queries import iso, pick
from geodata.workflow import Rules
from services import audit
from services.dispatching import CasesRuntime, release_van
from services.identity import Principal
from services.runtime import Services

ROUTE = "POST /api/v1/cases/{code}/transitions"

_PLAIN = (
    "code",
    "type",
    "description",
    "parties",
    "lon",
    "lat",
    "channel",
    "reporter",
    "level",
    "attempts",
    "step",
    "outcome",
    "satisfaction",
    "followup_note",
    "assignee",
    "duplicate_of",
    "version",
    "severity",
    "people_involved",
)


def case_out(row: Mapping[str, Any], role: str, rules: Rules, now: datetime) -> dict[str, Any]:
    """The API shape of a case for a reader of ``role`` (masked for readers without a need for
    personal data), with the actions that role may take now (by its banner's rules)."""
    state = store.state_of(row)
    own = rules.of(row.get("banner_code"))
    amount = row.get("amount_yuan")
    out = {
        **pick(row, _PLAIN),
        "amount_yuan": None if amount is None else float(amount),
        "group": workflow.GROUP_FLAG in row["flags"],
        "grid": store.chain_of(row),
        "deadline": iso(row["deadline"]),
        "overdue": workflow.is_overdue(row["step"], row["deadline"], now),
        "max_attempts": own.max_attempts,
        "flags": list(row["flags"]),
        **{k: iso(row[k]) for k in ("reported_at", "closed_at", "updated_at")},
        "allowed_actions": workflow.allowed_actions(state, own, role),
    }
    return masking.case_for(role, out)


def move(
    svc: Services,
    rt: CasesRuntime,
    who: Principal,
    code: str,
    action: str,
    params: Mapping[str, Any],
    *,
    version: int | None = None,
    key: idempotency.Key | None = None,
    address: str | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Apply ``action`` to case ``code`` for ``who``: (the case as answered, replayed?).

    ``params`` are the action's inputs (reason, assignee, result, outcome, satisfaction, note...);
    ``version`` refuses a change made on an older view of the case; ``key`` (geodata/idempotency.py)
    answers a retry with the first answer and moves the case once. Raises the domain's refusals
    (Forbidden for a role that may not take the action, IllegalTransition naming what is allowed).
    """
    if action not in workflow.ROLE_ACTIONS.get(who.role, frozenset()):
        raise Forbidden(f"a {who.role} token cannot {action} cases", field="action")
    now = now or datetime.now(UTC)
    taken = action

    def write(conn: psycopg.Connection[Any]) -> dict[str, Any]:
        nonlocal taken
        row, change = store.transition(
            conn, code, action, params, who.actor, rt.rules, now, version=version, authorize=who.require_case
        )
        taken = change.action
        extra: dict[str, Any] = {"action": change.action, "from_step": change.from_step}
        if "from_level" in change.data:
            extra["from_level"] = change.data["from_level"]
        outbox.append(conn, [store.event_of("case.changed", row, now, **extra)])  # published once committed
        out = case_out(row, who.role, rt.rules, now)
        if change.propose:
            out["proposal"] = change.propose
        return out

    with writing(svc.pool) as conn:  # the COMMIT's connection lost: OutcomeUnknown (geodata/db.py)
        out, replayed = idempotency.once(conn, key, 200, lambda: write(conn))
        # The answer shows the case's parties (a replay's again): a read, logged in the same transaction.
        audit.personal_data_read(conn, who, [code], ROUTE, address)
    if not replayed:
        release_van(svc, rt, who, code, taken, now)
    return out, replayed


PLACERS = frozenset({"admin", "dispatcher"})  # who confirms or changes a case's cell (a dispatcher's check)


def place(
    svc: Services,
    rt: CasesRuntime,
    who: Principal,
    code: str,
    cell: str | None,
    *,
    version: int | None = None,
    key: idempotency.Key | None = None,
    address: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Confirm case ``code``'s cell (``cell`` None) or move it to ``cell`` for ``who``: (the case as
    answered, replayed?). One transaction with its audit row and its event, like :func:`move`."""
    if who.role not in PLACERS:
        raise Forbidden(f"a {who.role} cannot change a case's cell (admin or dispatcher only)", field="cell")
    if cell is not None and not who.sees_area(cell):
        raise Forbidden(f"cell {cell} is outside your area {who.area}", field="cell")
    now = datetime.now(UTC)
    route = "POST /api/v1/cases/{code}/cell"
    action = "confirm_cell" if cell is None else "move_cell"

    def write(conn: psycopg.Connection[Any]) -> dict[str, Any]:
        row = casefile.place(conn, code, cell, who.actor, now, version=version, authorize=who.require_case)
        outbox.append(conn, [store.event_of("case.changed", row, now, action=action, from_step=row["step"])])
        return case_out(row, who.role, rt.rules, now)

    with writing(svc.pool) as conn:
        out, replayed = idempotency.once(conn, key, 200, lambda: write(conn))
        audit.personal_data_read(conn, who, [code], route, address)  # as in move: a replay's read too
    return out, replayed

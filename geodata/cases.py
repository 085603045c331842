"""Cases in PostGIS: intake, transitions, the audit trail and the overdue sweep.

Every write here is one transaction on the caller's connection; the caller writes the returned
events to the outbox (geodata/outbox.py) in that transaction and commits (the relay publishes them
then: a Redis outage never undoes or blocks a write). Intake writes its events itself. Intake is a
single SQL statement (``case_intake.sql``), so it can also run as a transaction of its own
(:func:`intake_committed`: one round trip, committed when it returns); a transition locks the
case row (``FOR UPDATE``), so two clerks acting at once are serialised and the second one sees
the first one's result: it gets a refusal listing the actions that are allowed now, never a lost
update.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from geodata import workflow
from geodata.clock import CST
from geodata.errors import Conflict, Forbidden, Invalid, NotFound, TransitionConflict
from geodata.queries import area_scope, query
from geodata.workflow import Rules, WorkflowError

SYSTEM_ACTOR = "scheduler"
CENT = Decimal("0.01")  # amounts are kept to the fen (numeric(14, 2))
# Columns a transition may set (identifiers for the UPDATE come only from here).
WRITABLE = (
    "step",
    "level",
    "deadline",
    "attempts",
    "outcome",
    "satisfaction",
    "followup_note",
    "flags",
    "assignee",
    "duplicate_of",
    "closed_at",
)


class CaseNotFound(WorkflowError, NotFound):
    """No case with that code."""


class UnknownType(WorkflowError, Invalid):
    """The type is not an active entry of case_types."""


class NoTerritory(WorkflowError, Conflict):
    """No level-1 area in the database: a case cannot be given a banner."""


class OutsideScope(WorkflowError, Forbidden):
    """The point lies outside the reporter's area scope: nothing was written."""


class KeyReused(WorkflowError, Invalid):
    """An Idempotency-Key came back with a different request than the one it created a case for
    (422 naming the header, as for the other writes' keys: geodata/idempotency.py)."""


class StaleVersion(WorkflowError, TransitionConflict):
    """The client acted on an older version of the case than the one stored."""

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message, field="version", extra={"allowed": allowed})
        self.allowed = allowed


@dataclass(frozen=True)
class Actor:
    """Who acts: recorded in every audit row (``name``, ``role``, and the identity: ``kind`` and
    ``token_id``, the row in its own table, 0 for none) and scoping idempotency keys."""

    name: str
    role: str
    token_id: int = 0
    kind: str = "token"

    @property
    def audit_id(self) -> int | None:
        """The identity's id for the audit row (None for the system, which has no row)."""
        return self.token_id or None

    @property
    def key_scope(self) -> int:
        """What scopes this actor's Idempotency-Keys (case_idempotency_keys.token_id): a token's id,
        a person's (or screen's) negated, so user 1 never replays token 1's report."""
        return self.token_id if self.kind == "token" else -self.token_id


@dataclass(frozen=True)
class NewCase:
    type: str
    description: str
    lon: float
    lat: float
    channel: str
    parties: list[dict[str, Any]]
    reported_at: datetime | None = None
    # Triage (all optional; workflow.SEVERITIES): the starting level, 群体性, the sum at stake.
    severity: str | None = None
    people_involved: int | None = None
    amount_yuan: Decimal | None = None


def request_hash(new: NewCase) -> str:
    """A stable fingerprint of an intake request, to tell a retry from a reused key.

    The triage fields count only when given, so a report of an older client hashes as it always
    did (its stored keys still match a retry after an upgrade)."""
    triage = {
        "severity": new.severity,
        "people_involved": new.people_involved,
        "amount_yuan": None if new.amount_yuan is None else str(new.amount_yuan.quantize(CENT)),
    }
    body = {
        **{k: v for k, v in triage.items() if v is not None},
        "type": new.type,
        "description": new.description,
        "lon": new.lon,
        "lat": new.lat,
        "channel": new.channel,
        "parties": new.parties,
        "reported_at": new.reported_at.isoformat() if new.reported_at else None,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def chain_of(row: Mapping[str, Any]) -> list[str | None]:
    """The case's grid chain, codes of levels 4 to 1 (None where the point has no area)."""
    return [row["grid_code"], row["village_code"], row["town_code"], row["banner_code"]]


def event_of(kind: str, row: Mapping[str, Any], at: datetime, **extra: Any) -> dict[str, Any]:
    """The live-stream event of a change (``case.changed``; the intake statement builds the same
    shape for ``case.created`` in SQL, case_intake.sql), written to the outbox with the change."""
    return {
        "type": kind,
        "code": row["code"],
        "step": row["step"],
        "level": row["level"],
        "grid": chain_of(row),
        "lon": row["lon"],
        "lat": row["lat"],
        "case_type": row["type"],
        "flags": list(row["flags"]),
        "deadline": row["deadline"].isoformat() if row["deadline"] else None,
        "at": at.isoformat(),
        **extra,
    }


def _compact(stmt: str) -> str:
    """The statement without comment lines and indentation (psycopg caches the parsing of a
    query of up to 4 KB only; the commented intake statement is longer)."""
    lines = (line.strip() for line in stmt.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("--"))


@cache
def _intake_sql() -> str:
    return _compact(query("case_intake"))


@dataclass(frozen=True)
class IntakeRequest:
    """One report for :func:`intake_many`: the case, who reports it, the retry key, the
    reporter's area scope (a code of any level; a point outside it writes nothing) and when it
    was received (``at``; default: the batch's ``now``)."""

    new: NewCase
    actor: Actor
    key: str | None = None
    scope: str | None = None
    at: datetime | None = None


# What intake gives for each request: (the case row, created?) or the refusal, as an exception
# (UnknownType, NoTerritory, OutsideScope, KeyReused; from intake_many_async also the database
# error of a retry's lookup after the statement committed): one request never fails its neighbours.
IntakeResult = tuple[dict[str, Any], bool] | Exception


def _intake_row(i: int, req: IntakeRequest, rules: Rules, now: datetime) -> dict[str, Any]:
    new, actor, now = req.new, req.actor, req.at or now
    reported = new.reported_at or now
    base = rules.of(None)  # the league's (or the settings'): the banner is found in the statement
    return {
        "i": i,
        "type": new.type,
        "description": new.description,
        "lon": new.lon,
        "lat": new.lat,
        "channel": new.channel,
        "parties": new.parties,
        "reporter": actor.name,
        "reported_at": reported,
        "now": now,
        "day": reported.astimezone(CST).date(),
        "token_id": actor.key_scope,
        "key": req.key,
        "request_hash": request_hash(new),
        "actor": actor.name,
        "role": actor.role,
        "actor_kind": actor.kind,
        "actor_id": actor.audit_id,
        "client_at": new.reported_at,  # the time the client claims, kept beside the server's
        "scope": req.scope,
        "severity": new.severity,
        "people_involved": new.people_involved,
        "amount_yuan": None if new.amount_yuan is None else str(new.amount_yuan),
        # the lowest level the case may start at (its point may lie higher: no cell there) and 群体性
        "start_rank": workflow.LEVELS.index(base.start_level(new.severity)),
        "group_flag": workflow.GROUP_FLAG if base.is_group(new.people_involved) else None,
        "at": now.isoformat(),  # the case.created event's ``at`` (the outbox row is written in SQL)
        **{f"dl_{lv}": base.deadline(lv, reported) for lv in workflow.LEVELS},
        # the banners with deadlines of their own (geodata/deadlines.py): theirs, by banner and level
        "dl_by": {b: _deadlines(rules.of(b), reported) for b in rules.own_banners()} or None,
    }


def _deadlines(rules: workflow.DeadlineRules, start: datetime) -> dict[str, datetime]:
    return {lv: rules.deadline(lv, start) for lv in workflow.LEVELS}


def _intake_params(reqs: list[IntakeRequest], rules: Rules, now: datetime) -> dict[str, Any]:
    rows = [_intake_row(i, req, rules, now) for i, req in enumerate(reqs)]
    return {"rows": orjson.dumps(rows).decode()}  # aware datetimes as RFC 3339, which timestamptz reads


_STATUS = ("i", "type_ok", "territory", "in_scope", "area")


def _intake_outcome(row: dict[str, Any], req: IntakeRequest) -> IntakeResult | None:
    """The result of a request from its output row; None when its key was used before."""
    if not row["type_ok"]:
        return UnknownType(f"unknown case type {req.new.type!r} (see case_types)", field="type")
    if row["territory"] is None:
        return NoTerritory("no territory loaded: import the grid (yitu import grids) or seed the demo")
    if not row["in_scope"]:
        return OutsideScope(f"the point lies in {row['area']}, outside your area {req.scope}", field="lon")
    if row["code"] is None:
        return None
    for k in _STATUS:
        del row[k]
    return row, True


def _replayed(old: dict[str, Any] | None, req: IntakeRequest) -> IntakeResult:
    if old is None:  # pragma: no cover - the key row and its case are written together
        return CaseNotFound(f"Idempotency-Key {req.key!r} names no case", field="Idempotency-Key")
    if old.pop("request_hash") != request_hash(req.new):
        return KeyReused("this Idempotency-Key was used for a different request", field="Idempotency-Key")
    return old, False


def _rounds(reqs: list[IntakeRequest]) -> list[list[int]]:
    """The requests split into statements in which no (token, key) comes twice: a retry sent
    twice in one batch goes in the next statement and finds the case the first one made."""
    rounds: list[list[int]] = []
    seen: list[set[tuple[int, str]]] = []
    for i, req in enumerate(reqs):
        ident = (req.actor.key_scope, req.key) if req.key is not None else None
        n = 0
        if ident is not None:
            while n < len(seen) and ident in seen[n]:
                n += 1
        if n == len(rounds):
            rounds.append([])
            seen.append(set())
        rounds[n].append(i)
        if ident is not None:
            seen[n].add(ident)
    return rounds


def intake_many(conn: psycopg.Connection, reqs: list[IntakeRequest], rules: Rules, now: datetime) -> list[IntakeResult]:
    """Create the cases of ``reqs`` (or find the ones their keys created before), in order.

    One statement for the whole batch (more only when a key repeats in it), on the caller's
    transaction; each request gets its own result, a refusal included.
    """
    out: list[IntakeResult | None] = [None] * len(reqs)
    with conn.cursor(row_factory=dict_row) as cur:
        for part in _rounds(reqs):
            batch = [reqs[i] for i in part]
            rows = cur.execute(_intake_sql(), _intake_params(batch, rules, now), prepare=True).fetchall()
            for i, req, row in zip(part, batch, rows, strict=True):
                out[i] = _intake_outcome(row, req)
                if out[i] is None:
                    # The key was used before (perhaps by a retry running right now: the insert
                    # waited for it to commit). This statement sees what it committed.
                    old = cur.execute(
                        query("case_by_key"), {"token_id": req.actor.key_scope, "key": req.key}
                    ).fetchone()
                    out[i] = _replayed(old, req)
    return [r for r in out if r is not None]


async def intake_many_async(
    conn: psycopg.AsyncConnection, reqs: list[IntakeRequest], rules: Rules, now: datetime
) -> list[IntakeResult]:
    """:func:`intake_many` on an asyncio connection in autocommit, as one statement: the batch is
    written as a whole or not at all, and durable when this returns (as with COMMIT). So no
    (token, key) may come twice in ``reqs`` (the intake lanes keep a repeat for their next batch):
    a second statement could fail after the first committed."""
    if not conn.autocommit:
        raise RuntimeError("intake_many_async needs an autocommit connection (each statement is its own transaction)")
    if len(_rounds(reqs)) > 1:
        raise ValueError("an Idempotency-Key comes twice in the batch; send the repeat in the next one")
    out: list[IntakeResult] = []
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_intake_sql(), _intake_params(reqs, rules, now), prepare=True)
        rows = await cur.fetchall()
        for req, row in zip(reqs, rows, strict=True):
            result = _intake_outcome(row, req)
            if result is None:
                try:  # the batch is committed: a failure here is this request's alone
                    await cur.execute(query("case_by_key"), {"token_id": req.actor.key_scope, "key": req.key})
                    result = _replayed(await cur.fetchone(), req)
                except psycopg.Error as exc:
                    result = exc
            out.append(result)
    return out


def unwrap(result: IntakeResult) -> tuple[dict[str, Any], bool]:
    """(case row, created?) of an intake result; raises its refusal."""
    if isinstance(result, Exception):
        raise result
    return result


def intake(
    conn: psycopg.Connection,
    new: NewCase,
    actor: Actor,
    rules: Rules,
    now: datetime,
    key: str | None = None,
    *,
    scope: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create a case (or find the one ``key`` created before): (case row, created?).

    ``scope`` is the reporter's area (a code of any level): a point whose grid chain does not
    contain it raises :class:`OutsideScope` and writes nothing, in the same statement.
    """
    return unwrap(intake_many(conn, [IntakeRequest(new, actor, key, scope)], rules, now)[0])


def intake_committed(
    conn: psycopg.Connection,
    new: NewCase,
    actor: Actor,
    rules: Rules,
    now: datetime,
    key: str | None = None,
    *,
    scope: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """:func:`intake` as a transaction of its own, committed when this returns.

    The intake is one statement, so in autocommit it is still all or nothing (and durable on
    return, as with COMMIT); it saves the BEGIN and COMMIT round trips. ``conn`` must not be in
    a transaction; it is left as it came.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("intake_committed needs a connection outside a transaction")
    was = conn.autocommit
    conn.autocommit = True
    try:
        return intake(conn, new, actor, rules, now, key, scope=scope)
    finally:
        if not conn.closed:
            conn.autocommit = was


async def intake_async(
    conn: psycopg.AsyncConnection,
    new: NewCase,
    actor: Actor,
    rules: Rules,
    now: datetime,
    key: str | None = None,
    *,
    scope: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """:func:`intake` on an asyncio connection in autocommit: the statement commits as it returns."""
    return unwrap((await intake_many_async(conn, [IntakeRequest(new, actor, key, scope)], rules, now))[0])


def get_case(conn: psycopg.Connection, code: str, *, lock: bool = False) -> dict[str, Any] | None:
    stmt = query("case_get") + (" FOR UPDATE" if lock else "")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(stmt, {"code": code}).fetchone()


def timeline(conn: psycopg.Connection, case_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query("case_timeline"), {"case_id": case_id}).fetchall()


def state_of(row: Mapping[str, Any]) -> workflow.CaseState:
    return workflow.CaseState(row["step"], row["level"], int(row["attempts"]), row["deadline"], tuple(row["flags"]))


def _write(
    conn: psycopg.Connection,
    row: Mapping[str, Any],
    change: workflow.Change,
    actor: Actor,
    now: datetime,
    note: str | None,
    *,
    bump: bool = True,
) -> dict[str, Any]:
    values = {"step": change.to_step, "level": change.level, **change.values}
    sets: list[sql.Composable] = [
        sql.SQL("{} = {}").format(sql.Identifier(col), sql.Placeholder(col)) for col in WRITABLE if col in values
    ]
    sets.append(sql.SQL("updated_at = %(now)s"))
    if bump:
        sets.append(sql.SQL("version = version + 1"))
    stmt = sql.SQL("UPDATE cases SET {} WHERE id = %(id)s").format(sql.SQL(", ").join(sets))
    params = {col: (Jsonb(v) if col == "assignee" and v is not None else v) for col, v in values.items()}
    conn.execute(stmt, {**params, "now": now, "id": row["id"]})
    conn.execute(
        """INSERT INTO case_events (case_id, occurred_at, actor, role, actor_kind, actor_id,
                                    action, from_step, to_step, level, note, data)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            row["id"],
            now,
            actor.name,
            actor.role,
            actor.kind,
            actor.audit_id,
            change.action,
            change.from_step,
            change.to_step,
            change.level,
            note,
            Jsonb({**change.data, **({"from_level": row["level"]} if row["level"] != change.level else {})}),
        ),
    )
    fresh = get_case(conn, row["code"])
    assert fresh is not None
    return fresh


def transition(
    conn: psycopg.Connection,
    code: str,
    action: str,
    params: Mapping[str, Any],
    actor: Actor,
    rules: Rules,
    now: datetime,
    *,
    version: int | None = None,
    authorize: Callable[[Mapping[str, Any]], None] | None = None,
) -> tuple[dict[str, Any], workflow.Change]:
    """Apply ``action`` to the case ``code`` (locked for the rest of the caller's transaction)."""
    row = get_case(conn, code, lock=True)
    if row is None:
        raise CaseNotFound(f"no case with code {code}", field="code")
    if authorize:
        authorize(row)
    state = state_of(row)
    own = rules.of(row["banner_code"])  # the case's banner's deadlines and attempts
    if version is not None and version != row["version"]:
        raise StaleVersion(
            f"case {code} changed since version {version} (now {row['version']}, {row['step']})",
            workflow.allowed_actions(state, own, actor.role),
        )
    duplicate_of = params.get("duplicate_of")
    if duplicate_of and action == "reject":
        other = None if duplicate_of == code else get_case(conn, duplicate_of)
        if other is not None and authorize:
            try:
                authorize(other)  # one the caller may not see: as a code that does not exist
            except (NotFound, Forbidden):
                other = None
        if other is None:
            raise workflow.MissingInput(
                f"duplicate_of {duplicate_of!r} is not another case's code", field="duplicate_of"
            )
    change = workflow.apply(state, action, params, now, own, actor.role)
    fresh = _write(conn, row, change, actor, now, params.get("note"))
    return fresh, change


def search(
    conn: psycopg.Connection,
    *,
    area: str | None,
    step: str | None,
    type: str | None,
    since: datetime | None,
    until: datetime | None,
    overdue: bool | None,
    now: datetime,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    stmt = sql.SQL(query("case_search")).format(scope=area_scope(area))
    params = {
        "area": area,
        "step": step,
        "type": type,
        "since": since,
        "until": until,
        "overdue": overdue,
        "now": now,
        "limit": limit,
        "offset": offset,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(stmt, params).fetchall()


def sweep_overdue(
    conn: psycopg.Connection, now: datetime, rules: Rules, *, escalate: bool, limit: int = 1000
) -> list[dict[str, Any]]:
    """Flag open cases past their deadline ('overdue' + an audit row) and, if asked, escalate them.

    Returns the events for the caller's outbox, in the same transaction. A transaction-level advisory lock
    keeps two app processes from sweeping at once; rows a clerk holds are skipped this time.
    """
    got = conn.execute("SELECT pg_try_advisory_xact_lock(hashtext('yitu:overdue-sweep'))").fetchone()
    if not got or not got[0]:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        due = cur.execute(query("case_overdue"), {"now": now, "escalate": escalate, "limit": limit}).fetchall()
    system = Actor(SYSTEM_ACTOR, "system", kind="system")
    events = []
    for row in due:
        full = get_case(conn, row["code"])
        assert full is not None
        state = state_of(full)
        if "overdue" not in full["flags"]:
            flag = workflow.Change(
                "overdue",
                state.step,
                state.step,
                state.level,
                {"flags": [*full["flags"], "overdue"]},
                {"deadline": full["deadline"].isoformat()},
            )
            full = _write(conn, full, flag, system, now, None, bump=False)
            events.append(event_of("case.changed", full, now, action="overdue", overdue=True))
            state = state_of(full)
        own = rules.of(full["banner_code"])  # the new level's deadline: the case's banner's
        if escalate and "escalate" in workflow.allowed_actions(state, own, "admin"):
            change = workflow.apply(state, "escalate", {}, now, own, "admin")
            full = _write(conn, full, change, system, now, "overdue: escalated by the scheduler")
            events.append(
                event_of(
                    "case.changed", full, now, action="escalate", from_step=change.from_step, from_level=state.level
                )
            )
    return events

"""Admin-page callbacks: the tables, the changes, the logs.

The work is in module-level functions taking the services, the admin and the client address first
(tests call them directly); ``register`` wires them to the page (dashboard/pages/admin.py). Each
change goes through services/admin.py: the change and its admin_events row in one transaction.
Who asks is the request's principal (``identity.current()``, bound by the guard): the guard's
policy table lets only an admin run these callbacks, and :func:`_admin` checks again.

A refusal is one line in the page's language naming the field (``名称：…``); what the user typed is
shown only as text (Dash escapes it), never as markup.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dash
import psycopg
from dash import Dash, Input, Output, State, ctx, html
from dash.exceptions import PreventUpdate

from dashboard.i18n import TEXTS, refusal, translator
from dashboard.pages.admin import Ids
from geodata import queries, tracking
from geodata.clock import shown
from geodata.errors import Forbidden, Invalid, YituError
from services import admin, identity
from services.identity import Principal
from services.runtime import Services

ADMINS = frozenset({"admin"})


@dataclass(frozen=True)
class Outcome:
    """What a change came to: ok or refused, and the line to show."""

    ok: bool
    message: str
    secret: str | None = None  # a token or pairing URL, shown once beside the message

    def show(self) -> html.Div:
        children: list[Any] = [html.Span(self.message)]
        if self.secret:
            children.append(html.Code(self.secret, className="yitu-admin-secret"))
        return html.Div(className="yitu-admin-ok" if self.ok else "yitu-admin-refused", children=children)


def _admin(who: Principal | None) -> Principal:
    if who is None or who.role not in ADMINS:
        raise Forbidden("only an admin may use the admin page")
    return who


def explain(exc: YituError, lang: str) -> str:
    """A refusal in the page's language, naming the field: the field's own text when there is one
    (``admin.conflict.name``: the name is taken), else the field's rule (``admin.bad.name``), else
    the kind's text."""
    t = translator(lang)
    known = TEXTS["zh-CN"]
    field = exc.field or ""
    for key in (f"admin.{exc.code}.{field}", f"admin.bad.{field}" if exc.code == "invalid" else ""):
        if key in known:
            text = t(key)
            break
    else:
        text = refusal(exc, lang)
    label = f"admin.field.{field}"
    return f"{t(label)}：{text}" if field and label in known else text


def _when(value: datetime | None) -> str:
    return shown(value, "%Y-%m-%d %H:%M:%S")


def _head(t: Callable[[str], str], *columns: str) -> list[str]:
    """A table's head: the columns' names (``admin.col.<column>``) in the page's language."""
    return [t(f"admin.col.{column}") for column in columns]


def _table(t: Callable[[str], str], head: list[str], rows: list[list[Any]]) -> html.Div | html.Table:
    """An admin table, or the muted "none" line when there are no rows."""
    if not rows:
        return html.Div(t("admin.none"), className="yitu-muted")
    return html.Table(
        className="yitu-table",
        children=[
            html.Thead(html.Tr([html.Th(h) for h in head])),
            html.Tbody([html.Tr([html.Td(c) for c in row]) for row in rows]),
        ],
    )


def _run(
    svc: Services, who: Principal | None, lang: str, change: Callable[[psycopg.Connection, Principal], Outcome]
) -> Outcome:
    """One change in one transaction (services/admin.py writes its admin_events row in it); a
    refusal rolls it back and becomes the line shown."""
    try:
        admin_ = _admin(who)
        with svc.pool.connection() as conn, conn.transaction():
            return change(conn, admin_)
    except YituError as exc:
        return Outcome(False, explain(exc, lang))


def _refused(exc: YituError, lang: str) -> html.Div:
    """A view's refusal (a bad filter), shown where its table would be."""
    return html.Div(explain(exc, lang), className="yitu-admin-refused")


ID_DIGITS = re.compile(r"[0-9]{1,18}")
MAX_ID = 2**62  # the ids a page may name (the API's bound too)


def pick_id(pick: Any, field: str = "pick", what: str = "one") -> int:
    """A row id picked on the page (any JSON from the browser): a whole number from 1 to MAX_ID, as a
    number or in ASCII digits; else Invalid naming ``field`` ("²" is a digit to ``str.isdigit``, a
    5,000-digit string too long for ``int``, a larger one beyond PostgreSQL's bigint)."""
    if type(pick) is int:
        number = pick
    elif isinstance(pick, str) and ID_DIGITS.fullmatch(pick.strip()):
        number = int(pick.strip())
    else:
        raise Invalid(f"pick {what} first", field=field)
    if not 1 <= number <= MAX_ID:
        raise Invalid(f"pick {what} first", field=field)
    return number


def _need(value: str | None, field: str) -> str:
    """A text the form must have: given, at most 200 characters, no control character inside it (the
    browser may send any JSON: a NUL reached PostgreSQL, which refuses it, as a 500). A name may hold
    any other character a name was made with (a full-width or a Mongolian space)."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"give the {field}", field=field)
    if not queries.plain(value.strip(), 200) or len(value) > 200:
        raise Invalid(f"the {field} has at most 200 characters, none a control character", field=field)
    return value


# --- users --------------------------------------------------------------------------------------------


def users_view(svc: Services, lang: str, who: Principal | None) -> tuple[Any, list[dict[str, str]]]:
    """The users in ``who``'s reach (services/admin.py) and the names to pick from."""
    t = translator(lang)
    with svc.pool.connection() as conn:
        rows = identity.list_users(conn, admin.reach(_admin(who)))
    table = _table(
        t,
        _head(t, "name", "role", "area", "state", "last_seen"),
        [
            [
                r["name"],
                t(f"role.{r['role']}"),
                r["area_code"] or t("admin.all_areas"),
                t("admin.state.disabled") if r["disabled_at"] else t("admin.state.active"),
                _when(r["last_seen_at"]),
            ]
            for r in rows
        ],
    )
    return table, [{"label": r["name"], "value": r["name"]} for r in rows]


def user_action(
    svc: Services, who: Principal | None, address: str | None, action: str, fields: dict[str, Any], lang: str
) -> Outcome:
    """``create`` (name, role, area, password; van for a crew member), ``role`` (pick, role, area), ``passwd`` (pick,
    password), ``disable`` / ``enable`` (pick)."""
    t = translator(lang)

    def change(conn: psycopg.Connection, me: Principal) -> Outcome:
        if action == "create":
            name = _need(fields.get("name"), "name")
            role = _need(fields.get("role"), "role")
            password = fields.get("password") or ""
            van = fields.get("van") or None  # a crew member's van (role van); refused for any other role
            admin.create_user(
                conn, me, address, name=name, role=role, password=password, area=fields.get("area"), van=van
            )
            return Outcome(True, t("admin.done.user_create").format(name=name.strip()))
        name = _need(fields.get("pick"), "pick")
        if action in ("role", "disable") and me.kind == "user" and name.strip() == me.name:
            raise Forbidden("an admin cannot disable or demote themselves here", field="pick")
        if action == "role":
            admin.set_user_role(conn, me, address, name, _need(fields.get("role"), "role"), fields.get("area"))
            return Outcome(True, t("admin.done.user_role").format(name=name))
        if action == "passwd":
            admin.reset_password(conn, me, address, name, fields.get("password") or "")
            return Outcome(True, t("admin.done.user_passwd").format(name=name))
        if action in ("disable", "enable"):
            changed = admin.set_user_disabled(conn, me, address, name, action == "disable")
            key = f"admin.done.user_{action}" if changed else "admin.done.unchanged"
            return Outcome(True, t(key).format(name=name))
        raise Invalid(f"unknown action {action!r}")

    return _run(svc, who, lang, change)


# --- screens -------------------------------------------------------------------------------------------------


def screens_view(svc: Services, lang: str, who: Principal | None) -> tuple[Any, list[dict[str, str]]]:
    t = translator(lang)
    with svc.pool.connection() as conn:
        rows = identity.list_screens(conn, admin.reach(_admin(who)))
    table = _table(
        t,
        _head(t, "name", "area", "state", "sessions", "last_seen"),
        [
            [
                r["name"],
                r["area_code"] or t("admin.all_areas"),
                t("admin.state.revoked") if r["revoked_at"] else t("admin.state.active"),
                str(r["sessions"]),
                _when(r["last_seen_at"]),
            ]
            for r in rows
        ],
    )
    live = [{"label": r["name"], "value": r["name"]} for r in rows if r["revoked_at"] is None]
    return table, live


def screen_action(
    svc: Services, who: Principal | None, address: str | None, action: str, fields: dict[str, Any], lang: str, base: str
) -> Outcome:
    """``create`` (name, area), ``pair`` (pick), ``revoke`` (pick); a pairing URL ``base/pair/<code>``
    is shown once."""
    t = translator(lang)

    def change(conn: psycopg.Connection, me: Principal) -> Outcome:
        if action == "create":
            name = _need(fields.get("name"), "name")
            _, code = admin.create_screen(conn, me, address, name, fields.get("area"))
            url = f"{base}{identity.PAIR_PATH}{code}"
            return Outcome(True, t("admin.done.screen_create").format(name=name.strip()), url)
        name = _need(fields.get("pick"), "pick")
        if action == "pair":
            code = admin.pair_screen(conn, me, address, name)
            return Outcome(True, t("admin.done.screen_pair").format(name=name), f"{base}{identity.PAIR_PATH}{code}")
        if action == "revoke":
            if not admin.revoke_screen(conn, me, address, name):
                return Outcome(False, t("admin.done.unchanged").format(name=name))
            return Outcome(True, t("admin.done.screen_revoke").format(name=name))
        raise Invalid(f"unknown action {action!r}")

    return _run(svc, who, lang, change)


# --- tokens ------------------------------------------------------------------------------------------------------


def tokens_view(svc: Services, lang: str, who: Principal | None) -> tuple[Any, list[dict[str, Any]]]:
    t = translator(lang)
    with svc.pool.connection() as conn:
        rows = identity.list_tokens(conn, admin.reach(_admin(who)))
    table = _table(
        t,
        ["#", *_head(t, "name", "role", "area", "created", "state")],
        [
            [
                str(r["id"]),
                r["name"],
                t(f"role.{r['role']}"),
                r["area_code"] or t("admin.all_areas"),
                _when(r["created_at"]),
                t("admin.state.revoked") if r["revoked_at"] else t("admin.state.active"),
            ]
            for r in rows
        ],
    )
    live = [{"label": f"#{r['id']} {r['name']}", "value": r["id"]} for r in rows if r["revoked_at"] is None]
    return table, live


def token_action(
    svc: Services, who: Principal | None, address: str | None, action: str, fields: dict[str, Any], lang: str
) -> Outcome:
    """``create`` (name, role, area): the token is shown once; ``revoke`` (pick: the token's id)."""
    t = translator(lang)

    def change(conn: psycopg.Connection, me: Principal) -> Outcome:
        if action == "create":
            name = _need(fields.get("name"), "name")
            role = _need(fields.get("role"), "role")
            token_id, token = admin.create_token(conn, me, address, name, role, fields.get("area"))
            return Outcome(True, t("admin.done.token_create").format(name=name.strip(), id=token_id), token)
        if action == "revoke":
            pick = pick_id(fields.get("pick"), what="a token")
            if not admin.revoke_token(conn, me, address, pick):
                return Outcome(False, t("admin.done.unchanged").format(name=f"#{pick}"))
            return Outcome(True, t("admin.done.token_revoke").format(name=f"#{pick}"))
        raise Invalid(f"unknown action {action!r}")

    return _run(svc, who, lang, change)


# --- van devices ----------------------------------------------------------------------------------------------------


def vans_view(svc: Services, lang: str, who: Principal | None) -> tuple[Any, list[dict[str, str]]]:
    t = translator(lang)
    with svc.pool.connection() as conn:
        rows = tracking.device_counts(conn, admin.reach(_admin(who)))
    table = _table(t, _head(t, "van", "name", "devices"), [[van, name, str(n)] for van, name, n in rows])
    return table, [{"label": f"{van} {name}", "value": van} for van, name, _ in rows]


def van_action(
    svc: Services, who: Principal | None, address: str | None, action: str, fields: dict[str, Any], lang: str
) -> Outcome:
    """``register`` (van, device; an empty device makes a random one, shown once), ``unregister`` (device)."""
    t = translator(lang)

    def change(conn: psycopg.Connection, me: Principal) -> Outcome:
        if action == "register":
            van = _need(fields.get("van"), "van").strip()
            given = (fields.get("device") or "").strip()
            device = given or tracking_identifier()
            before = admin.register_device(conn, me, address, van, device)
            text = t("admin.done.van_register").format(name=van)
            if before:
                text += " " + t("admin.done.van_moved").format(name=before)
            return Outcome(True, text, None if given else device)
        if action == "unregister":
            van = admin.unregister_device(conn, me, address, fields.get("device") or "")
            return Outcome(True, t("admin.done.van_unregister").format(name=van))
        raise Invalid(f"unknown action {action!r}")

    return _run(svc, who, lang, change)


def tracking_identifier() -> str:
    """A random device identifier (as ``yitu van register --generate`` makes)."""
    return secrets.token_urlsafe(18)


# --- the logs --------------------------------------------------------------------------------------------------------


def _pages(total: int, page: int, size: int = admin.PAGE_SIZE) -> tuple[int, int]:
    last = max(0, (total - 1) // size)
    return min(max(0, page), last), last


_Row = dict[str, Any]  # a log row as services/admin.py reads it


def _log_view(
    svc: Services,
    who: Principal | None,
    lang: str,
    page: int,
    read: Callable[[psycopg.Connection, int, int], tuple[list[_Row], int]],
    head: list[str],
    cells: Callable[[_Row], list[Any]],
) -> tuple[Any, int, str]:
    """A log's table, the page shown and its label (``1 / 3 · 45``); ``read(conn, page, size)`` gives a
    page of the log's rows and their total. A page past the end shows the last; a bad filter, the refusal."""
    _admin(who)
    try:
        with svc.pool.connection() as conn:
            _, total = read(conn, 0, 1)
            page, last = _pages(total, page)
            rows, _ = read(conn, page, admin.PAGE_SIZE)
    except YituError as exc:
        return _refused(exc, lang), 0, ""
    return _table(translator(lang), head, [cells(r) for r in rows]), page, f"{page + 1} / {last + 1} · {total}"


def signins_view(
    svc: Services, who: Principal | None, account: str | None, page: int, lang: str
) -> tuple[Any, int, str]:
    """The sign-in log's table, the page shown and its label (``1 / 3 · 45``)."""
    t = translator(lang)

    def cells(r: _Row) -> list[Any]:
        return [
            _when(r["at"]),
            t(f"admin.attempt.{r['kind']}"),
            r["account"] or "—",
            r["address"] or "—",
            t("admin.attempt.ok") if r["ok"] else t("admin.attempt.failed"),
        ]

    head = _head(t, "at", "kind", "account", "address", "result")
    return _log_view(svc, who, lang, page, lambda c, at, n: admin.signin_log(c, account, at, n, who), head, cells)


def _detail(detail: Any) -> str:
    text = json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:159] + "…"


def changes_view(svc: Services, who: Principal | None, actor: str | None, page: int, lang: str) -> tuple[Any, int, str]:
    """The change log's table (admin_events), the page shown and its label."""
    t = translator(lang)

    def cells(r: _Row) -> list[Any]:
        return [
            _when(r["at"]),
            f"{r['actor_name']} ({r['actor_kind']})",
            r["action"],
            r["target"],
            html.Span(_detail(r["detail"]), className="yitu-admin-detail"),
            r["address"] or (r["detail"] or {}).get("address_text") or "—",
        ]

    head = _head(t, "at", "actor", "action", "target", "detail", "address")
    return _log_view(svc, who, lang, page, lambda c, at, n: admin.change_log(c, actor, at, n, who), head, cells)


def _step(trigger: Any, prev_id: str, next_id: str, page: int | None) -> int:
    page = int(page or 0)
    if trigger == prev_id:
        return page - 1
    if trigger == next_id:
        return page + 1
    return 0  # a new filter (or the first load) starts on the newest page


# --- wiring ----------------------------------------------------------------------------------------------------------


def _request() -> Any:
    """Dash's view of the request serving the callback (its FastAPI backend's adapter)."""
    app: Any = dash.get_app()  # type: ignore[no-untyped-call]
    return app.backend.request_adapter()


def client_address() -> str | None:
    """The browser's address, for the log (the request serving the callback)."""
    try:
        return _request().remote_addr  # type: ignore[no-any-return]
    except (RuntimeError, AttributeError):
        return None


def _bump(changed: int | None) -> int:
    return int(changed or 0) + 1


def base_url(svc: Services) -> str:
    """Where the pairing links point: YITU_PUBLIC_URL, or the address this page was served from."""
    if svc.settings.public_url:
        return svc.settings.public_url.rstrip("/")
    try:
        return str(_request().root).rstrip("/")
    except (RuntimeError, AttributeError):
        return f"http://{svc.settings.host}:{svc.settings.port}"


def _section(table: str, pick: str, message: str) -> list[Output]:
    """What every section's callback writes: its table, its picker's choices, its message, and the
    page's change counter (which reloads the other sections and the logs)."""
    return [
        Output(table, "children"),
        Output(pick, "options"),
        Output(message, "children"),
        Output(Ids.CHANGED, "data", allow_duplicate=True),
    ]


Buttons = Mapping[str, tuple[str, Mapping[str, str]]]  # a button's id → (its action, {field: the input's id})


def wire_section(
    app: Dash,
    name: str,
    ids: tuple[str, str, str],
    buttons: Buttons,
    do: Callable[[str, dict[str, Any]], Outcome],
    view: Callable[..., tuple[Any, ...]],
    *,
    filters: Sequence[str] = (),
    more: Sequence[Output] = (),
    cleared: Sequence[str] = (),
) -> None:
    """Wire one section of the admin page: its buttons (each an action on fields read from the
    form), its table and picker (``ids``: table, picker, message). The pressed button's action runs
    through ``do`` (none on a refresh); its message shows, and the change counter is bumped when it
    succeeded (so the other tables and the logs reload); then ``view(*filters' values)`` redraws the
    table, the picker's choices and ``more``. ``cleared``: inputs emptied every time (a password typed
    is never kept in the page). ``name`` is ``module._function``, as the guard's CALLBACKS table names it."""
    states = list(dict.fromkeys(i for _, fields in buttons.values() for i in fields.values()))

    def run(*args: Any) -> tuple[Any, ...]:
        pressed, given = args[: len(buttons) + len(filters)], args[len(buttons) + len(filters) :]
        values, changed = dict(zip(states, given[:-1], strict=True)), given[-1]
        message: Any = None
        bumped: Any = dash.no_update
        if ctx.triggered_id in buttons:
            action, fields = buttons[ctx.triggered_id]
            outcome = do(action, {key: values[i] for key, i in fields.items()})
            message, bumped = outcome.show(), _bump(changed) if outcome.ok else dash.no_update
        table, options, *rest = view(*pressed[len(buttons) :])
        return (table, options, message, bumped, *rest, *("" for _ in cleared))

    run.__module__, run.__name__ = name.rsplit(".", 1)
    run.__qualname__ = run.__name__
    app.callback(
        *_section(*ids),
        *more,
        *(Output(i, "value") for i in cleared),
        *(Input(b, "n_clicks") for b in buttons),
        *(Input(f, "value") for f in filters),
        *(State(i, "value") for i in states),
        State(Ids.CHANGED, "data"),
        prevent_initial_call="initial_duplicate",
    )(run)


def register(app: Dash, get: Callable[[], Services]) -> None:
    def lang() -> str:
        return get().settings.lang

    def doing(action_of: Callable[..., Outcome], *extra: Any) -> Callable[[str, dict[str, Any]], Outcome]:
        return lambda a, f: action_of(get(), identity.current(), client_address(), a, f, lang(), *extra)

    wire_section(
        app,
        "callbacks.admin._users",
        (Ids.USERS, Ids.USER_PICK, Ids.USER_MESSAGE),
        {
            Ids.USER_CREATE: (
                "create",
                {
                    "name": Ids.USER_NAME,
                    "role": Ids.USER_ROLE,
                    "area": Ids.USER_AREA,
                    "van": Ids.USER_VAN,
                    "password": Ids.USER_PASSWORD,
                },
            ),
            Ids.EDIT_APPLY: ("role", {"pick": Ids.USER_PICK, "role": Ids.EDIT_ROLE, "area": Ids.EDIT_AREA}),
            Ids.EDIT_PASSWD: ("passwd", {"pick": Ids.USER_PICK, "password": Ids.EDIT_PASSWORD}),
            Ids.USER_DISABLE: ("disable", {"pick": Ids.USER_PICK}),
            Ids.USER_ENABLE: ("enable", {"pick": Ids.USER_PICK}),
        },
        doing(user_action),
        lambda: users_view(get(), lang(), identity.current()),
        cleared=(Ids.USER_PASSWORD, Ids.EDIT_PASSWORD),
    )
    wire_section(
        app,
        "callbacks.admin._screens",
        (Ids.SCREENS, Ids.SCREEN_PICK, Ids.SCREEN_MESSAGE),
        {
            Ids.SCREEN_CREATE: ("create", {"name": Ids.SCREEN_NAME, "area": Ids.SCREEN_AREA}),
            Ids.SCREEN_PAIR: ("pair", {"pick": Ids.SCREEN_PICK}),
            Ids.SCREEN_REVOKE: ("revoke", {"pick": Ids.SCREEN_PICK}),
        },
        lambda a, f: screen_action(get(), identity.current(), client_address(), a, f, lang(), base_url(get())),
        lambda: screens_view(get(), lang(), identity.current()),
    )
    wire_section(
        app,
        "callbacks.admin._tokens",
        (Ids.TOKENS, Ids.TOKEN_PICK, Ids.TOKEN_MESSAGE),
        {
            Ids.TOKEN_CREATE: ("create", {"name": Ids.TOKEN_NAME, "role": Ids.TOKEN_ROLE, "area": Ids.TOKEN_AREA}),
            Ids.TOKEN_REVOKE: ("revoke", {"pick": Ids.TOKEN_PICK}),
        },
        doing(token_action),
        lambda: tokens_view(get(), lang(), identity.current()),
    )
    wire_section(
        app,
        "callbacks.admin._vans",
        (Ids.VANS, Ids.VAN_PICK, Ids.VAN_MESSAGE),
        {
            Ids.VAN_REGISTER: ("register", {"van": Ids.VAN_PICK, "device": Ids.VAN_DEVICE}),
            Ids.VAN_UNREGISTER: ("unregister", {"device": Ids.VAN_FORGET}),
        },
        doing(van_action),
        lambda: vans_view(get(), lang(), identity.current()),
    )

    def paged_log(
        name: str, view: Callable[..., tuple[Any, int, str]], table: str, page: str, ids: tuple[str, str, str]
    ) -> None:
        """One of the two audit logs (sign-ins, admin changes): a filter, previous/next, and a reload
        after any change on the page. ``ids``: the filter box, the previous and the next button."""
        flt, prev, nxt = ids

        def show(value: str | None, _p: int, _n: int, _c: int, at: int | None) -> tuple[Any, int, str]:
            try:
                return view(get(), identity.current(), value, _step(ctx.triggered_id, prev, nxt, at), lang())
            except Forbidden:
                raise PreventUpdate from None

        show.__name__ = show.__qualname__ = name  # the guard's CALLBACKS table names it
        app.callback(
            Output(table, "children"),
            Output(page, "data"),
            Output(page + "-label", "children"),
            Input(flt, "value"),
            Input(prev, "n_clicks"),
            Input(nxt, "n_clicks"),
            Input(Ids.CHANGED, "data"),
            State(page, "data"),
        )(show)

    paged_log(
        "_signins", signins_view, Ids.SIGNINS, Ids.SIGNIN_PAGE, (Ids.SIGNIN_FILTER, Ids.SIGNIN_PREV, Ids.SIGNIN_NEXT)
    )
    paged_log(
        "_changes", changes_view, Ids.CHANGES, Ids.CHANGE_PAGE, (Ids.CHANGE_FILTER, Ids.CHANGE_PREV, Ids.CHANGE_NEXT)
    )

"""``/admin``: the administrator's page — users, the roster (mediators and units), wall screens, API
tokens, van devices, and the sign-in and change logs.

Only an admin gets it: the guard (api/guard.py) answers anyone else the refusal page (403) and
every callback of the page refuses them too; an anonymous browser goes to /login. The page is a
frame of forms and empty tables: ``callbacks/admin.py`` fills the tables and makes the changes
(each with its admin_events row, services/admin.py). A token or a pairing link made here is shown
once, in the section's message, and never again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Literal

from dash import dcc, html
from dash.development.base_component import Component

from dashboard.header import page_header
from dashboard.i18n import translator
from dashboard.pages import inbox
from geodata.workflow import ROLES
from services.identity import CREW_ROLE, PEOPLE_ROLES, USER_ROLES
from services.settings import Settings


class Ids(StrEnum):
    WHO = "admin-who"
    SIGNOUT = "admin-signout"
    # users
    USERS = "admin-users"
    USER_NAME = "admin-user-name"
    USER_ROLE = "admin-user-role"
    USER_AREA = "admin-user-area"
    USER_PASSWORD = "admin-user-password"
    USER_VAN = "admin-user-van"  # the van a crew member rides in (role van)
    USER_CREATE = "admin-user-create"
    USER_PICK = "admin-user-pick"
    EDIT_ROLE = "admin-edit-role"
    EDIT_AREA = "admin-edit-area"
    EDIT_APPLY = "admin-edit-apply"
    EDIT_PASSWORD = "admin-edit-password"
    EDIT_PASSWD = "admin-edit-passwd"
    USER_DISABLE = "admin-user-disable"
    USER_ENABLE = "admin-user-enable"
    USER_MESSAGE = "admin-user-message"
    # screens
    SCREENS = "admin-screens"
    SCREEN_NAME = "admin-screen-name"
    SCREEN_AREA = "admin-screen-area"
    SCREEN_CREATE = "admin-screen-create"
    SCREEN_PICK = "admin-screen-pick"
    SCREEN_PAIR = "admin-screen-pair"
    SCREEN_REVOKE = "admin-screen-revoke"
    SCREEN_MESSAGE = "admin-screen-message"
    # tokens
    TOKENS = "admin-tokens"
    TOKEN_NAME = "admin-token-name"
    TOKEN_ROLE = "admin-token-role"
    TOKEN_AREA = "admin-token-area"
    TOKEN_CREATE = "admin-token-create"
    TOKEN_PICK = "admin-token-pick"
    TOKEN_REVOKE = "admin-token-revoke"
    TOKEN_MESSAGE = "admin-token-message"
    # van devices
    VANS = "admin-vans"
    VAN_PICK = "admin-van-pick"
    VAN_DEVICE = "admin-van-device"
    VAN_REGISTER = "admin-van-register"
    VAN_FORGET = "admin-van-forget"
    VAN_UNREGISTER = "admin-van-unregister"
    VAN_MESSAGE = "admin-van-message"
    # logs
    SIGNINS = "admin-signins"
    SIGNIN_FILTER = "admin-signin-filter"
    SIGNIN_PREV = "admin-signin-prev"
    SIGNIN_NEXT = "admin-signin-next"
    SIGNIN_PAGE = "admin-signin-page"
    CHANGES = "admin-changes"
    CHANGE_FILTER = "admin-change-filter"
    CHANGE_PREV = "admin-change-prev"
    CHANGE_NEXT = "admin-change-next"
    CHANGE_PAGE = "admin-change-page"
    CHANGED = "admin-changed"  # bumped after every change: the change log reloads
    # the roster: mediators
    MEDIATORS = "admin-mediators"
    MED_FILTER = "admin-med-filter"
    MED_COUNT = "admin-med-count"
    MED_NAME = "admin-med-name"
    MED_PHONE = "admin-med-phone"
    MED_AREA = "admin-med-area"
    MED_LEVEL = "admin-med-level"
    MED_UNIT = "admin-med-unit"
    MED_CENTRE = "admin-med-centre"
    MED_VAN = "admin-med-van"
    MED_SPECIALTIES = "admin-med-specialties"
    MED_USER = "admin-med-user"
    MED_CREATE = "admin-med-create"
    MED_PICK = "admin-med-pick"
    MED_APPLY = "admin-med-apply"
    MED_DEACTIVATE = "admin-med-deactivate"
    MED_ACTIVATE = "admin-med-activate"
    MED_MESSAGE = "admin-med-message"
    # the roster: units
    UNITS = "admin-units"
    UNIT_FILTER = "admin-unit-filter"
    UNIT_COUNT = "admin-unit-count"
    UNIT_NAME = "admin-unit-name"
    UNIT_KIND = "admin-unit-kind"
    UNIT_AREA = "admin-unit-area"
    UNIT_LEVEL = "admin-unit-level"
    UNIT_PHONE = "admin-unit-phone"
    UNIT_SPECIALTIES = "admin-unit-specialties"
    UNIT_CREATE = "admin-unit-create"
    UNIT_PICK = "admin-unit-pick"
    UNIT_APPLY = "admin-unit-apply"
    UNIT_DEACTIVATE = "admin-unit-deactivate"
    UNIT_ACTIVATE = "admin-unit-activate"
    UNIT_MESSAGE = "admin-unit-message"


MAX_INPUT = 1024  # the browser's own cap on a field; the server checks again (services/admin.py)


def _input(id_: str, placeholder: str, kind: Literal["text", "password"] = "text", size: int = 100) -> dcc.Input:
    return dcc.Input(
        id=id_,
        type=kind,
        placeholder=placeholder,
        maxLength=size,
        debounce=False,
        autoComplete="new-password" if kind == "password" else "off",
        className="yitu-input",
    )


def _button(id_: str, label: str, quiet: bool = False) -> html.Button:
    return html.Button(label, id=id_, n_clicks=0, className="yitu-button" + (" yitu-quiet" if quiet else ""))


def _roles(roles: tuple[str, ...], t: Callable[[str], str], people: bool = False) -> list[dict[str, str]]:
    """The role picker's options; for people, role van reads as a van's crew member (a token of role
    van is the van's own device)."""
    return [{"label": t("role.van_crew" if people and r == CREW_ROLE else f"role.{r}"), "value": r} for r in roles]


def _pick(id_: str, placeholder: str, options: list[dict[str, str]] | None = None, multi: bool = False) -> dcc.Dropdown:
    return dcc.Dropdown(
        id=id_,
        options=options or [],
        placeholder=placeholder,
        clearable=True,
        multi=multi,
        className="yitu-admin-select" + (" yitu-admin-multi" if multi else ""),
    )


def _card(title: str, *children: Component, cls: str = "") -> html.Section:
    return html.Section(className=f"yitu-card yitu-admin-card {cls}".strip(), children=[html.H3(title), *children])


def _row(*children: Component) -> html.Div:
    return html.Div(className="yitu-admin-form", children=list(children))


def _message(id_: str) -> html.Div:
    return html.Div(id=id_, className="yitu-admin-message", role="status")


def _section(
    title: str,
    form: Sequence[Component],
    picked: Sequence[Component],
    message: str,
    table: str,
    *between: Component,
    cls: str = "",
    table_cls: str = "yitu-admin-table",
) -> html.Section:
    """A section of the page: the row that adds one, the row acting on the one picked, the message,
    what comes ``between`` (a filter), and the table."""
    return _card(
        title, _row(*form), _row(*picked), _message(message), *between, html.Div(id=table, className=table_cls), cls=cls
    )


def _pager(prefix: str, filter_id: str, prev_id: str, next_id: str, page_id: str, t: Callable[[str], str]) -> html.Div:
    return _row(
        _input(filter_id, t(f"admin.{prefix}.filter")),
        _button(prev_id, t("admin.prev"), quiet=True),
        html.Span(id=page_id + "-label", className="yitu-muted"),
        _button(next_id, t("admin.next"), quiet=True),
        dcc.Store(id=page_id, data=0),
    )


LEVELS = ("banner", "town", "village", "grid")
UNIT_KINDS = (
    "committee",
    "professional",
    "justice_office",
    "police_station",
    "court",
    "petition",
    "hotline",
    "department",
)


def _filter(id_: str, count_id: str, t: Callable[[str], str]) -> html.Div:
    box = dcc.Input(
        id=id_,
        type="text",
        placeholder=t("admin.roster.filter"),
        maxLength=100,
        debounce=True,
        autoComplete="off",
        className="yitu-input",
    )
    return _row(box, html.Span(id=count_id, className="yitu-muted"))


def _roster_card(t: Callable[[str], str], kind: str, prefix: str, table: str, *form: Component) -> html.Section:
    """A roster card (``kind`` mediator or unit; its ids ``Ids.<prefix>_*``): the form to add one
    (or, once one is picked, to change it), the row to change or (de)activate the one picked, the
    message, the filter and the list with open cases."""

    def ids(name: str) -> str:
        return Ids[f"{prefix}_{name}"]

    return _section(
        t(f"admin.{kind}s"),
        [*form, _button(ids("CREATE"), t("admin.roster.create"))],
        [
            _pick(ids("PICK"), t(f"admin.{kind}.pick")),
            _button(ids("APPLY"), t("admin.roster.apply")),
            _button(ids("DEACTIVATE"), t("admin.roster.deactivate"), quiet=True),
            _button(ids("ACTIVATE"), t("admin.roster.activate"), quiet=True),
        ],
        ids("MESSAGE"),
        table,
        _filter(ids("FILTER"), ids("COUNT"), t),
        cls="yitu-admin-wide",
        table_cls="yitu-admin-table yitu-admin-roster",
    )


def _mediators_card(t: Callable[[str], str]) -> html.Section:
    levels = [{"label": t(f"level.{lvl}"), "value": lvl} for lvl in LEVELS]
    return _roster_card(
        t,
        "mediator",
        "MED",
        Ids.MEDIATORS,
        _input(Ids.MED_NAME, t("admin.field.name"), size=50),
        _input(Ids.MED_PHONE, t("admin.field.phone"), size=20),
        _input(Ids.MED_AREA, t("admin.field.area_code"), size=15),
        _pick(Ids.MED_LEVEL, t("admin.field.level"), levels),
        _pick(Ids.MED_UNIT, t("admin.field.unit")),
        _input(Ids.MED_CENTRE, t("admin.field.centre"), size=64),
        _pick(Ids.MED_VAN, t("admin.field.van")),
        _pick(Ids.MED_SPECIALTIES, t("admin.field.specialties"), multi=True),
        _input(Ids.MED_USER, t("admin.field.user"), size=100),
    )


def _units_card(t: Callable[[str], str]) -> html.Section:
    levels = [{"label": t(f"level.{lvl}"), "value": lvl} for lvl in LEVELS]
    kinds = [{"label": t(f"unit_kind.{k}"), "value": k} for k in UNIT_KINDS]
    return _roster_card(
        t,
        "unit",
        "UNIT",
        Ids.UNITS,
        _input(Ids.UNIT_NAME, t("admin.field.name"), size=100),
        _pick(Ids.UNIT_KIND, t("admin.field.kind"), kinds),
        _input(Ids.UNIT_AREA, t("admin.field.area_code"), size=15),
        _pick(Ids.UNIT_LEVEL, t("admin.field.level"), levels),
        _input(Ids.UNIT_PHONE, t("admin.field.phone"), size=20),
        _pick(Ids.UNIT_SPECIALTIES, t("admin.field.specialties"), multi=True),
    )


def layout(settings: Settings, who: str = "") -> html.Div:
    """The admin page's frame; ``who`` is the line naming who is signed in."""
    t = translator(settings.lang)
    return html.Div(
        className="yitu-admin",
        children=[
            dcc.Store(id=Ids.CHANGED, data=0),
            page_header(
                settings.lang,
                t("admin.title"),
                inbox.header_link(settings.lang),
                subtitle=t("admin.subtitle"),
                who=who,
                who_id=Ids.WHO,
                signout_id=Ids.SIGNOUT,
            ),
            html.Main(
                className="yitu-admin-body",
                children=[
                    _section(
                        t("admin.users"),
                        [
                            _input(Ids.USER_NAME, t("admin.field.name")),
                            _pick(Ids.USER_ROLE, t("admin.field.role"), _roles(USER_ROLES, t, people=True)),
                            _input(Ids.USER_AREA, t("admin.field.area_optional"), size=15),
                            _input(Ids.USER_VAN, t("admin.field.crew_van"), size=10),
                            _input(Ids.USER_PASSWORD, t("admin.field.password"), "password", MAX_INPUT),
                            _button(Ids.USER_CREATE, t("admin.user.create")),
                        ],
                        [
                            _pick(Ids.USER_PICK, t("admin.user.pick")),
                            _pick(Ids.EDIT_ROLE, t("admin.field.role"), _roles(PEOPLE_ROLES, t)),
                            _input(Ids.EDIT_AREA, t("admin.field.area_optional"), size=15),
                            _button(Ids.EDIT_APPLY, t("admin.user.apply")),
                            _input(Ids.EDIT_PASSWORD, t("admin.field.new_password"), "password", MAX_INPUT),
                            _button(Ids.EDIT_PASSWD, t("admin.user.passwd")),
                            _button(Ids.USER_DISABLE, t("admin.user.disable"), quiet=True),
                            _button(Ids.USER_ENABLE, t("admin.user.enable"), quiet=True),
                        ],
                        Ids.USER_MESSAGE,
                        Ids.USERS,
                        cls="yitu-admin-wide",
                    ),
                    _mediators_card(t),
                    _units_card(t),
                    _section(
                        t("admin.screens"),
                        [
                            _input(Ids.SCREEN_NAME, t("admin.field.name")),
                            _input(Ids.SCREEN_AREA, t("admin.field.area_optional"), size=15),
                            _button(Ids.SCREEN_CREATE, t("admin.screen.create")),
                        ],
                        [
                            _pick(Ids.SCREEN_PICK, t("admin.screen.pick")),
                            _button(Ids.SCREEN_PAIR, t("admin.screen.pair")),
                            _button(Ids.SCREEN_REVOKE, t("admin.screen.revoke"), quiet=True),
                        ],
                        Ids.SCREEN_MESSAGE,
                        Ids.SCREENS,
                    ),
                    _section(
                        t("admin.tokens"),
                        [
                            _input(Ids.TOKEN_NAME, t("admin.field.name")),
                            _pick(Ids.TOKEN_ROLE, t("admin.field.role"), _roles(ROLES, t)),
                            _input(Ids.TOKEN_AREA, t("admin.field.area_optional"), size=15),
                            _button(Ids.TOKEN_CREATE, t("admin.token.create")),
                        ],
                        [
                            _pick(Ids.TOKEN_PICK, t("admin.token.pick")),
                            _button(Ids.TOKEN_REVOKE, t("admin.token.revoke"), quiet=True),
                        ],
                        Ids.TOKEN_MESSAGE,
                        Ids.TOKENS,
                    ),
                    _section(
                        t("admin.vans"),
                        [
                            _pick(Ids.VAN_PICK, t("admin.van.pick")),
                            _input(Ids.VAN_DEVICE, t("admin.field.device_or_generate"), size=200),
                            _button(Ids.VAN_REGISTER, t("admin.van.register")),
                        ],
                        [
                            _input(Ids.VAN_FORGET, t("admin.field.device"), size=200),
                            _button(Ids.VAN_UNREGISTER, t("admin.van.unregister"), quiet=True),
                        ],
                        Ids.VAN_MESSAGE,
                        Ids.VANS,
                    ),
                    _card(
                        t("admin.signins"),
                        _pager("signins", Ids.SIGNIN_FILTER, Ids.SIGNIN_PREV, Ids.SIGNIN_NEXT, Ids.SIGNIN_PAGE, t),
                        html.Div(id=Ids.SIGNINS, className="yitu-admin-table"),
                    ),
                    _card(
                        t("admin.changes"),
                        _pager("changes", Ids.CHANGE_FILTER, Ids.CHANGE_PREV, Ids.CHANGE_NEXT, Ids.CHANGE_PAGE, t),
                        html.Div(id=Ids.CHANGES, className="yitu-admin-table"),
                        cls="yitu-admin-wide",
                    ),
                ],
            ),
        ],
    )

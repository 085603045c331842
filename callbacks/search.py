"""The search box's callback (every page's header, dashboard/search.py): what was typed → the dropdown;
Enter on a whole case code → the case page.

Through geodata/search.py directly, not over HTTP: the same scope (in the SQL), the same groups and
the same masking as ``GET /api/v1/search``. The signed-in reader decides what is searched (a
dispatcher finds cases by a party's phone, a viewer does not); the dropdown shows what a room
screen may see. A match through the parties is logged as a read of personal data, as the API does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dash import Dash, Input, Output, ctx, no_update

from dashboard.search import Ids, results
from geodata import search as finder
from services import audit, identity
from services.runtime import Services

ROUTE = "search box"  # where the audit says the read happened


def answer(svc: Services, q: str | None, submitted: bool) -> tuple[list[Any], Any]:
    """(the dropdown, the path to go to or no_update) for the text ``q`` of the box; ``submitted``
    when the user pressed Enter."""
    lang = svc.settings.lang
    if not q or not q.strip(" "):
        return [], no_update
    problem = finder.check_query(q)
    if problem:
        return results(None, lang, problem), no_update
    who = identity.who_is_asking()
    with svc.pool.connection() as conn:
        found = finder.search(conn, q, finder.Reader(who.role, who.area))
        audit.personal_data_read(conn, who, [c["code"] for c in found["by_party"]], ROUTE)
    if submitted and found["open"]:
        return [], found["open"]
    return results(found, lang), no_update


def register(app: Dash, get: Callable[[], Services]) -> None:
    @app.callback(
        Output(Ids.RESULTS, "children"),
        Output("url", "pathname", allow_duplicate=True),
        Input(Ids.INPUT, "value"),
        Input(Ids.INPUT, "n_submit"),
        prevent_initial_call=True,
    )
    def _results(q: str | None, _submits: int | None) -> tuple[list[Any], Any]:
        submitted = any(t["prop_id"] == f"{Ids.INPUT}.n_submit" for t in ctx.triggered)
        return answer(get(), q, submitted)

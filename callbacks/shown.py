"""Send a page only the outputs that changed since the last round.

A panel drawn again by the live push replaces its buttons: a click that lands while the browser
swaps them is lost (the dispatch page's 结束走访 was, about 1 run in 20 of its browser test), and the
page does work for nothing. A callback that answers every live round keeps, in a store, a digest of
each output's JSON as it was sent, and answers ``no_update`` for each output whose JSON has not
changed — nothing at all (Dash answers 204) when none did. The wall's numbers do the same with JSON
they make once for every screen (callbacks/wall.py, ``numbers_round``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from dash import no_update
from dash.exceptions import PreventUpdate
from plotly.io.json import to_json_plotly


def digest(part: Any) -> str:
    """A short digest of ``part`` as Dash serializes it (components, lists, plain values)."""
    return hashlib.blake2b(to_json_plotly(part).encode(), digest_size=12).hexdigest()


def only_changed(parts: Sequence[Any], shown: object) -> tuple[Any, ...]:
    """``parts`` with ``no_update`` in place of each one the page shows already, then the digests
    to keep in the page's store for the next round. ``shown``: that store's data (None, or a list of
    another length, on a page just opened: everything is sent). Raises PreventUpdate when nothing
    changed."""
    digests = [digest(p) for p in parts]
    old = shown if isinstance(shown, list) and len(shown) == len(parts) else [None] * len(parts)
    out = [no_update if old[i] == d else p for i, (p, d) in enumerate(zip(parts, digests, strict=True))]
    if all(p is no_update for p in out):
        raise PreventUpdate
    return (*out, digests)

"""Send a page only the outputs that changed since the last round.

A panel drawn again by the live push replaces its buttons: a click that lands while the browser
swaps them is lost (the dispatch page's 结束走访 was, about 1 run in 20 of its browser test), and the
page does work for nothing. A callback that answers every live round keeps, in a store, a digest of
each output's JSON as it was sent, and answers ``no_update`` for each output whose JSON has not
changed — nothing at all (Dash answers 204) when none did. The wall's numbers make their JSON once for
every screen (callbacks/wall.py) and use :func:`changed` on it.

An output's JSON is made once: for its digest, and, where Dash's serializer copies an
``orjson.Fragment`` as it is (plotly's orjson engine, :data:`FRAGMENTS`), as what is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson
from dash import no_update
from dash.exceptions import PreventUpdate
from plotly.io.json import to_json_plotly


def _passes_fragments() -> bool:
    """Does Dash's serializer copy a Fragment as it is? Otherwise each request serializes the
    components, as before."""
    try:
        return bool(to_json_plotly([orjson.Fragment(b"1")]) == "[1]")
    except (TypeError, ValueError):
        return False


FRAGMENTS = _passes_fragments()


def digest(wire: str | bytes | orjson.Fragment) -> str:
    """A short digest of an output's JSON (its text, or a Fragment of it)."""
    data = orjson.dumps(wire) if isinstance(wire, orjson.Fragment) else wire
    return hashlib.blake2b(data.encode() if isinstance(data, str) else data, digest_size=12).hexdigest()


def changed(parts: Sequence[Any], digests: Sequence[str], shown: object) -> tuple[Any, ...]:
    """``parts`` with ``no_update`` in place of each one whose digest the page shows already (``shown``:
    the store's data; None, or a list of another length, on a page just opened: everything is sent),
    then ``digests``, for the store. Raises PreventUpdate when nothing changed."""
    old = shown if isinstance(shown, list) and len(shown) == len(digests) else [None] * len(digests)
    out = [no_update if old[i] == d else p for i, (p, d) in enumerate(zip(parts, digests, strict=True))]
    if all(p is no_update for p in out):
        raise PreventUpdate
    return (*out, list(digests))


def only_changed(parts: Sequence[Any], shown: object) -> tuple[Any, ...]:
    """:func:`changed` for components made this round: each one's JSON made once, for its digest
    and (with :data:`FRAGMENTS`) as what is sent."""
    wires = [to_json_plotly(p) for p in parts]
    sent = [orjson.Fragment(w) for w in wires] if FRAGMENTS else list(parts)
    return changed(sent, [digest(w) for w in wires], shown)

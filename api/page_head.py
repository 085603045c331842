"""The head of the pages yitu serves outside Dash (sign-in, welcome, the two phone pages).

One function, so the pages agree on what every head carries: UTF-8, the viewport, a referrer
policy (``same-origin``; ``no-referrer`` where the URL itself is a secret, as a welcome link is),
and then the page's own title, theme colour and stylesheets.
"""

from __future__ import annotations

import html
from collections.abc import Sequence


def page_head(
    lang: str,
    title: str,
    links: Sequence[tuple[str, str]],
    *,
    referrer: str = "same-origin",
    theme: str | None = None,
    app: bool = False,
) -> str:
    """``<!DOCTYPE html>`` to ``</head>``, one element a line. ``links``: (rel, href) in order;
    ``app``: a phone page drawn under the notch (``viewport-fit=cover``), with its ``theme`` colour."""
    esc = html.escape
    viewport = "width=device-width, initial-scale=1" + (", viewport-fit=cover" if app else "")
    lines = [
        "<!DOCTYPE html>",
        f'<html lang="{esc(lang)}">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta name="viewport" content="{viewport}">',
        f'<meta name="referrer" content="{esc(referrer)}">',
        *([f'<meta name="theme-color" content="{esc(theme)}">'] if theme else []),
        f"<title>{esc(title)}</title>",
        *(f'<link rel="{esc(rel)}" href="{esc(href)}">' for rel, href in links),
        "</head>",
    ]
    return "\n".join(lines)

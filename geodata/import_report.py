"""What an import tells: its problems, its refusal, its report, and the hook that records it.

Kept apart from geodata/io.py, the readers (geopandas, pandas, GDAL: half a second and more to load):
the server imports these for the roster and resource uploads and the first-run welcome, and every
``yitu`` process loaded the GIS stack for them at start (2026-12-07: 0.5 s of CPU per ``yitu serve``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from geodata.errors import Invalid


@dataclass(frozen=True)
class Problem:
    """One defect of an input file: what, which code(s), where (lon/lat or feature #N), why."""

    kind: str
    codes: tuple[str, ...]
    location: str
    message: str

    def __str__(self) -> str:
        codes = ", ".join(shown(c) for c in self.codes) if self.codes else "-"
        return f"{self.kind}: {codes} @ {self.location}: {one_line(self.message)}"


class ImportRejected(Invalid):
    """The file was judged and refused; nothing was written. ``problems`` lists every defect."""

    def __init__(self, problems: Sequence[Problem], warnings: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s), nothing was written:\n{lines}", field="file")


@dataclass
class ImportReport:
    """What an import wrote: ``counts`` breaks the file down (per level, or per camera kind)."""

    what: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"inserted {self.inserted}", f"updated {self.updated}"]
        if self.deleted:
            parts.append(f"replaced {self.deleted} old")
        detail = ", ".join(f"{k}: {v}" for k, v in self.counts.items())
        return f"{self.what}: " + ", ".join(parts) + (f" ({detail})" if detail else "")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def shown(text: str, limit: int = 40) -> str:
    """A code as a user can read it: control characters escaped, huge values cut."""
    readable = text if text.isprintable() else repr(text)
    return readable if len(readable) <= limit else readable[:limit] + "…"


# Called inside an import's transaction once its rows are written, before the commit: the caller's
# record of the change (the CLI writes an admin_events row), committed with it or not at all.
AuditHook = Callable[[psycopg.Connection[Any], ImportReport], None]

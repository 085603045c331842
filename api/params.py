"""Parameter types whose schema says exactly what the routes take.

A client (or a test) that follows ``/openapi.json`` must never be refused for a value the schema
allows, nor have a value the schema forbids read as something else:

- :data:`Day` and :data:`Instant` take ISO 8601 text only. Pydantic on its own reads a number as
  unix time, so ``until=0`` was the 1st of January 1970; it is refused now (422 naming the field).
- :data:`Text` and :data:`SomeText` carry in the schema what the validators refuse: NUL characters
  (PostgreSQL's text cannot hold them) and, for the required texts, blank values (the models
  strip whitespace first).
- :data:`Version` and :data:`Satisfaction` are JSON Schema's integers: ``4.0`` is 4, ``"4"`` and
  ``true`` are not numbers.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

__all__ = ["NO_NUL", "SOME_TEXT", "Day", "Instant", "Satisfaction", "SomeText", "Text", "Version", "no_nul"]

NO_NUL = r"^[^\x00]*$"
SOME_TEXT = r"^[^\x00]*[^\x00\s][^\x00]*$"  # not blank once stripped
_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def no_nul(v: str | None) -> str | None:
    if v is not None and "\x00" in v:
        raise ValueError("must not contain NUL characters")  # PostgreSQL text cannot hold them
    return v


def _iso_day(v: Any) -> Any:
    if isinstance(v, str) and not _DAY.match(v):
        raise ValueError("a day as YYYY-MM-DD")
    if isinstance(v, (int, float)):
        raise ValueError("a day as YYYY-MM-DD, not a number")
    return v


def _iso_instant(v: Any) -> Any:
    if isinstance(v, (int, float)) or (isinstance(v, str) and v.strip().lstrip("+-").replace(".", "").isdigit()):
        raise ValueError("an ISO 8601 date and time with an offset, not a number")
    return v


def _whole_number(v: Any) -> Any:
    if isinstance(v, (bool, str)):
        raise ValueError("a whole number (not a string or a boolean)")
    if isinstance(v, float) and v.is_integer():
        return int(v)  # JSON's 4.0 is the integer 4 (JSON Schema's "integer" allows it)
    return v


Day = Annotated[date, BeforeValidator(_iso_day)]
# JSON Schema's integers in bounds (the bounds inside, so the schema shows them as minimum/maximum).
Version = Annotated[Annotated[int, Field(ge=1)], BeforeValidator(_whole_number)]
Satisfaction = Annotated[Annotated[int, Field(ge=1, le=5)], BeforeValidator(_whole_number)]
People = Annotated[Annotated[int, Field(ge=1, le=100_000)], BeforeValidator(_whole_number)]


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_instant)]
Text = Annotated[str, AfterValidator(no_nul), Field(json_schema_extra={"pattern": NO_NUL})]
SomeText = Annotated[str, AfterValidator(no_nul), Field(json_schema_extra={"pattern": SOME_TEXT})]

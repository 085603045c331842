"""What of a case's personal data each reader sees: one policy per role, one way of masking.

Every place that shows a case's parties — the API, the wall screen's case card, the dispatch
page — asks :func:`case_for` / :func:`parties_for` with the reader's role, so a
rule changed here changes on every screen at once (two copies drifted before: the wall card
showed 7 digits of an 8-digit landline while the API showed 4).

The policy: the roles that handle cases (admin, dispatcher, grid worker, van crew) see the parties
as reported; everyone else sees them masked: a viewer token, a screen in the command room (the wall
screen and the dispatch page, which visitors may read whoever signed in: :data:`SCREEN`), a role this
module does not know. (The area export shows no parties at all: it names no reader.)

The masks: a name keeps its first character (张三丰 → 张**, the habit of Chinese public-service
screens); a phone number of any kind, mobile or landline, shows its last four digits only
(13812345678 → *******5678, 0477-8123456 → *******3456). The description is masked too, since
clerks write the parties' names and numbers into it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# The one policy: a row per role of geodata/workflow.py ROLES, and the room screens' row.
# True = sees the parties as reported.
SEES_PERSONAL_DATA: Mapping[str, bool] = {
    "admin": True,
    "dispatcher": True,
    "grid_worker": True,
    "van": True,
    "viewer": False,
    "screen": False,  # SCREEN: a page on a screen in the command room
}
SCREEN = "screen"  # the reader a room screen's card is shown to (wall screen, dispatch page)

SHOWN_DIGITS = 4  # a phone number shows this many of its last digits, whatever its kind

# A phone number inside free text: a mobile (1 + 10 digits, maybe +86 before it), a landline with
# its area code (0 + 2-3 digits, maybe a hyphen or a space, then 7-8 digits), or a bare local
# landline of 7-8 digits. Not part of a longer run of digits.
_PHONE_IN_TEXT = re.compile(r"(?<![\d])(?:(?:\+?86[- ]?)?1\d{10}|0\d{2,3}[- ]?\d{7,8}|\d{7,8})(?![\d])")


def sees_personal_data(role: str | None) -> bool:
    """Does a reader of ``role`` see the parties as reported? Unknown and missing roles do not."""
    return SEES_PERSONAL_DATA.get(role or "", False)


def mask_name(name: str) -> str:
    """张三丰 → 张**, 乌兰 → 乌*, Li Wei → L*****; a single character or empty stays as it is."""
    name = name.strip()
    if len(name) <= 1:
        return name
    return name[0] + "*" * (len(name) - 1)


def mask_phone(phone: str) -> str:
    """Any number, mobile or landline, keeps only its last four digits: 13812345678 → *******5678,
    81234567 → ****4567, 0477-8123456 → *******3456. Separators go; four digits or fewer show none.
    A masked number stays as it is (a star counts as a hidden digit), so masking twice is harmless."""
    digits = re.sub(r"[^\d*]", "", phone)
    if len(digits) > SHOWN_DIGITS:
        return "*" * (len(digits) - SHOWN_DIGITS) + digits[-SHOWN_DIGITS:]
    return "*" * len(digits)


def mask_party(party: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(party)
    if out.get("name"):
        out["name"] = mask_name(str(out["name"]))
    if out.get("phone"):
        out["phone"] = mask_phone(str(out["phone"]))
    return out


def mask_text(text: str, parties: Sequence[Mapping[str, Any]]) -> str:
    """The text with every party's name and any phone number in it masked."""
    for party in sorted(parties, key=lambda p: -len(str(p.get("name") or ""))):
        name = str(party.get("name") or "").strip()
        if len(name) > 1:
            text = text.replace(name, mask_name(name))
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


# The free text of a case that clerks write (and may write the parties into).
FREE_TEXT = ("description", "followup_note")


def mask_case(case: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a case with its personal data masked: the parties, its free text, and the notes
    of its timeline when it has one."""
    parties = case.get("parties") or []
    out = dict(case)
    out["parties"] = [mask_party(p) for p in parties]
    for key in FREE_TEXT:
        if case.get(key):
            out[key] = mask_text(str(case[key]), parties)
    if case.get("timeline"):
        out["timeline"] = [
            {**e, "note": mask_text(str(e["note"]), parties)} if e.get("note") else dict(e) for e in case["timeline"]
        ]
    return out


def parties_for(role: str | None, parties: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The parties as a reader of ``role`` may see them."""
    if sees_personal_data(role):
        return [dict(p) for p in parties or []]
    return [mask_party(p) for p in parties or []]


def case_for(role: str | None, case: Mapping[str, Any]) -> dict[str, Any]:
    """A case (any mapping with ``parties`` and maybe ``description``) as a reader of ``role`` may see it."""
    return dict(case) if sees_personal_data(role) else mask_case(case)


def parties_line(role: str | None, parties: Sequence[Mapping[str, Any]] | None, sep: str = "，") -> str:
    """The parties in one line of text as a reader of ``role`` may see them: "张** *******5678，李* ****1234"."""
    return sep.join(" ".join(str(p[k]) for k in ("name", "phone") if p.get(k)) for p in parties_for(role, parties))

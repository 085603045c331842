"""Masking of personal data (names, phone numbers) for readers who do not handle the case.

The habit of Chinese public-service screens: keep the surname, star the given name (张**), keep
the mobile prefix and the last four digits (138****5678). The description is masked too, since
clerks write the parties' names into it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PHONE_IN_TEXT = re.compile(r"(?<!\d)(1\d{2})\d{4}(\d{4})(?!\d)")


def mask_name(name: str) -> str:
    """张三丰 → 张**, 乌兰 → 乌*, Li Wei → L*****; empty stays empty."""
    name = name.strip()
    if len(name) <= 1:
        return name
    return name[0] + "*" * (len(name) - 1)


def mask_phone(phone: str) -> str:
    """13812345678 → 138****5678; other numbers keep only their last four digits."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 11 and digits.startswith("1"):
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) > 4:
        return "*" * (len(digits) - 4) + digits[-4:]
    return "*" * len(digits)


def mask_party(party: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(party)
    if out.get("name"):
        out["name"] = mask_name(str(out["name"]))
    if out.get("phone"):
        out["phone"] = mask_phone(str(out["phone"]))
    return out


def mask_text(text: str, parties: list[Mapping[str, Any]]) -> str:
    """The text with every party's name and any mobile number in it masked."""
    for party in sorted(parties, key=lambda p: -len(str(p.get("name") or ""))):
        name = str(party.get("name") or "").strip()
        if len(name) > 1:
            text = text.replace(name, mask_name(name))
    return _PHONE_IN_TEXT.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


def mask_case(case: dict[str, Any]) -> dict[str, Any]:
    """A copy of an API case with its personal data masked (parties, description, reporter)."""
    parties = case.get("parties") or []
    out = dict(case)
    out["parties"] = [mask_party(p) for p in parties]
    out["description"] = mask_text(case.get("description") or "", parties)
    return out

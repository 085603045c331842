"""What of a case's personal data each reader sees: one policy per role, one way of masking.

Every place that shows a case — the API (cases, timeline, dispatches), the wall screen's case
card, the area page, the dispatch page, the live push and the CSV — asks :func:`case_for` /
:func:`parties_for` / :func:`text_for` with the reader's role, so a rule changed here changes on
every screen at once (two copies drifted before: the wall card showed 7 digits of an 8-digit
landline while the API showed 4).

The policy: the roles that handle cases (admin, dispatcher, grid worker, van crew) see the parties
as reported; everyone else sees them masked: a viewer, a paired wall screen (:data:`SCREEN`), an
anonymous reader, a role this module does not know. Camera stream URLs go to admin and
dispatcher only (:func:`stream_url_for`), and never with the camera's credentials in them.

The masks: a name keeps its first character (张三丰 → 张**, the habit of Chinese public-service
screens); a number — mobile, landline, 18-digit ID number (身份证, last character maybe X) — shows
``****`` and its last four characters, whatever its length (13812345678 → ****5678, 0477-8123456 →
****3456, 11010519491231002X → ****002X): four stars always, so the mask does not tell a mobile
from a landline either. The same masks apply inside free text (descriptions, notes, the
timeline's notes, follow-up notes), where clerks write the parties' names and numbers: the known
parties' names, and every number of seven digits or more, however it is written (hyphens,
spaces, +86, an area code in brackets, an ID number's X). Case codes (150623-20261205-000123) and
dates (2026-12-05) are not personal and stay as they are; so do shorter numbers (amounts, house
numbers, times). Masking is idempotent: a masked text masked again is the same text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# The one policy: a row per role of geodata/workflow.py ROLES, and the paired wall screens' row.
# True = sees the parties as reported.
SEES_PERSONAL_DATA: Mapping[str, bool] = {
    "admin": True,
    "dispatcher": True,
    "grid_worker": True,
    "van": True,
    "viewer": False,
    "screen": False,  # SCREEN: a paired wall screen, or a room page nobody signed in to
}
SCREEN = "screen"  # the reader a room screen's card is shown to (wall screen, dispatch page)
# The room pages (the wall screen, the dispatch page) are read by whoever stands in the command
# room, over the shoulder of whoever signed in: their case cards show what a screen may see.
ROOM_READER = SCREEN

# Who gets a camera's stream URL (with its credentials taken out): the roles that act on what they see.
SEES_STREAMS = frozenset({"admin", "dispatcher"})

SHOWN_DIGITS = 4  # a number shows this many of its last characters, whatever its kind
HIDDEN = "*" * 4  # and this in front of them, whatever its length

# Digits in free text that are not personal data and stay as they are: a case code
# (150623-20261205-000123) and a date (2026-12-05).
_KEEP = r"\d{6}-\d{8}-\d{6,9}(?!\d)|\d{4}-\d{1,2}-\d{1,2}(?!\d)"
# A number as clerks write one: groups of digits joined by single hyphens or spaces (138 1234
# 5678, 0477-812-3456, +86 138…), maybe an area code in brackets first, maybe an ID number's X
# after its 17 digits. A number never runs on into a case code or a date written after it. Two
# numbers written side by side with a space between are told apart when the masking splits them
# (:func:`_split`).
_NUMBER = (
    r"(?:\(\d{3,4}\)[- ]?|\+)?(?<!\d)"
    rf"(?:\d+[- ](?=\d)(?!{_KEEP}))*\d+"
    r"(?:(?<=\d{17})(?<!\d{18})[Xx])?"
)
_IN_TEXT = re.compile(rf"(?P<keep>{_KEEP})|(?P<number>{_NUMBER})")
MIN_DIGITS = 7  # a number of fewer digits in a text (an amount, a house number, a time) is not masked

# Query parameters of a stream URL that carry credentials (compared lower-case, without - and _).
_SECRET_PARAMS = frozenset(
    {
        "user",
        "username",
        "usr",
        "login",
        "password",
        "passwd",
        "pass",
        "pwd",
        "token",
        "accesstoken",
        "auth",
        "authorization",
        "key",
        "apikey",
        "secret",
        "sig",
        "signature",
        "credential",
        "credentials",
        "session",
        "sessionid",
        "ticket",
    }
)


def sees_personal_data(role: str | None) -> bool:
    """Does a reader of ``role`` see the parties as reported? Unknown and missing roles do not."""
    return SEES_PERSONAL_DATA.get(role or "", False)


def sees_attachment_content(role: str | None) -> bool:
    """Does a reader of ``role`` get a case's attachments (photos, agreements), not only their list?

    The photos show the parties, their faces, houses and signatures: the same readers as the
    parties' names. The others (viewers, wall screens) see that attachments exist, no more. The
    original as uploaded (which may hold the phone's GPS position) goes to these roles too, when
    asked for: everyone gets the copy without location data by default (api/attachments.py).
    """
    return sees_personal_data(role)


def sees_streams(role: str | None) -> bool:
    """Does a reader of ``role`` get cameras' stream URLs? Admin and dispatcher only."""
    return (role or "") in SEES_STREAMS


def mask_name(name: str) -> str:
    """张三丰 → 张**, 乌兰 → 乌*, Li Wei → L*****; a single character or empty stays as it is."""
    name = name.strip()
    if len(name) <= 1:
        return name
    return name[0] + "*" * (len(name) - 1)


def mask_number(number: str) -> str:
    """Any number — mobile, landline, ID number — as ``****`` and its last four characters:
    13812345678 → ****5678, 0477-8123456 → ****3456, 11010519491231002X → ****002X. Separators go;
    four characters or fewer show none (****). A masked number stays as it is."""
    chars = re.sub(r"[^\dXx*]", "", number)
    if len(chars) <= SHOWN_DIGITS:
        return HIDDEN
    return HIDDEN + chars[-SHOWN_DIGITS:]


mask_phone = mask_number  # a party's phone is one of the numbers


def mask_party(party: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(party)
    if out.get("name"):
        out["name"] = mask_name(str(out["name"]))
    if out.get("phone"):
        out["phone"] = mask_number(str(out["phone"]))
    return out


def _names(parties: Sequence[Mapping[str, Any]]) -> list[str]:
    """The parties' names worth looking for in a text, longest first (so 张三丰 goes before 张三)."""
    names = {str(p.get("name") or "").strip() for p in parties}
    return sorted((n for n in names if len(n) > 1), key=lambda n: (-len(n), n))


def mask_text(text: str, parties: Sequence[Mapping[str, Any]] = ()) -> str:
    """The text with every known party's name and every number in it masked (case codes kept)."""
    for name in _names(parties):
        text = text.replace(name, mask_name(name))
    return _IN_TEXT.sub(_masked_match, text)


def _digits(text: str) -> int:
    return len(re.sub(r"[^\dXx]", "", text))


def _split(number: str) -> list[str]:
    """A run of space-joined groups as the numbers in it: split at a space where what is before
    and what is after each hold a whole number (MIN_DIGITS or more), so "13987654321 0477-8561234"
    is two numbers while "138 1234 5678" and "0 86130 0000 0000" are one."""
    parts = number.split(" ")
    pieces: list[str] = []
    current: list[str] = []
    for i, part in enumerate(parts):
        current.append(part)
        if _digits(" ".join(current)) >= MIN_DIGITS and _digits(" ".join(parts[i + 1 :])) >= MIN_DIGITS:
            pieces.append(" ".join(current))
            current = []
    if current:
        pieces.append(" ".join(current))
    return pieces


def _masked_match(m: re.Match[str]) -> str:
    number = m.group("number")
    if number is None:
        return m.group("keep")
    if _digits(number) < MIN_DIGITS:
        return number  # every piece of a run of fewer digits is shorter still
    return " ".join(mask_number(piece) for piece in _split(number))


def text_for(role: str | None, text: str | None, parties: Sequence[Mapping[str, Any]] | None = ()) -> str | None:
    """A free text (a note, a description) as a reader of ``role`` may see it."""
    if text is None or sees_personal_data(role):
        return text
    return mask_text(str(text), parties or ())


# The free text of a case that clerks write (and may write the parties into).
FREE_TEXT = ("description", "followup_note", "note", "end_note")


def mask_case(case: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a case (or of anything about one: a dispatch, a card) with its personal data
    masked: the parties, its free text, and the notes of its timeline when it has one."""
    parties = case.get("parties") or []
    out = dict(case)
    if "parties" in case:
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
    """A case (any mapping with ``parties`` and maybe free text) as a reader of ``role`` may see it."""
    return dict(case) if sees_personal_data(role) else mask_case(case)


def parties_line(role: str | None, parties: Sequence[Mapping[str, Any]] | None, sep: str = "，") -> str:
    """The parties in one line of text as a reader of ``role`` may see them: "张** ****5678，李* ****1234"."""
    return sep.join(" ".join(str(p[k]) for k in ("name", "phone") if p.get(k)) for p in parties_for(role, parties))


def _secret_param(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "") in _SECRET_PARAMS


def strip_credentials(url: str) -> str:
    """A URL without the credentials cameras' URLs carry: no ``user:password@``, no query
    parameter whose name says it is a user, password, token, key or signature (a URL without
    any comes back as it was)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if "@" not in parts.netloc and not any(_secret_param(k) for k, _ in query):
        return url
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal goes back in brackets
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    kept = urlencode([(k, v) for k, v in query if not _secret_param(k)])
    return urlunsplit((parts.scheme, netloc, parts.path, kept, ""))


def stream_url_for(role: str | None, url: str | None) -> str | None:
    """A camera's stream URL as a reader of ``role`` may see it: admin and dispatcher get it
    without its credentials; everyone else gets none."""
    if not url or not sees_streams(role):
        return None
    try:
        return strip_credentials(url)
    except ValueError:  # not a URL at all (a bad port, say): nothing is safer than something
        return None

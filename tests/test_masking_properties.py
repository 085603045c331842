"""Property tests of the one masking policy (geodata/masking.py), with Hypothesis.

Whatever the number's shape (mobile with or without +86 and separators, landline with its area
code, bare local number, 18-digit ID number ending in a digit or X) and whatever text surrounds it,
the masked text keeps no run of 5 digits of the number, shows it as ``****`` and its last four,
masks the known parties' names, leaves text without numbers and names as it was, keeps case
codes, and masking twice changes nothing.
"""

from __future__ import annotations

import os
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from geodata import masking
from geodata.masking import mask_name, mask_number, mask_text, stream_url_for, strip_credentials

settings.register_profile("yitu", max_examples=300, deadline=None)
settings.register_profile("yitu-long", max_examples=5000, deadline=None)  # YITU_HYPOTHESIS_PROFILE=yitu-long
settings.load_profile(os.environ.get("YITU_HYPOTHESIS_PROFILE", "yitu"))

DIGITS = "0123456789"
SEP = st.sampled_from(["", "-", " "])


@st.composite
def mobiles(draw: st.DrawFn) -> str:
    body = "1" + draw(st.sampled_from("3456789")) + draw(st.text(DIGITS, min_size=9, max_size=9))
    sep = draw(SEP)
    prefix = draw(st.sampled_from(["", "86", "+86", "+86 ", "86-"]))
    return prefix + body[:3] + sep + body[3:7] + sep + body[7:]


@st.composite
def landlines(draw: st.DrawFn) -> str:
    area = "0" + draw(st.text(DIGITS, min_size=2, max_size=3))
    local = draw(st.sampled_from("2345678")) + draw(st.text(DIGITS, min_size=6, max_size=7))
    style = draw(st.sampled_from(["plain", "hyphen", "space", "paren", "split"]))
    if style == "paren":
        return f"({area}){local}"
    if style == "split":
        return f"{area}-{local[:-4]}-{local[-4:]}"
    return area + {"plain": "", "hyphen": "-", "space": " "}[style] + local


@st.composite
def local_numbers(draw: st.DrawFn) -> str:
    return draw(st.sampled_from("2345678")) + draw(st.text(DIGITS, min_size=6, max_size=7))


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    return draw(st.text(DIGITS, min_size=17, max_size=17)) + draw(st.sampled_from([*DIGITS, "X", "x"]))


NUMBERS = st.one_of(mobiles(), landlines(), local_numbers(), id_numbers())
# Free text as clerks write it: Chinese, Latin letters, punctuation, digits now and then.
CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
WORDS = st.text(st.one_of(CJK, st.sampled_from("abcXYZ ，。：；,.:()-+ \n")), max_size=30)
TEXT = st.text(st.one_of(CJK, st.sampled_from("abcXYZ ，。：；,.:()-+ \n"), st.sampled_from(DIGITS)), max_size=40)
NAMES = st.text(CJK, min_size=2, max_size=4)


def digit_runs(number: str, n: int = 5) -> set[str]:
    """Every run of ``n`` consecutive digits (or X) of the number, separators left out."""
    chars = re.sub(r"[^\dXx]", "", number)
    return {chars[i : i + n] for i in range(len(chars) - n + 1)}


def plain_runs(text: str) -> str:
    """The text's digits read through the separators numbers are written with (138-1234 → 1381234);
    a masked number's last four stand alone (they are not read on into what follows)."""
    text = re.sub(r"\*{4}([\dXx]{4})", r"#\1#", text)
    return re.sub(r"(?<=[\dXx])[- ]+(?=[\dXx])", "", text)


@given(NUMBERS, TEXT, TEXT)
def test_no_run_of_5_digits_of_a_number_survives_in_any_text(number: str, before: str, after: str) -> None:
    masked = mask_text(before + number + after)
    around = plain_runs(before) + "#" + plain_runs(after)  # digits the text had of its own
    for run in digit_runs(number) - {r for r in digit_runs(number) if r in around}:
        assert run not in plain_runs(masked), (number, masked)


@given(NUMBERS, WORDS, WORDS)
def test_a_number_between_words_shows_four_stars_and_its_last_four(number: str, before: str, after: str) -> None:
    masked = mask_text(before + number + after)
    chars = re.sub(r"[^\dXx]", "", number)
    assert f"****{chars[-4:]}" in masked
    assert masked.count("*") == 4


@given(NUMBERS)
def test_a_number_alone_masks_to_four_stars_and_four_characters(number: str) -> None:
    masked = mask_number(number)
    assert re.fullmatch(r"\*{4}[\dXx]{4}", masked), masked
    assert masked[-4:] == re.sub(r"[^\dXx]", "", number)[-4:]
    assert mask_text(number) == masked


@given(id_numbers(), WORDS)
def test_id_numbers_keep_only_their_last_four_characters(number: str, before: str) -> None:
    masked = mask_text(f"{before}身份证{number}")
    assert number not in masked and number[:14] not in masked
    assert masked.endswith("****" + number[-4:])


@given(st.text(DIGITS, max_size=4))
def test_four_digits_or_fewer_show_none(number: str) -> None:
    assert mask_number(number) == "****"


@given(TEXT, st.lists(st.fixed_dictionaries({"name": NAMES}), max_size=3))
def test_masking_twice_changes_nothing(text: str, parties: list[dict[str, str]]) -> None:
    once = mask_text(text, parties)
    assert mask_text(once, parties) == once


@given(NUMBERS, TEXT)
def test_masking_twice_changes_nothing_with_numbers(number: str, text: str) -> None:
    once = mask_text(text + number + text)
    assert mask_text(once) == once
    assert mask_number(mask_number(number)) == mask_number(number)


@given(WORDS)
def test_text_without_numbers_or_names_is_unchanged(text: str) -> None:
    assert mask_text(text) == text
    assert mask_text(text, [{"name": "巴图"}]) == text.replace("巴图", "巴*")


@given(NAMES, WORDS, WORDS)
def test_a_party_name_in_text_keeps_its_first_character(name: str, before: str, after: str) -> None:
    masked = mask_text(before + name + after, [{"name": name}])
    assert name not in masked
    assert mask_name(name) in masked
    assert mask_name(name) == name[0] + "*" * (len(name) - 1)


@given(st.from_regex(r"\A[0-9]{6}-20[0-9]{6}-[0-9]{6,9}\Z"), WORDS)
def test_case_codes_are_not_masked(code: str, words: str) -> None:
    assert mask_text(f"{words}重复案件{code}") == f"{words}重复案件{code}"


@given(NUMBERS, NAMES, st.sampled_from(["viewer", "screen", None, "someone-new"]))
def test_readers_without_the_right_see_no_number_of_a_case(number: str, name: str, role: str | None) -> None:
    case = {
        "parties": [{"name": name, "phone": number}],
        "description": f"{name}说{number}",
        "followup_note": f"回访{name}{number}",
        "timeline": [{"note": f"联系{name}，电话{number}"}],
    }
    shown = repr(masking.case_for(role, case))
    assert name not in shown
    for run in digit_runs(number):
        assert run not in plain_runs(shown)


@given(NUMBERS, NAMES, st.sampled_from(["admin", "dispatcher", "grid_worker", "van"]))
def test_roles_that_handle_cases_see_them_as_reported(number: str, name: str, role: str) -> None:
    case = {"parties": [{"name": name, "phone": number}], "description": f"{name}说{number}"}
    assert masking.case_for(role, case) == case


SECRETS = st.text(st.sampled_from("abcdefXYZ0123456789"), min_size=3, max_size=12)


@given(SECRETS, SECRETS, st.sampled_from(["password", "pwd", "token", "access_token", "user", "Signature", "api-key"]))
def test_stream_urls_never_carry_credentials(user: str, password: str, param: str) -> None:
    url = f"rtsp://{user}:{password}@10.1.2.3:554/Streaming/Channels/101?{param}={password}&channel=1"
    for role in ("admin", "dispatcher"):
        shown = stream_url_for(role, url)
        assert shown is not None and password not in shown and "@" not in shown
        assert shown.startswith("rtsp://10.1.2.3:554/Streaming/Channels/101") and "channel=1" in shown
    for role in ("grid_worker", "viewer", "screen", "van", None):
        assert stream_url_for(role, url) is None


def test_a_clean_stream_url_is_left_as_it_is() -> None:
    url = "rtsp://video.yitu.invalid/live/15062310000100001?channel=1&subtype=0"
    assert strip_credentials(url) == url and stream_url_for("dispatcher", url) == url

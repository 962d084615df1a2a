"""Every finding of the configuration checks has a stable code and reads in English and in
French, with no library wording; languages are negotiated and French dates read as people
write them."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.api.messages import MESSAGES as API_MESSAGES
from b2bua.api.messages import text
from b2bua.config import ConfigError, config_from_dict, french_dates, parse_day, parse_instant
from b2bua.config.lang import fr_date, negotiate
from b2bua.config.messages import MESSAGES, render

# Words of pydantic, of Python or of English that must never reach a French reader.
LIBRARY_WORDS = ("Input should", "String should", "Value error", "pydantic", "Traceback",
                 "validation error", "type=", "should have", "Field required")  # fmt: skip
ENGLISH_WORDS = (" expected ", " got ", " is not ", "must not", "unknown ", " required")


class Anything(dict[str, Any]):
    """Parameters for any template: every missing key is a short value."""

    def __missing__(self, key: str) -> Any:
        return "x"


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_every_configuration_code_reads_in_both_languages(code: str) -> None:
    en = render(code, Anything(), "en")
    fr = render(code, Anything(), "fr")
    assert en and fr
    if code != "invalid":
        assert en != fr, code
    assert not any(w in fr for w in LIBRARY_WORDS + ENGLISH_WORDS), (code, fr)


@pytest.mark.parametrize("code", sorted(API_MESSAGES))
def test_every_api_code_reads_in_both_languages(code: str) -> None:
    en = text(code, Anything(), "en")
    fr = text(code, Anything(), "fr")
    assert en and fr
    assert not any(w in fr for w in LIBRARY_WORDS + ENGLISH_WORDS), (code, fr)


def test_no_code_is_in_both_catalogues() -> None:
    assert not set(MESSAGES) & set(API_MESSAGES)


# ---- every refusal of a user's settings has a code ----------------------------------------

SERVER = {"domain": "pbx.test", "timezone": "Europe/Paris"}
BASE_USER = {"extension": "1001", "name": "Alice", "secret": "s"}
KEYS = ("mobile", "language", "hold_music", "ring_timeout", "no_answer", "decline", "forward",
        "devices", "schedule", "exceptions", "timezone", "name", "ring_timout")  # fmt: skip

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 100_000), st.floats(allow_nan=False, width=32),
    st.text(max_size=12),
    st.sampled_from(["08:00", "25:00", "24:00", "8h", "mon", "tues", "06*", "*", "0*6",
                     "12-20..01-05", "2026-02-30", "31/12/2026", "all", "voicemail", "mobile"]),
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["kind", "extension", "start", "end", "days", "months",
                                       "dates", "name", "callers", "destination", "hours",
                                       "exceptional", "enabled", "closed", "type", "label",
                                       "bounce", "number", "message", "voicemail"]),
                      inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), json_values, min_size=1, max_size=3))
def test_every_refused_setting_has_a_code_and_reads_in_french(changes: dict[str, Any]) -> None:
    """Random settings for a user: whatever is refused is refused with a known code, its
    English is the reason `b2bua check` prints, and its French has no library wording."""
    raw = {"server": SERVER, "users": [{**BASE_USER, **changes}]}
    try:
        config_from_dict(raw)
    except ConfigError as exc:
        for issue in exc.issues:
            assert issue.code in MESSAGES and issue.code != "invalid", issue
            assert render(issue.code, issue.params, "en") == issue.reason
            fr = render(issue.code, issue.params, "fr")
            assert not any(w in fr for w in LIBRARY_WORDS), fr
            assert issue.path and issue.path[:2] == ("users", 0), issue


# ---- languages and dates ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        ("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", "fr"),
        ("en-GB,en;q=0.9,fr;q=0.8", "en"),
        ("de-DE,de;q=0.9,en;q=0.5,fr;q=0.6", "fr"),
        ("de-DE", None),
        ("*", None),
        ("", None),
        ("fr;q=0, en", "en"),
        ("EN", "en"),
        ("en;q=0.5, fr;q=0.5", "en"),  # equal quality: the first listed
    ],
)
def test_accept_language(header: str, lang: str | None) -> None:
    assert negotiate(header) == lang


@given(st.text(max_size=80))
def test_accept_language_never_fails(header: str) -> None:
    assert negotiate(header) in ("fr", "en", None)


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2999, 12, 31)), st.integers(0, 400))
def test_french_dates_read_as_iso(day: date, length: int) -> None:
    last = min(day + timedelta(days=length), date(2999, 12, 31))
    fr_day, fr_last = f"{day:%d/%m/%Y}", f"{last:%d/%m/%Y}"
    assert french_dates(fr_day) == day.isoformat()
    assert french_dates(f"{fr_day}..{fr_last}") == f"{day.isoformat()}..{last.isoformat()}"
    assert french_dates(f"{day:%d/%m}") == f"{day:%m-%d}"
    assert parse_day(fr_day) == day == parse_day(day.isoformat())
    assert fr_date(day.isoformat()) == fr_day
    assert parse_instant(f"{fr_day} 10:30").isoformat() == f"{day.isoformat()}T10:30:00"


def test_french_dates_leave_other_text_for_the_checks_to_explain() -> None:
    assert french_dates("12-20..01-05") == "12-20..01-05"
    assert french_dates("31/12/26") == "31/12/26"
    assert french_dates("  2026-01-01 ") == "  2026-01-01 "
    with pytest.raises(ValueError):
        parse_day("31/02/2026")
    with pytest.raises(ValueError):
        parse_instant("demain")


times = st.one_of(
    st.sampled_from(["08:00", "24:00", "25:00", "7:5", "08:60", "", "noon", "00:00"]),
    st.from_regex(r"\A[0-9]{1,2}:[0-9]{2}\Z"),
)
dates = st.one_of(
    st.sampled_from(["12-20..01-05", "02-29", "02-30", "13-01", "2026-01-05..2026-01-01",
                     "12-20..2026-01-05", "2026-12-31", "x", ""]),
    st.from_regex(r"\A[0-9]{2}-[0-9]{2}(\.\.[0-9]{2}-[0-9]{2})?\Z"),
)  # fmt: skip
destinations = st.fixed_dictionaries(
    {"kind": st.sampled_from(["devices", "voicemail", "extension", "mobile", "external",
                              "system", "busy", "announcement", "teleport"])},
    optional={
        "extension": st.sampled_from(["1001", "1002", "800", "9999", "bad ext"]),
        "number": st.sampled_from(["0611111111", "abc", "+33 6 11 11 11 11"]),
        "message": st.sampled_from(["absence", "nope", ""]),
        "bounce": st.booleans(),
        "voicemail": st.booleans(),
    },
)  # fmt: skip
hours = st.fixed_dictionaries(
    {"start": times, "end": times,
     "days": st.lists(st.sampled_from(["mon", "tue", "sun", "tues", "Mon"]), max_size=3)},
    optional={"months": st.one_of(st.just("all"), st.lists(st.integers(-1, 14), max_size=3))},
)  # fmt: skip
periods = st.fixed_dictionaries(
    {"name": st.sampled_from(["Vacances", ""]), "dates": st.lists(dates, max_size=3),
     "destination": destinations},
    optional={"start": times, "end": times},
)  # fmt: skip
schedules = st.fixed_dictionaries(
    {"enabled": st.booleans(), "hours": st.lists(hours, max_size=3),
     "exceptional": st.lists(periods, max_size=2)},
    optional={"closed": destinations},
)  # fmt: skip
exceptions = st.lists(
    st.fixed_dictionaries({
        "callers": st.sampled_from(["*", "06*", "0*6", "06,07", "", "0611111111", "abc", "+"]),
        "destination": destinations,
    }),
    max_size=17,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(schedules, exceptions, st.one_of(st.none(), destinations))
def test_every_refused_rule_has_a_code_and_reads_in_french(
    schedule: dict[str, Any], excs: list[dict[str, Any]], forward: dict[str, Any] | None
) -> None:
    """Rules of the right shape with wrong values: each refusal has a known code (not the
    generic one), and the French never shows library wording."""
    user = {**BASE_USER, "schedule": schedule, "exceptions": excs}
    if forward is not None:
        user["forward"] = forward
    colleague = {"extension": "1002", "name": "Bruno", "secret": "s"}
    system = {"extension": "800", "name": "Accueil", "members": ["1002"]}
    raw = {"server": SERVER, "users": [user, colleague], "system_extensions": [system]}
    try:
        config_from_dict(raw)
    except ConfigError as exc:
        for issue in exc.issues:
            assert issue.code in MESSAGES and issue.code != "invalid", issue
            assert render(issue.code, issue.params, "en") == issue.reason
            fr = render(issue.code, issue.params, "fr")
            assert not any(w in fr for w in LIBRARY_WORDS), fr

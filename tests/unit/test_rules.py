"""Routing rules: every rule kind and the calendar edge cases, one behaviour per test."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.config import config_from_text
from b2bua.rules import (
    Decision,
    Destination,
    RuleBook,
    UnknownExtension,
    compile_rules,
    local_instant,
    normalize_number,
)
from b2bua.rules.compiler import RuleTable, _md_runs, md_code
from b2bua.rules.numbers import parse_callers

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")

HEAD = """\
[server]
domain = "pbx.test"
timezone = "Europe/Paris"
country_code = "33"

[[system_extensions]]
extension = "800"
name = "Accueil"
members = ["1001", "1002"]

[[users]]
extension = "1002"
name = "Bruno"
secret = "s"
"""


def table(user_body: str, *, tz: str = "Europe/Paris") -> RuleTable:
    """A table whose user 1001 has the given TOML body (after its scalar fields)."""
    text = (
        HEAD
        + '\n[[users]]\nextension = "1001"\nname = "Alice"\nsecret = "s"\n'
        + f'mobile = "0600000001"\ntimezone = "{tz}"\n'
        + user_body
    )
    return compile_rules(config_from_text(text, file="t.toml"))


def at(text: str, tz: ZoneInfo = PARIS) -> datetime:
    return local_instant(datetime.fromisoformat(text), tz)


def decide(t: RuleTable, when: str, caller: str = "0499999999", tz: ZoneInfo = PARIS) -> Decision:
    return t.decide("1001", caller, at(when, tz))


def kind(d: Decision) -> tuple[str, str, str | None]:
    return (d.destination.kind, d.rule, d.rule_name)


OFFICE = """
  [users.schedule]
  enabled = true
  closed = { kind = "voicemail" }

  [[users.schedule.hours]]
  start = "08:00"
  end = "17:00"
  days = ["mon", "tue", "wed", "thu", "fri"]
"""

# 2026-07-01 is a Wednesday.
WED_10 = "2026-07-01T10:00"
WED_20 = "2026-07-01T20:00"


# ---------------------------------------------------------------------------------------------
# The five rules


def test_no_schedule_rings_devices() -> None:
    d = decide(table(""), WED_20)
    assert kind(d) == ("devices", "schedule_disabled", None)
    assert "no schedule set" in d.trace[1]


def test_schedule_disabled_ignores_every_rule() -> None:
    t = table(
        OFFICE.replace("enabled = true", "enabled = false")
        + '  [[users.exceptions]]\n  callers = "*"\n  destination = { kind = "busy" }\n'
    )
    assert kind(decide(t, WED_20)) == ("devices", "schedule_disabled", None)


def test_schedule_disabled_with_forward_is_rule_forward() -> None:
    t = table(
        'forward = { kind = "external", number = "0611111111" }\n'
        + OFFICE.replace("enabled = true", "enabled = false")
    )
    d = decide(t, WED_20)
    assert kind(d) == ("external", "forward", None)
    assert d.destination.to_config_dict() == {"kind": "external", "number": "0611111111"}
    assert any(line.startswith("schedule disabled") for line in d.trace)


def test_office_hours_ring_devices_and_closed_outside() -> None:
    t = table(OFFICE)
    assert kind(decide(t, WED_10)) == ("devices", "office_hours", None)
    assert kind(decide(t, WED_20)) == ("voicemail", "closed", None)
    assert kind(decide(t, "2026-07-01T08:00")) == ("devices", "office_hours", None)
    assert kind(decide(t, "2026-07-01T16:59:59")) == ("devices", "office_hours", None)
    assert kind(decide(t, "2026-07-01T17:00")) == ("voicemail", "closed", None)
    assert kind(decide(t, "2026-07-04T10:00")) == ("voicemail", "closed", None)  # Saturday


def test_forward_inside_office_hours_but_schedule_wins_outside() -> None:
    t = table('forward = { kind = "mobile", bounce = true }\n' + OFFICE)
    inside = decide(t, WED_10)
    assert kind(inside) == ("mobile", "forward", None)
    assert inside.destination.to_config_dict() == {"kind": "mobile", "bounce": True}
    assert kind(decide(t, WED_20)) == ("voicemail", "closed", None)


def test_exceptional_beats_exception_and_office_hours() -> None:
    t = table(
        OFFICE
        + """
  [[users.schedule.exceptional]]
  name = "Séminaire"
  dates = ["2026-07-01"]
  destination = { kind = "announcement", message = "absence" }

  [[users.exceptions]]
  callers = "*"
  destination = { kind = "busy" }
"""
    )
    d = decide(t, WED_10)
    assert kind(d) == ("announcement", "exceptional", "Séminaire")
    assert d.destination.to_config_dict() == {"kind": "announcement", "message": "absence"}
    assert kind(decide(t, "2026-07-02T10:00")) == ("busy", "exception", "*")


def test_exception_applies_in_and_out_of_office_hours() -> None:
    t = table(
        OFFICE
        + """
  [[users.exceptions]]
  callers = "06* 07*"
  destination = { kind = "mobile", bounce = true }
"""
    )
    assert kind(decide(t, WED_10, "0612345678")) == ("mobile", "exception", "06* 07*")
    assert kind(decide(t, WED_20, "0712345678")) == ("mobile", "exception", "06* 07*")
    assert kind(decide(t, WED_20, "0412345678")) == ("voicemail", "closed", None)


def test_first_matching_exception_wins() -> None:
    t = table(
        OFFICE
        + """
  [[users.exceptions]]
  callers = "0612345678"
  destination = { kind = "busy" }

  [[users.exceptions]]
  callers = "06*"
  destination = { kind = "voicemail", extension = "1002" }

  [[users.exceptions]]
  callers = "0612*"
  destination = { kind = "extension", extension = "1002" }

  [[users.exceptions]]
  callers = "*"
  destination = { kind = "devices" }
"""
    )
    assert kind(decide(t, WED_20, "0612345678")) == ("busy", "exception", "0612345678")
    assert kind(decide(t, WED_20, "0612000000")) == ("voicemail", "exception", "06*")
    assert kind(decide(t, WED_20, "0412000000")) == ("devices", "exception", "*")


def test_anonymous_caller_matches_only_star() -> None:
    body = (
        OFFICE
        + '  [[users.exceptions]]\n  callers = "06* 0612345678"\n  destination = { kind = "busy" }\n'
    )
    t = table(body)
    for caller in ("", "anonymous", "Anonymous", "unknown", "sip:anonymous@anonymous.invalid"):
        assert kind(decide(t, WED_20, caller)) == ("voicemail", "closed", None)
    t2 = table(
        body + '  [[users.exceptions]]\n  callers = "*"\n  destination = { kind = "busy" }\n'
    )
    assert kind(decide(t2, WED_20, "")) == ("busy", "exception", "*")


def test_first_exceptional_period_in_list_wins() -> None:
    t = table(
        OFFICE
        + """
  [[users.schedule.exceptional]]
  name = "Afternoon"
  dates = ["07-01"]
  start = "14:00"
  end = "18:00"
  destination = { kind = "busy" }

  [[users.schedule.exceptional]]
  name = "Summer"
  dates = ["07-01..08-31"]
  destination = { kind = "voicemail" }
"""
    )
    assert kind(decide(t, "2026-07-01T15:00")) == ("busy", "exceptional", "Afternoon")
    assert kind(decide(t, "2026-07-01T10:00")) == ("voicemail", "exceptional", "Summer")


# ---------------------------------------------------------------------------------------------
# Calendar edges


def hours(start: str, end: str, days: str, months: str = '"all"') -> str:
    return f"""
  [users.schedule]
  closed = {{ kind = "voicemail" }}

  [[users.schedule.hours]]
  start = "{start}"
  end = "{end}"
  days = {days}
  months = {months}
"""


def test_night_shift_friday_applies_saturday_early() -> None:
    t = table(hours("22:00", "06:00", '["fri"]'))
    # 2026-07-03 is a Friday.
    assert kind(decide(t, "2026-07-03T23:00"))[1] == "office_hours"
    assert kind(decide(t, "2026-07-04T03:00"))[1] == "office_hours"  # Saturday early
    assert kind(decide(t, "2026-07-04T06:00"))[1] == "closed"
    assert kind(decide(t, "2026-07-03T03:00"))[1] == "closed"  # Friday early: Thursday's shift
    assert kind(decide(t, "2026-07-04T23:00"))[1] == "closed"


def test_night_shift_sunday_spills_into_monday() -> None:
    t = table(hours("22:00", "06:00", '["sun"]'))
    assert kind(decide(t, "2026-07-06T05:59"))[1] == "office_hours"  # Monday
    assert kind(decide(t, "2026-07-07T05:59"))[1] == "closed"  # Tuesday


def test_range_until_midnight_and_24_00() -> None:
    t = table(hours("18:00", "24:00", '["mon"]'))
    assert kind(decide(t, "2026-07-06T23:59"))[1] == "office_hours"
    assert kind(decide(t, "2026-07-07T00:00"))[1] == "closed"


def test_month_filter_uses_the_starting_day() -> None:
    # 2026-01-31 is a Saturday; its night shift continues on Sunday 1 February.
    t = table(hours("22:00", "06:00", '["sat"]', "[1]"))
    assert kind(decide(t, "2026-01-31T23:00"))[1] == "office_hours"
    assert kind(decide(t, "2026-02-01T03:00"))[1] == "office_hours"
    # 2026-02-28 is a Saturday: February is not listed, and neither is its spill into March.
    assert kind(decide(t, "2026-02-28T23:00"))[1] == "closed"
    assert kind(decide(t, "2026-03-01T03:00"))[1] == "closed"


def test_month_list() -> None:
    t = table(hours("08:00", "12:00", '["mon", "tue", "wed", "thu", "fri"]', "[7, 8]"))
    assert kind(decide(t, WED_10))[1] == "office_hours"
    assert kind(decide(t, "2026-09-02T10:00"))[1] == "closed"


def exceptional(dates: str, window: str = "") -> str:
    return (
        OFFICE
        + f"""
  [[users.schedule.exceptional]]
  name = "P"
  dates = {dates}
  {window}
  destination = {{ kind = "busy" }}
"""
    )


def test_yearly_period_across_new_year() -> None:
    t = table(exceptional('["12-20..01-05"]'))
    assert kind(decide(t, "2026-12-19T23:59"))[1] != "exceptional"
    assert kind(decide(t, "2026-12-20T00:00"))[1] == "exceptional"
    assert kind(decide(t, "2026-12-31T12:00"))[1] == "exceptional"
    assert kind(decide(t, "2027-01-01T00:00"))[1] == "exceptional"
    assert kind(decide(t, "2027-01-05T23:59"))[1] == "exceptional"
    assert kind(decide(t, "2027-01-06T00:00"))[1] != "exceptional"
    assert kind(decide(t, "2031-01-03T10:00"))[1] == "exceptional"  # every year


def test_one_off_versus_yearly() -> None:
    one_off = table(exceptional('["2026-05-01"]'))
    yearly = table(exceptional('["05-01"]'))
    assert kind(decide(one_off, "2026-05-01T10:00"))[1] == "exceptional"
    assert kind(decide(one_off, "2027-05-01T10:00"))[1] != "exceptional"
    assert kind(decide(yearly, "2027-05-01T10:00"))[1] == "exceptional"
    assert kind(decide(yearly, "2027-05-02T10:00"))[1] != "exceptional"


def test_one_off_range_across_new_year() -> None:
    t = table(exceptional('["2026-12-28..2027-01-02"]'))
    assert kind(decide(t, "2026-12-27T10:00"))[1] != "exceptional"
    assert kind(decide(t, "2027-01-02T23:00"))[1] == "exceptional"
    assert kind(decide(t, "2027-12-30T10:00"))[1] != "exceptional"


def test_yearly_february_29_only_in_leap_years() -> None:
    t = table(exceptional('["02-29"]'))
    assert kind(decide(t, "2028-02-29T10:00"))[1] == "exceptional"
    assert kind(decide(t, "2027-02-28T10:00"))[1] != "exceptional"
    assert kind(decide(t, "2027-03-01T10:00"))[1] != "exceptional"


def test_exceptional_daily_window() -> None:
    t = table(exceptional('["12-20..01-05"]', 'start = "08:00"\n  end = "17:00"'))
    assert kind(decide(t, "2026-12-22T07:59"))[1] == "closed"
    assert kind(decide(t, "2026-12-22T08:00"))[1] == "exceptional"
    assert kind(decide(t, "2026-12-22T17:00"))[1] == "closed"


def test_exceptional_window_across_midnight_belongs_to_start_day() -> None:
    t = table(exceptional('["12-31"]', 'start = "22:00"\n  end = "02:00"'))
    assert kind(decide(t, "2026-12-31T21:59"))[1] != "exceptional"
    assert kind(decide(t, "2026-12-31T22:00"))[1] == "exceptional"
    assert kind(decide(t, "2027-01-01T01:59"))[1] == "exceptional"
    assert kind(decide(t, "2027-01-01T02:00"))[1] != "exceptional"
    assert kind(decide(t, "2026-12-31T01:00"))[1] != "exceptional"  # that is 12-30's night
    assert kind(decide(t, "2027-01-01T23:00"))[1] != "exceptional"


def test_one_off_window_across_midnight_on_last_day() -> None:
    t = table(exceptional('["2026-07-01..2026-07-02"]', 'start = "20:00"\n  end = "06:00"'))
    assert kind(decide(t, "2026-07-03T05:00"))[1] == "exceptional"
    assert kind(decide(t, "2026-07-01T05:00"))[1] != "exceptional"


# ---------------------------------------------------------------------------------------------
# Time zones and DST


def test_spring_forward_paris() -> None:
    t = table(hours("01:00", "04:00", '["sun"]'))
    # 2026-03-29: at 01:00 UTC, 02:00 CET becomes 03:00 CEST.
    utc = lambda s: datetime.fromisoformat(s).replace(tzinfo=UTC)  # noqa: E731
    assert t.decide("1001", "x", utc("2026-03-29T00:59")).rule == "office_hours"  # 01:59 CET
    assert t.decide("1001", "x", utc("2026-03-29T01:00")).rule == "office_hours"  # 03:00 CEST
    assert t.decide("1001", "x", utc("2026-03-29T01:59")).rule == "office_hours"  # 03:59 CEST
    assert t.decide("1001", "x", utc("2026-03-29T02:00")).rule == "closed"  # 04:00 CEST


def test_nonexistent_local_time_moves_forward() -> None:
    when = local_instant(datetime(2026, 3, 29, 2, 30), PARIS)
    assert (when.hour, when.minute, when.utcoffset()) == (3, 30, PARIS.utcoffset(when))
    assert when.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    t = table(hours("03:00", "04:00", '["sun"]'))
    d = t.decide("1001", "x", when)
    assert d.rule == "office_hours"
    assert "2026-03-29 03:30 Europe/Paris" in d.trace[0]


def test_fall_back_paris_repeated_hour() -> None:
    t = table(hours("02:00", "03:00", '["sun"]'))
    # 2026-10-25: 02:00-03:00 happens twice (CEST at 00:xx UTC, CET at 01:xx UTC).
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert t.decide("1001", "x", first).rule == "office_hours"
    assert t.decide("1001", "x", second).rule == "office_hours"
    assert t.decide("1001", "x", datetime(2026, 10, 25, 2, 0, tzinfo=UTC)).rule == "closed"
    ambiguous = local_instant(datetime(2026, 10, 25, 2, 30), PARIS)
    assert ambiguous.astimezone(UTC) == first  # the first occurrence


def test_new_york_dst() -> None:
    t = table(hours("09:00", "17:00", '["mon", "tue", "wed", "thu", "fri"]'), tz="America/New_York")
    utc = lambda s: datetime.fromisoformat(s).replace(tzinfo=UTC)  # noqa: E731
    # Before 2026-03-08 New York is UTC-5, after it UTC-4.
    assert t.decide("1001", "x", utc("2026-03-06T13:30")).rule == "closed"  # 08:30 EST
    assert t.decide("1001", "x", utc("2026-03-09T13:30")).rule == "office_hours"  # 09:30 EDT
    # 2026-11-01 back to UTC-5.
    assert t.decide("1001", "x", utc("2026-10-30T21:30")).rule == "closed"  # 17:30 EDT
    assert t.decide("1001", "x", utc("2026-11-02T21:30")).rule == "office_hours"  # 16:30 EST


def test_instant_in_another_zone_is_converted_to_the_callee_zone() -> None:
    t = table(OFFICE)
    new_york_morning = datetime(2026, 7, 1, 4, 0, tzinfo=NEW_YORK)  # 10:00 in Paris
    assert t.decide("1001", "x", new_york_morning).rule == "office_hours"


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError):
        table(OFFICE).decide("1001", "x", datetime(2026, 7, 1, 10, 0))


def test_epoch_seconds_decide_and_explain_like_the_datetime() -> None:
    t = table(
        OFFICE + '  [[users.exceptions]]\n  callers = "06*"\n  destination = { kind = "busy" }\n'
    )
    for when in (at("2026-07-01 09:59"), at("2026-07-01 20:00"), at("2026-07-04 12:00")):
        for caller in ("0612345678", "0499999999", ""):
            by_datetime = t.decide("1001", caller, when)
            for seconds in (when.timestamp(), int(when.timestamp()), when.timestamp() + 59.9):
                by_seconds = t.decide("1001", caller, seconds)
                assert by_seconds == by_datetime
                assert by_seconds.trace == by_datetime.trace
    system = t.decide("800", "x", at("2026-07-01 10:00").timestamp())
    assert system.rule == "schedule_disabled"
    assert system.trace == t.decide("800", "x", at("2026-07-01 10:00")).trace


def test_epoch_seconds_before_1970_round_down_to_the_second() -> None:
    t = table(hours("23:00", "24:00", '["wed"]'), tz="UTC")
    # -0.5 s is 1969-12-31 23:59:59.5, a Wednesday
    assert t.decide("1001", "x", -0.5).rule == "office_hours"
    assert "1969-12-31 23:59 UTC" in t.decide("1001", "x", -0.5).trace[0]


@pytest.mark.parametrize("when", [True, "2026-07-01T10:00Z", None])
def test_an_instant_that_is_neither_a_datetime_nor_seconds_is_refused(when: object) -> None:
    with pytest.raises(TypeError):
        table(OFFICE).decide("1001", "x", when)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Numbers


@pytest.mark.parametrize(
    "raw",
    [
        "0612345678",
        "06 12 34 56 78",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "(06) 12 34 56 78",
        "+33 6 12 34 56 78",
        "+33612345678",
        "0033 6 12 34 56 78",
        "+33 (0)6 12 34 56 78",
        "sip:+33612345678@carrier.example;user=phone",
        "tel:+33-6-12-34-56-78",
    ],
)
def test_number_normalisation(raw: str) -> None:
    assert normalize_number(raw, "33") == "0612345678"


def test_number_normalisation_other_countries_and_extensions() -> None:
    assert normalize_number("+44 20 7946 0000", "33") == "+442079460000"
    assert normalize_number("0044 20 7946 0000", "33") == "+442079460000"
    assert normalize_number("1002", "33") == "1002"
    assert normalize_number("+1 212 555 0100", "1") == "02125550100"
    assert normalize_number("anonymous", "33") == ""
    assert normalize_number("  ", "33") == ""


def test_patterns_are_normalised_like_numbers() -> None:
    assert parse_callers("+336*", "33")[0].value == parse_callers("06*", "33")[0].value == "06"
    assert parse_callers("0033 6*", "33")[1].kind == "prefix"
    assert [p.kind for p in parse_callers("* 06* 0612345678", "33")] == ["any", "prefix", "exact"]


def test_caller_formats_match_the_same_exception() -> None:
    t = table(
        OFFICE + '  [[users.exceptions]]\n  callers = "+336*"\n  destination = { kind = "busy" }\n'
    )
    for caller in ("06 12 34 56 78", "06.12.34.56.78", "+33 6 12 34 56 78", "0033612345678"):
        assert kind(decide(t, WED_20, caller)) == ("busy", "exception", "+336*")
    assert kind(decide(t, WED_20, "+44 6 12 34 56"))[1] == "closed"


# ---------------------------------------------------------------------------------------------
# System extensions, unknown extensions, decisions and the book


def test_system_extension_rings_its_group() -> None:
    t = table(OFFICE)
    d = t.decide("800", "0612345678", at(WED_20))
    assert kind(d) == ("system", "schedule_disabled", None)
    assert d.destination.to_config_dict() == {"kind": "system", "extension": "800"}
    assert "ring its members 1001, 1002" in d.trace[1]
    assert t.zone("800") == PARIS


def test_unknown_extension() -> None:
    t = table(OFFICE)
    with pytest.raises(UnknownExtension) as info:
        t.decide("4242", "x", at(WED_10))
    assert str(info.value) == "unknown extension '4242'"
    assert "4242" not in t and "1001" in t and "800" in t


def test_decision_is_frozen_and_json_shaped() -> None:
    d = decide(table(OFFICE), WED_10)
    with pytest.raises(FrozenInstanceError):
        d.rule = "closed"  # type: ignore[misc]
    data = json.loads(json.dumps(d.to_json()))
    assert set(data) == {"destination", "rule", "rule_name", "trace", "steps"}
    assert data["destination"] == {"kind": "devices"} and data["rule_name"] is None
    assert d == Decision(Destination("devices"), "office_hours", None)


def test_destination_config_shape() -> None:
    explicit = Destination.from_config({"kind": "mobile", "bounce": False})
    assert explicit.to_config_dict() == {"kind": "mobile", "bounce": False}
    assert Destination.from_config({"kind": "mobile"}).to_config_dict() == {"kind": "mobile"}
    assert Destination("extension", extension="1002", voicemail=True).to_config_dict() == {
        "kind": "extension",
        "extension": "1002",
        "voicemail": True,
    }
    assert explicit == Destination("mobile")


def test_rulebook_swap_keeps_decisions_in_flight() -> None:
    old = table(OFFICE)
    book = RuleBook(old)
    before = book.decide("1001", "x", at(WED_20))
    new = table(OFFICE.replace('closed = { kind = "voicemail" }', 'closed = { kind = "busy" }'))
    assert book.swap(new) is old
    assert book.table is new
    assert book.decide("1001", "x", at(WED_20)).destination.kind == "busy"
    assert before.destination.kind == "voicemail"
    assert before.trace[-1] == "decision: closed -> voicemail"


# ---------------------------------------------------------------------------------------------
# Traces


def test_trace_names_winner_and_skipped_rules() -> None:
    t = table(
        OFFICE
        + """
  [[users.schedule.exceptional]]
  name = "Vacances annuelles"
  dates = ["12-20..01-05"]
  start = "08:00"
  end = "17:00"
  destination = { kind = "announcement", message = "absence" }

  [[users.exceptions]]
  callers = "06* 07*"
  destination = { kind = "mobile", bounce = true }
"""
    )
    d = decide(t, WED_10, "+33 7 00 00 00 00")
    assert d.trace == (
        "call to 1001 (Alice) from +33 7 00 00 00 00 (as 0700000000) at Wed 2026-07-01 10:00 "
        "Europe/Paris (UTC+02:00)",
        "exceptional 'Vacances annuelles' (12-20..01-05 08:00-17:00): not active at "
        "2026-07-01 10:00 Europe/Paris",
        "exception #1 (callers '06* 07*'): matches (pattern '07*') -> mobile (bounce)",
        "office hours: not checked (an earlier rule applies)",
        "closed destination (voicemail): not used",
        "decision: exception '06* 07*' -> mobile (bounce)",
    )
    closed = decide(t, WED_20, "0400000000")
    assert closed.trace[2] == "exception #1 (callers '06* 07*'): does not match 0400000000"
    assert closed.trace[3] == "office hours: outside (08:00-17:00 mon-fri) at Wed 20:00"
    assert closed.trace[4] == "closed destination applies: voicemail"


def test_trace_office_hours_with_forward() -> None:
    t = table('forward = { kind = "external", number = "0611111111" }\n' + OFFICE)
    d = decide(t, WED_10)
    assert (
        "office hours: inside 08:00-17:00 mon-fri; manual forward set -> external 0611111111"
        in d.trace
    )


def test_table_stats() -> None:
    t = table(exceptional('["05-01"]'))
    assert t.stats.users == 2 and t.stats.system_extensions == 1
    assert (t.stats.office_hours, t.stats.exceptional_periods, t.stats.exceptions) == (1, 1, 0)


def test_instant_before_1970_rounds_down_to_the_second() -> None:
    t = table(hours("23:00", "24:00", '["wed"]'), tz="UTC")
    # 1969-12-31 is a Wednesday; half a second before 1970 is still 23:59:59 that Wednesday.
    when = datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)
    assert t.decide("1001", "x", when).rule == "office_hours"


def test_prefix_as_long_as_the_number_matches() -> None:
    t = table(
        OFFICE
        + '  [[users.exceptions]]\n  callers = "0612345678*"\n  destination = { kind = "busy" }\n'
        + '  [[users.exceptions]]\n  callers = "0612345678"\n  destination = { kind = "voicemail" }\n'
    )
    assert kind(decide(t, WED_20, "06 12 34 56 78")) == ("busy", "exception", "0612345678*")
    assert kind(decide(t, WED_20, "061234567"))[1] == "closed"


def test_hundreds_of_periods_each_win_on_their_own_days() -> None:
    # 300 one-off days plus one yearly period over all of them: more distinct sets of
    # candidate periods than one byte per day can number.
    body = '[users.schedule]\nclosed = { kind = "voicemail" }\n'
    for i in range(300):
        day = datetime(2026, 1, 1) + timedelta(days=i)
        body += (
            f'[[users.schedule.exceptional]]\nname = "D{i}"\ndates = ["{day:%Y-%m-%d}"]\n'
            f'start = "{i % 24:02d}:00"\nend = "{(i + 2) % 24:02d}:00"\n'
            'destination = { kind = "busy" }\n'
        )
    body += (
        '[[users.schedule.exceptional]]\nname = "Year"\ndates = ["01-01..12-31"]\n'
        'destination = { kind = "voicemail" }\n'
    )
    t = table(body)
    for i in (0, 1, 150, 255, 256, 263, 299):
        day = datetime(2026, 1, 1) + timedelta(days=i)
        assert kind(decide(t, f"{day:%F} {i % 24:02d}:30")) == ("busy", "exceptional", f"D{i}")
        assert kind(decide(t, f"{day:%F} {(i + 12) % 24:02d}:30")) == (
            "voicemail",
            "exceptional",
            "Year",
        )
    # D263 is 23:00-01:00: its window goes on after midnight, before D264's own window
    assert kind(decide(t, "2026-09-22 00:30")) == ("busy", "exceptional", "D263")


@settings(max_examples=300, deadline=None)
@given(
    first=st.integers(min_value=-719_000, max_value=800_000),  # 0001 to 4160
    days=st.integers(min_value=1, max_value=800),
)
def test_md_runs_are_the_md_codes_of_the_days_month_by_month(first: int, days: int) -> None:
    # Inside the precomputed years (1970 to 2149) and outside them (dates far back or ahead).
    runs = _md_runs(first, first + days)
    dates = [date(1970, 1, 1) + timedelta(days=first + i) for i in range(days)]
    assert [md for a, b in runs for md in range(a, b)] == [md_code(d.month, d.day) for d in dates]
    assert len(runs) == len({(d.year, d.month) for d in dates})  # one run per month

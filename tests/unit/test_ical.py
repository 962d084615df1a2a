"""iCalendar export and import of exceptional periods."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from b2bua.config import ExceptionalPeriod, config_from_dict, config_from_text
from b2bua.rules import compile_rules
from b2bua.rules.ical import export_ics, import_ics, periods_to_toml

USER = """\
[server]
domain = "pbx.test"

[[users]]
extension = "1001"
name = "Alice Martin"
secret = "s"
timezone = "Europe/Paris"

  [users.schedule]

  [[users.schedule.hours]]
  start = "08:00"
  end = "17:00"
  days = ["mon", "tue", "wed", "thu", "fri"]

  [[users.schedule.exceptional]]
  name = "Vacances annuelles, été; très longues pour tester le pliage des lignes iCalendar"
  dates = ["12-20..01-05", "2026-08-03..2026-08-07", "02-20..03-02"]
  start = "08:00"
  end = "17:00"
  destination = { kind = "announcement", message = "absence" }

  [[users.schedule.exceptional]]
  name = "Fête du travail"
  dates = ["05-01", "2026-05-14..2026-05-15", "02-29", "12-30..01-02"]
  destination = { kind = "voicemail" }

  [[users.schedule.exceptional]]
  name = "Night"
  dates = ["2026-07-14", "07-20"]
  start = "22:00"
  end = "06:00"
  destination = { kind = "busy" }
"""

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def exported() -> str:
    config = config_from_text(USER)
    return export_ics(config.users[0], domain="pbx.test", now=NOW)


def test_export_structure() -> None:
    ics = exported()
    assert ics.startswith("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n")
    assert ics.endswith("END:VCALENDAR\r\n")
    assert "\n" not in ics.replace("\r\n", "")
    assert all(len(line.encode()) <= 75 for line in ics.split("\r\n"))
    assert "BEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\n" in ics
    assert "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU" in ics
    assert "DTSTART;VALUE=DATE:20260501\r\nDTEND;VALUE=DATE:20260502\r\nRRULE:FREQ=YEARLY" in ics
    assert "DTSTART;VALUE=DATE:20260514\r\nDTEND;VALUE=DATE:20260516\r\n" in ics
    assert "DTSTART;VALUE=DATE:20280229\r\n" in ics  # first leap year
    assert "DTSTART;VALUE=DATE:20251230\r\nDTEND;VALUE=DATE:20260103\r\n" in ics
    assert (
        "DTSTART;TZID=Europe/Paris:20260803T080000\r\n"
        "DTEND;TZID=Europe/Paris:20260803T170000\r\n"
        "RRULE:FREQ=DAILY;COUNT=5\r\n"
    ) in ics
    assert "RRULE:FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1,2,3,4,5" in ics
    assert "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=20,21,22,23,24,25,26,27,28,29" in ics
    assert "DTEND;TZID=Europe/Paris:20260715T060000" in ics  # window across midnight
    assert "DTSTAMP:20260102T030405Z" in ics
    unfolded = ics.replace("\r\n ", "")
    assert (
        "SUMMARY:Vacances annuelles\\, été\\; très longues pour tester le pliage des "
        "lignes iCalendar" in unfolded
    )


def _decisions(config_data: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    table = compile_rules(config_from_dict(config_data))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(0, 2 * 366 * 48):
        d = table.decide("1001", "x", start + timedelta(minutes=30 * i))
        out.append((d.rule, d.rule_name, d.destination.kind))
    return out


def test_export_then_import_gives_the_same_decisions() -> None:
    raw = tomllib.loads(USER)
    result = import_ics(exported(), timezone="Europe/Paris", default_destination={"kind": "busy"})
    assert result.warnings == []
    again = tomllib.loads(USER)
    again["users"][0]["schedule"]["exceptional"] = result.periods
    assert [p["name"] for p in result.periods] == [
        p["name"] for p in raw["users"][0]["schedule"]["exceptional"]
    ]
    assert result.periods[0]["dates"][0] == "12-20..01-05"
    assert _decisions(again) == _decisions(raw)


HOLIDAYS = (
    "BEGIN:VCALENDAR\r\n"
    "VERSION:2.0\r\n"
    "PRODID:-//Example//Jours feries//FR\r\n"
    "BEGIN:VEVENT\r\n"
    "UID:1@example\r\n"
    "DTSTART;VALUE=DATE:20260101\r\n"
    "DTEND;VALUE=DATE:20260102\r\n"
    "RRULE:FREQ=YEARLY\r\n"
    "SUMMARY:Jour de l'an\r\n"
    "END:VEVENT\r\n"
    "BEGIN:VEVENT\r\n"
    "UID:2@example\r\n"
    "DTSTART;VALUE=DATE:20260406\r\n"
    "SUMMARY:Lundi de P\r\n"
    " âques\r\n"
    "BEGIN:VALARM\r\n"
    "ACTION:DISPLAY\r\n"
    "TRIGGER:-PT15M\r\n"
    "END:VALARM\r\n"
    "END:VEVENT\r\n"
    "BEGIN:VEVENT\r\n"
    "UID:3@example\r\n"
    "DTSTART;VALUE=DATE:20261224\r\n"
    "DTEND;VALUE=DATE:20261227\r\n"
    "SUMMARY:Noël\\, fermeture\r\n"
    "END:VEVENT\r\n"
    "BEGIN:VEVENT\r\n"
    "UID:4@example\r\n"
    "DTSTART;VALUE=DATE:20260525\r\n"
    "DURATION:P2D\r\n"
    "SUMMARY:Pont\r\n"
    "END:VEVENT\r\n"
    "BEGIN:VEVENT\r\n"
    "UID:5@example\r\n"
    "DTSTART;TZID=America/New_York:20260701T090000\r\n"
    "DTEND;TZID=America/New_York:20260701T110000\r\n"
    "SUMMARY:Call with New York\r\n"
    "END:VEVENT\r\n"
    "BEGIN:VEVENT\r\n"
    "UID:6@example\r\n"
    "DTSTART:20260710T200000Z\r\n"
    "DTEND:20260711T040000Z\r\n"
    "SUMMARY:Maintenance\r\n"
    "END:VEVENT\r\n"
    "BEGIN:VEVENT\r\n"
    "UID:7@example\r\n"
    "DTSTART;VALUE=DATE:20260510\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=5;BYDAY=2SU\r\n"
    "SUMMARY:Fête des mères\r\n"
    "END:VEVENT\r\n"
    "BEGIN:VEVENT\r\n"
    "UID:8@example\r\n"
    "STATUS:CANCELLED\r\n"
    "DTSTART;VALUE=DATE:20260601\r\n"
    "SUMMARY:Annulé\r\n"
    "END:VEVENT\r\n"
    "BEGIN:VEVENT\r\n"
    "UID:9@example\r\n"
    'DTSTART;TZID="/mozilla.org/20050126_1/Europe/Paris":20260901T080000\r\n'
    "DTEND;TZID=Europe/Paris:20260904T120000\r\n"
    "SUMMARY:Salon\r\n"
    "END:VEVENT\r\n"
    "BEGIN:VEVENT\r\n"
    "UID:10@example\r\n"
    "DTSTART;VALUE=DATE:20260814\r\n"
    "RRULE:FREQ=YEARLY;COUNT=3\r\n"
    "SUMMARY:Trois ans\r\n"
    "END:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


def test_import_public_holiday_calendar() -> None:
    result = import_ics(
        HOLIDAYS, timezone="Europe/Paris", default_destination={"kind": "voicemail"}
    )
    by_name = {p["name"]: p for p in result.periods}
    assert by_name["Jour de l'an"] == {
        "name": "Jour de l'an",
        "dates": ["01-01"],
        "destination": {"kind": "voicemail"},
    }
    assert by_name["Lundi de Pâques"]["dates"] == ["2026-04-06"]  # folded, no DTEND: one day
    assert by_name["Noël, fermeture"]["dates"] == ["2026-12-24..2026-12-26"]  # DTEND exclusive
    assert by_name["Pont"]["dates"] == ["2026-05-25..2026-05-26"]
    assert (by_name["Call with New York"]["start"], by_name["Call with New York"]["end"]) == (
        "15:00",
        "17:00",
    )
    assert by_name["Maintenance"]["dates"] == ["2026-07-10"]
    assert (by_name["Maintenance"]["start"], by_name["Maintenance"]["end"]) == ("22:00", "06:00")
    salon = [p for p in result.periods if p["name"] == "Salon"]
    assert [(p["dates"], p.get("start"), p.get("end")) for p in salon] == [
        (["2026-09-01"], "08:00", "24:00"),
        (["2026-09-02..2026-09-03"], None, None),
        (["2026-09-04"], "00:00", "12:00"),
    ]
    assert by_name["Trois ans"]["dates"] == ["2026-08-14", "2027-08-14", "2028-08-14"]
    assert "Fête des mères" not in by_name and "Annulé" not in by_name
    assert any("Fête des mères" in w and "not supported" in w for w in result.warnings)
    assert any("Annulé" in w and "cancelled" in w for w in result.warnings)
    for p in result.periods:
        ExceptionalPeriod.model_validate(p)


def test_import_accepts_bare_line_feeds_and_tab_folding() -> None:
    text = HOLIDAYS.replace("\r\n", "\n").replace("\n âques", "\n\tâques")
    result = import_ics(text, timezone="Europe/Paris", default_destination={"kind": "busy"})
    assert "Lundi de Pâques" in {p["name"] for p in result.periods}


def test_snippet_is_valid_toml() -> None:
    result = import_ics(
        HOLIDAYS, timezone="Europe/Paris", default_destination={"kind": "voicemail"}
    )
    snippet = periods_to_toml(result.periods)
    document = tomllib.loads("[[users]]\n" + snippet)
    assert document["users"][0]["schedule"]["exceptional"] == result.periods


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "UTC"])
def test_vtimezone_for_zones_with_and_without_dst(zone: str) -> None:
    text = USER.replace('timezone = "Europe/Paris"', f'timezone = "{zone}"')
    ics = export_ics(config_from_text(text).users[0], domain="d", now=NOW)
    assert f"TZID:{zone}\r\n" in ics
    assert ("BEGIN:DAYLIGHT" in ics) == (zone != "UTC")

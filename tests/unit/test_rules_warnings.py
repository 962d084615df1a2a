"""`check_warnings`: valid configurations whose rules cannot do what was probably meant."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from b2bua.config import config_from_text, load_config
from b2bua.rules.warnings import check_warnings

ROOT = Path(__file__).resolve().parents[2]

HEAD = """\
[server]
domain = "pbx.test"

[[users]]
extension = "1001"
name = "Alice"
secret = "s"

  [[users.devices]]
  type = "sip"
  label = "Desk"

  [users.schedule]

  [[users.schedule.hours]]
  start = "08:00"
  end = "17:00"
  days = ["mon"]
"""


def warnings(body: str, today: date | None = None) -> list[tuple[int, str, str]]:
    config = config_from_text(HEAD + body, file="w.toml")
    return [(w.line, w.field, w.reason) for w in check_warnings(config, today=today)]


def period(name: str, dates: str, window: str = "") -> str:
    return f"""
  [[users.schedule.exceptional]]
  name = "{name}"
  dates = {dates}
  {window}
  destination = {{ kind = "busy" }}
"""


def test_default_config_has_no_warnings() -> None:
    config = load_config(ROOT / "conf" / "default.toml")
    assert check_warnings(config, today=date(2026, 1, 1)) == []


def test_exception_after_star_never_applies() -> None:
    body = """
  [[users.exceptions]]
  callers = "*"
  destination = { kind = "busy" }

  [[users.exceptions]]
  callers = "06*"
  destination = { kind = "voicemail" }
"""
    assert warnings(body) == [
        (25, "users[0].exceptions[1].callers", "never applies: exception #1 ('*') matches every caller first"),
    ]  # fmt: skip


def test_spaces_inside_a_number() -> None:
    body = '\n  [[users.exceptions]]\n  callers = "06 12 34 56 78"\n  destination = { kind = "busy" }\n'
    ((line, field, reason),) = warnings(body)
    assert (line, field) == (21, "users[0].exceptions[0].callers")
    assert "spaces separate patterns" in reason


def test_period_hidden_by_an_earlier_one() -> None:
    body = period("Holidays", '["12-20..01-05"]') + period(
        "Christmas", '["12-25"]', 'start = "10:00"\nend = "12:00"'
    )
    assert warnings(body) == [
        (26, "users[0].schedule.exceptional[1]", "never applies: fully covered by earlier period(s) 'Holidays'"),
    ]  # fmt: skip


def test_period_hidden_by_several_earlier_ones() -> None:
    body = (
        period("A", '["12-20..12-25"]')
        + period("B", '["12-26..01-05"]')
        + period("C", '["12-24..12-28"]')
        + period("D", '["2026-12-24"]')
    )
    found = warnings(body)
    assert [(f, r) for _, f, r in found] == [
        ("users[0].schedule.exceptional[2]", "never applies: fully covered by earlier period(s) 'A', 'B'"),
        ("users[0].schedule.exceptional[3]", "never applies: fully covered by earlier period(s) 'A', 'C'"),
    ]  # fmt: skip


def test_period_not_hidden() -> None:
    partial_window = period("Morning", '["12-25"]', 'start = "08:00"\nend = "12:00"') + period(
        "Midday", '["12-25"]', 'start = "10:00"\nend = "14:00"'
    )
    assert warnings(partial_window) == []
    one_off_first = period("This year", '["2026-12-25"]') + period("Every year", '["12-25"]')
    assert warnings(one_off_first) == []
    leap = period("Feb", '["02-01..02-28"]') + period("Leap day", '["02-29"]')
    assert warnings(leap) == []


def test_window_across_midnight_hidden_by_two_whole_days() -> None:
    body = period("Two days", '["05-01..05-02"]') + period(
        "Night", '["05-01"]', 'start = "22:00"\nend = "06:00"'
    )
    assert [f for _, f, _ in warnings(body)] == [
        "users[0].schedule.exceptional[1]",
        "users[0].schedule.exceptional[1].end",  # runs past midnight: asked, not refused
    ]


def codes(text: str) -> list[tuple[str, str]]:
    config = config_from_text(text, file="w.toml")
    return [(w.code, w.field) for w in check_warnings(config)]


def test_ranges_past_midnight_are_questioned() -> None:
    """An end before the start is valid (a night shift), but more often a slip: say so."""
    night = HEAD.replace('end = "17:00"', 'end = "08:00"').replace('start = "08:00"', 'start = "09:00"')
    config = config_from_text(night, file="w.toml")
    (w,) = check_warnings(config)
    assert (w.code, w.field, w.params) == (
        "hours_over_midnight", "users[0].schedule.hours[0].end", {"start": "09:00", "end": "08:00"}
    )
    assert w.reason == "this range runs past midnight (09:00 -> 08:00 the next day): is that meant?"
    assert codes(HEAD.replace('end = "17:00"', 'end = "24:00"')) == []
    window = period("Soirée", '["05-01"]', 'start = "20:00"\nend = "02:00"')
    assert codes(HEAD + window) == [
        ("window_over_midnight", "users[0].schedule.exceptional[0].end")
    ]


def test_an_exception_after_a_star_names_the_star() -> None:
    body = (
        '\n  [[users.exceptions]]\n  callers = "06*"\n  destination = { kind = "busy" }\n'
        '\n  [[users.exceptions]]\n  callers = "*"\n  destination = { kind = "busy" }\n'
        '\n  [[users.exceptions]]\n  callers = "07*"\n  destination = { kind = "busy" }\n'
    )
    config = config_from_text(HEAD + body, file="w.toml")
    (w,) = check_warnings(config)
    assert (w.code, w.field, w.params["star"], w.params["number"]) == (
        "exception_unreachable", "users[0].exceptions[2].callers", 2, 3
    )


def test_one_off_date_in_the_past() -> None:
    body = period("Old", '["2025-05-01", "2026-05-08..2026-05-10", "05-01"]')
    assert warnings(body, today=date(2026, 5, 9)) == [
        (22, "users[0].schedule.exceptional[0].dates[0]", "2025-05-01 is in the past (today is 2026-05-09)"),
    ]  # fmt: skip
    assert warnings(body) == []


def test_office_hours_without_days_and_schedule_without_hours() -> None:
    text = HEAD.replace('days = ["mon"]', "days = []")
    config = config_from_text(text, file="w.toml")
    assert [(w.line, w.field) for w in check_warnings(config)] == [
        (18, "users[0].schedule.hours[0].days")
    ]
    no_hours = HEAD.split("  [[users.schedule.hours]]")[0]
    config = config_from_text(no_hours, file="w.toml")
    assert [(w.line, w.field, w.reason) for w in check_warnings(config)] == [
        (13, "users[0].schedule.hours", "schedule enabled with no office hours: always closed")
    ]


def test_rules_that_a_disabled_schedule_ignores() -> None:
    text = HEAD.replace("  [users.schedule]\n", "  [users.schedule]\n  enabled = false\n")
    body = (
        period("P", '["05-01"]')
        + '\n  [[users.exceptions]]\n  callers = "*"\n  destination = { kind = "busy" }\n'
    )
    config = config_from_text(text + body, file="w.toml")
    assert [w.field for w in check_warnings(config)] == [
        "users[0].exceptions",
        "users[0].schedule.exceptional",
    ]


def test_missing_music_file(tmp_path: Path) -> None:
    text = HEAD + '\n[[music]]\nname = "promo"\nfiles = ["promo.mp3"]\n'
    (tmp_path / "pbx.toml").write_text(text, encoding="utf-8")
    config = load_config(tmp_path / "pbx.toml")
    (issue,) = check_warnings(config)
    assert (issue.line, issue.field) == (22, "music[0].files[0]")
    assert issue.reason.startswith("file not found")
    (tmp_path / "promo.mp3").write_bytes(b"")
    assert check_warnings(load_config(tmp_path / "pbx.toml")) == []

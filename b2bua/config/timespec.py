"""Time and date syntax shared by the configuration and the rules engine: `HH:MM` times of day,
weekday names, and the `dates` entries of exceptional periods (`MM-DD`, `YYYY-MM-DD`, `A..B`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from b2bua.config.messages import Problem

__all__ = [
    "WEEKDAYS",
    "DateSpec",
    "french_dates",
    "parse_date_spec",
    "parse_day",
    "parse_hhmm",
    "parse_instant",
]

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_hhmm(text: str, *, allow_24: bool = False) -> int:
    """`"08:30"` -> 510 (minutes after midnight). `"24:00"` (1440) only with `allow_24`."""
    m = _HHMM.match(text)
    if m is None:
        raise Problem("invalid_time", value=text)
    hours, minutes = int(m.group(1)), int(m.group(2))
    if allow_24 and hours == 24 and minutes == 0:
        return 1440
    if hours > 23:
        raise Problem("hour_out_of_range", value=text, hour=hours)
    if minutes > 59:
        raise Problem("minute_out_of_range", value=text, minute=minutes)
    return hours * 60 + minutes


@dataclass(frozen=True, slots=True)
class DateSpec:
    """One entry of an exceptional period's `dates`.

    `yearly` entries recur every year (`MM-DD`, `MM-DD..MM-DD`, which may cross New Year:
    then `first > last`); one-off entries are real dates (`YYYY-MM-DD`, `A..B`, `first <= last`).
    `first` and `last` are (year, month, day) with year 0 for yearly entries; both inclusive.
    """

    text: str
    yearly: bool
    first: tuple[int, int, int]
    last: tuple[int, int, int]

    @property
    def crosses_new_year(self) -> bool:
        return self.yearly and self.first[1:] > self.last[1:]


_MMDD = re.compile(r"^(\d{2})-(\d{2})$")
_YYYYMMDD = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def _parse_one_date(text: str) -> tuple[bool, tuple[int, int, int]]:
    m = _MMDD.match(text)
    if m is not None:
        year, month, day = 0, int(m.group(1)), int(m.group(2))
    else:
        m = _YYYYMMDD.match(text)
        if m is None:
            raise Problem("invalid_date", value=text)
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not 1 <= month <= 12:
        raise Problem("month_out_of_range", value=text, month=month)
    try:
        # 2000 is a leap year, so a yearly 02-29 is accepted (it applies in leap years only).
        date(year or 2000, month, day)
    except ValueError:
        raise Problem("day_out_of_range", value=text, day=day, month=month) from None
    return year == 0, (year, month, day)


def parse_date_spec(text: str) -> DateSpec:
    """Parse `MM-DD`, `YYYY-MM-DD` or a range `A..B` of the same kind; ValueError if invalid."""
    raw = text.strip()
    if ".." in raw:
        left, _, right = raw.partition("..")
        yearly_a, first = _parse_one_date(left.strip())
        yearly_b, last = _parse_one_date(right.strip())
        if yearly_a != yearly_b:
            raise Problem("date_range_mixed", value=text)
        if not yearly_a and last < first:
            raise Problem("date_range_reversed", value=text)
        return DateSpec(raw, yearly_a, first, last)
    yearly, first = _parse_one_date(raw)
    return DateSpec(raw, yearly, first, first)


_FR_DAY = re.compile(r"^(\d{1,2})/(\d{1,2})(?:/(\d{4}))?$")


def _french_date(text: str) -> str:
    m = _FR_DAY.match(text.strip())
    if m is None:
        return text.strip()
    day, month, year = int(m.group(1)), int(m.group(2)), m.group(3)
    return f"{year}-{month:02d}-{day:02d}" if year else f"{month:02d}-{day:02d}"


def french_dates(text: str) -> str:
    """A `dates` entry typed the French way, in the configuration's form: `31/12/2026` ->
    `2026-12-31`, a yearly `20/12` -> `12-20`, `20/12..05/01` -> `12-20..01-05`. Anything else
    is returned as it was (stripped), for `parse_date_spec` to accept or explain."""
    if "/" not in text:
        return text
    if ".." in text:
        left, _, right = text.partition("..")
        return f"{_french_date(left)}..{_french_date(right)}"
    return _french_date(text)


_FR_DAY_TIME = re.compile(
    r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T]+(?:à\s*)?(\d{1,2})[:h](\d{2})(?::(\d{2}))?)?$"
)


def parse_day(text: str) -> date:
    """`2026-12-31` or the French `31/12/2026`; ValueError otherwise."""
    value = text.strip()
    m = _FR_DAY.match(value)
    if m is not None and m.group(3) is not None:
        return date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
    return date.fromisoformat(value)


def parse_instant(text: str) -> datetime:
    """ISO 8601 (`2026-07-01T10:00`, `...Z`, `...+02:00`) or the French `01/07/2026 10:00`
    (also `01/07/2026 à 10h00`; a date alone is midnight). Naive unless an offset is given;
    ValueError otherwise."""
    value = text.strip()
    m = _FR_DAY_TIME.match(value)
    if m is not None:
        day, month, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        hour, minute, second = (int(g) if g else 0 for g in m.group(4, 5, 6))
        return datetime(year, month, day, hour, minute, second)
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    return datetime.fromisoformat(value)

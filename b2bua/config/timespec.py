"""Time and date syntax shared by the configuration and the rules engine: `HH:MM` times of day,
weekday names, and the `dates` entries of exceptional periods (`MM-DD`, `YYYY-MM-DD`, `A..B`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

__all__ = ["WEEKDAYS", "DateSpec", "parse_date_spec", "parse_hhmm"]

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_hhmm(text: str, *, allow_24: bool = False) -> int:
    """`"08:30"` -> 510 (minutes after midnight). `"24:00"` (1440) only with `allow_24`."""
    m = _HHMM.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a time (expected HH:MM, e.g. 08:30)")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if allow_24 and hours == 24 and minutes == 0:
        return 1440
    if hours > 23:
        raise ValueError(f"{text!r}: hour {hours} is not in 00..23")
    if minutes > 59:
        raise ValueError(f"{text!r}: minute {minutes} is not in 00..59")
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
            raise ValueError(f"{text!r} is not a date (expected MM-DD or YYYY-MM-DD)")
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not 1 <= month <= 12:
        raise ValueError(f"{text!r}: month {month} is not in 1..12")
    try:
        # 2000 is a leap year, so a yearly 02-29 is accepted (it applies in leap years only).
        date(year or 2000, month, day)
    except ValueError:
        raise ValueError(f"{text!r}: day {day} does not exist in month {month}") from None
    return year == 0, (year, month, day)


def parse_date_spec(text: str) -> DateSpec:
    """Parse `MM-DD`, `YYYY-MM-DD` or a range `A..B` of the same kind; ValueError if invalid."""
    raw = text.strip()
    if ".." in raw:
        left, _, right = raw.partition("..")
        yearly_a, first = _parse_one_date(left.strip())
        yearly_b, last = _parse_one_date(right.strip())
        if yearly_a != yearly_b:
            raise ValueError(
                f"{text!r}: both ends of a range must be yearly (MM-DD) or both dated (YYYY-MM-DD)"
            )
        if not yearly_a and last < first:
            raise ValueError(f"{text!r}: the range ends before it starts")
        return DateSpec(raw, yearly_a, first, last)
    yearly, first = _parse_one_date(raw)
    return DateSpec(raw, yearly, first, first)

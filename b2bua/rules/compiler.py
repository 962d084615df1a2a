"""Compile a `Config` into an immutable `RuleTable`; `RuleTable.decide()` is the hot path.

Theory of operation
-------------------
A decision needs the callee's local time, broken into: epoch day (days since 1970-01-01 in
local time), minute of the day, weekday, month, and a year-agnostic "month-day" code
`md = month * 32 + day` (so 12-20 < 12-31 < 01-01 wraps like the calendar). The previous day's
month and md are needed too, because a range that crosses midnight belongs to the day it starts.

* Each user is one flat tuple, its "record" (indexes `_STATIC`, `_CLOCK`...), holding the
  compiled pieces below, the month bitmaps and the caller-ID exceptions' destinations inline:
  decide() reads one object where a tree of objects would cost a cache miss per node. The
  fields read on every call come first, so that they share a few cache lines.
* Local time: `when.timestamp()` plus the zone's UTC offset, memoised per span of 2**22 s
  (about 48 days) as one int, or as the span's transitions when it holds a DST change.
* Calendar facts of an epoch day are memoised per table (a handful of days are live at once).
* Exceptional periods: per user, one mask by md code naming, for each md code, the list of
  the periods that may apply on a day with that code (a yearly date, or a one-off date in some
  year; a window crossing midnight also marks the next day); only those are tested, in list
  order, and each test is exact (a one-off date of another year does not apply). Almost every
  call reads 0 at its md code and skips the periods.
* Caller-ID exceptions: indexed by caller rather than by user. For every normalised number
  of an exact pattern, and every prefix, the table maps each user that has it to the index of
  that user's first exception with it (at most 15 exceptions: 0 to 14); a number or prefix of
  one user only (most exact numbers) is held as the pair (extension, index). A caller seen for
  the first time is normalised and its "probe" memoised: the dicts of its number and of those
  of its prefixes that some user has (usually one or two). A call looks its callee up in those
  few dicts and takes the smallest index, or the first `*` exception's if smaller. Their keys
  are the very extension strings that key the table's users, so that the key compared on a hit
  is the one the user's lookup has just read. A frequent caller's dicts stay in cache whoever
  is called, where a per-user index would miss the cache on every call to a different user.
* Office hours: per user and month, a bitmap of the 10080 minutes of the week (Monday 00:00 is
  bit 0). Each range is split into its part on the starting day ("same") and the part after
  midnight ("spill", on the next weekday, Sunday spilling into Monday). On any day but the 1st of
  a month the month's bitmap answers; on the 1st the spill part comes from the previous month's
  intervals, since the starting day's month decides.
* The Decision holds the outcome (destination, rule, rule name: compiled once, except for a
  caller-ID exception, whose tuple is built when it matches) and what its trace needs (the
  record, the caller and the instant). The trace is computed when read.

Compiled pieces are interned while compiling, so users with the same hours, holidays or
destinations share them. With thousands of users, cache misses on user data cost more than the
arithmetic: each decide() reads few objects and builds little more than the Decision.

The memo dicts are bounded and invisible to callers: a table never changes its answers.
"""

from __future__ import annotations

import calendar
import gc
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from b2bua.config import WEEKDAYS, parse_date_spec, parse_hhmm
from b2bua.rules.model import (
    Decision,
    Destination,
    Outcome,
    Rule,
    Step,
    UnknownExtension,
    new_decision,
)
from b2bua.rules.numbers import CallerPattern, normalize_number, parse_callers

if TYPE_CHECKING:
    from b2bua.config import (
        CallerException,
        Config,
        DestinationConfig,
        ExceptionalPeriod,
        OfficeHours,
        SystemExtension,
        User,
    )

__all__ = ["RuleBook", "RuleTable", "TableStats", "compile_rules", "local_instant"]

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_NONE: Final = 15  # "no exception matched" (indexes are 0..14: at most 15 exceptions)
_MEMO_LIMIT: Final = 65536
_NUMBER_MEMO: Final = 8192
_DEVICES: Final = Destination("devices")

_Candidates = tuple[int, ...]  # indexes of the periods that may apply, in list order
# (weekday, month, md, previous day's month, previous day's md)
DayFacts = tuple[int, int, int, int, int]
Intervals = tuple[tuple[int, ...], tuple[int, ...]]  # (starts, ends), half-open, sorted, disjoint


def md_code(month: int, day: int) -> int:
    """Year-agnostic day code: 01-01 -> 33, 12-31 -> 415; calendar order is preserved."""
    return month * 32 + day


def day_facts(epoch_day: int) -> DayFacts:
    """Calendar facts of a local epoch day (see `DayFacts`)."""
    d = date.fromordinal(epoch_day + _EPOCH_ORDINAL)
    p = date.fromordinal(epoch_day + _EPOCH_ORDINAL - 1)
    return (d.weekday(), d.month, d.month * 32 + d.day, p.month, p.month * 32 + p.day)


def local_instant(naive: datetime, tz: ZoneInfo) -> datetime:
    """Attach a zone to a wall-clock time.

    An ambiguous time (the repeated hour in autumn) is its first occurrence; a nonexistent time
    (the skipped hour in spring) moves forward by the gap: 02:30 on the spring-forward day in
    Europe/Paris is 03:30 CEST (PEP 495 fold=0 semantics).
    """
    aware = naive.replace(tzinfo=tz, fold=0)
    return aware.astimezone(UTC).astimezone(tz)


_SPAN_BITS: Final = 22  # memo granule of UTC offsets: 2**22 s, about 48.5 days
_Span = int | tuple[tuple[int, ...], tuple[int, ...]]


class _ZoneClock:
    """UTC offset of a zone at an epoch second.

    Memoised per span of 2**22 seconds: an int when the offset is constant over the span,
    else (transition instants, offsets) where offsets[0] holds before the first transition and
    offsets[i] from transition i on. Transitions are found by sampling hourly and bisecting to
    the second, so even a zone that leaves and returns to an offset within a span is exact
    (e.g. DST suspended for a few weeks).
    """

    __slots__ = ("spans", "tz")

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.spans: dict[int, _Span] = {}

    def _exact(self, seconds: int) -> int:
        offset = datetime.fromtimestamp(seconds, self.tz).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def _span(self, key: int) -> _Span:
        start = key << _SPAN_BITS
        end = start + (1 << _SPAN_BITS)
        exact = self._exact
        times: list[int] = []
        offsets = [exact(start)]
        t = start
        while t < end:
            nxt = min(t + 3600, end - 1)
            after = exact(nxt)
            if after != offsets[-1]:
                lo, hi = t, nxt  # offset(lo) == offsets[-1] != offset(hi)
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if exact(mid) == offsets[-1]:
                        lo = mid
                    else:
                        hi = mid
                times.append(hi)
                offsets.append(after)
            if nxt == end - 1:
                break
            t = nxt
        if not times:
            return offsets[0]
        return tuple(times), tuple(offsets)

    def offset(self, seconds: int) -> int:
        key = seconds >> _SPAN_BITS
        span = self.spans.get(key)
        if span is None:
            span = self._span(key)
            if len(self.spans) >= _MEMO_LIMIT:
                self.spans.clear()
            self.spans[key] = span
        if isinstance(span, int):
            return span
        return span[1][bisect_right(span[0], seconds)]


# --------------------------------------------------------------------------------------------
# Compiled pieces


def _merge(intervals: Iterable[tuple[int, int]]) -> Intervals:
    starts: list[int] = []
    ends: list[int] = []
    for a, b in sorted(intervals):
        if ends and a <= ends[-1]:
            ends[-1] = max(ends[-1], b)
        else:
            starts.append(a)
            ends.append(b)
    return tuple(starts), tuple(ends)


def _inside(iv: Intervals, x: int) -> bool:
    i = bisect_right(iv[0], x)
    return i > 0 and x < iv[1][i - 1]


@dataclass(frozen=True, slots=True)
class _Hours:
    """One month's office hours in minute-of-week intervals."""

    same: Intervals  # parts on the starting day
    spill: Intervals  # parts after midnight, on the next weekday
    merged: bytes  # same + spill as a bitmap of the 10080 minutes of the week


def _bitmap(intervals: Iterable[tuple[int, int]]) -> bytes:
    bits = 0
    for a, b in intervals:
        bits |= ((1 << (b - a)) - 1) << a
    return bits.to_bytes(10080 // 8, "little")


def _compile_hours(ranges: Sequence[tuple[int, int, tuple[int, ...]]]) -> _Hours:
    same: list[tuple[int, int]] = []
    spill: list[tuple[int, int]] = []
    for start, end, days in ranges:
        for wd in days:
            base = wd * 1440
            if end > start:
                same.append((base + start, base + end))
            else:
                same.append((base + start, base + 1440))
                if end > 0:
                    nxt = (wd + 1) % 7 * 1440
                    spill.append((nxt, nxt + end))
    return _Hours(_merge(same), _merge(spill), _bitmap(same + spill))


@dataclass(frozen=True, slots=True)
class _Coverage:
    """The days an exceptional period starts on, and its daily window."""

    yearly: tuple[tuple[int, int], ...]  # inclusive md-code intervals (New Year split in two)
    oneoff: tuple[tuple[int, int], ...]  # inclusive epoch-day intervals
    whole_day: bool
    start: int
    end: int
    crosses: bool  # the window crosses midnight (end <= start)

    def starts_on(self, md: int, epoch_day: int) -> bool:
        for a, b in self.yearly:
            if a <= md <= b:
                return True
        for a, b in self.oneoff:
            if a <= epoch_day <= b:
                return True
        return False

    def covers(self, md: int, prev_md: int, epoch_day: int, minute: int) -> bool:
        if self.whole_day:
            return self.starts_on(md, epoch_day)
        if not self.crosses:
            return self.start <= minute < self.end and self.starts_on(md, epoch_day)
        if minute >= self.start and self.starts_on(md, epoch_day):
            return True
        return minute < self.end and self.starts_on(prev_md, epoch_day - 1)


def _epoch_day(y: int, m: int, d: int) -> int:
    return date(y, m, d).toordinal() - _EPOCH_ORDINAL


_FIRST_MD: Final = md_code(1, 1)
_LAST_MD: Final = md_code(12, 31)


@lru_cache(maxsize=1 << 14)
def _date_days(text: str) -> tuple[bool, tuple[tuple[int, int], ...]]:
    """One `dates` entry as (yearly, its inclusive intervals of md codes or of epoch days)."""
    spec = parse_date_spec(text)
    if not spec.yearly:
        return False, ((_epoch_day(*spec.first), _epoch_day(*spec.last)),)
    a, b = md_code(*spec.first[1:]), md_code(*spec.last[1:])
    return True, ((a, b),) if a <= b else ((_FIRST_MD, b), (a, _LAST_MD))  # across New Year


def _inclusive(intervals: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Inclusive intervals sorted, overlapping and adjacent ones merged."""
    if len(intervals) <= 1:
        return tuple(intervals)
    starts, ends = _merge((a, b + 1) for a, b in intervals)  # merge half-open
    return tuple((a, b - 1) for a, b in zip(starts, ends, strict=True))


def _compile_coverage(dates: Sequence[str], start: str | None, end: str | None) -> _Coverage:
    yearly: list[tuple[int, int]] = []
    oneoff: list[tuple[int, int]] = []
    for text in dates:
        is_yearly, intervals = _date_days(text)
        (yearly if is_yearly else oneoff).extend(intervals)
    s = 0 if start is None else parse_hhmm(start)
    e = 1440 if end is None else parse_hhmm(end, allow_24=True)
    whole = s == 0 and e == 1440
    return _Coverage(_inclusive(yearly), _inclusive(oneoff), whole, s, e, e <= s)


@cache
def _next_md(md: int) -> tuple[int, ...]:
    """md codes of the day after `md`, in a leap and in a common year."""
    month, day = divmod(md, 32)
    out = []
    for year in (2000, 2001):
        try:
            d = date(year, month, day) + timedelta(days=1)
        except ValueError:
            continue
        out.append(md_code(d.month, d.day))
    return tuple(out)


@cache
def _md_by_day() -> tuple[array[int], array[int]]:
    """For the epoch days from 1970 to 2149 (the usual one-off dates), computed once: their md
    codes, and how many days are left in their month (the day itself included)."""
    codes = array("H")
    left = array("B")
    year = 1970
    while len(codes) < 1 << 16:  # a month at a time: no date object per day
        for month in range(1, 13):
            first = md_code(month, 1)
            days = calendar.monthrange(year, month)[1]
            codes.extend(range(first, first + days))
            left.extend(range(days, 0, -1))
        year += 1
    del codes[1 << 16 :], left[1 << 16 :]
    return codes, left


def _md_runs(first: int, end: int) -> list[tuple[int, int]]:
    """The md codes of the epoch days from `first` to `end` (excluded), as half-open intervals:
    one per month, since md codes are consecutive within a month only."""
    codes, left = _md_by_day()
    runs = []
    day = first
    if 0 <= first and end <= len(codes):
        while day < end:
            n = min(left[day], end - day)
            runs.append((codes[day], codes[day] + n))
            day += n
        return runs
    while day < end:  # far from today: by date objects
        d = date.fromordinal(day + _EPOCH_ORDINAL)
        n = min(calendar.monthrange(d.year, d.month)[1] - d.day + 1, end - day)
        md = md_code(d.month, d.day)
        runs.append((md, md + n))
        day += n
    return runs


@lru_cache(maxsize=1 << 16)  # (bounded: tables come and go as configurations change)
def _candidates(active: int) -> _Candidates:
    """The candidate list of a set of periods: bit i of `active` is period i."""
    return tuple(i for i in range(active.bit_length()) if active >> i & 1)


def _candidate_mask(periods: Sequence[_Coverage]) -> tuple[bytes | array[int], tuple[_Candidates, ...]]:
    """The md codes each period may apply on, as (mask, candidate lists).

    A period may apply on the days it starts on (its yearly dates, and the md codes of its
    one-off dates) and, when its window crosses midnight, on the day after each. mask[md]
    indexes the candidate lists (0: none): the indexes, in list order, of the periods that may
    apply on a day with that md code. Most calls read 0 at their md code and stop.
    """
    # Sweep over the ranges' ends: between two consecutive ends the set of periods is constant.
    events: list[tuple[int, int, int]] = []  # (md code, +1 starts / -1 ends, period index)
    for index, cov in enumerate(periods):
        for a, b in cov.yearly:
            events += ((a, 1, index), (b + 1, -1, index))
            if cov.crosses:
                for md in _next_md(b):
                    events += ((md, 1, index), (md + 1, -1, index))
        for a, b in cov.oneoff:
            end = b + 2 if cov.crosses else b + 1
            if end - a >= 366:  # a year or more: every md code
                events += ((_FIRST_MD, 1, index), (_LAST_MD + 1, -1, index))
                continue
            for md, md_end in _md_runs(a, end):
                events += ((md, 1, index), (md_end, -1, index))
    events.sort()
    counts = [0] * len(periods)
    active = 0  # bit i: period i may apply
    ids: dict[int, int] = {0: 0}
    lists: list[_Candidates] = [()]
    runs: list[list[int]] = []  # [first position, end position, list id]
    start = 0
    for position, delta, index in events:
        if position > start and active:
            id_ = ids.get(active)
            if id_ is None:
                id_ = ids[active] = len(lists)
                lists.append(_candidates(active))
            if runs and runs[-1][1] == start and runs[-1][2] == id_:
                runs[-1][1] = position
            else:
                runs.append([start, position, id_])
        start = position
        counts[index] += delta
        if counts[index]:
            active |= 1 << index
        else:
            active &= ~(1 << index)
    mask: bytes | array[int]
    if len(lists) <= 256:
        values = bytearray(_MD_SIZE)
        for a, b, id_ in runs:
            values[a:b] = bytes((id_,)) * (b - a)
        mask = bytes(values)
    else:
        mask = array("H" if len(lists) <= 65536 else "L", (0,)) * _MD_SIZE
        for a, b, id_ in runs:
            mask[a:b] = array(mask.typecode, (id_,)) * (b - a)
    return mask, tuple(lists)


@dataclass(frozen=True, slots=True)
class _Period:
    """An exceptional period: its coverage, name and destination."""

    coverage: _Coverage
    name: str
    destination: Destination
    outcome: Outcome  # (destination, "exceptional", name)


@dataclass(frozen=True, slots=True)
class _Periods:
    """A user's exceptional periods in list order, with a prefilter of the days they touch."""

    periods: tuple[_Period, ...]
    # By md code: which candidate list holds the periods that may apply (see `_candidate_mask`).
    mask: bytes | array[int]
    candidates: tuple[_Candidates, ...]


@dataclass(frozen=True, slots=True)
class _Exceptions:
    """A user's caller-ID exceptions, indexed (see module docstring)."""

    star: int
    exact: dict[str, int]  # normalised number -> index of the first exception with it
    prefixes: dict[str, int]  # normalised prefix -> index of the first exception with it
    destinations: tuple[Destination, ...]
    names: tuple[str, ...]  # the callers as written


_NO_PERIODS: Final = _Periods((), bytes(13 * 32), ((),))
_NO_HOURS: Final[tuple[_Hours | None, ...]] = (None,) * 13


# A user's hot data is one flat tuple, its "record", read by decide() with constant indexes:
# one object (a few cache lines) instead of a tree of objects and dicts. Item:
_EXPLAINER: Final = 0  # the _UserRules (cold: only traces read it)
_STATIC: Final = 1  # the outcome when the schedule is disabled, else None
_CLOCK: Final = 2  # the zone's _ZoneClock (shared)
_PMASK: Final = 3  # periods' mask by md code (_Periods.mask)
_PATTERNS: Final = 4  # True: the user has caller-ID exceptions (in the index); None: none
_STAR: Final = 5  # index of the first `*` exception, or _NONE
_CLOSED: Final = 6  # outcome outside office hours
_IN_HOURS: Final = 7  # outcome inside office hours (forward or devices)
_HOURS: Final = 7  # record[_HOURS + month]: that month's bitmap of the week, None: no hours
_PERIODS: Final = 20  # tuple of _Period
_CANDIDATES: Final = 21  # _Periods.candidates
_SPLIT: Final = 22  # _Hours by month (index 1..12), for the 1st of a month; None: no hours
_EXCEPTIONS: Final = 23  # from here, destination and callers of each caller-ID exception
_MD_SIZE: Final = 13 * 32

_Record = tuple[Any, ...]
_Users = dict[str, int] | tuple[str, int]  # extension -> exception index; one user: a pair


class _UserRules:
    """One user's compiled rules as traces read them (decide() reads the user's record)."""

    __slots__ = (
        "clock",
        "closed",
        "country_code",
        "exception_destinations",
        "in_hours",
        "in_hours_rule",
        "periods",
        "source",
    )

    def __init__(
        self,
        source: User,
        clock: _ZoneClock,
        country_code: str,
        in_hours: Destination,
        in_hours_rule: Rule,
        closed: Destination,
        periods: tuple[_Period, ...],
        exception_destinations: tuple[Destination, ...],
    ) -> None:
        self.source = source
        self.clock = clock
        self.country_code = country_code
        self.in_hours = in_hours
        self.in_hours_rule = in_hours_rule
        self.closed = closed
        self.periods = periods
        self.exception_destinations = exception_destinations

    def explain(self, decision: Decision, caller: str, when: datetime) -> tuple[Step, ...]:
        from b2bua.rules.trace import explain_user

        return explain_user(self, decision, caller, when)


def _compile_user(user: User, clock: _ZoneClock, country_code: str, memo: _Memo) -> _Record:
    """A user's record (see `_EXPLAINER` and the following indexes)."""
    forward = memo.destination(user.forward) if user.forward is not None else None
    in_hours_rule: Rule = "office_hours" if forward is None else "forward"
    in_hours = _DEVICES if forward is None else forward
    schedule = user.schedule
    # Schedule disabled (or none): manual forward if set, else all devices. The rule is
    # "forward" when a forward is set (the trace says the schedule is disabled).
    static: Outcome | None = None
    if schedule is None or not schedule.enabled:
        static = memo.outcome(
            *((forward, "forward", None) if forward else (_DEVICES, "schedule_disabled", None))
        )
    closed = memo.destination(schedule.closed) if schedule else _DEVICES
    periods = memo.periods(schedule.exceptional) if schedule else _NO_PERIODS
    hours = memo.hours(schedule.hours) if schedule else _NO_HOURS
    exceptions = memo.exceptions(user.exceptions)
    rules = _UserRules(
        user,
        clock,
        country_code,
        in_hours,
        in_hours_rule,
        closed,
        periods.periods,
        exceptions.destinations,
    )
    record = (
        rules,
        static,
        clock,
        periods.mask,
        True if user.exceptions else None,
        exceptions.star,
        memo.outcome(closed, "closed", None),
        memo.outcome(in_hours, in_hours_rule, None),
        *(h.merged if h is not None else None for h in hours[1:]),
        periods.periods,
        periods.candidates,
        hours,
        *(x for pair in zip(exceptions.destinations, exceptions.names, strict=True) for x in pair),
    )
    assert len(record) == _EXCEPTIONS + 2 * len(exceptions.names), "record layout"
    if user.exceptions:
        memo.index_exceptions(user.extension, exceptions)
    return record


class _SystemRules:
    __slots__ = ("destination", "source", "tz")

    def __init__(self, ext: SystemExtension, tz: ZoneInfo) -> None:
        self.source = ext
        self.tz = tz
        self.destination = Destination("system", extension=ext.extension)

    def explain(self, decision: Decision, caller: str, when: datetime) -> tuple[Step, ...]:
        from b2bua.rules.trace import explain_system

        return explain_system(self, decision, caller, when)


class _Memo:
    """Shares identical compiled structures between users while compiling.

    Leaves (destinations, date coverages, office-hour tables, caller patterns) are interned
    by content; a user's whole list of periods or exceptions by the identities of its interned
    leaves. Real configurations repeat themselves a lot (same hours, same holidays), so most
    users share most of their tables.
    """

    def __init__(self, country_code: str) -> None:
        self.country_code = country_code
        self._destinations: dict[tuple[Any, ...], Destination] = {}
        self._coverage: dict[tuple[tuple[str, ...], str | None, str | None], _Coverage] = {}
        self._period: dict[tuple[Any, ...], _Period] = {}
        self._periods: dict[tuple[int, ...], _Periods] = {}
        self._patterns: dict[str, tuple[CallerPattern, ...]] = {}
        self._exceptions: dict[tuple[tuple[str, ...], tuple[int, ...]], _Exceptions] = {}
        self._hours: dict[tuple[tuple[int, int, tuple[int, ...]], ...], _Hours] = {}
        self._months: dict[tuple[tuple[Any, ...], ...], tuple[_Hours | None, ...]] = {}
        self._masks: dict[bytes, bytes] = {}
        # The caller-ID index: normalised number or prefix -> {user: exception index}.
        self.exact: dict[str, _Users] = {}
        self.prefixes: dict[str, _Users] = {}
        self._outcomes: dict[tuple[int, str, str | None], Outcome] = {}
        self._names: dict[str, str] = {}

    def outcome(self, destination: Destination, rule: Rule, name: str | None) -> Outcome:
        key = (id(destination), rule, name)
        outcome = self._outcomes.get(key)
        if outcome is None:
            outcome = self._outcomes[key] = (destination, rule, name)
        return outcome

    def name(self, name: str) -> str:
        return self._names.setdefault(name, name)

    def destination(self, model: DestinationConfig) -> Destination:
        # Models compare equal whatever fields were written; the written ones are shown back,
        # so they are part of the key (in set order: at worst a duplicate, never a mix-up).
        key = (model.__class__, tuple(model.__pydantic_fields_set__), *model.__dict__.values())
        dest = self._destinations.get(key)
        if dest is None:
            dest = self._destinations[key] = Destination.from_config(model)
        return dest

    def coverage(self, p: ExceptionalPeriod) -> _Coverage:
        key = (p.dates, p.start, p.end)
        cov = self._coverage.get(key)
        if cov is None:
            cov = self._coverage[key] = _compile_coverage(p.dates, p.start, p.end)
        return cov

    def period(self, p: ExceptionalPeriod) -> _Period:
        dest = self.destination(p.destination)
        key = (p.name, p.dates, p.start, p.end, id(dest))
        period = self._period.get(key)
        if period is None:
            name = self.name(p.name)
            outcome: Outcome = (dest, "exceptional", name)
            period = self._period[key] = _Period(self.coverage(p), name, dest, outcome)
        return period

    def periods(self, periods: tuple[ExceptionalPeriod, ...]) -> _Periods:
        if not periods:
            return _NO_PERIODS
        compiled = tuple(self.period(p) for p in periods)
        key = tuple(map(id, compiled))
        cached = self._periods.get(key)
        if cached is not None:
            return cached
        mask, candidates = _candidate_mask([p.coverage for p in compiled])
        if isinstance(mask, bytes):
            mask = self._masks.setdefault(mask, mask)
        result = self._periods[key] = _Periods(compiled, mask, candidates)
        return result

    def patterns(self, callers: str) -> tuple[CallerPattern, ...]:
        patterns = self._patterns.get(callers)
        if patterns is None:
            patterns = self._patterns[callers] = tuple(
                p for token in callers.split() for p in self._token(token)
            )
        return patterns

    def _token(self, token: str) -> tuple[CallerPattern, ...]:
        patterns = self._patterns.get(token)
        if patterns is None:
            patterns = self._patterns[token] = parse_callers(token, self.country_code)
        return patterns

    def exceptions(self, exceptions: tuple[CallerException, ...]) -> _Exceptions:
        callers = tuple([e.callers for e in exceptions])
        destinations = tuple([self.destination(e.destination) for e in exceptions])
        key = (callers, tuple(map(id, destinations)))
        cached = self._exceptions.get(key)
        if cached is not None:
            return cached
        if len(exceptions) > _NONE:
            raise ValueError(f"at most {_NONE} caller-ID exceptions per user")
        star = _NONE
        exact: dict[str, int] = {}
        prefixes: dict[str, int] = {}
        known = self._patterns
        for index, text in enumerate(callers):
            patterns = known.get(text)
            if patterns is None:
                patterns = self.patterns(text)
            for pattern in patterns:
                kind = pattern.kind
                if kind == "prefix":
                    prefixes.setdefault(pattern.value, index)
                elif kind == "exact":
                    exact.setdefault(pattern.value, index)
                elif index < star:  # "any"
                    star = index
        result = self._exceptions[key] = _Exceptions(star, exact, prefixes, destinations, callers)
        return result

    def index_exceptions(self, extension: str, exceptions: _Exceptions) -> None:
        """Enter a user's patterns in the caller-ID index (keyed by the table's own string)."""
        for index, kind in ((self.exact, exceptions.exact), (self.prefixes, exceptions.prefixes)):
            for value, position in kind.items():
                users = index.get(value)
                if users is None:
                    index[value] = (extension, position)  # one user, until another comes
                elif isinstance(users, tuple):
                    index[value] = {users[0]: users[1], extension: position}
                else:
                    users[extension] = position

    def hours(self, ranges: tuple[OfficeHours, ...]) -> tuple[_Hours | None, ...]:
        if not ranges:
            return _NO_HOURS
        # Keyed by the ranges' values: hashing and comparing models costs more.
        written = tuple([(r.start, r.end, r.days, r.months) for r in ranges])
        cached = self._months.get(written)
        if cached is not None:
            return cached
        parsed = [
            (
                parse_hhmm(r.start),
                parse_hhmm(r.end, allow_24=True),
                tuple(sorted({WEEKDAYS.index(d) for d in r.days})),
                r.months,
            )
            for r in ranges
        ]
        months: list[_Hours | None] = [None]
        for month in range(1, 13):
            key = tuple((s, e, days) for s, e, days, ms in parsed if ms == "all" or month in ms)
            hours = self._hours.get(key)
            if hours is None:
                hours = self._hours[key] = _compile_hours(key)
            months.append(hours)
        result = tuple(months)
        self._months[written] = result
        return result


# --------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True, slots=True)
class TableStats:
    users: int
    system_extensions: int
    office_hours: int
    exceptional_periods: int
    exceptions: int


class RuleTable:
    """Immutable routing rules of one configuration. Build with `compile_rules`."""

    __slots__ = (
        "_days",
        "_exact",
        "_prefix_lengths",
        "_prefixes",
        "_probes",
        "_server_tz",
        "_systems",
        "_users",
        "country_code",
        "stats",
    )

    def __init__(
        self,
        users: dict[str, _Record],
        systems: dict[str, _Record],
        country_code: str,
        server_tz: ZoneInfo,
        stats: TableStats,
        exact: dict[str, _Users],
        prefixes: dict[str, _Users],
    ) -> None:
        self._users = users
        self._systems = systems
        self.country_code = country_code
        self._server_tz = server_tz
        self.stats = stats
        self._days: dict[int, DayFacts] = {}
        self._exact = exact  # the caller-ID index (see the module docstring)
        self._prefixes = prefixes
        self._prefix_lengths = tuple(sorted({len(p) for p in prefixes}))
        self._probes: dict[str, tuple[dict[str, int], ...]] = {}  # caller as received -> dicts

    def __contains__(self, extension: object) -> bool:
        return extension in self._users or extension in self._systems

    @property
    def extensions(self) -> frozenset[str]:
        return frozenset(self._users) | frozenset(self._systems)

    def zone(self, extension: str) -> ZoneInfo:
        """The time zone in which `extension`'s rules are written."""
        user = self._users.get(extension)
        if user is not None:
            tz: ZoneInfo = user[_CLOCK].tz
            return tz
        if extension in self._systems:
            return self._server_tz
        raise UnknownExtension(extension)

    def _probe(self, caller: str) -> tuple[dict[str, int], ...]:
        """The caller-ID index's dicts that apply to `caller` (memoised; see the module doc)."""
        number = normalize_number(caller, self.country_code)
        probe: tuple[dict[str, int], ...] = ()
        if number:  # an anonymous caller matches only `*`
            found = [self._exact.get(number)]
            prefixes = self._prefixes
            for n in self._prefix_lengths:
                if n > len(number):
                    break
                found.append(prefixes.get(number[:n]))
            probe = tuple(
                {users[0]: users[1]} if isinstance(users, tuple) else users
                for users in found
                if users is not None
            )
        if len(self._probes) >= _NUMBER_MEMO:
            self._probes.clear()
        self._probes[caller] = probe
        return probe

    def decide(self, callee: str, caller: str, when: datetime | float) -> Decision:
        """Where a call from `caller` to extension `callee` at instant `when` goes, and why.

        `when` is a timezone-aware datetime, or UTC epoch seconds as `time.time()` gives them
        (the engine's form: no datetime to build); either is converted to the callee's time
        zone, and both give the same decision and trace. A system extension (ring group) always
        yields its own `system` destination (rule "schedule_disabled": it has no schedule).
        Raises UnknownExtension otherwise.
        """
        kind = when.__class__
        if kind is not float and kind is not int:
            if not isinstance(when, datetime):
                raise TypeError(f"decide() needs a datetime or epoch seconds, not {kind.__name__}")
            if when.tzinfo is None:
                raise ValueError("decide() needs a timezone-aware datetime")
        r = self._users.get(callee)
        if r is None:
            r = self._systems.get(callee)
            if r is None:
                raise UnknownExtension(callee)
        outcome = r[_STATIC]
        if outcome is None:
            # Local time of the callee.
            ts: float = when.timestamp() if isinstance(when, datetime) else when
            seconds = int(ts)
            if seconds > ts:
                seconds -= 1
            clock = r[_CLOCK]
            try:
                offset = clock.spans[seconds >> 22]
                if offset.__class__ is not int:
                    offset = clock.offset(seconds)  # a DST change in this span
            except KeyError:
                offset = clock.offset(seconds)
            seconds += offset
            epoch_day = seconds // 86400
            minute = seconds % 86400 // 60
            try:
                day = self._days[epoch_day]
            except KeyError:
                day = self._day(epoch_day)

            # 2. Exceptional periods: first covering period wins.
            md = day[2]
            mask = r[_PMASK]
            entry = mask[md]  # 0: no period may apply on this day, in any year
            if entry:
                prev_md = day[4]
                periods = r[_PERIODS]
                for k in r[_CANDIDATES][entry]:
                    period = periods[k]
                    if period.coverage.covers(md, prev_md, epoch_day, minute):
                        outcome = period.outcome
                        break

            # 3. Caller-ID exceptions: the smallest matching index is the first in the list.
            if outcome is None:
                if r[_PATTERNS]:
                    best = r[_STAR]
                    if best:
                        probe = self._probes.get(caller)  # (a new caller is no rarity)
                        if probe is None:
                            probe = self._probe(caller)
                        for users in probe:
                            found = users.get(callee, _NONE)
                            if found < best:
                                best = found
                    if best != _NONE:
                        i = _EXCEPTIONS + 2 * best
                        outcome = (r[i], "exception", r[i + 1])

            # 4. Office hours (5. otherwise closed).
            if outcome is None:
                month = day[1]
                bitmap = r[_HOURS + month]
                if bitmap is None:
                    outcome = r[_CLOSED]
                else:
                    mow = day[0] * 1440 + minute
                    if day[3] == month:
                        inside = (bitmap[mow >> 3] >> (mow & 7)) & 1
                    else:  # the 1st: the spill after midnight comes from the previous month
                        split = r[_SPLIT]
                        inside = _inside(split[month].same, mow) or _inside(
                            split[day[3]].spill, mow
                        )
                    outcome = r[_IN_HOURS] if inside else r[_CLOSED]
        decision = new_decision(Decision)
        decision._outcome = outcome
        decision._source = r
        decision._caller = caller
        decision._when = when
        return decision

    def _day(self, epoch_day: int) -> DayFacts:
        facts = day_facts(epoch_day)
        if len(self._days) >= _MEMO_LIMIT:
            self._days.clear()
        self._days[epoch_day] = facts
        return facts


def compile_rules(config: Config) -> RuleTable:
    """Compile the routing rules of every user and system extension of `config`.

    The cyclic garbage collector is paused meanwhile: compiling allocates many small objects
    and none of them is garbage, so collections would only rescan the growing table.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _compile(config)
    finally:
        if paused:
            gc.enable()


def _compile(config: Config) -> RuleTable:
    clocks: dict[str, _ZoneClock] = {}

    def clock(name: str) -> _ZoneClock:
        c = clocks.get(name)
        if c is None:
            c = clocks[name] = _ZoneClock(ZoneInfo(name))
        return c

    cc = config.server.country_code
    memo = _Memo(cc)
    users = {
        u.extension: _compile_user(u, clock(u.timezone or config.server.timezone), cc, memo)
        for u in config.users
    }
    server_tz = ZoneInfo(config.server.timezone)
    systems: dict[str, _Record] = {}
    for s in config.system_extensions:
        rules = _SystemRules(s, server_tz)
        systems[s.extension] = (rules, (rules.destination, "schedule_disabled", None))
    stats = TableStats(
        users=len(users),
        system_extensions=len(systems),
        office_hours=sum(len(u.schedule.hours) for u in config.users if u.schedule),
        exceptional_periods=sum(len(u.schedule.exceptional) for u in config.users if u.schedule),
        exceptions=sum(len(u.exceptions) for u in config.users),
    )
    return RuleTable(users, systems, cc, server_tz, stats, memo.exact, memo.prefixes)


class RuleBook:
    """Holds the current RuleTable; `swap()` installs a new one atomically.

    Calls in flight keep the Decision they got: a Decision never refers back to the book.
    """

    __slots__ = ("table",)

    def __init__(self, table: RuleTable) -> None:
        self.table = table

    def swap(self, table: RuleTable) -> RuleTable:
        """Install `table`; return the previous one."""
        old, self.table = self.table, table
        return old

    def decide(self, callee: str, caller: str, when: datetime | float) -> Decision:
        return self.table.decide(callee, caller, when)

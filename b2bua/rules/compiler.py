"""Compile a `Config` into an immutable `RuleTable`; `RuleTable.decide()` is the hot path.

Theory of operation
-------------------
A decision needs the callee's local time, broken into: epoch day (days since 1970-01-01 in
local time), minute of the day, weekday, month, and a year-agnostic "month-day" code
`md = month * 32 + day` (so 12-20 < 12-31 < 01-01 wraps like the calendar). The previous day's
month and md are needed too, because a range that crosses midnight belongs to the day it starts.

* Local time: `when.timestamp()` plus the zone's UTC offset, memoised per span of 2**22 s
  (about 48 days) as one int, or as the span's transitions when it holds a DST change.
* Calendar facts of an epoch day are memoised per table (a handful of days are live at once).
* Exceptional periods: per user, two byte masks, one by md code (yearly entries) and one by
  epoch day (one-off entries), holding 1 + the index of the first period that may apply that
  day (a window crossing midnight also marks the next day). Almost every call reads 0 in both
  and skips the periods; otherwise the periods are tested in list order from that index on.
* Caller-ID exceptions: per user, one dict from normalised number or prefix to
  `exact_index * 16 + prefix_index` (15 = none; at most 15 exceptions), probed with the whole
  number and then once per distinct prefix length, and the index of the first `*`. The smallest
  index found is the first matching exception in the list.
* Office hours: per user and month, a bitmap of the 10080 minutes of the week (Monday 00:00 is
  bit 0). Each range is split into its part on the starting day ("same") and the part after
  midnight ("spill", on the next weekday, Sunday spilling into Monday). On any day but the 1st of
  a month the month's bitmap answers; on the 1st the spill part comes from the previous month's
  intervals, since the starting day's month decides.

Compiled pieces are interned while compiling, so users with the same hours, holidays or
destinations share them. Each decide() reads few objects: with thousands of users, cache misses
on user data cost more than the arithmetic.

The memo dicts are bounded and invisible to callers: a table never changes its answers.
"""

from __future__ import annotations

import gc
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from b2bua.config import WEEKDAYS, parse_date_spec, parse_hhmm
from b2bua.rules.model import (
    Decision,
    Destination,
    Rule,
    UnknownExtension,
    _new,
    _set_context,
    _set_destination,
    _set_rule,
    _set_rule_name,
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
_DEVICES: Final = Destination("devices")

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


def _compile_coverage(dates: Sequence[str], start: str | None, end: str | None) -> _Coverage:
    yearly: list[tuple[int, int]] = []
    oneoff: list[tuple[int, int]] = []
    for text in dates:
        spec = parse_date_spec(text)
        if spec.yearly:
            a, b = md_code(*spec.first[1:]), md_code(*spec.last[1:])
            if a <= b:
                yearly.append((a, b))
            else:  # across New Year
                yearly += [(a, _LAST_MD), (_FIRST_MD, b)]
        else:
            oneoff.append((_epoch_day(*spec.first), _epoch_day(*spec.last)))
    s = 0 if start is None else parse_hhmm(start)
    e = 1440 if end is None else parse_hhmm(end, allow_24=True)
    whole = s == 0 and e == 1440

    def inclusive(intervals: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
        starts, ends = _merge((a, b + 1) for a, b in intervals)  # merge half-open
        return tuple((a, b - 1) for a, b in zip(starts, ends, strict=True))

    return _Coverage(inclusive(yearly), inclusive(oneoff), whole, s, e, e <= s)


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


def _first_index_mask(size: int, days: Iterable[tuple[int, int, int]]) -> bytearray:
    """mask[d] = 1 + index of the first period that may apply on day d (0: none).

    `days` yields (period index, first day, last day) in list order.
    """
    mask = bytearray(size)
    for index, a, b in reversed(list(days)):  # earlier periods overwrite later ones
        mask[a : b + 1] = bytes((min(index + 1, 255),)) * (b + 1 - a)
    return mask


def _md_mask(periods: Sequence[_Coverage]) -> bytes:
    """By md code: 1 + index of the first period that may apply (start or spill day)."""

    def days() -> Iterator[tuple[int, int, int]]:
        for index, cov in enumerate(periods):
            for a, b in cov.yearly:
                yield index, a, b
                if cov.crosses:
                    for md in _next_md(b):
                        yield index, md, md

    return bytes(_first_index_mask(13 * 32, days()))


@dataclass(frozen=True, slots=True)
class _Period(_Coverage):
    """An exceptional period: its coverage, name and destination."""

    name: str
    destination: Destination

    @property
    def coverage(self) -> _Coverage:
        return self


@dataclass(frozen=True, slots=True)
class _Periods:
    """A user's exceptional periods in list order, with a prefilter of the days they touch."""

    periods: tuple[_Period, ...]
    md_mask: bytes  # by md code: 1 if a yearly period may apply that day
    oneoff_base: int  # first epoch day of oneoff_mask
    oneoff_mask: bytes  # by epoch day - oneoff_base: 1 if a one-off period may apply


@dataclass(frozen=True, slots=True)
class _Exceptions:
    """A user's caller-ID exceptions, indexed (see module docstring)."""

    star: int
    patterns: dict[str, int]  # number or prefix -> exact index * 16 + prefix index (15: none)
    prefix_lengths: tuple[int, ...]
    destinations: tuple[Destination, ...]
    names: tuple[str, ...]


_NO_PERIODS: Final = _Periods((), bytes(13 * 32), 0, b"")
_NO_HOURS: Final[tuple[_Hours | None, ...]] = (None,) * 13


class _UserRules:
    """One user's compiled rules (see module docstring for the structures)."""

    __slots__ = (
        "clock",
        "closed",
        "country_code",
        "exception_destinations",
        "exception_names",
        "extension",
        "has_exceptions",
        "hours",
        "in_hours",
        "in_hours_rule",
        "md_mask",
        "oneoff_base",
        "oneoff_mask",
        "patterns",
        "periods",
        "prefix_lengths",
        "source",
        "star",
        "static",
    )

    def __init__(self, user: User, clock: _ZoneClock, country_code: str, memo: _Memo) -> None:
        self.source = user
        self.extension = user.extension
        self.clock = clock
        self.country_code = country_code
        forward = memo.destination(user.forward) if user.forward is not None else None
        if forward is not None:
            self.in_hours: Destination = forward
            self.in_hours_rule: Rule = "forward"
        else:
            self.in_hours = _DEVICES
            self.in_hours_rule = "office_hours"
        schedule = user.schedule
        # Schedule disabled (or none): manual forward if set, else all devices. The rule is
        # "forward" when a forward is set (the trace says the schedule is disabled).
        self.static: tuple[Destination, Rule] | None = None
        if schedule is None or not schedule.enabled:
            self.static = memo.static(
                *((forward, "forward") if forward else (_DEVICES, "schedule_disabled"))
            )
        self.closed = memo.destination(schedule.closed) if schedule else _DEVICES
        periods = memo.periods(schedule.exceptional) if schedule else _NO_PERIODS
        self.periods = periods.periods
        self.md_mask = periods.md_mask
        self.oneoff_base = periods.oneoff_base
        self.oneoff_mask = periods.oneoff_mask
        self.hours = memo.hours(schedule.hours) if schedule else _NO_HOURS
        exceptions = memo.exceptions(user.exceptions)
        self.has_exceptions = bool(user.exceptions)
        self.star = exceptions.star
        self.patterns = exceptions.patterns
        self.prefix_lengths = exceptions.prefix_lengths
        self.exception_destinations = exceptions.destinations
        self.exception_names = exceptions.names

    def explain(self, decision: Decision, caller: str, when: datetime) -> tuple[str, ...]:
        from b2bua.rules.trace import explain_user

        return explain_user(self, decision, caller, when)


class _SystemRules:
    __slots__ = ("destination", "source", "tz")

    def __init__(self, ext: SystemExtension, tz: ZoneInfo) -> None:
        self.source = ext
        self.tz = tz
        self.destination = Destination("system", extension=ext.extension)

    def explain(self, decision: Decision, caller: str, when: datetime) -> tuple[str, ...]:
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
        self._exceptions: dict[tuple[Any, ...], _Exceptions] = {}
        self._hours: dict[tuple[tuple[int, int, tuple[int, ...]], ...], _Hours] = {}
        self._months: dict[tuple[OfficeHours, ...], tuple[_Hours | None, ...]] = {}
        self._masks: dict[bytes, bytes] = {}
        self._lengths: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._statics: dict[tuple[int, str], tuple[Destination, Rule]] = {}

    def static(self, destination: Destination, rule: Rule) -> tuple[Destination, Rule]:
        return self._statics.setdefault((id(destination), rule), (destination, rule))

    def destination(self, model: DestinationConfig) -> Destination:
        # Models compare equal whatever fields were written; the written ones are shown back,
        # so they are part of the key (in set order: at worst a duplicate, never a mix-up).
        key = (model.__class__, tuple(model.model_fields_set), *model.__dict__.values())
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
            c = self.coverage(p)
            period = self._period[key] = _Period(
                c.yearly, c.oneoff, c.whole_day, c.start, c.end, c.crosses, p.name, dest
            )
        return period

    def periods(self, periods: tuple[ExceptionalPeriod, ...]) -> _Periods:
        if not periods:
            return _NO_PERIODS
        compiled = tuple(self.period(p) for p in periods)
        key = tuple(map(id, compiled))
        cached = self._periods.get(key)
        if cached is not None:
            return cached
        days = [  # inclusive, with the spill day of night windows
            (index, a, b + 1 if period.crosses else b)
            for index, period in enumerate(compiled)
            for a, b in period.oneoff
        ]
        base = min((a for _, a, _ in days), default=0)
        size = max((b for _, _, b in days), default=base - 1) - base + 1
        oneoff = _first_index_mask(size, ((i, a - base, b - base) for i, a, b in days))
        mask = _md_mask(compiled)
        mask = self._masks.setdefault(mask, mask)
        result = self._periods[key] = _Periods(compiled, mask, base, bytes(oneoff))
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
        destinations = tuple(self.destination(e.destination) for e in exceptions)
        key = (*(e.callers for e in exceptions), *map(id, destinations))
        cached = self._exceptions.get(key)
        if cached is not None:
            return cached
        if len(exceptions) > _NONE:
            raise ValueError(f"at most {_NONE} caller-ID exceptions per user")
        star = _NONE
        exact: dict[str, int] = {}
        prefixes: dict[str, int] = {}
        for index, exc in enumerate(exceptions):
            for pattern in self.patterns(exc.callers):
                if pattern.kind == "any":
                    star = min(star, index)
                elif pattern.kind == "exact":
                    exact.setdefault(pattern.value, index)
                else:
                    prefixes.setdefault(pattern.value, index)
        # One dict for both kinds: small-int values (< 256) are shared objects, and a single
        # table is one less cold object to touch per call.
        patterns = {
            key: exact.get(key, _NONE) * 16 + prefixes.get(key, _NONE)
            for key in exact.keys() | prefixes.keys()
        }
        lengths = tuple(sorted({len(p) for p in prefixes}))
        lengths = self._lengths.setdefault(lengths, lengths)
        result = self._exceptions[key] = _Exceptions(
            star,
            patterns,
            lengths,
            destinations,
            tuple(e.callers for e in exceptions),
        )
        return result

    def hours(self, ranges: tuple[OfficeHours, ...]) -> tuple[_Hours | None, ...]:
        if not ranges:
            return (None,) * 13
        cached = self._months.get(ranges)
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
        self._months[ranges] = result
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

    __slots__ = ("_days", "_numbers", "_server_tz", "_systems", "_users", "country_code", "stats")

    def __init__(
        self,
        users: dict[str, _UserRules],
        systems: dict[str, _SystemRules],
        country_code: str,
        server_tz: ZoneInfo,
        stats: TableStats,
    ) -> None:
        self._users = users
        self._systems = systems
        self.country_code = country_code
        self._server_tz = server_tz
        self.stats = stats
        self._days: dict[int, DayFacts] = {}
        self._numbers: dict[str, str] = {}

    def __contains__(self, extension: object) -> bool:
        return extension in self._users or extension in self._systems

    @property
    def extensions(self) -> frozenset[str]:
        return frozenset(self._users) | frozenset(self._systems)

    def zone(self, extension: str) -> ZoneInfo:
        """The time zone in which `extension`'s rules are written."""
        user = self._users.get(extension)
        if user is not None:
            return user.clock.tz
        if extension in self._systems:
            return self._server_tz
        raise UnknownExtension(extension)

    def normalize(self, number: str) -> str:
        """A caller number in the canonical form the patterns use ("" if anonymous)."""
        norm = self._numbers.get(number)
        if norm is None:
            norm = normalize_number(number, self.country_code)
            if len(self._numbers) >= _MEMO_LIMIT:
                self._numbers.clear()
            self._numbers[number] = norm
        return norm

    def decide(self, callee: str, caller: str, when: datetime) -> Decision:
        """Where a call from `caller` to extension `callee` at instant `when` goes, and why.

        `when` must be timezone-aware; it is converted to the callee's time zone. A system
        extension (ring group) always yields its own `system` destination (rule
        "schedule_disabled": it has no schedule). Raises UnknownExtension otherwise.
        """
        if when.tzinfo is None:
            raise ValueError("decide() needs a timezone-aware datetime")
        user = self._users.get(callee)
        if user is None:
            system = self._systems.get(callee)
            if system is None:
                raise UnknownExtension(callee)
            decision = _new(Decision)
            _set_destination(decision, system.destination)
            _set_rule(decision, "schedule_disabled")
            _set_rule_name(decision, None)
            _set_context(decision, (system, caller, when))
            return decision
        ctx = (user, caller, when)
        static = user.static
        if static is not None:
            decision = _new(Decision)
            _set_destination(decision, static[0])
            _set_rule(decision, static[1])
            _set_rule_name(decision, None)
            _set_context(decision, ctx)
            return decision

        # Local time of the callee.
        ts = when.timestamp()
        seconds = int(ts)
        if seconds > ts:
            seconds -= 1
        clock = user.clock
        offset = clock.spans.get(seconds >> 22)
        if offset.__class__ is not int:
            offset = clock.offset(seconds)
        epoch_day, second = divmod(seconds + offset, 86400)
        minute = second // 60
        day = self._days.get(epoch_day)
        if day is None:
            day = self._day(epoch_day)

        # 2. Exceptional periods: first covering period wins.
        md = day[2]
        first = user.md_mask[md]  # 1 + index of the first period that may apply, or 0
        i = epoch_day - user.oneoff_base
        if 0 <= i < len(user.oneoff_mask):
            other = user.oneoff_mask[i]
            if other and (not first or other < first):
                first = other
        if first:
            prev_md = day[4]
            for period in user.periods[first - 1 :]:
                if period.covers(md, prev_md, epoch_day, minute):
                    decision = _new(Decision)
                    _set_destination(decision, period.destination)
                    _set_rule(decision, "exceptional")
                    _set_rule_name(decision, period.name)
                    _set_context(decision, ctx)
                    return decision

        # 3. Caller-ID exceptions: the smallest matching index is the first in the list.
        if user.has_exceptions:
            best = user.star
            if best:
                number = self._numbers.get(caller)
                if number is None:
                    number = self.normalize(caller)
                if number:
                    patterns = user.patterns
                    found = patterns.get(number)
                    if found is not None and (found >> 4) < best:
                        best = found >> 4  # exact pattern (prefixes are probed below)
                    for length in user.prefix_lengths:
                        found = patterns.get(number[:length])
                        if found is not None and (found & 15) < best:
                            best = found & 15
            if best != _NONE:
                decision = _new(Decision)
                _set_destination(decision, user.exception_destinations[best])
                _set_rule(decision, "exception")
                _set_rule_name(decision, user.exception_names[best])
                _set_context(decision, ctx)
                return decision

        # 4. Office hours (5. otherwise closed).
        month = day[1]
        hours = user.hours[month]
        if hours is not None:
            mow = day[0] * 1440 + minute
            if day[3] == month:
                inside = (hours.merged[mow >> 3] >> (mow & 7)) & 1
            else:
                inside = _inside(hours.same, mow)
                if not inside:
                    previous = user.hours[day[3]]
                    inside = previous is not None and _inside(previous.spill, mow)
            if inside:
                decision = _new(Decision)
                _set_destination(decision, user.in_hours)
                _set_rule(decision, user.in_hours_rule)
                _set_rule_name(decision, None)
                _set_context(decision, ctx)
                return decision
        decision = _new(Decision)
        _set_destination(decision, user.closed)
        _set_rule(decision, "closed")
        _set_rule_name(decision, None)
        _set_context(decision, ctx)
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
        u.extension: _UserRules(u, clock(u.timezone or config.server.timezone), cc, memo)
        for u in config.users
    }
    server_tz = ZoneInfo(config.server.timezone)
    systems = {s.extension: _SystemRules(s, server_tz) for s in config.system_extensions}
    stats = TableStats(
        users=len(users),
        system_extensions=len(systems),
        office_hours=sum(len(u.schedule.hours) for u in config.users if u.schedule),
        exceptional_periods=sum(len(u.schedule.exceptional) for u in config.users if u.schedule),
        exceptions=sum(len(u.exceptions) for u in config.users),
    )
    return RuleTable(users, systems, cc, server_tz, stats)


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

    def decide(self, callee: str, caller: str, when: datetime) -> Decision:
        return self.table.decide(callee, caller, when)

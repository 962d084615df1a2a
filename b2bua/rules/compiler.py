"""Compile a `Config` into an immutable `RuleTable`; `RuleTable.decide()` is the hot path.

Theory of operation
-------------------
A decision needs the callee's local time, broken into: epoch day (days since 1970-01-01 in
local time), minute of the day, weekday, month, and a year-agnostic "month-day" code
`md = month * 32 + day` (so 12-20 < 12-31 < 01-01 wraps like the calendar). The previous day's
month and md are needed too, because a range that crosses midnight belongs to the day it starts.

* Local time: `when.timestamp()` plus the zone's UTC offset. Offsets are memoised per zone in
  15-minute buckets whose whole span has one offset (every transition of the tz database in use
  today falls on a quarter hour; a bucket that straddles a transition is never memoised, and
  such instants are computed exactly by zoneinfo).
* Calendar facts of an epoch day are memoised per table (a handful of days are live at once).
* Exceptional periods: per user, the set of md codes and the sorted one-off day intervals on
  which any period may apply (a window crossing midnight adds the next day). Almost every call
  misses both and skips the periods; a hit tests each period in list order (first wins).
* Caller-ID exceptions: per user, a dict exact-number -> first exception index, a dict
  prefix -> first exception index (probed once per distinct prefix length), and the index of
  the first `*`. The smallest index found wins, which is "first matching exception in the list".
* Office hours: per user and per month, sorted disjoint half-open intervals in minute-of-week
  (Monday 00:00 = 0). Each range is split into its part on the starting day ("same") and the
  part after midnight ("spill", on the next weekday, Sunday spilling to Monday). On any day but
  the 1st of a month, the month's merged same+spill intervals answer with one bisect; on the 1st,
  the spill part comes from the previous month's table, since the starting day decides.

The memo dicts are bounded and invisible to callers: a table never changes its answers.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Final
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
from b2bua.rules.numbers import normalize_number, parse_callers

if TYPE_CHECKING:
    from b2bua.config import (
        Config,
        ExceptionalPeriod,
        OfficeHours,
        SystemExtension,
        User,
    )

__all__ = ["RuleBook", "RuleTable", "TableStats", "compile_rules", "local_instant"]

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_NONE: Final = 1 << 30  # "no exception matched" index
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


class _ZoneClock:
    """UTC offset of a zone at an epoch second, memoised in constant-offset 15-minute buckets."""

    __slots__ = ("offsets", "tz")

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.offsets: dict[int, int] = {}

    def _exact(self, seconds: int) -> int:
        offset = datetime.fromtimestamp(seconds, self.tz).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def offset(self, seconds: int) -> int:
        bucket = seconds // 900
        cached = self.offsets.get(bucket)
        if cached is not None:
            return cached
        first = self._exact(bucket * 900)
        if first != self._exact(bucket * 900 + 899):
            return self._exact(seconds)
        if len(self.offsets) >= _MEMO_LIMIT:
            self.offsets.clear()
        self.offsets[bucket] = first
        return first


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
    merged: Intervals  # same + spill (valid when the previous day is in the same month)


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
    return _Hours(_merge(same), _merge(spill), _merge(same + spill))


@dataclass(frozen=True, slots=True)
class _Coverage:
    """The days an exceptional period starts on, and its daily window."""

    mds: frozenset[int]  # yearly entries, as md codes
    oneoff: tuple[tuple[int, int], ...]  # one-off entries, inclusive epoch-day intervals
    whole_day: bool
    start: int
    end: int
    crosses: bool  # the window crosses midnight (end <= start)

    def starts_on(self, md: int, epoch_day: int) -> bool:
        if md in self.mds:
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


def _yearly_mds(first: tuple[int, int, int], last: tuple[int, int, int]) -> set[int]:
    # Walk a leap year (2000) so that 02-29 is included; it only matches in leap years.
    out: set[int] = set()
    d = date(2000, first[1], first[2])
    end = date(2000, last[1], last[2])
    if end < d:
        end = date(2001, last[1], last[2])
    while d <= end:
        out.add(d.month * 32 + d.day)
        d += timedelta(days=1)
    return out


def _epoch_day(y: int, m: int, d: int) -> int:
    return date(y, m, d).toordinal() - _EPOCH_ORDINAL


def _compile_coverage(dates: Sequence[str], start: str | None, end: str | None) -> _Coverage:
    mds: set[int] = set()
    oneoff: list[tuple[int, int]] = []
    for text in dates:
        spec = parse_date_spec(text)
        if spec.yearly:
            mds |= _yearly_mds(spec.first, spec.last)
        else:
            oneoff.append((_epoch_day(*spec.first), _epoch_day(*spec.last)))
    s = 0 if start is None else parse_hhmm(start)
    e = 1440 if end is None else parse_hhmm(end, allow_24=True)
    whole = s == 0 and e == 1440
    merged = _merge((a, b + 1) for a, b in oneoff)  # merge as half-open, store inclusive
    return _Coverage(
        frozenset(mds),
        tuple((a, b - 1) for a, b in zip(*merged, strict=True)),
        whole,
        s,
        e,
        e <= s,
    )


def _next_mds(mds: Iterable[int]) -> set[int]:
    """md codes of the days after these days, in leap and common years."""
    out: set[int] = set()
    for md in mds:
        month, day = divmod(md, 32)
        for year in (2000, 2001):
            try:
                d = date(year, month, day) + timedelta(days=1)
            except ValueError:
                continue
            out.add(d.month * 32 + d.day)
    return out


@dataclass(frozen=True, slots=True)
class _Period:
    name: str
    destination: Destination
    coverage: _Coverage


class _UserRules:
    """One user's compiled rules (see module docstring for the structures)."""

    __slots__ = (
        "clock",
        "closed",
        "country_code",
        "exact",
        "exception_destinations",
        "exception_names",
        "extension",
        "has_exceptions",
        "hours",
        "in_hours",
        "in_hours_rule",
        "oneoff_days",
        "period_mds",
        "periods",
        "prefix_lengths",
        "prefixes",
        "source",
        "star",
        "static",
    )

    def __init__(self, user: User, clock: _ZoneClock, country_code: str, memo: _Memo) -> None:
        self.source = user
        self.extension = user.extension
        self.clock = clock
        self.country_code = country_code
        forward = Destination.from_config(user.forward) if user.forward is not None else None
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
            self.static = (forward, "forward") if forward else (_DEVICES, "schedule_disabled")
        self.closed = Destination.from_config(schedule.closed) if schedule else _DEVICES
        self.periods: tuple[_Period, ...] = ()
        self.period_mds: frozenset[int] = frozenset()
        self.oneoff_days: Intervals = ((), ())
        self.hours: tuple[_Hours | None, ...] = (None,) * 13
        if schedule is not None:
            self.periods = tuple(
                _Period(p.name, Destination.from_config(p.destination), memo.coverage(p))
                for p in schedule.exceptional
            )
            mds: set[int] = set()
            days: list[tuple[int, int]] = []
            for p in self.periods:
                cov = p.coverage
                mds |= cov.mds
                if cov.crosses:
                    mds |= _next_mds(cov.mds)
                days.extend((a, b + (2 if cov.crosses else 1)) for a, b in cov.oneoff)
            self.period_mds = frozenset(mds)
            self.oneoff_days = _merge(days)  # half-open
            self.hours = memo.hours(schedule.hours)
        # Caller-ID exceptions.
        self.exception_destinations = tuple(
            Destination.from_config(e.destination) for e in user.exceptions
        )
        self.exception_names = tuple(e.callers for e in user.exceptions)
        self.has_exceptions = bool(user.exceptions)
        self.star = _NONE
        self.exact: dict[str, int] = {}
        self.prefixes: dict[str, int] = {}
        for index, exc in enumerate(user.exceptions):
            for pattern in parse_callers(exc.callers, country_code):
                if pattern.kind == "any":
                    self.star = min(self.star, index)
                elif pattern.kind == "exact":
                    self.exact.setdefault(pattern.value, index)
                else:
                    self.prefixes.setdefault(pattern.value, index)
        self.prefix_lengths = tuple(sorted({len(p) for p in self.prefixes}))

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
    """Shares identical compiled structures between users while compiling."""

    def __init__(self) -> None:
        self._coverage: dict[tuple[tuple[str, ...], str | None, str | None], _Coverage] = {}
        self._hours: dict[tuple[tuple[int, int, tuple[int, ...]], ...], _Hours] = {}
        self._months: dict[tuple[OfficeHours, ...], tuple[_Hours | None, ...]] = {}

    def coverage(self, p: ExceptionalPeriod) -> _Coverage:
        key = (p.dates, p.start, p.end)
        cov = self._coverage.get(key)
        if cov is None:
            cov = self._coverage[key] = _compile_coverage(p.dates, p.start, p.end)
        return cov

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
        if when.tzinfo is None:
            raise ValueError("decide() needs a timezone-aware datetime")

        # Local time of the callee.
        ts = when.timestamp()
        seconds = int(ts)
        if seconds > ts:
            seconds -= 1
        clock = user.clock
        offset = clock.offsets.get(seconds // 900)
        if offset is None:
            offset = clock.offset(seconds)
        epoch_day, second = divmod(seconds + offset, 86400)
        minute = second // 60
        day = self._days.get(epoch_day)
        if day is None:
            day = self._day(epoch_day)

        # 2. Exceptional periods: first covering period wins.
        if user.periods:
            md = day[2]
            oneoff = user.oneoff_days
            if md in user.period_mds or (
                oneoff[0]
                and (i := bisect_right(oneoff[0], epoch_day)) > 0
                and epoch_day < oneoff[1][i - 1]
            ):
                prev_md = day[4]
                for period in user.periods:
                    if period.coverage.covers(md, prev_md, epoch_day, minute):
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
                    index = user.exact.get(number)
                    if index is not None and index < best:
                        best = index
                    prefixes = user.prefixes
                    for length in user.prefix_lengths:
                        index = prefixes.get(number[:length])
                        if index is not None and index < best:
                            best = index
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
                iv = hours.merged
                i = bisect_right(iv[0], mow)
                inside = i > 0 and mow < iv[1][i - 1]
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

    def iter_users(self) -> Iterator[str]:
        return iter(self._users)


def compile_rules(config: Config) -> RuleTable:
    """Compile the routing rules of every user and system extension of `config`."""
    clocks: dict[str, _ZoneClock] = {}

    def clock(name: str) -> _ZoneClock:
        c = clocks.get(name)
        if c is None:
            c = clocks[name] = _ZoneClock(ZoneInfo(name))
        return c

    memo = _Memo()
    cc = config.server.country_code
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

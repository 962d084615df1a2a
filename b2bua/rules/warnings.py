"""Warnings about a valid configuration whose rules probably do not do what was meant.

`check_warnings(config, today)` is what `b2bua check` prints after compiling, and what the API
returns with every save. Each warning is a `ConfigIssue` pointing at the file and line of the
rule concerned, with a code of b2bua.config.messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from b2bua.config import ConfigIssue, parse_date_spec, parse_hhmm
from b2bua.rules.numbers import parse_callers

if TYPE_CHECKING:
    from b2bua.config import Config, ExceptionalPeriod, User

__all__ = ["check_warnings", "user_warnings"]

# Years in which a yearly period is compared with earlier ones: one common, one leap year.
_PROBE_YEARS = (2027, 2028)


def check_warnings(config: Config, today: date | None = None) -> list[ConfigIssue]:
    """Every warning for `config`; one-off dates are "past" relative to `today` (if given)."""
    out: list[ConfigIssue] = []
    for i in range(len(config.users)):
        out += user_warnings(config, i, today)
    for i, music in enumerate(config.music):
        for j, file in enumerate(music.files):
            if not file.exists():
                path: tuple[str | int, ...] = ("music", i, "files", j)
                out.append(config.problem(path, "file_missing", file=str(file), name=file.name))
    for i, ann in enumerate(config.announcements):
        if not ann.file.exists():
            path = ("announcements", i, "file")
            out.append(config.problem(path, "file_missing", file=str(ann.file), name=ann.file.name))
    return sorted(out, key=lambda issue: issue.line)


def user_warnings(config: Config, index: int, today: date | None = None) -> list[ConfigIssue]:
    """The warnings about `config.users[index]` (what the API returns after a user's save)."""
    user = config.users[index]
    return [
        config.problem(("users", index, *path), code, **params)
        for path, code, params in _user_warnings(user, today, config.server.country_code)
    ]


Warning = tuple[tuple[str | int, ...], str, dict[str, Any]]


def _user_warnings(user: User, today: date | None, country_code: str) -> Iterator[Warning]:
    schedule = user.schedule
    if not user.devices:
        yield ("extension",), "no_devices", {}
    active = schedule is not None and schedule.enabled
    if user.exceptions and not active:
        yield ("exceptions",), "exceptions_inactive", {}
    star_seen: int | None = None
    for j, exc in enumerate(user.exceptions):
        if star_seen is not None:
            params = {"star": star_seen + 1, "number": j + 1, "callers": exc.callers}
            yield ("exceptions", j, "callers"), "exception_unreachable", params
            continue
        patterns = parse_callers(exc.callers, country_code)
        if any(p.kind == "any" for p in patterns):
            star_seen = j
        tokens = exc.callers.split()
        if len(tokens) > 1 and all(p.kind == "exact" and len(p.value) <= 4 for p in patterns):
            yield ("exceptions", j, "callers"), "short_patterns", {"callers": exc.callers}
    if schedule is None:
        return
    if schedule.enabled and not schedule.hours:
        yield ("schedule", "hours"), "no_office_hours", {}
    if not schedule.enabled and schedule.exceptional:
        yield ("schedule", "exceptional"), "exceptional_inactive", {}
    for j, r in enumerate(schedule.hours):
        if parse_hhmm(r.end, allow_24=True) < parse_hhmm(r.start):
            # Valid (a night shift belongs to the day it starts), but an end typed before the
            # start is more often a slip than a night shift.
            yield ("schedule", "hours", j, "end"), "hours_over_midnight", {
                "start": r.start, "end": r.end,
            }  # fmt: skip
        if not r.days:
            yield ("schedule", "hours", j, "days"), "hours_no_days", {}
        if r.months != "all" and not r.months:
            yield ("schedule", "hours", j, "months"), "hours_no_months", {}
    for j, p in enumerate(schedule.exceptional):
        if (
            p.start is not None and p.end is not None
            and parse_hhmm(p.end, allow_24=True) < parse_hhmm(p.start)
        ):  # fmt: skip
            yield ("schedule", "exceptional", j, "end"), "window_over_midnight", {
                "start": p.start, "end": p.end,
            }  # fmt: skip
        if today is not None:
            for k, text in enumerate(p.dates):
                spec = parse_date_spec(text)
                if not spec.yearly and date(*spec.last) < today:
                    params = {"value": text, "today": today.isoformat()}
                    yield ("schedule", "exceptional", j, "dates", k), "date_past", params
        hidden_by = _hidden_by(p, schedule.exceptional[:j])
        if hidden_by is not None:
            names = [schedule.exceptional[i].name for i in hidden_by]
            yield ("schedule", "exceptional", j), "period_hidden", {"names": names}


# Coverage as {date: minute bitmask (bit m = minute m of that day)}.
Coverage = dict[date, int]
_FULL_DAY = (1 << 1440) - 1


def _window_masks(p: ExceptionalPeriod) -> tuple[int, int]:
    """(minutes on the starting day, minutes on the next day) as bitmasks."""
    if p.start is None or p.end is None:
        return _FULL_DAY, 0
    s, e = parse_hhmm(p.start), parse_hhmm(p.end, allow_24=True)
    if e > s:
        return ((1 << e) - 1) ^ ((1 << s) - 1), 0
    return _FULL_DAY ^ ((1 << s) - 1), (1 << e) - 1


def _start_days(p: ExceptionalPeriod, years: Sequence[int]) -> Iterator[date]:
    for text in p.dates:
        spec = parse_date_spec(text)
        if spec.yearly:
            for year in years:
                first = _safe_date(year, spec.first[1], spec.first[2])
                last_year = year + 1 if spec.crosses_new_year else year
                last = _safe_date(last_year, spec.last[1], spec.last[2], end=True)
                yield from _days(first, last)
        else:
            first, last = date(*spec.first), date(*spec.last)
            if (last - first).days <= 3660:  # longer one-off ranges are not analysed
                yield from _days(first, last)


def _safe_date(year: int, month: int, day: int, end: bool = False) -> date:
    try:
        return date(year, month, day)
    except ValueError:  # 02-29 in a common year
        return date(year, 2, 28) if end else date(year, 3, 1)


def _days(first: date, last: date) -> Iterator[date]:
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


def _coverage(p: ExceptionalPeriod, years: Sequence[int]) -> Coverage:
    same, spill = _window_masks(p)
    cov: Coverage = {}
    for d in _start_days(p, years):
        cov[d] = cov.get(d, 0) | same
        if spill:
            n = d + timedelta(days=1)
            cov[n] = cov.get(n, 0) | spill
    return cov


def _hidden_by(p: ExceptionalPeriod, earlier: Sequence[ExceptionalPeriod]) -> list[int] | None:
    """Indexes of the earlier periods that together cover all of `p`, or None if not hidden."""
    if not earlier:
        return None
    yearly = any(parse_date_spec(t).yearly for t in p.dates)
    if yearly:
        # A yearly period can only be hidden by yearly ones: check a common and a leap year,
        # with the neighbouring years for ranges crossing New Year.
        probes: list[tuple[int, ...]] = [(y,) for y in _PROBE_YEARS]
    else:
        years = sorted(
            {parse_date_spec(t).first[0] for t in p.dates}
            | {parse_date_spec(t).last[0] for t in p.dates}
        )
        probes = [tuple(years)]
    used: set[int] = set()
    for probe in probes:
        mine = _coverage(p, probe)
        if not mine:
            return None
        around = tuple(range(min(probe) - 1, max(probe) + 2))
        union: Coverage = {}
        contributors: list[tuple[int, Coverage]] = []
        for i, q in enumerate(earlier):
            if yearly and not all(parse_date_spec(t).yearly for t in q.dates):
                q_cov = _coverage_yearly_only(q, around)
            else:
                q_cov = _coverage(q, around)
            contributors.append((i, q_cov))
            for d, mask in q_cov.items():
                union[d] = union.get(d, 0) | mask
        for d, mask in mine.items():
            if mask & ~union.get(d, 0):
                return None
        for i, q_cov in contributors:
            if any(mine[d] & q_cov.get(d, 0) for d in mine):
                used.add(i)
    return sorted(used)


def _coverage_yearly_only(p: ExceptionalPeriod, years: Sequence[int]) -> Coverage:
    yearly_dates = tuple(t for t in p.dates if parse_date_spec(t).yearly)
    if not yearly_dates:
        return {}
    return _coverage(p.model_copy(update={"dates": yearly_dates}), years)

"""Human-readable traces of decisions ("why did my call go to voicemail?").

Computed only when `Decision.trace` is read. Each rule is listed in priority order with its
verdict at the call's local time; rules after the winner are listed as not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from b2bua.config import WEEKDAYS, parse_hhmm
from b2bua.rules.compiler import day_facts
from b2bua.rules.model import Decision
from b2bua.rules.numbers import normalize_number, parse_callers

if TYPE_CHECKING:
    from b2bua.config import ExceptionalPeriod, OfficeHours
    from b2bua.rules.compiler import _SystemRules, _UserRules

__all__ = ["describe_hours", "describe_period", "explain_system", "explain_user"]

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # as %a gives them in the C locale
# Every call record stores its decision's trace: a caller's number is normalised once.
_normalized = lru_cache(maxsize=8192)(normalize_number)
_EPOCH_ORDINAL = 719163


def _runs(indexes: Sequence[int], names: Sequence[str]) -> str:
    """[0, 1, 2, 4] -> 'mon-wed,fri'."""
    out: list[str] = []
    values = sorted(set(indexes))
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(names[values[i]] if i == j else f"{names[values[i]]}-{names[values[j]]}")
        i = j + 1
    return ",".join(out) if out else "no days"


def describe_hours(r: OfficeHours) -> str:
    """`08:30-12:30 mon-fri` (plus `in jan-mar` when not every month)."""
    days = _runs([WEEKDAYS.index(d) for d in r.days], WEEKDAYS)
    text = f"{r.start}-{r.end} {days}"
    if r.months != "all":
        text += " in " + _runs([m - 1 for m in r.months], _MONTHS)
    return text


def describe_period(p: ExceptionalPeriod) -> str:
    """`'Vacances annuelles' (12-20..01-05 08:00-17:00)`."""
    window = f" {p.start}-{p.end}" if p.start is not None and p.end is not None else ""
    return f"{p.name!r} ({', '.join(p.dates)}{window})"


def _stamp(local: datetime, zone: str) -> str:
    """`2026-11-23 08:05 Europe/Paris` (formatted by hand: strftime costs more)."""
    return (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d} "
        f"{local.hour:02d}:{local.minute:02d} {zone}"
    )


def _offset(local: datetime) -> str:
    off = local.utcoffset()
    if off is None:
        return ""
    minutes = int(off.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _caller_text(caller: str, number: str) -> str:
    if not number:
        return f"anonymous caller ({caller!r})" if caller else "anonymous caller"
    return caller if number == caller else f"{caller} (as {number})"


def _hours_cover(r: OfficeHours, local: datetime, prev: tuple[int, int]) -> bool:
    start, end = parse_hhmm(r.start), parse_hhmm(r.end, allow_24=True)
    minute = local.hour * 60 + local.minute
    days = {WEEKDAYS.index(d) for d in r.days}

    def active(weekday: int, month: int) -> bool:
        return weekday in days and (r.months == "all" or month in r.months)

    if end > start:
        return active(local.weekday(), local.month) and start <= minute < end
    if minute >= start and active(local.weekday(), local.month):
        return True
    return minute < end and active(*prev)


def explain_user(
    rules: _UserRules, decision: Decision, caller: str, when: datetime
) -> tuple[str, ...]:
    """The trace of a decision for a user extension."""
    user = rules.source
    zone = str(rules.clock.tz.key)
    local = when.astimezone(rules.clock.tz)
    stamp = _stamp(local, zone)
    number = _normalized(caller, rules.country_code)
    lines = [
        f"call to {user.extension} ({user.name}) from {_caller_text(caller, number)} "
        f"at {_DAYS[local.weekday()]} {stamp} ({_offset(local)})"
    ]
    forward = rules.in_hours if rules.in_hours_rule == "forward" else None
    schedule = user.schedule
    if schedule is None or not schedule.enabled:
        what = "no schedule set" if schedule is None else "schedule disabled"
        lines.append(
            f"{what}: exceptional periods, caller-ID exceptions and office hours are not checked"
        )
        if forward is not None:
            lines.append(f"manual forward set: {forward.describe()}")
        else:
            lines.append("no manual forward: ring all devices")
    else:
        won = False
        epoch_day = local.toordinal() - _EPOCH_ORDINAL
        facts = day_facts(epoch_day)
        minute = local.hour * 60 + local.minute
        for period, compiled in zip(schedule.exceptional, rules.periods, strict=True):
            head = f"exceptional {describe_period(period)}"
            if won:
                lines.append(f"{head}: not checked (an earlier rule applies)")
            elif compiled.coverage.covers(facts[2], facts[4], epoch_day, minute):
                won = True
                lines.append(f"{head}: active at {stamp} -> {compiled.destination.describe()}")
            else:
                lines.append(f"{head}: not active at {stamp}")
        if not schedule.exceptional:
            lines.append("exceptional periods: none")
        for index, exc in enumerate(user.exceptions):
            head = f"exception #{index + 1} (callers {exc.callers!r})"
            dest = rules.exception_destinations[index]
            if won:
                lines.append(f"{head}: not checked (an earlier rule applies)")
                continue
            hit = next(
                (p for p in parse_callers(exc.callers, rules.country_code) if p.matches(number)),
                None,
            )
            if hit is not None:
                won = True
                how = "every caller" if hit.kind == "any" else f"pattern {hit.text!r}"
                lines.append(f"{head}: matches ({how}) -> {dest.describe()}")
            elif not number:
                lines.append(f"{head}: does not match (an anonymous caller matches only '*')")
            else:
                lines.append(f"{head}: does not match {number}")
        if not user.exceptions:
            lines.append("caller-ID exceptions: none")
        in_text = (
            f"; manual forward set -> {rules.in_hours.describe()}"
            if rules.in_hours_rule == "forward"
            else " -> ring all devices"
        )
        if won:
            lines.append("office hours: not checked (an earlier rule applies)")
        elif not schedule.hours:
            lines.append("office hours: none set")
        else:
            prev = (facts[0] - 1) % 7, facts[3]
            hit_range = next((r for r in schedule.hours if _hours_cover(r, local, prev)), None)
            if hit_range is not None:
                won = True
                lines.append(f"office hours: inside {describe_hours(hit_range)}{in_text}")
            else:
                ranges = "; ".join(describe_hours(r) for r in schedule.hours)
                lines.append(f"office hours: outside ({ranges}) at {local:%a %H:%M}")
        closed = rules.closed.describe()
        if won:
            lines.append(f"closed destination ({closed}): not used")
        else:
            lines.append(f"closed destination applies: {closed}")
    name = f" {decision.rule_name!r}" if decision.rule_name is not None else ""
    lines.append(f"decision: {decision.rule}{name} -> {decision.destination.describe()}")
    return tuple(lines)


def explain_system(
    rules: _SystemRules, decision: Decision, caller: str, when: datetime
) -> tuple[str, ...]:
    """The trace of a decision for a system extension (ring group)."""
    ext = rules.source
    local = when.astimezone(rules.tz)
    members = ", ".join(ext.members)
    return (
        f"call to {ext.extension} ({ext.name}) from {caller or 'anonymous caller'} "
        f"at {_DAYS[local.weekday()]} {_stamp(local, str(rules.tz.key))}",
        f"{ext.extension} is a system extension ({ext.kind.replace('_', ' ')}): no schedule, "
        f"ring its members {members}",
        f"decision: {decision.rule} -> {decision.destination.describe()}",
    )

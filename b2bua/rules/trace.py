"""Traces of decisions as data ("why did my call go to voicemail?").

Computed only when `Decision.steps` (or `.trace`) is read. Each rule is listed in priority
order with its verdict at the call's local time; rules after the winner are listed as not
checked. A step is a code and plain parameters (b2bua.rules.model.Step); b2bua.rules.i18n
words it in English or French. The codes and their parameters are listed in docs/rules.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from b2bua.config import WEEKDAYS, parse_hhmm
from b2bua.rules.compiler import day_facts
from b2bua.rules.model import Decision, Step
from b2bua.rules.numbers import normalize_number, parse_callers

if TYPE_CHECKING:
    from b2bua.config import ExceptionalPeriod, OfficeHours
    from b2bua.rules.compiler import _SystemRules, _UserRules

__all__ = ["explain_system", "explain_user", "hours_params", "period_params"]

# Every call record stores its decision's trace: a caller's number is normalised once.
_normalized = lru_cache(maxsize=8192)(normalize_number)
_EPOCH_ORDINAL = 719163


def hours_params(r: OfficeHours) -> dict[str, Any]:
    """An office-hours range as step parameters."""
    return {
        "start": r.start,
        "end": r.end,
        "days": list(r.days),
        "months": r.months if r.months == "all" else list(r.months),
    }


def period_params(number: int, p: ExceptionalPeriod) -> dict[str, Any]:
    """An exceptional period as step parameters (`number` counts from 1)."""
    return {"number": number, "name": p.name, "dates": list(p.dates), "start": p.start,
            "end": p.end}  # fmt: skip


def _moment(local: datetime, zone: str) -> dict[str, Any]:
    """When, in the callee's zone: weekday (0 = Monday), date, time and zone."""
    return {
        "weekday": local.weekday(),
        "date": f"{local.year:04d}-{local.month:02d}-{local.day:02d}",
        "time": f"{local.hour:02d}:{local.minute:02d}",
        "zone": zone,
    }


def _offset(local: datetime) -> str:
    off = local.utcoffset()
    if off is None:
        return ""
    minutes = int(off.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


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


def _decision_step(decision: Decision) -> Step:
    return Step("decision", {
        "rule": decision.rule,
        "rule_name": decision.rule_name,
        "destination": decision.destination.to_config_dict(),
    })  # fmt: skip


def explain_user(
    rules: _UserRules, decision: Decision, caller: str, when: datetime
) -> tuple[Step, ...]:
    """The steps of a decision for a user extension."""
    user = rules.source
    zone = str(rules.clock.tz.key)
    local = when.astimezone(rules.clock.tz)
    moment = _moment(local, zone)
    number = _normalized(caller, rules.country_code)
    steps = [
        Step("call", {
            "extension": user.extension, "name": user.name, "caller": caller, "number": number,
            **moment, "offset": _offset(local),
        })
    ]  # fmt: skip
    forward = rules.in_hours if rules.in_hours_rule == "forward" else None
    schedule = user.schedule
    if schedule is None or not schedule.enabled:
        steps.append(Step("schedule_off", {"reason": "none" if schedule is None else "disabled"}))
        if forward is not None:
            steps.append(Step("forward_set", {"destination": forward.to_config_dict()}))
        else:
            steps.append(Step("ring_devices", {}))
        steps.append(_decision_step(decision))
        return tuple(steps)
    won = False
    epoch_day = local.toordinal() - _EPOCH_ORDINAL
    facts = day_facts(epoch_day)
    minute = local.hour * 60 + local.minute
    for number_p, (period, compiled) in enumerate(
        zip(schedule.exceptional, rules.periods, strict=True), start=1
    ):
        params = period_params(number_p, period)
        if won:
            steps.append(Step("period_skipped", params))
        elif compiled.coverage.covers(facts[2], facts[4], epoch_day, minute):
            won = True
            params.update(moment, destination=compiled.destination.to_config_dict())
            steps.append(Step("period_active", params))
        else:
            params.update(moment)
            steps.append(Step("period_inactive", params))
    if not schedule.exceptional:
        steps.append(Step("periods_none", {}))
    for index, exc in enumerate(user.exceptions):
        head: dict[str, Any] = {"number": index + 1, "callers": exc.callers}
        if won:
            steps.append(Step("exception_skipped", head))
            continue
        hit = next(
            (p for p in parse_callers(exc.callers, rules.country_code) if p.matches(number)),
            None,
        )
        if hit is not None:
            won = True
            dest = rules.exception_destinations[index]
            steps.append(Step("exception_match", {
                **head, "pattern": None if hit.kind == "any" else hit.text,
                "destination": dest.to_config_dict(),
            }))  # fmt: skip
        elif not number:
            steps.append(Step("exception_anonymous", head))
        else:
            steps.append(Step("exception_no_match", {**head, "caller_number": number}))
    if not user.exceptions:
        steps.append(Step("exceptions_none", {}))
    if won:
        steps.append(Step("hours_skipped", {}))
    elif not schedule.hours:
        steps.append(Step("hours_none", {}))
    else:
        prev = (facts[0] - 1) % 7, facts[3]
        hit_range = next((r for r in schedule.hours if _hours_cover(r, local, prev)), None)
        if hit_range is not None:
            won = True
            steps.append(Step("hours_inside", {
                "range": hours_params(hit_range),
                "forward": forward.to_config_dict() if forward is not None else None,
            }))  # fmt: skip
        else:
            steps.append(Step("hours_outside", {
                "ranges": [hours_params(r) for r in schedule.hours],
                "weekday": moment["weekday"], "time": moment["time"],
            }))  # fmt: skip
    closed = {"destination": rules.closed.to_config_dict()}
    steps.append(Step("closed_unused" if won else "closed_applies", closed))
    steps.append(_decision_step(decision))
    return tuple(steps)


def explain_system(
    rules: _SystemRules, decision: Decision, caller: str, when: datetime
) -> tuple[Step, ...]:
    """The steps of a decision for a system extension (ring group)."""
    ext = rules.source
    local = when.astimezone(rules.tz)
    members: Sequence[str] = ext.members
    return (
        Step("system_call", {
            "extension": ext.extension, "name": ext.name, "caller": caller,
            **_moment(local, str(rules.tz.key)),
        }),
        Step("system_ring", {"extension": ext.extension, "kind": ext.kind,
                             "members": list(members)}),
        _decision_step(decision),
    )  # fmt: skip

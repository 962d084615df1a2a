"""The compiled table agrees with a deliberately naive evaluator on random configurations.

The reference below reads the configuration models directly, converts the instant with
`astimezone`, and tests each rule literally as DESIGN.md states it: no bitsets, no memo, no
month-day codes, no dict indexes. Hypothesis draws configurations and instants (biased towards
midnight, month and year ends, and DST changes) and both must always agree.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from b2bua.config import Config, config_from_dict
from b2bua.rules import Decision, RuleTable, compile_rules, local_instant

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ZONES = [
    "Europe/Paris",
    "America/New_York",
    "UTC",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Asia/Kathmandu",  # +05:45
    "America/St_Johns",  # -03:30 with DST
]
CALLERS = [
    "0612345678",
    "+33 6 12 34 56 78",
    "0033612345678",
    "06.12.34.56.78",
    "0712345678",
    "+44 7911 123456",
    "1002",
    "",
    "anonymous",
    "0499999999",
]
PATTERNS = [
    "*",
    "06*",
    "+336*",
    "0612345678",
    "0612345678*",
    "07*",
    "+44*",
    "0033 6*",
    "1002",
    "04* 07*",
    "0*",
]
DESTINATIONS = [
    {"kind": "busy"},
    {"kind": "voicemail"},
    {"kind": "devices"},
    {"kind": "mobile", "bounce": True},
    {"kind": "external", "number": "0611111111"},
    {"kind": "extension", "extension": "1002"},
    {"kind": "announcement", "message": "closed"},
]


# ---------------------------------------------------------------------------------------------
# The naive reference


def ref_normalize(number: str, cc: str) -> str:
    n = number.strip()
    if n.lower().startswith(("sip:", "sips:", "tel:")):
        n = re.split(r"[@;]", n.split(":", 1)[1])[0]
    if n.lower() in (
        "",
        "anonymous",
        "unknown",
        "private",
        "restricted",
        "unavailable",
        "withheld",
    ):
        return ""
    n = n.replace("(0)", "")
    n = "".join(ch for ch in n if ch not in " \t.-/()")
    if n.startswith("00"):
        n = "+" + n[2:]
    if n.startswith("+" + cc):
        n = "0" + n[1 + len(cc) :]
    return n


def ref_matches(callers: str, number: str, cc: str) -> bool:
    for token in callers.split():
        if token == "*":
            return True
        if not number:
            continue
        if token.endswith("*"):
            if number.startswith(ref_normalize(token[:-1], cc)):
                return True
        elif number == ref_normalize(token, cc):
            return True
    return False


def minutes(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def date_matches(spec: str, day: date) -> bool:
    first, _, last = spec.partition("..")
    last = last or first
    if len(first) == 5:  # yearly MM-DD
        a = (int(first[:2]), int(first[3:]))
        b = (int(last[:2]), int(last[3:]))
        d = (day.month, day.day)
        return a <= d <= b if a <= b else (d >= a or d <= b)
    return date.fromisoformat(first) <= day <= date.fromisoformat(last)


def in_window(start_day_ok: bool, prev_day_ok: bool, s: int, e: int, m: int) -> bool:
    """A window [s, e) that, when e <= s, continues after midnight on the next day."""
    if e > s:
        return start_day_ok and s <= m < e
    return (start_day_ok and m >= s) or (prev_day_ok and m < e)


def ref_decide(config: Config, callee: str, caller: str, when: datetime) -> tuple[Any, str, Any]:
    user = next(u for u in config.users if u.extension == callee)
    schedule = user.schedule
    forward = user.forward.to_config_dict() if user.forward else None
    if schedule is None or not schedule.enabled:
        return (
            (forward, "forward", None)
            if forward
            else ({"kind": "devices"}, "schedule_disabled", None)
        )
    local = when.astimezone(ZoneInfo(user.timezone or "UTC"))
    today = local.date()
    yesterday = today - timedelta(days=1)
    m = local.hour * 60 + local.minute
    for p in schedule.exceptional:
        on_today = any(date_matches(d, today) for d in p.dates)
        on_yesterday = any(date_matches(d, yesterday) for d in p.dates)
        s = minutes(p.start) if p.start else 0
        e = minutes(p.end) if p.end else 1440
        if in_window(on_today, on_yesterday, s, e, m):
            return (p.destination.to_config_dict(), "exceptional", p.name)
    cc = config.server.country_code
    number = ref_normalize(caller, cc)
    for exc in user.exceptions:
        if ref_matches(exc.callers, number, cc):
            return (exc.destination.to_config_dict(), "exception", exc.callers)
    for r in schedule.hours:

        def active(day: date, r: Any = r) -> bool:
            return WEEKDAYS[day.weekday()] in r.days and (
                r.months == "all" or day.month in r.months
            )

        if in_window(active(today), active(yesterday), minutes(r.start), minutes(r.end), m):
            if forward:
                return (forward, "forward", None)
            return ({"kind": "devices"}, "office_hours", None)
    return (schedule.closed.to_config_dict(), "closed", None)


# ---------------------------------------------------------------------------------------------
# Strategies


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


times = st.one_of(
    st.sampled_from([0, 60, 120, 150, 180, 360, 480, 510, 720, 1020, 1320, 1410, 1439]),
    st.integers(0, 1439),
)
end_times = st.one_of(times, st.just(1440))


@st.composite
def hour_ranges(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(times)
    end = draw(end_times.filter(lambda e: e != start))
    days = draw(st.lists(st.sampled_from(WEEKDAYS), min_size=2, max_size=7, unique=True))
    months: Any = draw(
        st.one_of(st.just("all"), st.lists(st.integers(1, 12), max_size=12, unique=True))
    )
    return {"start": hhmm(start), "end": hhmm(end), "days": days, "months": months}


@st.composite
def date_specs(draw: st.DrawFn) -> str:
    month, day = draw(st.integers(1, 12)), draw(st.integers(1, 31))
    day = min(day, [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1])
    kind = draw(st.sampled_from(["yearly", "yearly-range", "one-off", "one-off-range"]))
    if kind.startswith("yearly"):
        first = f"{month:02d}-{day:02d}"
        if kind == "yearly":
            return first
        other = date(2000, month, day) + timedelta(days=draw(st.integers(0, 40)))
        return f"{first}..{other:%m-%d}"
    year = draw(st.integers(2025, 2027))
    if month == 2 and day == 29 and year != 2028:
        day = 28
    first_d = date(year, month, day)
    if kind == "one-off":
        return first_d.isoformat()
    length = draw(st.integers(0, 40) | st.integers(300, 800))  # (a year or more: every day)
    return f"{first_d.isoformat()}..{first_d + timedelta(days=length)}"


@st.composite
def periods(draw: st.DrawFn, index: int) -> dict[str, Any]:
    p: dict[str, Any] = {
        "name": f"P{index}",
        "dates": draw(st.lists(date_specs(), min_size=1, max_size=3)),
        "destination": draw(st.sampled_from(DESTINATIONS)),
    }
    if draw(st.booleans()):
        start = draw(times)
        p["start"] = hhmm(start)
        p["end"] = hhmm(draw(end_times.filter(lambda e: e != start)))
    return p


@st.composite
def configs(
    draw: st.DrawFn, hours_only: bool = False, periods_only: bool = False, max_periods: int = 4
) -> dict[str, Any]:
    n_periods = 0 if hours_only else draw(st.integers(int(periods_only), max_periods))
    user: dict[str, Any] = {
        "extension": "1001",
        "name": "Alice",
        "secret": "s",
        "mobile": "0600000001",
        "timezone": draw(st.sampled_from(ZONES)),
        "exceptions": [
            {
                "callers": draw(st.sampled_from(PATTERNS)),
                "destination": draw(st.sampled_from(DESTINATIONS)),
            }
            for _ in range(0 if hours_only or periods_only else draw(st.integers(0, 4)))
        ],
    }
    if draw(st.booleans()):
        user["forward"] = draw(st.sampled_from(DESTINATIONS[:2] + DESTINATIONS[3:]))
    focused = hours_only or periods_only
    if focused or draw(st.integers(0, 9)) > 0:
        user["schedule"] = {
            "enabled": focused or draw(st.integers(0, 9)) > 0,
            "closed": draw(st.sampled_from(DESTINATIONS)),
            "hours": draw(st.lists(hour_ranges(), min_size=int(hours_only), max_size=4)),
            "exceptional": [draw(periods(i)) for i in range(n_periods)],
        }
    return {
        "server": {"domain": "pbx.test", "timezone": "Europe/Paris", "country_code": "33"},
        "users": [user, {"extension": "1002", "name": "Bruno", "secret": "s"}],
    }


def _transitions() -> list[datetime]:
    out = []
    for zone in ZONES:
        tz = ZoneInfo(zone)
        t = datetime(2025, 1, 1, tzinfo=UTC)
        before = t.astimezone(tz).utcoffset()
        while t < datetime(2028, 1, 1, tzinfo=UTC):
            nxt = t + timedelta(hours=1)
            after = nxt.astimezone(tz).utcoffset()
            if after != before:
                out.append(nxt)
            before, t = after, nxt
    return out


TRANSITIONS = _transitions()

month_turns = st.builds(  # around midnight at the turn of a month (and year), in every zone
    lambda y, mo, h, mi: datetime(y, mo, 1, 0, mi, tzinfo=UTC) + timedelta(hours=h),
    st.integers(2025, 2027),
    st.integers(1, 12),
    st.integers(-15, 15),
    st.sampled_from([0, 1, 29, 30, 44, 45, 59]),
)

instants = st.one_of(
    st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    st.builds(
        lambda t, d: t + timedelta(minutes=d),
        st.sampled_from(TRANSITIONS),
        st.integers(-90, 90),
    ),
    month_turns,
)


def agrees(table: RuleTable, config: Any, caller: str, instant: datetime) -> Decision:
    """table's decision for 1001, after checking it against the reference evaluator's."""
    decision = table.decide("1001", caller, instant)
    got = (decision.destination.to_config_dict(), decision.rule, decision.rule_name)
    assert got == ref_decide(config, "1001", caller, instant), instant
    return decision


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=configs(), caller=st.sampled_from(CALLERS), when=st.lists(instants, min_size=1, max_size=8)
)
def test_compiled_table_agrees_with_reference(
    data: dict[str, Any], caller: str, when: list[datetime]
) -> None:
    config = config_from_dict(data)
    table = compile_rules(config)
    for instant in when:
        decision = agrees(table, config, caller, instant)
        event(decision.rule)
        assert decision.trace[-1].startswith(f"decision: {decision.rule}")
        assert table.decide("1001", caller, instant.timestamp()) == decision  # epoch seconds


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=configs(hours_only=True), when=st.lists(month_turns, min_size=1, max_size=12))
def test_office_hours_at_month_turns_agree_with_reference(
    data: dict[str, Any], when: list[datetime]
) -> None:
    config = config_from_dict(data)
    table = compile_rules(config)
    for instant in when:
        agrees(table, config, "0499999999", instant)


@settings(max_examples=500, deadline=None)
@given(
    patterns=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=15),
    caller=st.sampled_from(CALLERS),
)
def test_exception_order_agrees_with_reference(patterns: list[str], caller: str) -> None:
    data = {
        "server": {"domain": "pbx.test", "country_code": "33"},
        "users": [
            {
                "extension": "1001",
                "name": "Alice",
                "secret": "s",
                "schedule": {"closed": {"kind": "voicemail"}},
                "exceptions": [{"callers": p, "destination": {"kind": "busy"}} for p in patterns],
            }
        ],
    }
    config = config_from_dict(data)
    when = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    agrees(compile_rules(config), config, caller, when)


def _near_dates(config: Config, draw: st.DrawFn) -> datetime:
    """An instant on, just before or just after one of the user's period dates."""
    user = config.users[0]
    assert user.schedule is not None
    period = draw(st.sampled_from(user.schedule.exceptional))
    spec = draw(st.sampled_from(period.dates))
    edge = draw(st.sampled_from(spec.split("..")))
    if len(edge) == 5:
        year = draw(st.integers(2025, 2028))
        month, day = int(edge[:2]), int(edge[3:])
        if (month, day) == (2, 29):
            year = 2028
        base = date(year, month, day)
    else:
        base = date.fromisoformat(edge)
    day_ = base + timedelta(days=draw(st.integers(-1, 2)))
    minute = draw(
        st.sampled_from([0, 1, 59, 60, 479, 480, 1019, 1020, 1320, 1439]) | st.integers(0, 1439)
    )
    local = datetime(day_.year, day_.month, day_.day, minute // 60, minute % 60)
    return local_instant(local, ZoneInfo(user.timezone or "UTC"))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=configs(periods_only=True), st_data=st.data())
def test_exceptional_periods_at_their_edges_agree_with_reference(
    data: dict[str, Any], st_data: st.DataObject
) -> None:
    config = config_from_dict(data)
    table = compile_rules(config)
    for _ in range(6):
        instant = _near_dates(config, st_data.draw)
        agrees(table, config, "0499999999", instant)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=configs(periods_only=True, max_periods=40), st_data=st.data())
def test_many_overlapping_periods_agree_with_reference(
    data: dict[str, Any], st_data: st.DataObject
) -> None:
    # More than 8, 16 or 32 periods: the compiled day masks hold wider sets of candidates.
    config = config_from_dict(data)
    table = compile_rules(config)
    for _ in range(8):
        instant = _near_dates(config, st_data.draw)
        agrees(table, config, "0499999999", instant)


@settings(max_examples=200, deadline=None)
@given(data=configs(), caller=st.sampled_from(CALLERS), when=instants)
def test_trace_verdicts_agree_with_decision(
    data: dict[str, Any], caller: str, when: datetime
) -> None:
    config = config_from_dict(data)
    decision = compile_rules(config).decide("1001", caller, when)
    trace = decision.trace
    winners = [line for line in trace[1:-1] if "->" in line and "not used" not in line]
    if decision.rule in ("exceptional", "exception"):
        assert len(winners) == 1
        assert winners[0].startswith(decision.rule)
    if decision.rule == "closed":
        assert trace[-2].startswith("closed destination applies")

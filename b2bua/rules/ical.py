"""iCalendar (RFC 5545) export and import of exceptional periods.

Export: each entry of a period's `dates` becomes one VEVENT (SUMMARY = the period's name):

* whole days: all-day events (`DTSTART;VALUE=DATE`, exclusive `DTEND`), yearly entries with
  `RRULE:FREQ=YEARLY` starting in the given base year;
* a daily window on one-off dates: a timed event in the user's zone, repeated
  `RRULE:FREQ=DAILY;COUNT=n` over a range;
* a daily window on yearly dates: a timed event with `RRULE:FREQ=YEARLY;BYMONTH=m;BYMONTHDAY=...`
  (one event per month the range touches).

The destination travels in `X-B2BUA-DESTINATION` (JSON) so that an exported file imports back to
the same periods; a VTIMEZONE describing the user's zone (this year's rules) is included when
there are timed events.

Import reads what public-holiday calendars publish: all-day events (`VALUE=DATE`, `DTEND`
exclusive, or `DURATION`), timed events (`TZID`, UTC `Z` or floating times, converted to the
user's zone), `RRULE:FREQ=YEARLY` (fixed date every year; with COUNT/UNTIL the occurrences are
listed as one-off dates), `RRULE:FREQ=DAILY` with COUNT/UNTIL, folded lines and escaped text.
Events it cannot express (other recurrence rules, cancelled events) are skipped with a warning.
Events with the same name, window and destination are merged into one period.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from b2bua.config import parse_date_spec, parse_hhmm

if TYPE_CHECKING:
    from b2bua.config import ExceptionalPeriod, User

__all__ = ["IcsImport", "IcsNote", "IcsProblem", "export_ics", "import_ics", "periods_to_toml"]

_PRODID = "-//b2bua//exceptional periods//EN"
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


# --------------------------------------------------------------------------------------------
# Writing


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> list[str]:
    """Split a content line into 75-octet pieces (RFC 5545 §3.1), never inside a character."""
    out: list[str] = []
    current = ""
    size = 0
    limit = 75
    for ch in line:
        n = len(ch.encode("utf-8"))
        if size + n > limit:
            out.append(current)
            current, size, limit = " ", 1, 75
        current += ch
        size += n
    out.append(current)
    return out


def _d(d: date) -> str:
    return f"{d:%Y%m%d}"


def _dt(d: date, minutes: int) -> str:
    d = d + timedelta(days=minutes // 1440)
    m = minutes % 1440
    return f"{d:%Y%m%d}T{m // 60:02d}{m % 60:02d}00"


def _offset(seconds: float) -> str:
    s = int(seconds)
    sign = "+" if s >= 0 else "-"
    s = abs(s)
    text = f"{sign}{s // 3600:02d}{s % 3600 // 60:02d}"
    return text + (f"{s % 60:02d}" if s % 60 else "")


def _vtimezone(tz: ZoneInfo, year: int) -> list[str]:
    """A VTIMEZONE with this year's transitions expressed as yearly rules."""
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tz.key}"]
    t = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    before = t.astimezone(tz).utcoffset() or timedelta(0)
    found = False
    while t < end:
        nxt = t + timedelta(minutes=15)
        after = nxt.astimezone(tz).utcoffset() or timedelta(0)
        if after != before:
            found = True
            wall = (nxt + before).replace(tzinfo=None)  # local time just before the change
            kind = "DAYLIGHT" if after > before else "STANDARD"
            nth = (wall.day - 1) // 7 + 1
            last = (wall + timedelta(days=7)).month != wall.month
            byday = f"{-1 if last else nth}{_WEEKDAYS[wall.weekday()]}"
            lines += [
                f"BEGIN:{kind}",
                f"DTSTART:{wall:%Y%m%dT%H%M%S}",
                f"TZOFFSETFROM:{_offset(before.total_seconds())}",
                f"TZOFFSETTO:{_offset(after.total_seconds())}",
                f"TZNAME:{nxt.astimezone(tz).tzname()}",
                f"RRULE:FREQ=YEARLY;BYMONTH={wall.month};BYDAY={byday}",
                f"END:{kind}",
            ]
            before = after
        t = nxt
    if not found:
        off = _offset(before.total_seconds())
        lines += [
            "BEGIN:STANDARD",
            "DTSTART:19700101T000000",
            f"TZOFFSETFROM:{off}",
            f"TZOFFSETTO:{off}",
            f"TZNAME:{datetime(year, 1, 1, tzinfo=tz).tzname()}",
            "END:STANDARD",
        ]
    lines.append("END:VTIMEZONE")
    return lines


def _valid(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def export_ics(user: User, *, domain: str, now: datetime, year: int | None = None) -> str:
    """The user's exceptional periods as an iCalendar file (CRLF line ends).

    `now` stamps the events (DTSTAMP); yearly entries start in `year` (default: now's year).
    """
    base_year = year if year is not None else now.year
    tz = ZoneInfo(user.tz)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    events: list[list[str]] = []
    timed = False
    periods = user.schedule.exceptional if user.schedule is not None else ()
    for j, period in enumerate(periods):
        for k, text in enumerate(period.dates):
            for n, body in enumerate(_event_bodies(period, text, tz, base_year)):
                timed = timed or period.start is not None
                events.append(
                    [
                        "BEGIN:VEVENT",
                        f"UID:{user.extension}-{j}-{k}-{n}@{domain}",
                        f"DTSTAMP:{stamp}",
                        f"SUMMARY:{_escape(period.name)}",
                        *body,
                        "X-B2BUA-DESTINATION:"
                        + _escape(json.dumps(period.destination.to_config_dict(), sort_keys=True)),
                        "TRANSP:TRANSPARENT",
                        "END:VEVENT",
                    ]
                )
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{_PRODID}",
        "CALSCALE:GREGORIAN",
        f"X-WR-CALNAME:{_escape(f'{user.name} ({user.extension})')}",
        f"X-WR-TIMEZONE:{tz.key}",
    ]
    if timed:
        lines += _vtimezone(tz, base_year)
    for event in events:
        lines += event
    lines.append("END:VCALENDAR")
    return "".join(piece + "\r\n" for line in lines for piece in _fold(line))


def _event_bodies(period: ExceptionalPeriod, text: str, tz: ZoneInfo, year: int) -> list[list[str]]:
    spec = parse_date_spec(text)
    if spec.yearly:
        # A range across New Year starts the year before, so that its January part shows
        # in the base year too.
        y = year - 1 if spec.crosses_new_year else year
        while not (
            _valid(y, *spec.first[1:]) and _valid(y + spec.crosses_new_year, *spec.last[1:])
        ):
            y += 1
        first = date(y, spec.first[1], spec.first[2])
        last = date(y + spec.crosses_new_year, spec.last[1], spec.last[2])
    else:
        first, last = date(*spec.first), date(*spec.last)
    if period.start is None or period.end is None:
        body = [f"DTSTART;VALUE=DATE:{_d(first)}", f"DTEND;VALUE=DATE:{_d(last + timedelta(1))}"]
        if spec.yearly:
            body.append("RRULE:FREQ=YEARLY")
        return [body]
    start = parse_hhmm(period.start)
    end = parse_hhmm(period.end, allow_24=True)
    length = end - start if end > start else end + 1440 - start

    def timed(day: date) -> list[str]:
        return [
            f"DTSTART;TZID={tz.key}:{_dt(day, start)}",
            f"DTEND;TZID={tz.key}:{_dt(day, start + length)}",
        ]

    if not spec.yearly:
        body = timed(first)
        count = (last - first).days + 1
        if count > 1:
            body.append(f"RRULE:FREQ=DAILY;COUNT={count}")
        return [body]
    if first == last:
        return [[*timed(first), "RRULE:FREQ=YEARLY"]]
    # A yearly range with a daily window: one event per month touched.
    out: list[list[str]] = []
    day = first
    while day <= last:
        month_days: list[int] = []
        month_first = day
        while day <= last and day.month == month_first.month:
            month_days.append(day.day)
            day += timedelta(days=1)
        if month_first.month == 2 and month_days[-1] == 28 and spec.last[1:] != (2, 28):
            month_days.append(29)  # leap years: the range goes on through 02-29
        by = ",".join(str(d) for d in month_days)
        out.append(
            [*timed(month_first), f"RRULE:FREQ=YEARLY;BYMONTH={month_first.month};BYMONTHDAY={by}"]
        )
    return out


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(slots=True)
class _Line:
    name: str
    params: dict[str, str]
    value: str


# What an import says about an event it skips or reads approximately (English, French).
_NOTES: dict[str, tuple[str, str]] = {
    "bad_date": ("bad date {value!r}", "date illisible « {value} »"),
    "bad_datetime": ("bad date-time {value!r}", "date et heure illisibles « {value} »"),
    "bad_duration": ("bad duration {value!r}", "durée illisible « {value} »"),
    "unknown_tzid": (
        "unknown TZID {tzid!r}: read as {zone} local time",
        "fuseau « {tzid} » inconnu : lu comme l'heure locale de {zone}",
    ),
    "cancelled": ("cancelled", "annulé"),
    "unreadable": ("{reason}", "illisible"),
    "no_start": ("no DTSTART", "pas de début (DTSTART)"),
    "mixed_types": (
        "DTSTART and DTEND are not of the same type",
        "le début et la fin ne sont pas du même type (jour entier ou heure)",
    ),
    "no_duration": ("no duration", "pas de durée"),
    "exdate_ignored": ("EXDATE/RDATE ignored", "dates exclues ou ajoutées (EXDATE/RDATE) ignorées"),
    "recurrence_unsupported": (
        "recurrence {rule!r} is not supported", "répétition « {rule} » non prise en charge"
    ),
    "endless_daily": (
        "an endless daily recurrence cannot be an exceptional period",
        "une répétition quotidienne sans fin ne peut pas être une période exceptionnelle",
    ),
    "frequency_unsupported": (
        "recurrence FREQ={freq} is not supported", "répétition FREQ={freq} non prise en charge"
    ),
    "leap_day_count": (
        "a yearly 02-29 with COUNT/UNTIL is not supported",
        "un 29 février annuel avec COUNT/UNTIL n'est pas pris en charge",
    ),
    "yearly_unsupported": (
        "this yearly recurrence is not supported",
        "cette répétition annuelle n'est pas prise en charge",
    ),
    "several_months": (
        "several BYMONTH values are not supported",
        "plusieurs mois (BYMONTH) ne sont pas pris en charge",
    ),
    "multiday_monthday": (
        "a multi-day event with BYMONTHDAY is not supported",
        "un événement de plusieurs jours avec BYMONTHDAY n'est pas pris en charge",
    ),
    "unreadable_destination": (
        "unreadable X-B2BUA-DESTINATION ignored",
        "destination (X-B2BUA-DESTINATION) illisible, ignorée",
    ),
}


class IcsProblem(ValueError):
    """Why an event is skipped or read approximately: a code of `_NOTES` and its parameters;
    `str()` is the English sentence."""

    def __init__(self, code: str, **params: Any) -> None:
        self.code = code
        self.params = params
        super().__init__(self.text("en"))

    def text(self, lang: str) -> str:
        en, fr = _NOTES[self.code]
        return (fr if lang == "fr" else en).format_map(self.params)


@dataclass(frozen=True, slots=True)
class IcsNote:
    """One remark about an event: `skipped` (the event was left out) or read approximately."""

    event: str
    problem: IcsProblem
    skipped: bool

    def text(self, lang: str) -> str:
        reason = self.problem.text(lang)
        if lang == "fr":
            return f"« {self.event} » ignoré : {reason}" if self.skipped else (
                f"« {self.event} » : {reason}"
            )
        return f"{self.event!r}: skipped ({reason})" if self.skipped else f"{self.event!r}: {reason}"


@dataclass(slots=True)
class IcsImport:
    """Result of `import_ics`: periods in the configuration shape, and what was skipped."""

    periods: list[dict[str, Any]] = field(default_factory=list)
    notes: list[IcsNote] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """The notes in English, one line each."""
        return [note.text("en") for note in self.notes]


def _unfold(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"\n[ \t]", "", text)
    return [line for line in text.split("\n") if line.strip()]


def _parse_line(line: str) -> _Line:
    # name *(";" param) ":" value, where param values may be quoted.
    i = 0
    n = len(line)
    while i < n and line[i] not in ";:":
        i += 1
    name = line[:i].upper()
    params: dict[str, str] = {}
    while i < n and line[i] == ";":
        i += 1
        j = i
        while j < n and line[j] != "=":
            j += 1
        key = line[i:j].upper()
        j += 1
        values: list[str] = []
        while True:
            if j < n and line[j] == '"':
                k = line.index('"', j + 1)
                values.append(line[j + 1 : k])
                j = k + 1
            else:
                k = j
                while k < n and line[k] not in ",;:":
                    k += 1
                values.append(line[j:k])
                j = k
            if j < n and line[j] == ",":
                j += 1
                continue
            break
        params[key] = ",".join(values)
        i = j
    value = line[i + 1 :] if i < n else ""
    return _Line(name, params, value)


def _unescape(text: str) -> str:
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), text)


def _events(text: str) -> list[dict[str, _Line]]:
    events: list[dict[str, _Line]] = []
    stack: list[str] = []
    current: dict[str, _Line] | None = None
    for raw in _unfold(text):
        line = _parse_line(raw)
        if line.name == "BEGIN":
            stack.append(line.value.upper())
            if stack[-1] == "VEVENT":
                current = {}
        elif line.name == "END":
            if stack and stack[-1] == "VEVENT" and current is not None:
                events.append(current)
                current = None
            if stack:
                stack.pop()
        elif current is not None and stack and stack[-1] == "VEVENT":
            current.setdefault(line.name, line)
    return events


def _zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo | None:
    if name is None:
        return None
    candidates = [name]
    parts = name.strip("/").split("/")
    if len(parts) > 2:  # e.g. /mozilla.org/20050126_1/Europe/Paris
        candidates.append("/".join(parts[-2:]))
        candidates.append("/".join(parts[-3:]))
    for candidate in candidates:
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return fallback if name in ("", fallback.key) else None


_DATE_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DATETIME_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(Z?)$")


def _when(line: _Line, user_tz: ZoneInfo, problems: list[IcsProblem]) -> date | datetime:
    """A DTSTART/DTEND value: a date, or an aware datetime in the user's zone."""
    value = line.value.strip()
    m = _DATE_RE.match(value)
    if m is not None or line.params.get("VALUE", "").upper() == "DATE":
        if m is None:
            raise IcsProblem("bad_date", value=value)
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    m = _DATETIME_RE.match(value)
    if m is None:
        raise IcsProblem("bad_datetime", value=value)
    y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
    naive = datetime(y, mo, d, h, mi, sec)
    if m.group(7):
        return naive.replace(tzinfo=UTC).astimezone(user_tz)
    tzid = line.params.get("TZID")
    zone = _zone(tzid, user_tz) if tzid is not None else user_tz
    if zone is None:
        problems.append(IcsProblem("unknown_tzid", tzid=tzid, zone=user_tz.key))
        zone = user_tz
    return naive.replace(tzinfo=zone).astimezone(user_tz)


_DURATION_RE = re.compile(
    r"^([+-]?)P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$"
)


def _duration(text: str) -> timedelta:
    m = _DURATION_RE.match(text.strip())
    if m is None:
        raise IcsProblem("bad_duration", value=text)
    w, d, h, mi, s = (int(g) if g else 0 for g in m.groups()[1:])
    delta = timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)
    return -delta if m.group(1) == "-" else delta


def _rrule(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(";"):
        key, _, value = part.partition("=")
        if key:
            out[key.upper()] = value.upper()
    return out


def _mmdd(d: date) -> str:
    return f"{d:%m-%d}"


def _range(first: date, last: date, yearly: bool) -> str:
    fmt = _mmdd if yearly else date.isoformat
    return fmt(first) if first == last else f"{fmt(first)}..{fmt(last)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _pieces(
    start: date | datetime, end: date | datetime
) -> list[tuple[date, date, str | None, str | None]]:
    """(first day, last day, window start, window end) pieces covering [start, end)."""
    if not isinstance(start, datetime):
        end_day = end if not isinstance(end, datetime) else end.date()
        return [(start, max(start, end_day - timedelta(days=1)), None, None)]
    assert isinstance(end, datetime)
    s_min = start.hour * 60 + start.minute
    e_min = end.hour * 60 + end.minute
    days = (end.date() - start.date()).days
    if days == 0:
        return [(start.date(), start.date(), _hhmm(s_min), _hhmm(e_min))]
    if days == 1 and e_min <= s_min:  # crosses midnight once: belongs to the starting day
        return [(start.date(), start.date(), _hhmm(s_min), "24:00" if e_min == 0 else _hhmm(e_min))]
    out: list[tuple[date, date, str | None, str | None]] = []
    first_full = start.date()
    if s_min > 0:
        out.append((start.date(), start.date(), _hhmm(s_min), "24:00"))
        first_full = start.date() + timedelta(days=1)
    last_full = end.date() - timedelta(days=1)
    if first_full <= last_full:
        out.append((first_full, last_full, None, None))
    if e_min > 0:
        out.append((end.date(), end.date(), "00:00", _hhmm(e_min)))
    return out


def import_ics(
    text: str,
    *,
    timezone: str,
    default_destination: dict[str, Any],
    max_occurrences: int = 100,
) -> IcsImport:
    """Read exceptional periods (configuration shape) from iCalendar text.

    Times are converted to `timezone` (the user's). Events without an `X-B2BUA-DESTINATION`
    get `default_destination`.
    """
    user_tz = ZoneInfo(timezone)
    result = IcsImport()
    merged: dict[tuple[str, str | None, str | None, str], dict[str, Any]] = {}
    for number, event in enumerate(_events(text), start=1):
        summary = _unescape(event["SUMMARY"].value) if "SUMMARY" in event else f"Event {number}"
        problems: list[IcsProblem] = []
        try:
            pieces = _event_pieces(event, user_tz, problems, max_occurrences)
        except IcsProblem as exc:
            result.notes.append(IcsNote(summary, exc, True))
            continue
        except (ValueError, KeyError) as exc:  # a value the calendar types cannot hold
            result.notes.append(IcsNote(summary, IcsProblem("unreadable", reason=str(exc)), True))
            continue
        result.notes += [IcsNote(summary, p, False) for p in problems]
        destination = default_destination
        if "X-B2BUA-DESTINATION" in event:
            try:
                destination = json.loads(_unescape(event["X-B2BUA-DESTINATION"].value))
            except ValueError:
                result.notes.append(IcsNote(summary, IcsProblem("unreadable_destination"), False))
        dest_key = json.dumps(destination, sort_keys=True)
        for dates, start, end in pieces:
            key = (summary, start, end, dest_key)
            period = merged.get(key)
            if period is None:
                period = {"name": summary, "dates": []}
                if start is not None and end is not None:
                    period["start"], period["end"] = start, end
                period["destination"] = destination
                merged[key] = period
                result.periods.append(period)
            for d in dates:
                if d not in period["dates"]:
                    period["dates"].append(d)
    for period in result.periods:
        period["dates"] = _join_yearly(period["dates"])
    return result


def _next_md(md: tuple[int, int]) -> tuple[int, int]:
    d = date(2000, *md) + timedelta(days=1)  # 2000 is a leap year: 02-28 -> 02-29
    return d.month, d.day


def _join_yearly(dates: list[str]) -> list[str]:
    """Join yearly ranges that follow each other (12-20..12-31 + 01-01..01-05 -> 12-20..01-05)."""
    spans: list[tuple[tuple[int, int], tuple[int, int]]] = []
    others: list[str] = []
    for text in dates:
        spec = parse_date_spec(text)
        if spec.yearly:
            spans.append((spec.first[1:], spec.last[1:]))
        else:
            others.append(text)
    joined = True
    while joined:
        joined = False
        for i, (a_first, a_last) in enumerate(spans):
            for j, (b_first, b_last) in enumerate(spans):
                if i != j and _next_md(a_last) == b_first and b_last != a_first:
                    spans[i] = (a_first, b_last)
                    del spans[j]
                    joined = True
                    break
            if joined:
                break

    def fmt(first: tuple[int, int], last: tuple[int, int]) -> str:
        a, b = f"{first[0]:02d}-{first[1]:02d}", f"{last[0]:02d}-{last[1]:02d}"
        return a if a == b else f"{a}..{b}"

    return [fmt(f, last) for f, last in spans] + others


def _event_pieces(
    event: dict[str, _Line], user_tz: ZoneInfo, problems: list[IcsProblem], max_occurrences: int
) -> list[tuple[list[str], str | None, str | None]]:
    if event.get("STATUS") is not None and event["STATUS"].value.upper() == "CANCELLED":
        raise IcsProblem("cancelled")
    if "DTSTART" not in event:
        raise IcsProblem("no_start")
    start = _when(event["DTSTART"], user_tz, problems)
    if "DTEND" in event:
        end = _when(event["DTEND"], user_tz, problems)
    elif "DURATION" in event:
        end = start + _duration(event["DURATION"].value)
    else:
        end = start + timedelta(days=1) if not isinstance(start, datetime) else start
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise IcsProblem("mixed_types")
    if _as_datetime(end) <= _as_datetime(start):
        raise IcsProblem("no_duration")
    if "EXDATE" in event or "RDATE" in event:
        problems.append(IcsProblem("exdate_ignored"))
    rule = _rrule(event["RRULE"].value) if "RRULE" in event else None
    if rule is None:
        return [([_range(a, b, False)], ws, we) for a, b, ws, we in _pieces(start, end)]
    freq = rule.get("FREQ")
    extra = set(rule) - {"FREQ", "COUNT", "UNTIL", "INTERVAL", "WKST", "BYMONTH", "BYMONTHDAY"}
    if extra or rule.get("INTERVAL", "1") != "1":
        raise IcsProblem("recurrence_unsupported", rule=event["RRULE"].value)
    first_day = start.date() if isinstance(start, datetime) else start
    if freq == "YEARLY":
        by_month = rule.get("BYMONTH")
        by_day = rule.get("BYMONTHDAY")
        if (by_month and by_month != str(first_day.month)) or (
            by_day and by_day != str(first_day.day)
        ):
            return _yearly_by_days(start, end, by_month, by_day, rule)
        if "COUNT" in rule or "UNTIL" in rule:
            return _expanded(start, end, rule, max_occurrences, years=True)
        return [([_range(a, b, True)], ws, we) for a, b, ws, we in _pieces(start, end)]
    if freq == "DAILY":
        if "COUNT" not in rule and "UNTIL" not in rule:
            raise IcsProblem("endless_daily")
        if rule.keys() & {"BYMONTH", "BYMONTHDAY"}:
            raise IcsProblem("recurrence_unsupported", rule=event["RRULE"].value)
        return _expanded(start, end, rule, max_occurrences, years=False)
    raise IcsProblem("frequency_unsupported", freq=freq)


def _as_datetime(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.combine(value, time(0), tzinfo=UTC)


def _until(rule: dict[str, str]) -> date | None:
    value = rule.get("UNTIL")
    if value is None:
        return None
    return date(int(value[0:4]), int(value[4:6]), int(value[6:8]))


def _shift(value: date | datetime, years: int = 0, days: int = 0) -> date | datetime:
    if years:
        try:
            value = value.replace(year=value.year + years)
        except ValueError:  # 02-29
            raise IcsProblem("leap_day_count") from None
    return value + timedelta(days=days)


def _expanded(
    start: date | datetime,
    end: date | datetime,
    rule: dict[str, str],
    limit: int,
    *,
    years: bool,
) -> list[tuple[list[str], str | None, str | None]]:
    count = int(rule["COUNT"]) if "COUNT" in rule else limit
    until = _until(rule)
    groups: dict[tuple[str | None, str | None], list[str]] = {}
    for i in range(min(count, limit)):
        s = _shift(start, years=i) if years else _shift(start, days=i)
        e = _shift(end, years=i) if years else _shift(end, days=i)
        day = s.date() if isinstance(s, datetime) else s
        if until is not None and day > until:
            break
        for a, b, ws, we in _pieces(s, e):
            groups.setdefault((ws, we), []).append(_range(a, b, False))
    return [(_compact(dates), ws, we) for (ws, we), dates in groups.items()]


def _compact(dates: Sequence[str]) -> list[str]:
    """Join consecutive single one-off days into ranges."""
    days: list[date] = []
    others: list[str] = []
    for text in dates:
        if ".." in text:
            others.append(text)
        else:
            days.append(date.fromisoformat(text))
    out: list[str] = []
    days = sorted(set(days))
    i = 0
    while i < len(days):
        j = i
        while j + 1 < len(days) and days[j + 1] - days[j] == timedelta(days=1):
            j += 1
        out.append(_range(days[i], days[j], False))
        i = j + 1
    return out + others


def _yearly_by_days(
    start: date | datetime,
    end: date | datetime,
    by_month: str | None,
    by_day: str | None,
    rule: dict[str, str],
) -> list[tuple[list[str], str | None, str | None]]:
    """FREQ=YEARLY;BYMONTH=m;BYMONTHDAY=a,b,... (as this module exports) -> yearly days."""
    if "COUNT" in rule or "UNTIL" in rule or by_month is None or by_day is None:
        raise IcsProblem("yearly_unsupported")
    if "," in by_month:
        raise IcsProblem("several_months")
    month = int(by_month)
    days = sorted(int(d) for d in by_day.split(","))
    window = _pieces(start, end)
    if len(window) != 1 or window[0][0] != window[0][1]:
        raise IcsProblem("multiday_monthday")
    _, _, ws, we = window[0]
    texts: list[str] = []
    i = 0
    while i < len(days):
        j = i
        while j + 1 < len(days) and days[j + 1] == days[j] + 1:
            j += 1
        a, b = f"{month:02d}-{days[i]:02d}", f"{month:02d}-{days[j]:02d}"
        texts.append(a if a == b else f"{a}..{b}")
        i = j + 1
    for t in texts:
        parse_date_spec(t)  # validate
    return [(texts, ws, we)]


# --------------------------------------------------------------------------------------------
# TOML snippet


def _toml_str(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def periods_to_toml(periods: Iterable[dict[str, Any]], indent: str = "  ") -> str:
    """`[[users.schedule.exceptional]]` blocks for the given periods."""
    blocks: list[str] = []
    for p in periods:
        lines = [f"{indent}[[users.schedule.exceptional]]"]
        for key in ("name", "dates", "start", "end", "destination"):
            if key in p:
                lines.append(f"{indent}{key} = {_toml_value(p[key])}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")

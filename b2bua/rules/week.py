"""A week of routing decisions for one callee and caller: text grid, legend and SVG picture.

The week is sampled minute by minute over real instants (so DST days have 23 or 25 hours) and
summarised per local half hour: each cell shows the outcome that holds for most of it. The
exact change points are listed under the grid.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape

from b2bua.rules.compiler import RuleTable, local_instant
from b2bua.rules.model import Decision

__all__ = ["Outcome", "Week", "render_svg", "render_text", "sample_week"]

_SYMBOL_BY_KIND = {
    "devices": "D",
    "voicemail": "V",
    "extension": "E",
    "mobile": "M",
    "external": "X",
    "system": "S",
    "busy": "B",
    "announcement": "A",
}
_COLORS = (
    "#4caf50", "#9e9e9e", "#2196f3", "#ff9800", "#9c27b0",
    "#e91e63", "#00bcd4", "#795548", "#cddc39", "#607d8b",
)  # fmt: skip
_MISSING = "·"  # a half hour that does not exist (spring DST change)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One distinct result in the week: rule, rule name and destination."""

    symbol: str
    rule: str
    rule_name: str | None
    destination: str
    color: str

    @property
    def label(self) -> str:
        name = f" {self.rule_name!r}" if self.rule_name else ""
        return f"{self.destination} [{self.rule}{name}]"


@dataclass(frozen=True, slots=True)
class Week:
    extension: str
    caller: str
    zone: str
    days: tuple[date, ...]
    cells: tuple[tuple[Outcome | None, ...], ...]  # [day][half hour], None = nonexistent
    outcomes: tuple[Outcome, ...]
    changes: tuple[tuple[str, Outcome], ...]  # ("Mon 08:30", outcome)


def _key(d: Decision) -> tuple[str, str | None, str]:
    return (d.rule, d.rule_name, d.destination.describe())


def sample_week(table: RuleTable, extension: str, caller: str, monday: date) -> Week:
    """Decide every minute of the 7 days from `monday` (local midnight, callee's zone).

    Any first day works; `monday` is only the usual choice.
    """
    tz = table.zone(extension)
    start = local_instant(datetime.combine(monday, datetime.min.time()), tz).astimezone(UTC)
    end = local_instant(
        datetime.combine(monday + timedelta(days=7), datetime.min.time()), tz
    ).astimezone(UTC)
    days = tuple(monday + timedelta(days=i) for i in range(7))
    votes: dict[tuple[int, int], Counter[tuple[str, str | None, str]]] = {}
    outcomes: dict[tuple[str, str | None, str], Outcome] = {}
    symbols: set[str] = set()
    changes: list[tuple[str, Outcome]] = []
    previous: tuple[str, str | None, str] | None = None
    t = start
    step = timedelta(minutes=1)
    while t < end:
        decision = table.decide(extension, caller, t)
        key = _key(decision)
        outcome = outcomes.get(key)
        if outcome is None:
            symbol = _SYMBOL_BY_KIND.get(decision.destination.kind, "?")
            if symbol in symbols:
                symbol = next(c for c in "123456789abcdefghijklmnopqrstuvwxyz" if c not in symbols)
            symbols.add(symbol)
            outcome = Outcome(symbol, key[0], key[1], key[2], _COLORS[len(outcomes) % len(_COLORS)])
            outcomes[key] = outcome
        local = t.astimezone(tz)
        day_index = (local.date() - monday).days
        cell = (day_index, local.hour * 2 + local.minute // 30)
        votes.setdefault(cell, Counter())[key] += 1
        if key != previous:
            changes.append((f"{local:%a %m-%d %H:%M}", outcome))
            previous = key
        t += step
    cells = tuple(
        tuple(
            outcomes[votes[(d, h)].most_common(1)[0][0]] if (d, h) in votes else None
            for h in range(48)
        )
        for d in range(7)
    )
    return Week(
        extension, caller, str(tz.key), days, cells, tuple(outcomes.values()), tuple(changes)
    )


def render_text(week: Week) -> str:
    """The grid (one character per half hour), the legend and the change points."""
    who = week.caller if week.caller not in ("", "*") else "any caller"
    lines = [
        f"Week of {week.days[0].isoformat()} for {week.extension}, calls from {who} ({week.zone})",
        "",
        "           " + "".join(f"{h:<6d}" for h in range(0, 24, 3)),
        "           " + "".join("|     " for _ in range(0, 24, 3)),
    ]
    for d, day in enumerate(week.days):
        row = "".join(c.symbol if c is not None else _MISSING for c in week.cells[d])
        lines.append(f"{day:%a %m-%d}  {row}")
    lines += ["", "Legend (one character per half hour):"]
    lines += [f"  {o.symbol}  {o.label}" for o in week.outcomes]
    if any(c is None for row in week.cells for c in row):
        lines.append(f"  {_MISSING}  this half hour does not exist (change to summer time)")
    lines += ["", "Changes:"]
    lines += [f"  {when}  {o.symbol} {o.label}" for when, o in week.changes]
    return "\n".join(lines) + "\n"


def render_svg(week: Week) -> str:
    """The week as an SVG picture: rows are days, columns are half hours, plus a legend."""
    cell_w, cell_h, left, top = 14, 22, 90, 50
    width = left + 48 * cell_w + 20
    height = top + 7 * cell_h + 30 + 20 * len(week.outcomes) + 20
    who = week.caller if week.caller not in ("", "*") else "any caller"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">'
        f"{escape(f'Week of {week.days[0].isoformat()}: calls to {week.extension} from {who}')}"
        f" ({escape(week.zone)})</text>",
    ]
    for h in range(0, 25, 2):
        x = left + h * 2 * cell_w
        out.append(f'<text x="{x}" y="{top - 6}" text-anchor="middle">{h:02d}</text>')
    for d, day in enumerate(week.days):
        y = top + d * cell_h
        out.append(f'<text x="10" y="{y + cell_h - 7}">{day:%a %m-%d}</text>')
        for h, cell in enumerate(week.cells[d]):
            x = left + h * cell_w
            fill = cell.color if cell is not None else "#ffffff"
            title = escape(cell.label) if cell is not None else "does not exist"
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{fill}" '
                f'stroke="#ffffff" stroke-width="1"><title>{day:%a} '
                f"{h // 2:02d}:{h % 2 * 30:02d} {title}</title></rect>"
            )
    y = top + 7 * cell_h + 30
    for o in week.outcomes:
        out.append(f'<rect x="{left}" y="{y - 11}" width="14" height="14" fill="{o.color}"/>')
        out.append(f'<text x="{left + 22}" y="{y}">{escape(o.label)}</text>')
        y += 20
    out.append("</svg>")
    return "\n".join(out) + "\n"

"""A week of routing decisions for one callee and caller: text grid, legend and SVG picture.

The week is sampled minute by minute over real instants (so DST days have 23 or 25 hours) and
summarised per local half hour: each cell shows the outcome that holds for most of it. The
exact change points are listed under the grid.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html import escape

from b2bua.config.lang import fr_date
from b2bua.rules.compiler import RuleTable, local_instant
from b2bua.rules.model import Decision, Destination

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
    target: Destination | None = field(default=None, compare=False)  # where calls go

    @property
    def label(self) -> str:
        name = f" {self.rule_name!r}" if self.rule_name else ""
        return f"{self.destination} [{self.rule}{name}]"

    def label_in(self, lang: str) -> str:
        """`label` in `lang`: `poste 1002 [période exceptionnelle « Congé »]`."""
        if lang != "fr" or self.target is None:
            return self.label
        from b2bua.rules.i18n import RULE_NAMES, describe

        name = f" « {self.rule_name} »" if self.rule_name else ""
        rule = RULE_NAMES["fr"].get(self.rule, self.rule)
        return f"{describe(self.target, 'fr')} [{rule}{name}]"


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
            color = _COLORS[len(outcomes) % len(_COLORS)]
            outcome = Outcome(symbol, key[0], key[1], key[2], color, decision.destination)
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


_DAYS_EN = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # as %a gives them in the C locale
_DAYS_FR = ("lun", "mar", "mer", "jeu", "ven", "sam", "dim")
_WORDS = {
    "en": {
        "title": "Week of {day} for {ext}, calls from {who} ({zone})",
        "svg_title": "Week of {day}: calls to {ext} from {who}",
        "any": "any caller",
        "legend": "Legend (one character per half hour):",
        "missing": "this half hour does not exist (change to summer time)",
        "changes": "Changes:",
        "nonexistent": "does not exist",
    },
    "fr": {
        "title": "Semaine du {day} pour {ext}, appels de {who} ({zone})",
        "svg_title": "Semaine du {day} : appels pour {ext} de {who}",
        "any": "n'importe quel appelant",
        "legend": "Légende (un caractère par demi-heure) :",
        "missing": "cette demi-heure n'existe pas (passage à l'heure d'été)",
        "changes": "Changements :",
        "nonexistent": "n'existe pas",
    },
}


def _day(day: date, lang: str) -> str:
    """`Mon 03-23` / `lun 23/03` (both 9 characters: the grid stays aligned)."""
    if lang == "fr":
        return f"{_DAYS_FR[day.weekday()]} {day.day:02d}/{day.month:02d}"
    return f"{_DAYS_EN[day.weekday()]} {day.month:02d}-{day.day:02d}"


def _change(when: str, lang: str) -> str:
    """A change point `Mon 03-23 08:30` in `lang`."""
    if lang != "fr":
        return when
    weekday, monthday, hhmm = when.split(" ")
    month, day = monthday.split("-")
    return f"{_DAYS_FR[_DAYS_EN.index(weekday)]} {day}/{month} {hhmm}"


def render_text(week: Week, lang: str = "en") -> str:
    """The grid (one character per half hour), the legend and the change points."""
    words = _WORDS["fr" if lang == "fr" else "en"]
    who = week.caller if week.caller not in ("", "*") else words["any"]
    first = fr_date(week.days[0].isoformat()) if lang == "fr" else week.days[0].isoformat()
    lines = [
        words["title"].format(day=first, ext=week.extension, who=who, zone=week.zone),
        "",
        "           " + "".join(f"{h:<6d}" for h in range(0, 24, 3)),
        "           " + "".join("|     " for _ in range(0, 24, 3)),
    ]
    for d, day in enumerate(week.days):
        row = "".join(c.symbol if c is not None else _MISSING for c in week.cells[d])
        lines.append(f"{_day(day, lang)}  {row}")
    lines += ["", words["legend"]]
    lines += [f"  {o.symbol}  {o.label_in(lang)}" for o in week.outcomes]
    if any(c is None for row in week.cells for c in row):
        lines.append(f"  {_MISSING}  {words['missing']}")
    lines += ["", words["changes"]]
    lines += [f"  {_change(when, lang)}  {o.symbol} {o.label_in(lang)}" for when, o in week.changes]
    return "\n".join(lines) + "\n"


def render_svg(week: Week, lang: str = "en") -> str:
    """The week as an SVG picture: rows are days, columns are half hours, plus a legend."""
    words = _WORDS["fr" if lang == "fr" else "en"]
    cell_w, cell_h, left, top = 14, 22, 90, 50
    width = left + 48 * cell_w + 20
    height = top + 7 * cell_h + 30 + 20 * len(week.outcomes) + 20
    who = week.caller if week.caller not in ("", "*") else words["any"]
    first = fr_date(week.days[0].isoformat()) if lang == "fr" else week.days[0].isoformat()
    title_text = words["svg_title"].format(day=first, ext=week.extension, who=who)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">'
        f"{escape(title_text)}"
        f" ({escape(week.zone)})</text>",
    ]
    for h in range(0, 25, 2):
        x = left + h * 2 * cell_w
        out.append(f'<text x="{x}" y="{top - 6}" text-anchor="middle">{h:02d}</text>')
    for d, day in enumerate(week.days):
        y = top + d * cell_h
        out.append(f'<text x="10" y="{y + cell_h - 7}">{_day(day, lang)}</text>')
        for h, cell in enumerate(week.cells[d]):
            x = left + h * cell_w
            fill = cell.color if cell is not None else "#ffffff"
            title = escape(cell.label_in(lang)) if cell is not None else words["nonexistent"]
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{fill}" '
                f'stroke="#ffffff" stroke-width="1"><title>{_day(day, lang)[:3]} '
                f"{h // 2:02d}:{h % 2 * 30:02d} {title}</title></rect>"
            )
    y = top + 7 * cell_h + 30
    for o in week.outcomes:
        out.append(f'<rect x="{left}" y="{y - 11}" width="14" height="14" fill="{o.color}"/>')
        out.append(f'<text x="{left + 22}" y="{y}">{escape(o.label_in(lang))}</text>')
        y += 20
    out.append("</svg>")
    return "\n".join(out) + "\n"

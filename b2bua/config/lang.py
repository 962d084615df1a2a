"""The two languages people read: French and English.

`Lang` is what `[server] language` and a user's `language` hold. `negotiate` picks one from an
HTTP `Accept-Language` header; `quote` and `fr_date` write values the way each language quotes
them (`'08:00'` in English, as `b2bua check` always printed them; `« 08:00 »` in French, with
dates as a French reader writes them).
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeAlias, get_args

__all__ = ["LANGUAGES", "Lang", "fr_date", "negotiate", "quote"]

Lang: TypeAlias = Literal["fr", "en"]
LANGUAGES: tuple[Lang, ...] = get_args(Lang)

_RANGE = re.compile(r"^\s*([a-zA-Z]{1,8})(?:-[a-zA-Z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$")


def negotiate(header: str | None) -> Lang | None:
    """The preferred of French and English in an `Accept-Language` header (RFC 9110 §12.5.4),
    None when it names neither. Quality values are honoured; `*` is ignored (it would let the
    default decide anyway)."""
    if not header:
        return None
    best: tuple[float, int, Lang] | None = None
    for position, item in enumerate(header.split(",")[:32]):
        m = _RANGE.match(item)
        if m is None:
            continue
        primary = m.group(1).lower()
        if primary not in LANGUAGES:
            continue
        try:
            q = float(m.group(2)) if m.group(2) is not None else 1.0
        except ValueError:
            continue
        if q <= 0:
            continue
        if best is None or (q, -position) > best[:2]:
            best = (q, -position, primary)
    return best[2] if best is not None else None


def quote(value: Any, lang: Lang) -> str:
    """A value quoted in a sentence: `'x'` (English, as repr) or `« x »` (French)."""
    if lang == "en":
        return repr(value)
    return f"« {value} »"


_ISO_DAY = re.compile(r"(?<![0-9])(\d{4})-(\d{2})-(\d{2})(?![0-9])")
_YEARLY_DAY = re.compile(r"(?<![0-9-])(\d{2})-(\d{2})(?![0-9-])")


def fr_date(text: str) -> str:
    """Dates of the configuration written the French way: `2026-12-31` -> `31/12/2026`, a
    yearly `12-20` -> `20/12`, ranges `A..B` -> `A..B` with both ends rewritten."""
    out = _ISO_DAY.sub(lambda m: f"{m.group(3)}/{m.group(2)}/{m.group(1)}", str(text))
    return _YEARLY_DAY.sub(lambda m: f"{m.group(2)}/{m.group(1)}", out)

"""Caller numbers and caller-ID patterns.

Numbers are compared in one canonical form so that `+33 6 12 34 56 78`, `0033612345678`,
`06.12.34.56.78` and `06 12 34 56 78` are the same caller when the country code is 33:

1. a `sip:`/`sips:`/`tel:` URI is reduced to its user part;
2. the `(0)` written after a country code (`+33 (0)6 ...`) is dropped;
3. spaces, tabs, dots, dashes, slashes and parentheses are removed;
4. a leading `00` becomes `+`;
5. `+` followed by the configured country code becomes the national trunk prefix `0`.

Numbers of other countries keep their `+` form; internal extensions are unchanged. A caller
that is empty or one of the usual "hidden number" words (`anonymous`, `unknown`, `private`,
`restricted`, `unavailable`, `withheld`) normalises to the empty string: it matches only `*`.

Patterns (the `callers` of a caller-ID exception) are split on spaces first, then each one is
normalised the same way, so `+336*` and `06*` are the same prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ANONYMOUS", "CallerPattern", "normalize_number", "parse_callers"]

ANONYMOUS = frozenset({"anonymous", "unknown", "private", "restricted", "unavailable", "withheld"})
_SEPARATORS = str.maketrans("", "", " \t.-/()")


def normalize_number(raw: str, country_code: str) -> str:
    """Canonical form of a caller number (see module docstring); "" for an anonymous caller."""
    if raw.isdigit() and raw.isascii() and not raw.startswith("00"):
        return raw  # already canonical: the usual national or internal number
    text = raw.strip()
    lowered = text.lower()
    if lowered.startswith(("sip:", "sips:", "tel:")):
        text = text.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0]
        lowered = text.lower()
    if lowered in ANONYMOUS or lowered.startswith("anonymous"):
        return ""
    text = text.replace("(0)", "").translate(_SEPARATORS)
    if text.startswith("00"):
        text = "+" + text[2:]
    if country_code and text.startswith(country_code, 1) and text[0] == "+":
        text = "0" + text[1 + len(country_code) :]
    return text


@dataclass(frozen=True, slots=True)
class CallerPattern:
    """One pattern of a `callers` string: `*`, a prefix (`06*`) or an exact number."""

    kind: Literal["any", "prefix", "exact"]
    value: str  # normalised prefix or number ("" for any)
    text: str  # as written

    def matches(self, number: str) -> bool:
        """Whether a normalised caller number matches (anonymous "" matches only `*`)."""
        if self.kind == "any":
            return True
        if not number:
            return False
        if self.kind == "prefix":
            return number.startswith(self.value)
        return number == self.value


def parse_callers(callers: str, country_code: str) -> tuple[CallerPattern, ...]:
    """Split a `callers` string on whitespace into normalised patterns."""
    out: list[CallerPattern] = []
    for token in callers.split():
        if token == "*":
            out.append(CallerPattern("any", "", token))
        elif token.endswith("*"):
            out.append(CallerPattern("prefix", normalize_number(token[:-1], country_code), token))
        else:
            out.append(CallerPattern("exact", normalize_number(token, country_code), token))
    return tuple(out)

"""Outbound decisions over several trunks: which trunks a number may take and in what order,
when a failed attempt moves to the next trunk, and how numbers are written for a trunk.

All pure functions over `TrunkSpec`s and the trunks' current state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from b2bua.rules.numbers import normalize_number
from b2bua.trunks.model import NumberFormat, TrunkSpec

__all__ = [
    "FAILOVER_STATUSES",
    "Candidates",
    "candidates",
    "fails_over",
    "format_number",
    "presented_number",
]

# A 503 (the carrier cannot take the call now), a 408 (it did not answer: a transaction timeout
# is reported as 408 too) or a transport failure moves the call to the next trunk. Any other
# final response is the called party's answer and ends the attempt.
FAILOVER_STATUSES = frozenset({408, 503})


@dataclass(frozen=True, slots=True)
class Candidates:
    """The trunks to try for a number, in order, and why others were left out."""

    trunks: tuple[TrunkSpec, ...]
    no_free_line: tuple[str, ...] = ()  # names of matching trunks whose lines were all busy
    down: tuple[str, ...] = ()  # names of matching trunks that are down (tried last)

    @property
    def reason(self) -> str | None:
        """Why there is no trunk to try, None when there is one."""
        if self.trunks:
            return None
        if self.no_free_line:
            return "no free line"
        return "no trunk takes this number"


def candidates(
    number: str,
    trunks: Sequence[TrunkSpec],
    *,
    is_up: Callable[[str], bool],
    has_free_line: Callable[[str], bool],
    canonical: str | None = None,
) -> Candidates:
    """The trunks whose `prefixes` take `number` (as dialled, or in its `canonical` form), in
    configuration order, up ones first; a trunk that is down comes after every trunk that is up
    (its OPTIONS may be blocked while calls go through), and a trunk whose lines are all busy is
    left out."""
    up: list[TrunkSpec] = []
    down: list[TrunkSpec] = []
    busy: list[str] = []
    for trunk in trunks:
        if not trunk.takes(number) and not (canonical and trunk.takes(canonical)):
            continue
        if not has_free_line(trunk.name):
            busy.append(trunk.name)
        elif is_up(trunk.name):
            up.append(trunk)
        else:
            down.append(trunk)
    return Candidates(tuple(up + down), tuple(busy), tuple(t.name for t in down))


def fails_over(status: int | None) -> bool:
    """Whether an attempt that ended with `status` (None: transport failure) moves the call to
    the next trunk."""
    return status is None or status in FAILOVER_STATUSES


def format_number(number: str, number_format: NumberFormat, country_code: str) -> str:
    """`number` as the trunk wants it: national (`0442930600`, `+44...` for abroad) or E.164
    (`+33442930600`). Short numbers (emergency, services) stay as they are."""
    canonical = normalize_number(number, country_code)
    if number_format == "national" or not country_code:
        return canonical
    if canonical.startswith("0") and not canonical.startswith("00") and len(canonical) > 4:
        return f"+{country_code}{canonical[1:]}"
    return canonical


Presentation = Literal["trunk", "original"]


def presented_number(
    trunk: TrunkSpec,
    caller: str,
    *,
    keep_original: bool,
    country_code: str,
) -> str:
    """The number we present on a call through `trunk` (From and P-Asserted-Identity): the
    trunk's `caller_id`, unless a forward keeps the original caller; in the trunk's format."""
    number = caller if keep_original or not trunk.caller_id else trunk.caller_id
    return format_number(number, trunk.number_format, country_code)


def names(trunks: Iterable[TrunkSpec]) -> list[str]:
    return [t.name for t in trunks]

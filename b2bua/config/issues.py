"""What a configuration check reports: `ConfigIssue(file, line, field, reason)` and the
`ConfigError` that carries every issue found, printed as `FILE:LINE: field: reason` lines."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = ["ConfigError", "ConfigIssue", "KeyPath", "PathPart", "format_path"]

PathPart: TypeAlias = str | int
KeyPath: TypeAlias = tuple[PathPart, ...]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem (or warning) in a configuration file, at a line, about a field.

    `reason` is the English text `b2bua check` prints; `code` and `params` say the same for
    programs and for other languages (b2bua.config.messages); `path` is `field` as a key path
    (0-based indexes, as in the file)."""

    file: str
    line: int
    field: str
    reason: str
    code: str = "invalid"
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)
    path: KeyPath = ()

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


class ConfigError(Exception):
    """The configuration cannot be used; `.issues` lists every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)


def format_path(path: Sequence[PathPart], *, first: int = 0) -> str:
    """`("users", 0, "schedule", "hours", 1, "start")` -> `users[0].schedule.hours[1].start`;
    with `first=1`, indexes count from 1 as people count rows (`users[1].schedule.hours[2]...`)."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part + first}]")
        else:
            if out:
                out.append(".")
            out.append(part)
    return "".join(out)

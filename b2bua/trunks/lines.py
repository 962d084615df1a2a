"""Line accounting: how many calls a trunk carries at once (inbound and outbound together).

A call takes a line when it starts using the trunk (an inbound INVITE from it, or an outbound
attempt towards it) and gives it back when it ends or moves to another trunk. `lines = 0` means
unlimited. Taking and giving back are idempotent per call id, so a retransmission or a second
hang-up of the same call never counts twice.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Direction", "Lines"]

Direction = Literal["inbound", "outbound"]


class Lines:
    """The lines of one trunk."""

    __slots__ = ("_calls", "limit")

    def __init__(self, limit: int = 0) -> None:
        if limit < 0:
            raise ValueError("lines must be 0 (unlimited) or more")
        self.limit = limit
        self._calls: dict[str, Direction] = {}

    @classmethod
    def carried(cls, limit: int, old: Lines | None) -> Lines:
        """New lines with limit `limit` that keep the calls `old` holds (a configuration
        change never drops a call's line, even when the calls now exceed the new limit)."""
        lines = cls(limit)
        if old is not None:
            lines._calls = dict(old._calls)
        return lines

    def acquire(self, call_id: str, direction: Direction) -> bool:
        """Take a line for `call_id`; False when every line is busy ("no free line")."""
        if call_id in self._calls:
            return True
        if self.limit and len(self._calls) >= self.limit:
            return False
        self._calls[call_id] = direction
        return True

    def release(self, call_id: str) -> bool:
        """Give the line of `call_id` back; False if it had none."""
        return self._calls.pop(call_id, None) is not None

    def holds(self, call_id: str) -> bool:
        return call_id in self._calls

    @property
    def in_use(self) -> int:
        return len(self._calls)

    @property
    def free(self) -> int | None:
        """Free lines, None when unlimited."""
        return None if not self.limit else self.limit - len(self._calls)

    def count(self, direction: Direction) -> int:
        return sum(1 for d in self._calls.values() if d == direction)

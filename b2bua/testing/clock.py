"""A clock for tests: time moves only when the test says so.

Sans-IO layers take `now` as an argument and report `next_deadline()`; a test drives them with a
`FakeClock` by jumping from deadline to deadline (`run_next`, `run_until`), so a 32-second timer
costs microseconds and nothing in a test sleeps.
"""

from __future__ import annotations

from typing import Protocol


class Deadlines(Protocol):
    """What a sans-IO layer with timers offers (the transaction layer, the media player...)."""

    def next_deadline(self) -> float | None: ...

    def handle_deadline(self, now: float) -> None: ...


class FakeClock:
    """A monotonic clock that only moves forward, and only when told."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        """So the clock can stand in for `loop.time` or `time.monotonic`."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by `seconds`; returns the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += seconds
        return self._now

    def jump(self, when: float) -> float:
        """Move forward to `when` (a deadline); returns the new time."""
        if when < self._now:
            raise ValueError(f"cannot go back from {self._now} to {when}")
        self._now = when
        return self._now

    def run_next(self, layer: Deadlines) -> float | None:
        """Jump to `layer`'s next deadline and handle it; returns that time, or None if no timer
        runs (the clock then stays where it is)."""
        deadline = layer.next_deadline()
        if deadline is None:
            return None
        self.jump(max(deadline, self._now))
        layer.handle_deadline(self._now)
        return self._now

    def run_until(self, layer: Deadlines, when: float) -> int:
        """Handle every deadline of `layer` up to `when`, each at its own time, then jump to
        `when`. Returns how many times the layer was woken."""
        woken = 0
        while True:
            deadline = layer.next_deadline()
            if deadline is None or deadline > when:
                break
            self.jump(max(deadline, self._now))
            layer.handle_deadline(self._now)
            woken += 1
        self.jump(when)
        return woken

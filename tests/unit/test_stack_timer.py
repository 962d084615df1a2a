"""The stack's one loop timer: deadlines within `TIMER_SLACK` of the earliest share a wake-up."""

from __future__ import annotations

import asyncio
from typing import Any

from b2bua.stack import TIMER_SLACK, SipStack


class Layer:
    """The transaction layer's timer side, with deadlines set by the test."""

    def __init__(self) -> None:
        self.deadlines: list[float] = []
        self.wakeups: list[list[float]] = []  # the deadlines each wake-up served

    def next_deadline(self) -> float | None:
        return min(self.deadlines) if self.deadlines else None

    def handle_deadline(self, now: float) -> None:
        due = sorted(d for d in self.deadlines if d <= now)
        self.deadlines = [d for d in self.deadlines if d > now]
        self.wakeups.append(due)

    def datagrams_to_send(self) -> list[Any]:
        return []

    def next_event(self) -> None:
        return None


async def test_deadlines_close_together_share_one_wakeup() -> None:
    layer = Layer()
    stack = SipStack(layer)  # type: ignore[arg-type]
    stack.attach(object(), object())  # type: ignore[arg-type]
    t0 = asyncio.get_running_loop().time()
    close = [t0 + 0.050, t0 + 0.054, t0 + 0.058]  # 4 ms apart, as under load
    later = t0 + 0.250
    assert TIMER_SLACK >= 0.008
    layer.deadlines = [*close, later]
    stack.flush()
    assert stack._timer_at == close[0] + TIMER_SLACK
    for _ in range(100):
        await asyncio.sleep(0.02)
        if not layer.deadlines:
            break
    assert layer.wakeups[0] == close  # one wake-up for the three
    assert [d for w in layer.wakeups for d in w] == [*close, later]
    assert stack.timer_wakeups == len(layer.wakeups) == 2

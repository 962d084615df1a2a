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


class WatchedLayer(Layer):
    """A layer that also reports what it added (b2bua.stack.Watched), and counts how often
    the stack asks for its next deadline."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0
        self.added = float("inf")

    def add(self, deadline: float) -> None:
        self.deadlines.append(deadline)
        self.added = min(self.added, deadline)

    def earliest_added(self) -> float:
        added, self.added = self.added, float("inf")
        return added

    def next_deadline(self) -> float | None:
        self.asked += 1
        return super().next_deadline()


async def test_a_drain_that_adds_nothing_sooner_keeps_the_armed_timer() -> None:
    layer = WatchedLayer()
    stack = SipStack(layer)  # type: ignore[arg-type]
    stack.attach(object(), object())  # type: ignore[arg-type]
    t0 = asyncio.get_running_loop().time()
    layer.add(t0 + 0.100)
    stack.flush()
    assert stack._timer_at == t0 + 0.100 + TIMER_SLACK and layer.asked == 1
    # Later deadlines (a new transaction's timers) and cancellations: the timer stays armed,
    # and the layer is not asked again.
    layer.add(t0 + 0.500)
    stack.flush()
    layer.deadlines.remove(t0 + 0.100)
    stack.flush()
    assert layer.asked == 1 and stack._timer_at == t0 + 0.100 + TIMER_SLACK
    # A sooner one re-arms the timer for it.
    layer.add(t0 + 0.040)
    stack.flush()
    assert layer.asked == 2 and stack._timer_at == t0 + 0.040 + TIMER_SLACK
    for _ in range(100):
        await asyncio.sleep(0.02)
        if not layer.deadlines:
            break
    # The wake-up at 40 ms served it; the one at 110 ms found nothing due (early is harmless)
    # and re-armed for 500 ms.
    assert [d for w in layer.wakeups for d in w] == [t0 + 0.040, t0 + 0.500]

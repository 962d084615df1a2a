"""The registrar's deadlines on the stack's one timer.

The registrar keeps wall-clock time, the time of bindings (`expires_at` is Unix time, and a
binding outlives a restart); the stack's timer runs on the event loop's monotonic clock. This
adapter is one of the stack's clocked layers (b2bua.stack.Clocked): it converts the
registrar's next deadline to loop time when the stack asks, and at that time expires the
bindings due, sweeps the digest and lockout tables, and probes the UDP devices due for a
keep-alive (OPTIONS, sent by the core). A change of the users (`set_users`) asks for a pass at
once, so the bindings of a removed user go without waiting for their expiry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from b2bua.registrar.model import Binding

# A pass this close to a deadline is on time (the stack's own slack is 10 ms).
EARLY = 0.005


class Registrar(Protocol):
    @property
    def users_changed(self) -> bool: ...

    def next_deadline(self) -> float | None: ...

    def handle_deadline(self, now: float) -> list[Binding]: ...

    def keepalive_due(self, now: float) -> list[Binding]: ...


class RegistrarTimer:
    def __init__(
        self,
        registrar: Registrar,
        wall_clock: Callable[[], float],
        loop_clock: Callable[[], float],
        probe: Callable[[Binding], None] | None = None,
    ) -> None:
        self.registrar = registrar
        self.wall_clock = wall_clock
        self.loop_clock = loop_clock
        self.probe = probe  # None: this process sends no keep-alive (another worker does)
        self.passes = 0

    def next_deadline(self) -> float | None:
        registrar = self.registrar
        if registrar.users_changed:
            return self.loop_clock()
        wall = registrar.next_deadline()
        if wall is None:
            return None
        return self.loop_clock() + (wall - self.wall_clock())

    def handle_deadline(self, now: float) -> None:
        wall_now = self.wall_clock()
        due = self.registrar.next_deadline()
        if not self.registrar.users_changed and (due is None or due > wall_now + EARLY):
            return
        self.passes += 1
        self.registrar.handle_deadline(wall_now)
        if self.probe is not None:
            for binding in self.registrar.keepalive_due(wall_now):
                self.probe(binding)

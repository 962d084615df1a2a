"""Fork-late across calls: the push side of every ringing call, in one object the call engine
feeds.

Theory of operation
-------------------
One `PushFork` per (call, extension) that has push-capable devices. The engine tells the waker
when a call starts ringing an extension (`call_ringing`), when it stops (`call_over`), and hands
it the registrar's `BindingAppeared` events; the waker answers with the bindings to add to which
call (`binding_appeared`) and sends pushes through `send` (a `WakeDevice` command: the asyncio
shell gives it to the `PushService`, see `push_sender`). Its one deadline is the earliest of
its forks' (`next_deadline`, `handle_deadline`), for the stack's timer heap.

A fork is dropped as soon as it has nothing left to do: no device awaited and no `call_ended`
owed, so a waker whose calls are over holds nothing (`len(waker) == 0`).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable, Iterable
from typing import Protocol

from b2bua.push.fork import PushFork, RingDevice, WakeDevice
from b2bua.push.service import PushReport, PushService
from b2bua.registrar.location import BindingAppeared
from b2bua.registrar.model import Binding


class PushLocation(Protocol):
    """What the waker needs from the registrar."""

    def push_bindings(self, extension: str, now: float) -> list[Binding]: ...

    def record_push(self, binding: Binding, at: float, result: str, *, token_invalid: bool) -> None: ...


class Waker:
    def __init__(
        self, location: PushLocation, send: Callable[[WakeDevice], None], wait: float
    ) -> None:
        self.location = location
        self.send = send
        self.wait = wait
        self._forks: dict[tuple[Hashable, str], PushFork] = {}
        self._by_aor: dict[str, set[Hashable]] = {}
        self._heap: list[tuple[float, int, Hashable, str]] = []
        self._seq = itertools.count()
        self.scheduled = 0  # deadlines ever kept (b2bua.calls.engine: `earliest_added`)
        self.counters = {"calls_pushed": 0, "devices_woken": 0, "devices_joined": 0,
                         "devices_missed": 0, "ended_notices": 0}

    def __len__(self) -> int:
        return len(self._forks)

    def call_ringing(
        self,
        call: Hashable,
        aor: str,
        call_ids: Callable[[Binding], str],
        caller: str,
        display_name: str,
        now: float,
    ) -> int:
        """`call` starts ringing extension `aor`; `call_ids(binding)` gives the Call-ID of the
        INVITE a device will get if it joins (its push carries it). Sends the pushes; returns
        how many."""
        if (call, aor) in self._forks:
            return 0
        bindings = self.location.push_bindings(aor, now)
        if not bindings:
            return 0
        fork = PushFork(aor, call_ids, caller, display_name, self.wait)
        pushes = fork.start(bindings, now)
        self._emit(pushes)
        if not pushes:
            return 0
        self.counters["calls_pushed"] += 1
        self.counters["devices_woken"] += len(pushes)
        self._keep(call, fork)
        return len(pushes)

    def binding_appeared(
        self, event: BindingAppeared, now: float
    ) -> list[tuple[Hashable, RingDevice]]:
        """The calls that take `event.binding` as a new branch now (at most one per call), with
        the Call-ID that branch's INVITE must carry."""
        out: list[tuple[Hashable, RingDevice]] = []
        for call in list(self._by_aor.get(event.aor, ())):
            fork = self._forks[(call, event.aor)]
            ring = fork.binding_appeared(event.binding, now)
            if isinstance(ring, RingDevice):
                self.counters["devices_joined"] += 1
                out.append((call, ring))
                self._drop_if_done(call, fork)
        return out

    def call_over(self, call: Hashable, reason: str, now: float, aors: Iterable[str] = ()) -> None:
        """`call` stopped ringing (`answered_elsewhere`, `cancelled`, `timeout`): the devices still
        awaited are told (APNs VoIP). `aors`: the extensions it rang (all when empty)."""
        names = list(aors) or [a for (c, a) in self._forks if c == call]
        for aor in names:
            fork = self._forks.get((call, aor))
            if fork is None:
                continue
            ended = fork.end(reason, now)
            self.counters["ended_notices"] += len(ended)
            self._emit(ended)
            self._drop(call, aor)

    def awaiting(self, call: Hashable) -> bool:
        """Whether `call` still waits for a woken device (it must not fail before)."""
        return any(c == call and fork.waiting for (c, _), fork in self._forks.items())

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            when, _, call, aor = heap[0]
            fork = self._forks.get((call, aor))
            if fork is not None and fork.next_deadline() == when:
                return when
            heapq.heappop(heap)
        return None

    def handle_deadline(self, now: float) -> list[Hashable]:
        """The waits that ran out; returns the calls that no longer wait for any device."""
        heap = self._heap
        done: list[Hashable] = []
        while heap and heap[0][0] <= now:
            _, _, call, aor = heapq.heappop(heap)
            fork = self._forks.get((call, aor))
            if fork is None:
                continue
            missed = fork.waiting
            ended = fork.handle_deadline(now)
            self.counters["devices_missed"] += missed - fork.waiting
            self.counters["ended_notices"] += len(ended)
            self._emit(ended)
            self._drop_if_done(call, fork)
            if not self.awaiting(call) and call not in done:
                done.append(call)
        return done

    def push_result(self, command: WakeDevice, report: PushReport) -> None:
        """A push's outcome, for the device card; a dead token loses its push data."""
        result = report.result
        self.location.record_push(command.binding, report.sent_at, result.describe(),
                                  token_invalid=result.token_invalid)

    # -- internals -------------------------------------------------------------------------------
    def _emit(self, commands: Iterable[WakeDevice]) -> None:
        for command in commands:
            self.send(command)

    def _keep(self, call: Hashable, fork: PushFork) -> None:
        self._forks[(call, fork.aor)] = fork
        self._by_aor.setdefault(fork.aor, set()).add(call)
        deadline = fork.next_deadline()
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, next(self._seq), call, fork.aor))
            self.scheduled += 1
        else:
            self._drop_if_done(call, fork)

    def _drop_if_done(self, call: Hashable, fork: PushFork) -> None:
        if fork.waiting == 0:
            # Nobody awaited: no join to come, every call_ended owed was sent.
            self._drop(call, fork.aor)

    def _drop(self, call: Hashable, aor: str) -> None:
        if self._forks.pop((call, aor), None) is None:
            return
        calls = self._by_aor.get(aor)
        if calls is not None:
            calls.discard(call)
            if not calls:
                del self._by_aor[aor]
        if not self._forks:
            self._heap.clear()


def push_sender(service: PushService, waker: Waker) -> Callable[[WakeDevice], None]:
    """The asyncio side of `Waker.send`: hand each push to the service (it returns at once) and
    report its outcome back to the registrar through the waker."""

    def send(command: WakeDevice) -> None:
        service.push(command.target, command.notification,
                     lambda report: waker.push_result(command, report))

    return send

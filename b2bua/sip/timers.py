"""SIP timer values (RFC 3261 §17, Table 4 of Appendix A; RFC 6026's Timers L and M) and the one
timer heap of a stack.

Theory of operation
-------------------
`TimerConfig` holds T1, T2, T4 and says how long each lettered timer runs, given the transport
and, for the retransmission timers, the interval it ran last time. It reads no clock.

`TimerHeap` is the single timer of the whole stack: every running timer of every transaction is
one entry in a binary heap ordered by deadline (ties by insertion order), `next_deadline()` is the
top of the heap, and the asyncio adapter keeps exactly one `loop.call_at` armed for it. Cancelling
an entry only marks it (lazy deletion); dead entries are skipped when they reach the top, and the
heap is rebuilt without them when they outnumber the live ones, so a busy stack that stops most
timers early (every answered request stops Timer B or F) keeps a small heap.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar


class Timer(Enum):
    """The timers of RFC 3261 §17 and RFC 6026 (Timer C, a proxy's, is not implemented)."""

    __hash__ = object.__hash__  # members are singletons: identity hash, computed in C

    A = "A"  # INVITE request retransmit interval, UDP only
    B = "B"  # INVITE transaction timeout
    D = "D"  # wait time for response retransmits (client INVITE, COMPLETED)
    E = "E"  # non-INVITE request retransmit interval, UDP only
    F = "F"  # non-INVITE transaction timeout
    G = "G"  # INVITE response retransmit interval, UDP only
    H = "H"  # wait time for ACK receipt
    I = "I"  # wait time for ACK retransmits  # noqa: E741 - the RFC's name
    J = "J"  # wait time for non-INVITE request retransmits
    K = "K"  # wait time for response retransmits (client non-INVITE, COMPLETED)
    L = "L"  # RFC 6026: wait time for accepted INVITE request retransmits (server)
    M = "M"  # RFC 6026: wait time for retransmission of 2xx to INVITE or additional 2xx (client)


# The timers that retransmit, and so run only on unreliable transports.
RETRANSMIT_TIMERS = frozenset({Timer.A, Timer.E, Timer.G})
# The timers that absorb retransmissions, and so are zero on reliable transports.
ABSORB_TIMERS = frozenset({Timer.D, Timer.I, Timer.J, Timer.K})


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1 (RTT estimate), T2 (maximum retransmit interval), T4 (network lifetime of a message),
    and Timer D's value on unreliable transports (RFC 3261 says "at least 32 seconds")."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 > 0 and self.timer_d >= 0):
            raise ValueError(f"inconsistent SIP timers {self!r}")

    @property
    def transaction_timeout(self) -> float:
        """64*T1: Timers B, F, H, L, M, Timer J on UDP, and the 2xx retransmission window."""
        return 64 * self.t1

    def duration(
        self,
        timer: Timer,
        *,
        reliable: bool,
        previous: float | None = None,
        proceeding: bool = False,
    ) -> float | None:
        """Seconds until `timer` fires, or None when it does not run on this transport.

        `previous` is the interval the timer ran last time (retransmission timers back off);
        `proceeding` says a non-INVITE client transaction is in PROCEEDING (Timer E is then T2).
        Zero means "fire at once" (D, I, J, K on reliable transports).
        """
        if timer in RETRANSMIT_TIMERS:
            if reliable:
                return None
            if timer is Timer.E and proceeding:
                # §17.1.2.2: "If Timer E fires while in the "Proceeding" state, the request MUST
                # be passed to the transport layer for retransmission, and Timer E MUST be reset
                # with a value of T2 seconds."
                return self.t2
            if previous is None:
                return self.t1
            if timer is Timer.A:
                # §17.1.1.2: "... MUST reset the timer with a value of 2*T1" (doubling, no cap).
                return 2 * previous
            # Timers E and G: MIN(2*previous, T2).
            return min(2 * previous, self.t2)
        if timer in ABSORB_TIMERS and reliable:
            return 0.0
        if timer is Timer.D:
            return self.timer_d
        if timer is Timer.I or timer is Timer.K:
            return self.t4
        # B, F, H, J (unreliable), L, M.
        return self.transaction_timeout


P = TypeVar("P")
_NEVER = float("inf")


class TimerEntry(Generic[P]):
    """One scheduled deadline; `payload` says what fires."""

    __slots__ = ("cancelled", "payload", "seq", "when")

    def __init__(self, when: float, seq: int, payload: P) -> None:
        self.when = when
        self.seq = seq
        self.payload = payload
        self.cancelled = False

    def __lt__(self, other: TimerEntry[P]) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<TimerEntry at {self.when:.3f} {self.payload!r}{state}>"


class TimerHeap(Generic[P]):
    """Deadlines of many owners in one heap: earliest first, lazy cancellation."""

    __slots__ = ("_added", "_dead", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerEntry[P]]] = []
        self._seq = 0
        self._dead = 0
        self._added = _NEVER  # the earliest deadline scheduled since `earliest_added`

    def __len__(self) -> int:
        """Live (not cancelled, not yet fired) entries."""
        return len(self._heap) - self._dead

    def schedule(self, when: float, payload: P) -> TimerEntry[P]:
        self._seq += 1
        entry = TimerEntry(when, self._seq, payload)
        if when < self._added:
            self._added = when
        # (when, seq, entry) tuples: the heap compares them in C, not through __lt__.
        heapq.heappush(self._heap, (when, self._seq, entry))
        return entry

    def cancel(self, entry: TimerEntry[P]) -> None:
        """Stop an entry; harmless if it already fired or was cancelled."""
        if entry.cancelled:
            return
        entry.cancelled = True
        self._dead += 1
        if self._dead > 32 and self._dead * 2 > len(self._heap):
            self._heap = [item for item in self._heap if not item[2].cancelled]
            heapq.heapify(self._heap)
            self._dead = 0

    def earliest_added(self) -> float:
        """The earliest deadline scheduled since the last call (infinity when none). Until
        one is, the next deadline can only come later (entries cancelled or fired), never
        sooner: whoever armed a wake-up for it need not look again."""
        added = self._added
        self._added = _NEVER
        return added

    def _drop_dead(self) -> None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._dead -= 1

    def next_deadline(self) -> float | None:
        self._drop_dead()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> TimerEntry[P] | None:
        """The earliest live entry whose deadline is not after `now`, removed; else None.

        A popped entry is marked cancelled, so cancelling it later is a no-op."""
        self._drop_dead()
        heap = self._heap
        if not heap or heap[0][0] > now:
            return None
        entry = heapq.heappop(heap)[2]
        entry.cancelled = True
        return entry

"""The shell around the sans-IO layers: it feeds them, drains them, and keeps one timer.

Theory of operation
-------------------
The transports' front door (b2bua.transport.ingress) hands parsed, checked messages to
`receive`. The stack gives them to the transaction layer and then drains, in one loop, until
nothing is left (`flush`):

1. the layer's datagrams go to the transports;
2. the layer's next event goes to the transaction user (b2bua.core), which may append commands
   to the shared outbox (b2bua.commands);
3. the outbox is executed in order: SIP commands go back into the transaction layer, media
   commands to the media port, call records to the recorder;
4. events for the call engine that the media port posted (its answers) are handled.

Nothing above the transaction layer ever calls the stack back while it drains: everything they
want done is a command, executed here after they return.

One `loop.call_at` is armed for the earliest deadline of every clocked layer (the transaction
layer's and the call engine's timer heaps): one timer handle for the whole stack, never one per
transaction or call. Tests drive the same code without a loop: `receive`, then
`handle_deadline(now)` at `next_deadline()` on a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from b2bua.commands import (
    MEDIA_COMMANDS,
    Abandon,
    Command,
    Outbox,
    Respond,
    SendBytes,
    SendRequest,
    WriteRecord,
)
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response
from b2bua.sip.transaction import Event, TransactionLayer

log = logging.getLogger(__name__)

# How late a SIP timer may fire (RFC 3261's shortest, T1, is 500 ms): deadlines this close
# together share one wake-up of the loop.
TIMER_SLACK = 0.010
# How often the coarse layers (the registrar's bindings, the trunks' registrations: deadlines
# of seconds or more) are asked for their next deadline; the fine ones are asked at every drain.
COARSE_POLL = 0.25


class Sender(Protocol):
    """The transports, as the stack uses them."""

    def send(self, data: bytes, flow: Flow) -> None: ...


class TransactionUser(Protocol):
    def on_event(self, event: Event, now: float) -> None: ...

    def on_connection_lost(self, flow: Flow, now: float) -> None: ...


class EventHandler(Protocol):
    def handle(self, event: object, now: float) -> None: ...


class Clocked(Protocol):
    def next_deadline(self) -> float | None: ...

    def handle_deadline(self, now: float) -> None: ...


class Watched(Protocol):
    """A clocked layer that also says what it added: `earliest_added()` is the earliest
    deadline scheduled since its last call (infinity when none)."""

    def earliest_added(self) -> float: ...


class MediaPort(Protocol):
    def execute(self, command: Command) -> None: ...


class Recorder(Protocol):
    def write(self, record: object) -> None: ...


class SipStack:
    def __init__(self, layer: TransactionLayer, clock: Callable[[], float] | None = None) -> None:
        self.layer = layer
        self.outbox = Outbox()
        self.inbox: deque[object] = deque()  # events for the call engine (media answers)
        self.transports: Sender | None = None
        self.tu: TransactionUser | None = None
        self.calls: EventHandler | None = None
        self.media: MediaPort | None = None
        self.recorder: Recorder | None = None
        self.clocked: list[Clocked] = [layer]
        self.coarse: list[Clocked] = []
        self._coarse_deadline: float | None = None
        self._coarse_polled = float("-inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # The clocked layers' `earliest_added` (None when one of them has none): a drain that
        # added no deadline sooner than the armed timer does not ask every layer again.
        self._added: tuple[Callable[[], float], ...] | None = ()
        self._draining = False
        self.timer_wakeups = 0
        self.commands = 0

    def attach(self, transports: Sender, tu: TransactionUser, calls: EventHandler | None = None,
               *clocked: Clocked, coarse: tuple[Clocked, ...] = ()) -> None:
        """Wire the stack: where datagrams go, who hears the layer's events, who handles the
        media port's answers, and which other layers keep deadlines: `clocked` asked at every
        drain, `coarse` every COARSE_POLL seconds (their deadlines are seconds apart, and one
        served a quarter of a second late is on time)."""
        self.transports = transports
        self.tu = tu
        self.calls = calls
        self.clocked = [self.layer, *clocked]
        self.coarse = list(coarse)
        added = [getattr(source, "earliest_added", None) for source in self.clocked]
        self._added = None if None in added else tuple(a for a in added if a is not None)
        self._coarse_polled = float("-inf")
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # driven by hand (tests on a fake clock)
        if self._clock is None:
            self._clock = self._loop.time if self._loop is not None else _no_clock

    def now(self) -> float:
        assert self._clock is not None
        return self._clock()

    # -- in --------------------------------------------------------------------------------
    def receive(self, message: Request | Response, flow: Flow) -> None:
        """A parsed message that passed the front door's checks."""
        now = self.now()
        self.layer.receive(message, flow, now)
        self.flush(now)

    def connection_lost(self, flow: Flow) -> None:
        """A connection closed or could not be opened: its transactions fail, then the TU
        (registrar bindings on it) is told."""
        now = self.now()
        self.layer.transport_error(flow, now)
        if self.tu is not None:
            self.tu.on_connection_lost(flow, now)
        self.flush()

    def post(self, event: object) -> None:
        """An event for the call engine from outside the drain (a media answer that came
        later, an RTP timeout): handled now, with everything it causes."""
        self.inbox.append(event)
        self.flush()

    # -- the drain -------------------------------------------------------------------------
    def flush(self, now: float | None = None) -> None:
        """Deliver the layer's events, execute the commands, re-arm the timer."""
        if self._draining:
            return  # the outer flush will pick up what was just added
        self._draining = True
        if now is None:
            now = self.now()
        try:
            self._drain(now)
        finally:
            self._draining = False
        self._rearm(now)

    def _drain(self, now: float) -> None:
        """One drain runs at one instant: what it runs takes microseconds, and every timer it
        starts is measured from the same `now`."""
        layer = self.layer
        transports = self.transports
        tu = self.tu
        outbox = self.outbox
        inbox = self.inbox
        execute = self._execute
        assert transports is not None and tu is not None
        while True:
            if outbox:
                execute(outbox.popleft(), now)
                continue
            event = layer.next_event()
            if event is not None:
                try:
                    tu.on_event(event, now)
                except Exception:  # a task boundary: one bad call must not stop the stack
                    log.exception("transaction user failed on %s", type(event).__name__)
                continue
            if inbox:
                posted = inbox.popleft()
                calls = self.calls
                if calls is not None:
                    try:
                        calls.handle(posted, now)
                    except Exception:  # a task boundary, as above
                        log.exception("call engine failed on %s", type(posted).__name__)
                continue
            # What the layer queued leaves once the TU has seen every event and its commands
            # have run: it may still take back an INVITE's 100 (Trying) then (a stateless
            # refusal, `TransactionLayer.answer_statelessly`). Sending can report a broken
            # connection: its events are delivered by the loop's next pass.
            datagrams = layer.datagrams_to_send()
            if not datagrams:
                break
            for data, flow in datagrams:
                transports.send(data, flow)

    def _execute(self, command: Command, now: float) -> None:
        self.commands += 1
        self._executors[type(command)](self, command, now)

    def _send_request(self, command: SendRequest, now: float) -> None:
        tx = self.layer.send_request(command.request, command.flow, now)
        tx.context = command.owner

    def _respond(self, command: Respond, now: float) -> None:
        if command.stateless:
            self.layer.answer_statelessly(command.transaction, command.response, now)
        else:
            self.layer.send_response(command.transaction, command.response, now)

    def _send_bytes(self, command: SendBytes, now: float) -> None:
        self.layer.send_bytes(command.data, command.flow)

    def _to_media(self, command: Command, now: float) -> None:
        if self.media is not None:
            try:
                self.media.execute(command)
            except Exception:  # a task boundary: the media port must answer, not crash
                log.exception("media port failed on %s", type(command).__name__)

    def _write_record(self, command: WriteRecord, now: float) -> None:
        if self.recorder is not None:
            self.recorder.write(command.record)

    def _abandon(self, command: Abandon, now: float) -> None:
        invite = self.layer.client_transaction(command.branch, "INVITE")
        if invite is not None:
            self.layer.abandon(invite)

    # Every command kind and what carries it out (a dict: no chain of isinstance per command).
    _executors: ClassVar[dict[type, Callable[[SipStack, Any, float], None]]] = {
        SendRequest: _send_request,
        Respond: _respond,
        SendBytes: _send_bytes,
        WriteRecord: _write_record,
        Abandon: _abandon,
        **dict.fromkeys(MEDIA_COMMANDS, _to_media),
    }

    # -- the one timer ---------------------------------------------------------------------
    def next_deadline(self, now: float | None = None) -> float | None:
        """The earliest deadline of every clocked layer (the coarse ones' as last asked, and
        at the latest when they are to be asked again). `now`: the drain's instant, when the
        caller has it (else the clock is read)."""
        earliest: float | None = None
        for source in self.clocked:
            deadline = source.next_deadline()
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        if self.coarse:
            coarse = self._coarse_next(now)
            if earliest is None or coarse < earliest:
                earliest = coarse
        return earliest

    def _coarse_next(self, now: float | None) -> float:
        """When the coarse layers need the stack next: their earliest deadline, or the time
        to ask them again."""
        polled = self._coarse_polled
        if now is None:
            clock = self._clock
            now = clock() if clock is not None else polled
        if now - polled >= COARSE_POLL:
            polled = self._coarse_polled = now
            earliest: float | None = None
            for source in self.coarse:
                deadline = source.next_deadline()
                if deadline is not None and (earliest is None or deadline < earliest):
                    earliest = deadline
            self._coarse_deadline = earliest
        again = polled + COARSE_POLL
        deadline = self._coarse_deadline
        return again if deadline is None or again < deadline else deadline

    def poll_coarse(self) -> None:
        """A coarse layer's deadline may have come sooner (users changed, bindings reloaded):
        ask it at the next drain."""
        self._coarse_polled = float("-inf")

    def handle_deadline(self, now: float) -> None:
        """Serve every deadline due at `now`, then drain."""
        for source in self.clocked:
            source.handle_deadline(now)
        deadline = self._coarse_deadline
        if self.coarse and deadline is not None and deadline <= now:
            for source in self.coarse:
                source.handle_deadline(now)
            self._coarse_polled = float("-inf")
        self.flush(now)

    def _rearm(self, now: float) -> None:
        """Arm the loop's timer `TIMER_SLACK` after the earliest deadline: every deadline that
        falls within that slack is served by the same wake-up. Under load the layer's
        deadlines (Timers D, K, J... of thousands of transactions) are a millisecond or less
        apart; firing them 10 ms late at most costs nothing in SIP terms."""
        loop = self._loop
        if loop is None:
            return
        if self._added is not None:
            soonest = float("inf")
            for earliest_added in self._added:  # (each call forgets what it reports)
                added = earliest_added()
                if added < soonest:
                    soonest = added
            timer_at = self._timer_at
            if (timer_at is not None and soonest + TIMER_SLACK >= timer_at
                    and (not self.coarse or now - self._coarse_polled < COARSE_POLL)):
                return  # nothing sooner than the armed timer was added: it is early enough
        deadline = self.next_deadline(now)
        if deadline is None:
            return  # an armed timer may fire for nothing: harmless
        when = deadline + TIMER_SLACK
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= when:
                return  # it fires early enough (early is harmless; it re-arms then)
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.timer_wakeups += 1
        self.handle_deadline(self.now())


def _no_clock() -> float:
    raise RuntimeError("the stack runs without an event loop: give it a clock")

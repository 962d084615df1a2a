"""The trunks as a layer of the running server: their REGISTERs and OPTIONS as commands, the
events of those transactions back in, their deadlines on the stack's timer.

Theory of operation. `Trunks` (b2bua.trunks.service) decides what to send and when; this
adapter puts each request it asks for into the shared outbox as a `SendRequest` with itself as
the transaction's owner, after our own top Via for the trunk's flow (a fresh branch, by which
the transaction's events come back). A response, a timeout or a transport failure of such a
transaction goes back to `Trunks` as `handle_response` / `handle_failure`; the log lines it
produced (`TrunkEvent`) are written at their level under the `b2bua.trunks` logger, and
`on_change` is told so that the server stores the new status at once.

The stack serves `next_deadline()` / `handle_deadline(now)` with every other clocked layer.
Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from b2bua.addressing import Local
from b2bua.commands import Outbox, SendRequest
from b2bua.sip.transaction import (
    ResponseReceived,
    Transaction,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from b2bua.trunks.model import TrunkSpec
from b2bua.trunks.requests import Purpose
from b2bua.trunks.service import Trunks

__all__ = ["TrunkAgent"]

log = logging.getLogger("b2bua.trunks")


class TrunkAgent:
    """The SIP side of `Trunks` (see the module docstring)."""

    def __init__(
        self,
        trunks: Trunks,
        outbox: Outbox,
        local: Local,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.trunks = trunks
        self.outbox = outbox
        self.local = local
        self.on_change = on_change
        self.pending: dict[str, tuple[str, Purpose]] = {}  # Via branch -> (trunk, purpose)
        self.sent = 0
        # The trunks' next deadline, as of their last input: every input comes through here,
        # and the stack asks for it after each of its drains (thousands per second).
        self._deadline: float | None = None

    # ---- the life cycle -----------------------------------------------------------------

    def start(self, now: float) -> None:
        """Register to the trunks that register and start pinging (the shell flushes)."""
        self.trunks.start(now)
        self._flush()

    def stop(self, now: float) -> None:
        """Unregister (REGISTER with Expires: 0) and stop pinging."""
        self.trunks.stop(now)
        self._flush()

    def reconfigure(self, specs: tuple[TrunkSpec, ...], now: float) -> None:
        """New trunk specs, live (see `Trunks.reconfigure`)."""
        self.trunks.reconfigure(specs, now)
        self._flush()

    @property
    def unregistering(self) -> bool:
        return self.trunks.unregistering

    # ---- the stack's clocked interface ------------------------------------------------------

    def next_deadline(self) -> float | None:
        return self._deadline

    def handle_deadline(self, now: float) -> None:
        deadline = self._deadline
        if deadline is not None and deadline <= now:
            self.trunks.handle_deadline(now)
            self._flush()

    # ---- transaction events ---------------------------------------------------------------

    def on_transaction_event(self, event: object, now: float) -> None:
        tx: Transaction = event.transaction  # type: ignore[attr-defined]
        kind = type(event)
        if kind is TransactionTerminated:
            self.pending.pop(tx.branch, None)
            return
        sent = self.pending.get(tx.branch)
        if sent is None:
            return
        trunk, purpose = sent
        if kind is ResponseReceived:
            assert isinstance(event, ResponseReceived)
            if event.response.status < 200:
                return
            del self.pending[tx.branch]
            self.trunks.handle_response(trunk, purpose, event.response, now)
        elif kind is TransactionTimedOut or kind is TransportFailed:
            del self.pending[tx.branch]
            why = "no response" if kind is TransactionTimedOut else "transport failure"
            self.trunks.handle_failure(trunk, purpose, why, now)
        self._flush()

    # ---- out ------------------------------------------------------------------------------

    def _flush(self) -> None:
        trunks = self.trunks
        for out in trunks.take_requests():
            flow = trunks.flow(out.trunk)
            via, branch = self.local.via(flow)
            out.request.headers.add_first("Via", via)
            self.pending[branch] = (out.trunk, out.purpose)
            self.sent += 1
            self.outbox.append(SendRequest(out.request, flow, self))
        self._deadline = trunks.next_deadline()
        events = trunks.take_events()
        for event in events:
            log.log(event.level, "trunk %s: %s", event.trunk, event.message)
        if events and self.on_change is not None:
            self.on_change()

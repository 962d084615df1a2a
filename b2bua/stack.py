"""The asyncio shell around the sans-IO SIP layers.

Theory of operation
-------------------
Transports hand `(bytes, Flow)` to `message_received`. The stack parses, answers hopeless
requests statelessly (400 with the parser's reason, 505, 416), stamps `received`/`rport` on the
top Via (RFC 3581) and feeds the transaction layer. It then drains the layer: events go to the
transaction user (the registrar and the call engine, behind `TransactionUser`), datagrams go to
the transports, and one `loop.call_at` is re-armed for the layer's earliest deadline: one timer
handle for the whole stack, never one per transaction.

What cannot be answered (no parsable Via, a broken response) is dropped and counted; it is
logged at DEBUG only, truncated, so a flood cannot turn the log into an amplifier.

With several workers (b2bua.workers), a datagram that another worker owns (by our branch in a
response, our To tag in an in-dialog request, or the Call-ID of a new request) is handed to
that worker as received, told from its bytes before any parse when they tell, else after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.message import (
    Request,
    Response,
    VersionNotSupported,
    can_respond,
    check_extensions,
    make_response,
    parse_message,
    validate_request,
)
from b2bua.sip.transaction import (
    MAGIC_COOKIE,
    ClientTransaction,
    ServerTransaction,
    TransactionLayer,
    add_received,
)
from b2bua.tokens import token, worker_of
from b2bua.transport.manager import TransportManager
from b2bua.workers import HERE, Channel, call_id_owner
from b2bua.workers import route as route_datagram

log = logging.getLogger(__name__)

# How late a SIP timer may fire (RFC 3261's shortest, T1, is 500 ms): deadlines this close
# together share one wake-up of the loop.
TIMER_SLACK = 0.010


class TransactionUser(Protocol):
    def on_event(self, event: object) -> None: ...

    def on_connection_lost(self, flow: Flow) -> None: ...


class SipStack:
    def __init__(
        self,
        layer: TransactionLayer,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.layer = layer
        self.transports: TransportManager | None = None
        self.tu: TransactionUser | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._draining = False
        self.channel: Channel | None = None  # set when there are several workers
        # counters
        self.received = 0
        self.dropped = 0
        self.stateless_replies = 0
        self.timer_wakeups = 0

    def attach(self, transports: TransportManager, tu: TransactionUser) -> None:
        self.transports = transports
        self.tu = tu
        self._loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = self._loop.time

    def now(self) -> float:
        assert self._clock is not None
        return self._clock()

    # -- from the transports --------------------------------------------------------------
    def message_received(self, data: bytes, flow: Flow, route: bool = True) -> None:
        """`route`: hand the message to the worker that owns it (false for a message another
        worker handed over: the worker that read it counted it)."""
        if route:
            self.received += 1
        channel = self.channel
        owner: int | None = HERE
        if channel is not None and route:
            owner = route_datagram(data, channel.role.count)
            if owner is not None and owner != HERE and owner != channel.role.index:
                channel.forward(owner, data, flow)
                return
        msg: Request | Response | None = None
        try:
            msg = parse_message(data, stream=flow.reliable)
            if isinstance(msg, Request):
                if msg.method != "ACK":
                    validate_request(msg)
                    check_extensions(msg)  # 420 for a Require we do not support
                else:
                    msg.via  # noqa: B018 - an ACK is never answered: parse Via or drop
                add_received(msg, flow)
            else:
                msg.via  # noqa: B018
                msg.cseq  # noqa: B018
        except VersionNotSupported as exc:
            if can_respond(exc.request):
                self._reject(exc.request, flow, exc.status, exc.reason)
            else:
                self.dropped += 1
            return
        except SipParseError as exc:
            partial = exc.partial if exc.partial is not None else msg
            request = partial if isinstance(partial, Request) else None
            if request is not None and request.method != "ACK" and can_respond(request):
                self._reject(request, flow, exc.status, exc.reason, exc.headers)
            else:
                self.dropped += 1
                log.debug("dropped from %s: %s: %r", flow, exc.reason, data[:200])
            return
        if owner is None and channel is not None:  # the bytes did not tell: the parse does
            owner = owner_of(msg, channel.role.count)
            if owner != HERE and owner != channel.role.index:
                channel.forward(owner, data, flow)
                return
        self.layer.receive(msg, flow, self.now())
        self.flush()

    def forwarded(self, data: bytes, flow: Flow) -> None:
        """A datagram another worker received for us."""
        self.message_received(data, flow, route=False)

    def connection_lost(self, flow: Flow) -> None:
        """A connection closed or could not be opened: its transactions fail, then the TU
        (registrar bindings on it) is told."""
        self.layer.transport_error(flow, self.now())
        if self.tu is not None:
            self.tu.on_connection_lost(flow)
        self.flush()

    def _reject(
        self, request: Request, flow: Flow, status: int, reason: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.stateless_replies += 1
        log.debug("stateless %s to %s %s: %s", status, request.method, flow, reason)
        # The parser's reasons are already safe for the wire (errors.safe_reason).
        response = make_response(request, status, reason, to_tag=token(6), headers=headers)
        assert self.transports is not None
        self.transports.send(bytes(response), flow)

    # -- from the transaction user ---------------------------------------------------------
    def respond(self, tx: ServerTransaction, response: Response) -> None:
        self.layer.send_response(tx, response, self.now())
        self.flush()

    def respond_2xx(self, tx: ServerTransaction, response: Response) -> None:
        """Send a 2xx to an INVITE and retransmit it until the ACK comes (RFC 3261 §13.3.1.4)."""
        self.layer.send_2xx(tx, response, self.now())
        self.flush()

    def send_request(self, request: Request, flow: Flow) -> ClientTransaction:
        tx = self.layer.send_request(request, flow, self.now())
        self.flush()
        return tx

    def send_stateless(self, message: Request | Response, flow: Flow) -> None:
        """ACK to a 2xx, or anything else that lives outside a transaction."""
        self.send_bytes(bytes(message), flow)

    def send_bytes(self, data: bytes, flow: Flow) -> None:
        """A message already serialised (an ACK sent again)."""
        assert self.transports is not None
        self.transports.send(data, flow)

    def new_branch(self) -> str:
        return self.layer.new_branch()

    def via(self, flow: Flow) -> str:
        """Our Via for a new request on `flow` (a fresh branch; rport asked, RFC 3581)."""
        assert self.transports is not None
        local = self.transports.local_for(flow)
        return f"SIP/2.0/{flow.transport.upper()} {local.hostport};branch={self.new_branch()};rport"

    def contact(self, flow: Flow, user: str = "b2bua") -> str:
        """Our Contact as seen on `flow`."""
        assert self.transports is not None
        local = self.transports.local_for(flow)
        transport = "" if flow.transport == "udp" else f";transport={flow.transport}"
        return f"<sip:{user}@{local.hostport}{transport}>"

    # -- draining the layer ----------------------------------------------------------------
    def flush(self) -> None:
        """Deliver the layer's events, send its datagrams, re-arm the timer."""
        if self._draining:
            return  # the outer flush will pick up what the TU just caused
        self._draining = True
        try:
            layer = self.layer
            transports = self.transports
            tu = self.tu
            assert transports is not None and tu is not None
            while True:
                for data, flow in layer.datagrams_to_send():
                    transports.send(data, flow)
                event = layer.next_event()
                if event is None:
                    break
                try:
                    tu.on_event(event)
                except Exception:  # a task boundary: one bad call must not stop the stack
                    log.exception("transaction user failed on %s", type(event).__name__)
            for data, flow in layer.datagrams_to_send():
                transports.send(data, flow)
        finally:
            self._draining = False
        self._rearm()

    def _rearm(self) -> None:
        """Arm the loop's timer `TIMER_SLACK` after the layer's earliest deadline: every
        deadline that falls within that slack is served by the same wake-up. Under load the
        layer's deadlines (Timers D, K, J... of thousands of transactions) are a millisecond
        or less apart; firing them 10 ms late at most costs nothing in SIP terms."""
        deadline = self.layer.next_deadline()
        if deadline is None:
            return  # an armed timer may fire for nothing: harmless
        when = deadline + TIMER_SLACK
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= when:
                return  # it fires early enough (early is harmless; it re-arms then)
            self._timer.cancel()
        self._timer_at = when
        assert self._loop is not None
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.timer_wakeups += 1
        self.layer.handle_deadline(self.now())
        self.flush()



def owner_of(msg: Request | Response, count: int) -> int:
    """The worker that owns a parsed message, by the rules of `b2bua.workers.route`; `HERE`
    for a response with no mark of ours."""
    try:
        if isinstance(msg, Response):
            branch = msg.via.branch
            if branch and branch.startswith(MAGIC_COOKIE):
                index = worker_of(branch[len(MAGIC_COOKIE):])
                if index is not None and index < count:
                    return index
            return HERE
        index = worker_of(msg.to.tag)
        if index is not None and index < count:
            return index
    except SipParseError:
        return HERE
    return call_id_owner(msg.call_id, count)

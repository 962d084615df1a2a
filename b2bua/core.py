"""The transaction user: routes what the transaction layer delivers to the registrar, the call
engine, or answers it here (OPTIONS, methods we do not serve).

RFC 3261 §8.2.1: "If a UAS does not understand a method, it MUST return 501 (Not
Implemented)"; a method it understands but does not allow here gets 405 with an Allow header.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from b2bua.calls.engine import ALLOW, CallEngine
from b2bua.sip.flow import Flow
from b2bua.sip.message import SUPPORTED_OPTION_TAGS, Request, make_response
from b2bua.sip.transaction import (
    AckTimedOut,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from b2bua.tokens import tag, token

log = logging.getLogger(__name__)

KNOWN_METHODS = frozenset(
    {
        "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "UPDATE", "PRACK",
        "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
    }
)
IN_DIALOG_RELAYED = frozenset({"BYE", "INVITE", "UPDATE", "INFO", "OPTIONS", "ACK"})
ACCEPT = "application/sdp"
SUPPORTED = ", ".join(SUPPORTED_OPTION_TAGS)


class Core:
    def __init__(
        self,
        stack: Any,
        registrar: Any,
        calls: CallEngine,
        domain: str,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.stack = stack
        self.wall_clock = wall_clock
        self.registrar = registrar
        self.calls = calls
        self.domain = domain
        self.options_pings: dict[Any, Any] = {}  # keep-alive OPTIONS tx -> binding
        self.mwi: Any = None  # b2bua.calls.mwi.MessageWaiting

    # -- events from the stack -------------------------------------------------------------
    def on_event(self, event: object) -> None:
        kind = type(event)
        if kind is RequestReceived:
            assert isinstance(event, RequestReceived)
            self._request(event.transaction, event.request, event.flow)
        elif kind is ResponseReceived:
            assert isinstance(event, ResponseReceived)
            binding = self.options_pings.pop(event.transaction, None)
            if binding is not None:
                self.registrar.keepalive_result(binding, True, self.wall_clock())
                return
            self.calls.response_received(event.transaction, event.response, event.flow)
        elif kind is CancelReceived:
            assert isinstance(event, CancelReceived)
            self.calls.cancel_received(event.invite_transaction, event.cancel_transaction, event.request)
        elif kind is TransactionTimedOut or kind is TransportFailed:
            tx = event.transaction  # type: ignore[attr-defined]
            binding = self.options_pings.pop(tx, None)
            if binding is not None:
                self.registrar.keepalive_result(binding, False, self.wall_clock())
                return
            self.calls.transaction_failed(tx, "timed out" if kind is TransactionTimedOut else "transport failed")
        elif kind is AckTimedOut:
            self.calls.ack_timed_out(event.transaction)  # type: ignore[attr-defined]
        elif kind is TransactionTerminated:
            tx = event.transaction  # type: ignore[attr-defined]
            self.options_pings.pop(tx, None)
            self.calls.transaction_terminated(tx)

    def on_connection_lost(self, flow: Flow) -> None:
        if flow.connection_id is not None:
            self.registrar.connection_closed(flow.connection_id, self.wall_clock())
        self.calls.connection_lost(flow)

    # -- requests --------------------------------------------------------------------------
    def _request(self, tx: Any, request: Request, flow: Flow) -> None:
        method = request.method
        if method == "ACK":
            if request.to.tag:
                self.calls.in_dialog_request(tx, request, flow)
            return  # an ACK outside a dialog (or for a non-2xx: absorbed below us)
        in_dialog = request.to.tag is not None
        if method == "SUBSCRIBE" and self.mwi is not None:
            self.mwi.subscribe(tx, request, flow)
            return
        if in_dialog and method in IN_DIALOG_RELAYED:
            self.calls.in_dialog_request(tx, request, flow)
            return
        if method == "REGISTER":
            response = self.registrar.handle_register(request, flow, self.wall_clock())
            self.stack.respond(tx, response)
            return
        if method == "OPTIONS":
            self.stack.respond(tx, self.options_response(request))
            return
        if method == "INVITE":
            self.calls.invite_received(tx, request, flow)
            return
        if method not in KNOWN_METHODS:
            self.stack.respond(tx, make_response(request, 501, to_tag=tag(), headers=[("Allow", ALLOW)]))
            return
        if in_dialog:
            # A method we do not relay (REFER, MESSAGE, PRACK, NOTIFY...): 405 inside one of
            # our dialogs, 481 when there is no such dialog (RFC 3261 §12.2.2).
            known = (request.call_id, request.to.tag or "") in self.calls.legs
            status = 405 if known else 481
            headers = [("Allow", ALLOW)] if known else []
            self.stack.respond(tx, make_response(request, status, headers=headers))
            return
        if method in ("BYE", "PRACK", "UPDATE", "INFO"):
            # These only exist inside a dialog; none matched (§12.2.2).
            self.stack.respond(tx, make_response(request, 481, to_tag=tag()))
            return
        self.stack.respond(tx, make_response(request, 405, to_tag=tag(), headers=[("Allow", ALLOW)]))

    def options_response(self, request: Request) -> Any:
        return make_response(
            request,
            200,
            to_tag=tag(),
            headers=[
                ("Allow", ALLOW),
                ("Accept", ACCEPT),
                ("Accept-Language", "fr, en"),
                ("Supported", SUPPORTED),
                ("Allow-Events", "message-summary"),
            ],
        )

    # -- keep-alive OPTIONS to NATed devices (sent by the server's housekeeping) -----------
    def send_keepalive(self, binding: Any) -> None:
        """OPTIONS to a UDP device: keeps its NAT pinhole open and tells whether it is alive."""
        uri, flow = self.registrar.target_for(binding)
        request = Request(
            "OPTIONS",
            uri,
            [
                ("Via", self.stack.via(flow)),
                ("Max-Forwards", "70"),
                ("From", f"<sip:keepalive@{self.domain}>;tag={tag()}"),
                ("To", f"<{uri}>"),
                ("Call-ID", token(10)),
                ("CSeq", "1 OPTIONS"),
            ],
        )
        tx = self.stack.send_request(request, flow)
        self.options_pings[tx] = binding


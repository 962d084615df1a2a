"""The transaction user: sorts what the transaction layer delivers, sans-IO.

Requests go by method and dialog to the registrar, the call engine and message waiting, or are
answered here (OPTIONS, methods we do not serve); the events of a client transaction go to the
transaction's owner (whoever started it: the call engine, the keep-alive probes here). Answers
are commands in the shared outbox, like everything above the transaction layer.

RFC 3261 §8.2.1: "If a UAS does not understand a method, it MUST return 501 (Not
Implemented)"; a method it understands but does not allow here gets 405 with an Allow header.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from b2bua.addressing import Local
from b2bua.calls.engine import CallEngine
from b2bua.calls.events import AckNeverCame, CallerCancelled, InDialogRequest, InviteReceived
from b2bua.calls.model import ALLOW
from b2bua.calls.mwi import MessageWaiting
from b2bua.commands import Outbox, Respond, SendRequest
from b2bua.registrar.model import Binding
from b2bua.sip.flow import Flow
from b2bua.sip.message import SUPPORTED_OPTION_TAGS, Request, Response, make_response
from b2bua.sip.transaction import (
    AckTimedOut,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    Transaction,
    TransactionTerminated,
)
from b2bua.sip.uri import SipUri
from b2bua.tokens import TokenSource

log = logging.getLogger(__name__)

KNOWN_METHODS = frozenset(
    {
        "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "UPDATE", "PRACK",
        "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
    }
)
IN_DIALOG_RELAYED = frozenset({"BYE", "INVITE", "UPDATE", "INFO", "OPTIONS", "ACK", "REFER"})
ACCEPT = "application/sdp"
SUPPORTED = ", ".join(SUPPORTED_OPTION_TAGS)


class Registrar(Protocol):
    """What the core asks of the registrar."""

    def handle_register(self, request: Request, flow: Flow, now: float) -> Response: ...

    @property
    def failures(self) -> int: ...

    def repeatable(self, response: Response, failures_before: int) -> bool: ...

    def connection_closed(self, connection_id: int, now: float) -> object: ...

    def keepalive_result(self, binding: Binding, ok: bool, now: float) -> None: ...

    def target_for(self, binding: Binding) -> tuple[SipUri, Flow]: ...


class Core:
    def __init__(
        self,
        outbox: Outbox,
        local: Local,
        registrar: Registrar,
        calls: CallEngine,
        domain: str,
        wall_clock: Callable[[], float],
        mwi: MessageWaiting | None = None,
    ) -> None:
        self.outbox = outbox
        self.local = local
        self.tokens: TokenSource = local.tokens
        self.wall_clock = wall_clock
        self.registrar = registrar
        self.calls = calls
        self.domain = domain
        self.mwi = mwi
        self.options_pings: dict[str, Binding] = {}  # keep-alive OPTIONS (by branch) -> binding
        # With a store across the network (b2bua.pgstore): REGISTERs go there instead, and
        # their response is sent once the commit is done.
        self.register_later: Callable[[ServerTransaction, Request, Flow], None] | None = None

    # -- events from the transaction layer -------------------------------------------------
    def on_event(self, event: Event, now: float) -> None:
        if type(event) is RequestReceived:
            self._request(event.transaction, event.request, event.flow, now)
        elif type(event) is CancelReceived:
            self.calls.handle(CallerCancelled(event.invite_transaction,
                                              event.cancel_transaction, event.request), now)
        elif type(event) is AckTimedOut:
            self.calls.handle(AckNeverCame(event.transaction), now)
        else:
            tx = event.transaction
            owner = tx.context
            if tx.is_client and owner is not None:
                owner.on_transaction_event(event, now)  # type: ignore[attr-defined]

    def on_connection_lost(self, flow: Flow, now: float) -> None:
        if flow.connection_id is not None:
            self.registrar.connection_closed(flow.connection_id, self.wall_clock())

    def _refuse_at_once(self, tx: ServerTransaction, response: Response) -> None:
        """An answer the same request would get again, whatever came before: no transaction
        state is kept for it (RFC 3261 §8.2.7)."""
        self.outbox.append(Respond(tx, response, stateless=True))

    # -- requests --------------------------------------------------------------------------
    def _request(self, tx: ServerTransaction | None, request: Request, flow: Flow,
                 now: float) -> None:
        method = request.method
        if tx is None or method == "ACK":
            if request.to.tag:
                self.calls.handle(InDialogRequest(None, request, flow), now)
            return  # an ACK outside a dialog (or for a non-2xx: absorbed below us)
        in_dialog = request.to.tag is not None
        if method == "SUBSCRIBE" and self.mwi is not None:
            self.mwi.subscribe(tx, request, flow)
            return
        if in_dialog and method in IN_DIALOG_RELAYED:
            self.calls.handle(InDialogRequest(tx, request, flow), now)
            return
        if method == "REGISTER":
            if self.register_later is not None:
                self.register_later(tx, request, flow)
                return
            failures = self.registrar.failures
            response = self.registrar.handle_register(request, flow, self.wall_clock())
            self.outbox.append(Respond(
                tx, response, stateless=self.registrar.repeatable(response, failures)))
            return
        if method == "OPTIONS":
            self._refuse_at_once(tx, self.options_response(request))  # nothing to remember either
            return
        if method == "INVITE":
            self.calls.handle(InviteReceived(tx, request, flow), now)
            return
        if method not in KNOWN_METHODS:
            self._refuse_at_once(tx, make_response(request, 501, to_tag=self.tokens.tag(),
                                                   headers=[("Allow", ALLOW)]))
            return
        if in_dialog:
            # A method we do not relay (REFER, MESSAGE, PRACK, NOTIFY...): 405 inside one of
            # our dialogs, 481 when there is no such dialog (RFC 3261 §12.2.2).
            known = self.calls.knows_dialog(request.call_id, request.to.tag or "")
            status = 405 if known else 481
            headers = [("Allow", ALLOW)] if known else []
            self._refuse_at_once(tx, make_response(request, status, headers=headers))
            return
        if method == "REFER":
            # RFC 3515 §2.4.2: a REFER outside a dialog would create one; we only act on a
            # REFER within a call (a transfer), so say so.
            self._refuse_at_once(tx, make_response(request, 403, "REFER outside a dialog",
                                                   to_tag=self.tokens.tag()))
            return
        if method in ("BYE", "PRACK", "UPDATE", "INFO"):
            # These only exist inside a dialog; none matched (§12.2.2).
            self._refuse_at_once(tx, make_response(request, 481, to_tag=self.tokens.tag()))
            return
        self._refuse_at_once(tx, make_response(request, 405, to_tag=self.tokens.tag(),
                                               headers=[("Allow", ALLOW)]))

    def options_response(self, request: Request) -> Response:
        return make_response(
            request,
            200,
            to_tag=self.tokens.tag(),
            headers=[
                ("Allow", ALLOW),
                ("Accept", ACCEPT),
                ("Accept-Language", "fr, en"),
                ("Supported", SUPPORTED),
                ("Allow-Events", "message-summary"),
            ],
        )

    # -- keep-alive OPTIONS to NATed devices (sent by the server's housekeeping) -----------
    def send_keepalive(self, binding: Binding) -> None:
        """OPTIONS to a UDP device: keeps its NAT pinhole open and tells whether it is alive."""
        uri, flow = self.registrar.target_for(binding)
        via, branch = self.local.via(flow)
        request = Request(
            "OPTIONS",
            uri,
            [
                ("Via", via),
                ("Max-Forwards", "70"),
                ("From", f"<sip:keepalive@{self.domain}>;tag={self.tokens.tag()}"),
                ("To", f"<{uri}>"),
                ("Call-ID", self.tokens.token(10)),
                ("CSeq", "1 OPTIONS"),
            ],
        )
        self.options_pings[branch] = binding
        self.outbox.append(SendRequest(request, flow, self))

    def on_transaction_event(self, event: object, now: float) -> None:
        """The events of our keep-alive probes."""
        tx: Transaction = event.transaction  # type: ignore[attr-defined]
        if type(event) is TransactionTerminated:
            self.options_pings.pop(tx.branch, None)
            return
        binding = self.options_pings.pop(tx.branch, None)
        if binding is not None:
            self.registrar.keepalive_result(binding, type(event) is ResponseReceived,
                                            self.wall_clock())

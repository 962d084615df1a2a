"""The front door of the SIP stack: what the transports receive, before any transaction.

Theory of operation
-------------------
Transports hand `(bytes, Flow)` to `message_received`. The front door parses, answers
hopeless requests statelessly (400 with the parser's reason, 505, 416), stamps `received` and
`rport` on a request's top Via (RFC 3581: what brings responses back through a NAT), and hands
the message to the stack. What cannot be answered (no parsable Via, a broken response) is
dropped and counted; it is logged at DEBUG only, truncated, so a flood cannot turn the log into
an amplifier.

With several workers (b2bua.workers), a datagram that another worker owns (by our branch in a
response, our To tag in an in-dialog request, or the Call-ID of a new request) is handed to
that worker as received: told from its bytes before any parse when they tell, else after it.
The stack behind the front door is single-process: it never sees another worker's messages.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Protocol

from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.grammar import split_list
from b2bua.sip.headers import Via
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
from b2bua.sip.transaction import MAGIC_COOKIE
from b2bua.tokens import TokenSource, worker_of
from b2bua.workers import HERE, Channel, call_id_owner
from b2bua.workers import route as route_datagram

log = logging.getLogger(__name__)


class Stack(Protocol):
    def receive(self, message: Request | Response, flow: Flow) -> None: ...

    def connection_lost(self, flow: Flow) -> None: ...


class Sender(Protocol):
    def send(self, data: bytes, flow: Flow) -> None: ...


class Ingress:
    """The transports' receiver (b2bua.transport.base.Receiver)."""

    def __init__(self, stack: Stack, tokens: TokenSource) -> None:
        self.stack = stack
        self.tokens = tokens
        self.transports: Sender | None = None
        self.channel: Channel | None = None  # set when there are several workers
        # counters
        self.received = 0
        self.dropped = 0
        self.stateless_replies = 0

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
        self.stack.receive(msg, flow)

    def forwarded(self, data: bytes, flow: Flow) -> None:
        """A datagram another worker received for us."""
        self.message_received(data, flow, route=False)

    def connection_lost(self, flow: Flow) -> None:
        self.stack.connection_lost(flow)
        if self.channel is not None and self.channel.role.primary:
            self.channel.tell_closed(flow)  # the other workers' transactions on it fail too

    def _reject(
        self, request: Request, flow: Flow, status: int, reason: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.stateless_replies += 1
        log.debug("stateless %s to %s %s: %s", status, request.method, flow, reason)
        # The parser's reasons are already safe for the wire (errors.safe_reason).
        response = make_response(request, status, reason, to_tag=self.tokens.token(6),
                                 headers=headers)
        assert self.transports is not None
        self.transports.send(bytes(response), flow)


def _same_address(via_host: str, source: str) -> bool:
    host = via_host[1:-1] if via_host.startswith("[") else via_host
    if host == source:
        return True  # the common case, without parsing addresses
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(source)
    except ValueError:
        return False  # a domain name in sent-by always differs from the source address


def add_received(request: Request, flow: Flow) -> bool:
    """Stamp the top Via with where the request really came from (RFC 3261 §18.2.1, RFC 3581 §4).

    Adds `received=<flow.host>` when sent-by is not that address (or when `rport` was asked for),
    and fills a valueless `rport` with `flow.port`. Only the top Via value changes; every other
    Via value keeps its text. Returns whether anything changed. Raises SipParseError on a broken
    top Via.
    """
    first_field = split_list(request.headers.get("via") or "")
    if not first_field:
        raise SipParseError("Missing Via header")
    via = request.via  # parsed once, cached on the message
    params = dict(via.params)
    changed = False
    # RFC 3581 §4: "If this Via header field value contains an "rport" parameter with no value,
    # it MUST set the value of the parameter to the source port of the request."
    wants_rport = "rport" in params and not params["rport"]
    if wants_rport:
        params["rport"] = str(flow.port)
        changed = True
    # RFC 3261 §18.2.1: "If the host portion of the "sent-by" parameter contains a domain name,
    # or if it contains an IP address that differs from the packet source address, the server
    # MUST add a "received" parameter to that Via header field value." RFC 3581 §4: with rport,
    # the server "MUST insert a "received" parameter containing the source IP address that the
    # request came from, even if it is identical to the value of the "sent-by" component."
    if (wants_rport or not _same_address(via.host, flow.host)) and params.get(
        "received"
    ) != flow.host:
        params["received"] = flow.host
        changed = True
    if not changed:
        return False
    parsed = request.vias
    stamped = Via(via.transport, via.host, via.port, params)
    # Headers.set leaves one Via header where the first one was: the new top value, then every
    # other value (the rest of the first header, then the other Via headers) as written.
    others = [*first_field[1:], *request.headers.get_all("via")[1:]]
    request.headers.set("Via", ", ".join([str(stamped), *others]))
    request.headers.store("via", [stamped, *parsed[1:]])  # what set() invalidated, still valid
    return True


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

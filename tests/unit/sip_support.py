"""Shared checks for the SIP parser tests.

`summary()` reduces a message to its typed fields (what vectors and properties compare);
`exercise()` pushes remote bytes through the parser, the validator, every typed accessor, the
response builder and the stream framer, letting only `SipParseError` be absorbed: any other
exception propagates and fails the calling test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from b2bua.sip.errors import MAX_REASON_CHARS, SipParseError
from b2bua.sip.framing import KEEPALIVE_PING, StreamFramer
from b2bua.sip.headers import NameAddr, Via
from b2bua.sip.message import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    Message,
    Request,
    Response,
    can_respond,
    make_response,
    parse_message,
    validate_request,
)
from b2bua.sip.uri import SipUri, Uri


def check_reason(exc: SipParseError) -> None:
    """A reason goes back on the wire: short, never empty, only characters the Reason-Phrase
    grammar allows unescaped."""
    assert exc.reason
    assert len(exc.reason) <= MAX_REASON_CHARS
    assert all(c.isascii() and (c.isalnum() or c in "-_.!~*'();/?:@&=+$, ") for c in exc.reason), (
        exc.reason
    )
    assert 300 <= exc.status <= 699


def contract(fn: Callable[[], Any]) -> Any:
    """Run `fn`; a SipParseError is fine (and checked), anything else propagates."""
    try:
        return fn()
    except SipParseError as exc:
        check_reason(exc)
        return None


def summary(msg: Message) -> dict[str, object]:
    """The typed fields a B2BUA reads, as plain values."""
    out: dict[str, object] = {}
    if isinstance(msg, Request):
        out["method"] = msg.method
        out["request_uri"] = str(msg.request_uri)
    else:
        assert isinstance(msg, Response)
        out["status"] = msg.status
        out["reason"] = msg.reason
    out["call_id"] = msg.call_id
    out["cseq"] = (msg.cseq.number, msg.cseq.method)
    out["from_tag"] = msg.from_.tag
    out["to_tag"] = msg.to.tag
    out["from_uri"] = str(msg.from_.uri)
    out["to_uri"] = str(msg.to.uri)
    out["from_display"] = msg.from_.display_name
    out["branches"] = [v.branch for v in msg.vias]
    out["via_hosts"] = [(v.transport, v.host, v.port) for v in msg.vias]
    out["contact_star"] = msg.contact_star
    out["contacts"] = [str(c.uri) for c in msg.contacts]
    out["routes"] = [str(r.uri) for r in msg.name_addrs("route")]
    out["record_routes"] = [str(r.uri) for r in msg.name_addrs("record-route")]
    out["max_forwards"] = msg.max_forwards
    out["expires"] = msg.expires
    out["content_type"] = msg.content_type
    out["body"] = msg.body
    return out


def _exercise_uri(uri: Uri) -> None:
    str(uri)
    hash(uri)
    assert uri == uri
    if isinstance(uri, SipUri):
        for get in (
            lambda: uri.user_unescaped,
            lambda: uri.transport,
            lambda: uri.host_for_socket,
            lambda: uri.hostport,
            uri.header_fields,
        ):
            contract(get)


def _exercise_name_addr(na: NameAddr) -> None:
    na.tag  # noqa: B018
    str(na)
    for name in list(na.params):
        contract(lambda name=name: na.param(name))
    uri = contract(lambda: na.uri)
    if uri is not None:
        _exercise_uri(uri)
        contract(lambda: na.sip_uri)
        str(na)


def _exercise_via(via: Via) -> None:
    via.branch  # noqa: B018
    via.received  # noqa: B018
    via.rport  # noqa: B018
    str(via)


def exercise_message(msg: Request | Response, *, whole: bool = True) -> None:
    """Every accessor of a message, each on its own under the contract.

    `whole` is False for the partial request a SipParseError carries: it may not serialize into
    something that parses again.
    """
    vias = contract(lambda: msg.vias)
    for via in vias or []:
        _exercise_via(via)
    contract(lambda: msg.via)
    for get in (lambda: msg.from_, lambda: msg.to):
        na = contract(get)
        if na is not None:
            _exercise_name_addr(na)
    contract(lambda: msg.cseq)
    contract(lambda: msg.call_id)
    contract(lambda: msg.contact_star)
    for na in contract(lambda: msg.contacts) or []:
        _exercise_name_addr(na)
    for name in ("route", "record-route", "path", "p-asserted-identity"):
        for na in contract(lambda name=name: msg.name_addrs(name)) or []:
            _exercise_name_addr(na)
    contract(lambda: msg.max_forwards)
    contract(lambda: msg.expires)
    contract(lambda: msg.content_type)
    for name, _ in list(msg.headers):
        contract(lambda name=name: msg.headers.values(name))
    if isinstance(msg, Request):
        uri = contract(lambda: msg.request_uri)
        if uri is not None:
            _exercise_uri(uri)
        contract(lambda: validate_request(msg))
        if can_respond(msg):
            response = make_response(msg, 400, "Bad Request", to_tag="t1")
            again = parse_message(bytes(response))
            assert isinstance(again, Response) and again.status == 400
    # A parsed message serializes back, and a changed one still parses.
    data = bytes(msg)
    msg.headers.add("X-Exercised", "1")
    changed = bytes(msg)
    assert changed != data
    if not whole or len(msg.headers) > MAX_HEADERS - 2 or len(changed) > MAX_HEADER_BYTES:
        contract(lambda: parse_message(changed))
        return
    reparsed = parse_message(changed)
    assert reparsed.headers.get("x-exercised") == "1"
    assert reparsed.body == msg.body


def exercise(data: bytes) -> None:
    """Remote bytes through the parser (datagram and stream) and everything after it."""
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        check_reason(exc)
        if isinstance(exc.partial, Request):
            exercise_message(exc.partial, whole=False)
    else:
        exercise_message(msg)
    exercise_stream(data)


def exercise_stream(data: bytes, chunk: int = 7) -> None:
    framer = StreamFramer()
    for i in range(0, len(data), chunk):
        framer.feed(data[i : i + chunk])
        while True:
            try:
                event = framer.next_event()
            except SipParseError as exc:
                check_reason(exc)
                return
            if event is None:
                break
            if event == KEEPALIVE_PING:
                continue
            assert isinstance(event, bytes)
            try:
                msg = parse_message(event, stream=True)
            except SipParseError as exc:
                check_reason(exc)
            else:
                exercise_message(msg)

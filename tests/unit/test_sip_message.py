"""The message model around the parser: change detection, stateless answers, reason phrases,
request validation and stream framing errors."""

from __future__ import annotations

import pytest

from b2bua.sip.errors import MAX_REASON_CHARS, SipParseError, safe_reason
from b2bua.sip.framing import KEEPALIVE_PING, StreamFramer
from b2bua.sip.message import (
    MAX_HEADER_BYTES,
    SUPPORTED_OPTION_TAGS,
    BadExtension,
    Request,
    Response,
    VersionNotSupported,
    can_respond,
    check_extensions,
    is_utf8,
    make_response,
    parse_message,
    validate_request,
)
from b2bua.sip.uri import SipUri

INVITE = (
    b"INVITE sip:2001@pbx.example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKm1\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Desk" <sip:1001@pbx.example.net>;tag=f1\r\n'
    b"To: <sip:2001@pbx.example.net>\r\n"
    b"Call-ID: m-1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Timestamp: 12.5\r\n"
    b"Contact: <sip:1001@192.0.2.21>\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"body"
)


def parse_request(data: bytes = INVITE) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


# -- change detection ---------------------------------------------------------------------------


def test_unchanged_message_gives_back_its_bytes() -> None:
    msg = parse_request()
    msg.via  # noqa: B018 - reading changes nothing
    assert bytes(msg) is bytes(msg)
    assert bytes(msg) == INVITE


@pytest.mark.parametrize(
    "change, expect",
    [
        (lambda m: setattr(m, "body", b"longer body"), b"Content-Length: 11\r\n\r\nlonger body"),
        (lambda m: setattr(m, "body", b""), b"Content-Length: 0\r\n\r\n"),
        (lambda m: setattr(m, "method", "OPTIONS"), b"OPTIONS sip:2001@pbx.example.net SIP/2.0\r\n"),
        (lambda m: setattr(m, "request_uri", SipUri("192.0.2.30", user="2001")), b"INVITE sip:2001@192.0.2.30 SIP/2.0\r\n"),
        (lambda m: m.headers.set("Max-Forwards", "69"), b"\r\nMax-Forwards: 69\r\n"),
        (lambda m: m.headers.remove("timestamp"), b"CSeq: 1 INVITE\r\nContact"),
    ],
)  # fmt: skip
def test_any_change_is_serialized(change: object, expect: bytes) -> None:
    msg = parse_request()
    assert callable(change)
    change(msg)
    data = bytes(msg)
    assert expect in data
    again = parse_message(data)
    assert again.headers.get_all("content-length") == [str(len(again.body))]
    # Untouched lines keep their bytes.
    assert b'From: "Desk" <sip:1001@pbx.example.net>;tag=f1\r\n' in data


def test_typed_views_follow_header_changes() -> None:
    msg = parse_request()
    assert msg.via.branch == "z9hG4bKm1" and msg.to.tag is None
    msg.headers.add_first("Via", "SIP/2.0/TCP edge;branch=z9hG4bKtop")
    msg.headers.set("To", "<sip:2001@pbx.example.net>;tag=t2")
    assert [v.branch for v in msg.vias] == ["z9hG4bKtop", "z9hG4bKm1"]
    assert msg.to.tag == "t2"
    # Contacts and the generic list view do not share a cache entry.
    assert [str(c.uri) for c in msg.name_addrs("contact")] == ["sip:1001@192.0.2.21"]
    assert [str(c.uri) for c in msg.contacts] == ["sip:1001@192.0.2.21"]
    msg.headers.set("Contact", "<sip:other@h>")
    assert [str(c.uri) for c in msg.contacts] == ["sip:other@h"]
    assert [str(c.uri) for c in msg.name_addrs("m")] == ["sip:other@h"]


def test_built_request_gets_its_content_length() -> None:
    req = Request(
        "OPTIONS",
        "sip:pbx.example.net",
        [("v", "SIP/2.0/UDP h;branch=z9hG4bKb"), ("i", "b-1"), ("cseq", "1 OPTIONS")],
        b"x",
    )
    assert bytes(req) == (
        b"OPTIONS sip:pbx.example.net SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKb\r\n"
        b"Call-ID: b-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 1\r\n\r\nx"
    )


# -- reason phrases -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expect",
    [
        ("Missing Call-ID header", "Missing Call-ID header"),
        ("bad\r\nX-Injected: 1", "bad  X-Injected: 1"),
        ("Malformed host '<x>'\x00\udcff", "Malformed host '(x)'??"),
        ('quote " and [v6]', "quote ' and (v6)"),
        ("", "Bad Request"),
        ("\r\n", "Bad Request"),
    ],
)
def test_safe_reason(text: str, expect: str) -> None:
    assert safe_reason(text) == expect


def test_reasons_built_from_remote_text_are_short_and_on_one_line() -> None:
    err = SipParseError("Malformed header name " + repr("x\r\n" * 500))
    assert len(err.reason) <= MAX_REASON_CHARS and err.reason.endswith("...")
    assert "\r" not in err.reason and "\n" not in err.reason
    assert str(err) == err.reason and err.status == 400 and err.partial is None


def test_response_reason_stays_on_one_line() -> None:
    resp = Response(480, "Away\r\nX-Injected: yes" + "!" * 1000)
    assert b"X-Injected" not in bytes(resp).split(b"\r\n")[1]
    assert bytes(resp).startswith(b"SIP/2.0 480 Away  X-Injected: yes!!!")
    assert len(bytes(resp).split(b"\r\n")[0]) < 300
    resp.reason = "set\nlater"
    assert bytes(resp).startswith(b"SIP/2.0 480 set later\r\n")
    assert Response(299).reason == "Unknown" and Response(404).reason == "Not Found"


# -- stateless answers --------------------------------------------------------------------------


def test_make_response_copies_what_rfc_3261_says() -> None:
    req = parse_request()
    resp = make_response(req, 486, to_tag="t9", headers=[("Retry-After", "60")])
    again = parse_message(bytes(resp))
    assert isinstance(again, Response)
    assert (again.status, again.reason) == (486, "Busy Here")
    for name in ("via", "from", "call-id", "cseq"):
        assert again.headers.get_all(name) == req.headers.get_all(name)
    assert again.to.tag == "t9" and again.headers.get("retry-after") == "60"
    assert "timestamp" not in again.headers
    trying = make_response(req, 100, to_tag="t9")
    assert trying.to.tag is None and trying.headers.get("timestamp") == "12.5"


def test_make_response_keeps_an_existing_to_tag() -> None:
    req = parse_request(
        INVITE.replace(b"To: <sip:2001@pbx.example.net>", b"To: <sip:2001@pbx.example.net>;tag=old")
    )
    assert make_response(req, 200, to_tag="new").to.tag == "old"


def test_answer_to_a_request_missing_headers_leaves_them_out() -> None:
    data = INVITE.replace(b"Call-ID: m-1\r\n", b"").replace(
        b"To: <sip:2001@pbx.example.net>\r\n", b""
    )
    with pytest.raises(SipParseError) as info:
        validate_request(parse_request(data))
    partial = info.value.partial
    assert isinstance(partial, Request) and can_respond(partial)
    answer = bytes(make_response(partial, info.value.status, info.value.reason, to_tag="x"))
    assert answer.startswith(b"SIP/2.0 400 Missing To header\r\n")
    assert b"Call-ID" not in answer and b"\r\nTo:" not in answer


@pytest.mark.parametrize(
    "data, answerable",
    [
        (INVITE, True),
        (INVITE.replace(b"CSeq: 1 INVITE\r\n", b""), False),
        (INVITE.replace(b"Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKm1\r\n", b""), False),
        (INVITE.replace(b"192.0.2.21:5060;branch", b"192.0.2.21:5060 branch"), False),
        (
            INVITE.replace(b"Max-Forwards: 70\r\n", b"Via: SIP/2.0/UDP @@@\r\n"),
            True,
        ),  # only the top Via matters
    ],
)
def test_can_respond(data: bytes, answerable: bool) -> None:
    assert can_respond(parse_request(data)) is answerable


def test_other_version_is_answerable_with_that_version_in_its_via() -> None:
    """RFC 4475 §3.4.1 (badvers) writes SIP/7.0 in the Request-Line and in the Via."""
    data = (INVITE.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1)
            .replace(b"Via: SIP/2.0/UDP", b"Via: SIP/7.0/UDP"))
    with pytest.raises(VersionNotSupported) as info:
        parse_message(data)
    assert can_respond(info.value.request)
    answer = make_response(info.value.request, 505, to_tag="t")
    assert bytes(answer).startswith(b"SIP/2.0 505 Version Not Supported\r\n")
    # Another version's Via is still unreadable for a SIP/2.0 request.
    assert not can_respond(parse_request(INVITE.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/7.0/UDP")))


def test_version_not_supported_keeps_the_request() -> None:
    with pytest.raises(VersionNotSupported) as info:
        parse_message(INVITE.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    assert info.value.status == 505
    assert info.value.request is info.value.partial
    assert info.value.request.method == "INVITE"


def test_a_failed_body_keeps_the_parsed_head() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(INVITE.replace(b"Content-Length: 4", b"Content-Length: 40"))
    assert isinstance(info.value.partial, Request)
    assert info.value.partial.call_id == "m-1"


def test_a_folded_header_too_long_once_unfolded_is_refused_and_our_answer_parses() -> None:
    """Each physical line is short, the header is not: what we write back from it (our 400
    copies From) must be a message we can read ourselves."""
    folded = b"From: <sip:1001@pbx.example.net>;tag=f1" + b"\r\n " + b"\r\n ".join([b"x" * 4000] * 3)
    data = INVITE.replace(b'From: "Desk" <sip:1001@pbx.example.net>;tag=f1', folded)
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 513 and "too long" in str(info.value)
    partial = info.value.partial
    assert isinstance(partial, Request) and partial.call_id == "m-1"
    answer = parse_message(bytes(make_response(partial, 400, "Bad Request", to_tag="t1")))
    assert isinstance(answer, Response) and answer.status == 400


def test_responses_that_fail_carry_nothing_to_answer() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nBad line\r\n\r\n")
    assert info.value.partial is None


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, status, fragment",
    [
        (b"Max-Forwards: 70", b"Max-Forwards: many", 400, "Max-Forwards"),
        (b"Call-ID: m-1", b"Call-ID: m 1", 400, "Malformed Call-ID"),
        (b"Call-ID: m-1", b"Call-ID: ", 400, "Missing Call-ID"),
        (b"Contact: <sip:1001@192.0.2.21>", b"Contact: <sip:1001@192.0.2.21:x>", 400, "port"),
        (b"Contact: <sip:1001@192.0.2.21>", b"Expires: soon", 400, "Expires"),
        (b"Contact: <sip:1001@192.0.2.21>", b"Route: <sip:a b>", 400, "Illegal character"),
        (b"To: <sip:2001@pbx.example.net>", b"To: <sip:>", 400, "Missing host"),
        (b"INVITE sip:2001@pbx.example.net", b"INVITE tel:+15550100", 416, "tel"),
        (b"CSeq: 1 INVITE", b"CSeq: 1 invite", 400, "CSeq method"),
        (b"Call-ID: m-1", "Call-ID: m-é".encode(), 400, "Malformed Call-ID"),
        (b"Call-ID: m-1", b"Call-ID: m-\xff", 400, "Malformed Call-ID"),
        (b"Call-ID: m-1", b"Call-ID: m-\x01", 400, "Malformed Call-ID"),
    ],
)
def test_validate_request(old: bytes, new: bytes, status: int, fragment: str) -> None:
    req = parse_request(INVITE.replace(old, new))
    with pytest.raises(SipParseError) as info:
        validate_request(req)
    assert info.value.status == status
    assert fragment in info.value.reason
    assert info.value.partial is req


def test_a_missing_max_forwards_is_tolerated() -> None:
    req = parse_request(INVITE.replace(b"Max-Forwards: 70\r\n", b""))
    validate_request(req)
    assert req.max_forwards is None


# -- stream framing errors ----------------------------------------------------------------------


def frame(data: bytes) -> list[bytes | str]:
    framer = StreamFramer()
    framer.feed(data)
    events: list[bytes | str] = []
    while (event := framer.next_event()) is not None:
        events.append(event)
    return events


@pytest.mark.parametrize(
    "old, new, fragment, status",
    [
        (b"Content-Length: 4", b"Content-Length: -4", "Malformed Content-Length", 400),
        (b"Content-Length: 4", b"l: 4\r\nContent-Length: 5", "Conflicting Content-Length", 400),
        (b"Content-Length: 4", b"Content-Length: 70000", "Body too large", 413),
        (b"Content-Length: 4", b"Content-Length: 65400", "Message too large", 513),
    ],
)
def test_framing_errors(old: bytes, new: bytes, fragment: str, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        frame(INVITE.replace(old, new))
    assert fragment in info.value.reason and info.value.status == status


def test_framing_reads_compact_and_folded_content_length() -> None:
    for spelled in (b"l: 4", b"content-LENGTH :\r\n  4", b"L:4"):
        data = INVITE.replace(b"Content-Length: 4", spelled)
        assert frame(data + data) == [data, data]
    # The start line is not a header, even when it looks like one.
    tricky = b"L: 99 sip:x SIP/2.0\r\n" + INVITE.split(b"\r\n", 1)[1]
    assert frame(tricky) == [tricky]


def test_framing_without_end_of_headers_is_capped() -> None:
    framer = StreamFramer()
    framer.feed(b"INVITE sip:x SIP/2.0\r\nX: " + b"a" * MAX_HEADER_BYTES)
    with pytest.raises(SipParseError) as info:
        framer.next_event()
    assert info.value.status == 513


def test_pings_and_pongs_between_messages() -> None:
    assert frame(b"\r\n\r\n\r\n\r\n" + INVITE + b"\r\n") == [KEEPALIVE_PING, KEEPALIVE_PING, INVITE]
    framer = StreamFramer()
    framer.feed(b"\r\n")
    assert framer.next_event() is None  # may become a ping
    framer.feed(b"\r")
    assert framer.next_event() is None
    framer.feed(b"\n")
    assert framer.next_event() == KEEPALIVE_PING


# -- extensions (RFC 3261 §8.2.2.3) -------------------------------------------------------------


def _with(header: bytes, method: bytes = b"INVITE") -> Request:
    data = INVITE.replace(b"Timestamp: 12.5\r\n", header + b"\r\n")
    return parse_request(data.replace(b"INVITE", method))


@pytest.mark.parametrize(
    "headers, unsupported",
    [
        (b"Supported: 100rel, foo", []),  # Supported asks for nothing
        (b"Require: timer", []),
        (b"Require: TIMER, Path", []),  # option tags compare without case
        (b"Require: 100rel", ["100rel"]),
        (b"Require: timer, 100rel,  x-magic ", ["100rel", "x-magic"]),
        (b"Require: 100rel\r\nRequire: precondition", ["100rel", "precondition"]),
        (b"Proxy-Require: sec-agree", []),  # for proxies; a UAS ignores it
    ],
)
def test_require(headers: bytes, unsupported: list[str]) -> None:
    req = _with(headers)
    if not unsupported:
        check_extensions(req)
        return
    with pytest.raises(BadExtension) as info:
        check_extensions(req)
    assert info.value.status == 420 and info.value.reason == "Bad Extension"
    assert info.value.unsupported == unsupported
    assert info.value.headers == (("Unsupported", ", ".join(unsupported)),)
    assert info.value.partial is req
    answer = make_response(req, 420, to_tag="t", headers=info.value.headers)
    assert answer.headers.get("unsupported") == ", ".join(unsupported)


@pytest.mark.parametrize("method", [b"CANCEL", b"ACK"])
def test_require_is_ignored_on_cancel_and_ack(method: bytes) -> None:
    # "These header fields MUST be ignored if they are present in these requests."
    check_extensions(_with(b"Require: 100rel", method))


def test_supported_tags_are_what_the_require_check_accepts() -> None:
    check_extensions(_with(b"Require: " + ", ".join(SUPPORTED_OPTION_TAGS).encode()))
    with pytest.raises(BadExtension):
        check_extensions(_with(b"Require: timer"), supported=("outbound", "path"))


def test_is_utf8() -> None:
    assert is_utf8("café") and is_utf8("")
    assert not is_utf8(b"caf\xe9".decode("utf-8", "surrogateescape"))


def test_a_start_line_seen_before_parses_the_same() -> None:
    from b2bua.sip import message as m

    m.clear_caches()
    head = (b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n"
            b"To: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    for _ in range(2):  # the second time from the cache
        req = parse_message(b"OPTIONS sip:b@x SIP/2.0\r\n" + head)
        assert isinstance(req, Request)
        assert (req.method, req.request_uri_text, req.version) == ("OPTIONS", "sip:b@x", "SIP/2.0")
        resp = parse_message(b"SIP/2.0 486 Busy Here\r\n" + head)
        assert isinstance(resp, Response)
        assert (resp.status, resp.reason, resp.version) == (486, "Busy Here", "SIP/2.0")
    # What was refused is refused again: refusals are not remembered.
    for _ in range(2):
        with pytest.raises(VersionNotSupported):
            parse_message(b"OPTIONS sip:b@x SIP/3.0\r\n" + head)
        with pytest.raises(SipParseError, match="status code"):
            parse_message(b"SIP/2.0 99 Early\r\n" + head)
    # Bounded: a flood of different lines starts the cache again.
    for i in range(m._START_LINES_SIZE + 5):
        parse_message(f"OPTIONS sip:{i}@x SIP/2.0\r\n".encode() + head)
    assert len(m._START_LINES) <= m._START_LINES_SIZE

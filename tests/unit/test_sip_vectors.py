"""One table of valid SIP messages, used for parsing and serializing.

Each vector is parsed whole and must serialize back byte for byte with the expected typed
fields; it is also fed through the stream framer byte by byte, followed by trailing bytes, by
another message and by CRLF keep-alives. Every vector has a Content-Length so that it frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from b2bua.sip.framing import KEEPALIVE_PING, StreamFramer
from b2bua.sip.message import Request, Response, parse_message, validate_request
from tests.unit.sip_support import exercise_message, summary


def sip(text: str, body: str | bytes = b"") -> bytes:
    """A message from readable text: lines end in CRLF, `{CL}` is the body's length."""
    raw_body = body.encode() if isinstance(body, str) else body
    head = text.strip("\n").replace("{CL}", str(len(raw_body)))
    return head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + raw_body


def sdp(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


OFFER = sdp(
    "v=0",
    "o=desk 4711 4711 IN IP4 192.0.2.21",
    "s=-",
    "c=IN IP4 192.0.2.21",
    "t=0 0",
    "m=audio 40000 RTP/AVP 0 8 101",
    "a=rtpmap:101 telephone-event/8000",
    "a=sendrecv",
)


@dataclass(frozen=True)
class Vector:
    name: str
    data: bytes
    expect: dict[str, object] = field(default_factory=dict)


VECTORS = [
    Vector(
        "invite_with_sdp",
        sip(
            """
INVITE sip:2001@pbx.example.net SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKd3sk2;rport
Max-Forwards: 70
From: "Front Desk" <sip:1001@pbx.example.net>;tag=fd81
To: <sip:2001@pbx.example.net>
Call-ID: 7e1c2f@192.0.2.21
CSeq: 101 INVITE
Contact: <sip:1001@192.0.2.21:5060>
Content-Type: application/sdp
Content-Length: {CL}
""",
            OFFER,
        ),
        {
            "method": "INVITE",
            "request_uri": "sip:2001@pbx.example.net",
            "call_id": "7e1c2f@192.0.2.21",
            "cseq": (101, "INVITE"),
            "from_tag": "fd81",
            "to_tag": None,
            "from_display": "Front Desk",
            "branches": ["z9hG4bKd3sk2"],
            "via_hosts": [("UDP", "192.0.2.21", 5060)],
            "contacts": ["sip:1001@192.0.2.21:5060"],
            "max_forwards": 70,
            "content_type": "application/sdp",
            "body": OFFER,
        },
    ),
    Vector(
        "register_with_credentials",
        sip(
            """
REGISTER sip:pbx.example.net SIP/2.0
Via: SIP/2.0/TCP 198.51.100.7:49152;branch=z9hG4bKreg2;alias
Max-Forwards: 70
From: <sip:1002@pbx.example.net>;tag=r9
To: <sip:1002@pbx.example.net>
Call-ID: reg-1002-0001
CSeq: 2 REGISTER
Contact: <sip:1002@198.51.100.7:49152;transport=tcp>;expires=600;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000000000001>"
Authorization: Digest username="1002", realm="pbx.example.net", nonce="5a1b", uri="sip:pbx.example.net", response="0c2f7d", algorithm=MD5
Expires: 600
Content-Length: 0
"""
        ),
        {
            "method": "REGISTER",
            "cseq": (2, "REGISTER"),
            "contacts": ["sip:1002@198.51.100.7:49152;transport=tcp"],
            "via_hosts": [("TCP", "198.51.100.7", 49152)],
            "expires": 600,
            "body": b"",
        },
    ),
    Vector(
        "register_remove_all",
        sip(
            """
REGISTER sip:pbx.example.net SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKunreg
Max-Forwards: 70
From: <sip:1002@pbx.example.net>;tag=r10
To: <sip:1002@pbx.example.net>
Call-ID: reg-1002-0002
CSeq: 3 REGISTER
Contact: *
Expires: 0
Content-Length: 0
"""
        ),
        {
            "contact_star": True,
            "contacts": [],
            "expires": 0,
            "via_hosts": [("UDP", "198.51.100.7", None)],
        },
    ),
    Vector(
        "options_max_forwards_zero",
        sip(
            """
OPTIONS sip:pbx.example.net;transport=udp SIP/2.0
Via: SIP/2.0/UDP 203.0.113.9:5070;branch=z9hG4bKopt1
Max-Forwards: 0
From: <sip:monitor@203.0.113.9>;tag=m1
To: <sip:pbx.example.net>
Call-ID: opt-77
CSeq: 77 OPTIONS
Accept: application/sdp
Content-Length: 0
"""
        ),
        {
            "method": "OPTIONS",
            "max_forwards": 0,
            "request_uri": "sip:pbx.example.net;transport=udp",
        },
    ),
    Vector(
        "ack",
        sip(
            """
ACK sip:1001@192.0.2.21:5060 SIP/2.0
Via: SIP/2.0/UDP pbx.example.net;branch=z9hG4bKack9
Max-Forwards: 70
Route: <sip:edge.example.net;lr>
From: <sip:2001@pbx.example.net>;tag=b2
To: "Front Desk" <sip:1001@pbx.example.net>;tag=fd81
Call-ID: 7e1c2f@192.0.2.21
CSeq: 101 ACK
Content-Length: 0
"""
        ),
        {
            "method": "ACK",
            "cseq": (101, "ACK"),
            "to_tag": "fd81",
            "routes": ["sip:edge.example.net;lr"],
        },
    ),
    Vector(
        "bye_with_route_set",
        sip(
            """
BYE sip:2001@192.0.2.30:5062 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKbye1
Max-Forwards: 70
Route: <sip:p1.example.net;lr>, <sip:p2.example.net;lr>
Route: <sip:p3.example.net;lr>
From: <sip:1001@pbx.example.net>;tag=fd81
To: <sip:2001@pbx.example.net>;tag=x2
Call-ID: 7e1c2f@192.0.2.21
CSeq: 102 BYE
Content-Length: 0
"""
        ),
        {
            "routes": ["sip:p1.example.net;lr", "sip:p2.example.net;lr", "sip:p3.example.net;lr"],
            "to_tag": "x2",
        },
    ),
    Vector(
        "cancel",
        sip(
            """
CANCEL sip:2001@pbx.example.net SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKd3sk2;rport
Max-Forwards: 70
From: "Front Desk" <sip:1001@pbx.example.net>;tag=fd81
To: <sip:2001@pbx.example.net>
Call-ID: 7e1c2f@192.0.2.21
CSeq: 101 CANCEL
Content-Length: 0
"""
        ),
        {"method": "CANCEL", "branches": ["z9hG4bKd3sk2"]},
    ),
    Vector(
        "compact_forms_and_odd_case",
        sip(
            """
INVITE sip:2001@pbx.example.net SIP/2.0
v: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKc1
f: <sip:1001@pbx.example.net>;tag=c1
t: <sip:2001@pbx.example.net>
i: compact-1
cseq: 5 INVITE
MAX-FORWARDS: 69
m: <sip:1001@192.0.2.21>
k: timer
c: application/sdp
l: {CL}
""",
            OFFER,
        ),
        {
            "call_id": "compact-1",
            "cseq": (5, "INVITE"),
            "from_tag": "c1",
            "max_forwards": 69,
            "contacts": ["sip:1001@192.0.2.21"],
            "content_type": "application/sdp",
            "body": OFFER,
        },
    ),
    Vector(
        "folded_lines_and_spacing",
        sip(
            """
INVITE sip:2001@pbx.example.net SIP/2.0
Via  :  SIP / 2.0 / UDP
\t192.0.2.21 : 5060 ;branch=z9hG4bKf1
Max-Forwards:70
From: "Front Desk"
 <sip:1001@pbx.example.net> ; tag = f1
To:<sip:2001@pbx.example.net>
Call-ID: folded-1
CSeq: 7
  INVITE
Subject: a subject
 that goes on
Content-Length: 0
"""
        ),
        {
            "cseq": (7, "INVITE"),
            "from_tag": "f1",
            "from_display": "Front Desk",
            "via_hosts": [("UDP", "192.0.2.21", 5060)],
            "max_forwards": 70,
        },
    ),
    Vector(
        "several_vias_one_header_and_repeated",
        sip(
            """
INVITE sip:2001@pbx.example.net SIP/2.0
Via: SIP/2.0/UDP edge.example.net;branch=z9hG4bKv1, SIP/2.0/TCP 10.0.0.5:5080;branch=z9hG4bKv2;received=198.51.100.40
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKv3;rport=5061
Max-Forwards: 68
Record-Route: <sip:edge.example.net;lr>
Record-Route: <sip:10.0.0.5:5080;lr;transport=tcp>
From: <sip:1001@pbx.example.net>;tag=v1
To: <sip:2001@pbx.example.net>
Call-ID: vias-1
CSeq: 1 INVITE
Content-Length: 0
"""
        ),
        {
            "branches": ["z9hG4bKv1", "z9hG4bKv2", "z9hG4bKv3"],
            "via_hosts": [
                ("UDP", "edge.example.net", None),
                ("TCP", "10.0.0.5", 5080),
                ("UDP", "192.0.2.21", 5060),
            ],
            "record_routes": ["sip:edge.example.net;lr", "sip:10.0.0.5:5080;lr;transport=tcp"],
        },
    ),
    Vector(
        "ipv6_everywhere",
        sip(
            """
INVITE sip:2001@[2001:db8::10]:5070 SIP/2.0
Via: SIP/2.0/UDP [2001:db8::21]:5060;branch=z9hG4bK6a;received=[2001:db8::99]
Max-Forwards: 70
From: <sip:1001@[2001:db8::21]>;tag=v6
To: <sip:2001@[2001:db8::10]:5070>
Call-ID: v6-1@[2001:db8::21]
CSeq: 1 INVITE
Contact: <sip:1001@[2001:db8::21]:5060>
Content-Length: 0
"""
        ),
        {
            "request_uri": "sip:2001@[2001:db8::10]:5070",
            "via_hosts": [("UDP", "[2001:db8::21]", 5060)],
            "contacts": ["sip:1001@[2001:db8::21]:5060"],
        },
    ),
    Vector(
        "message_with_utf8",
        sip(
            """
MESSAGE sip:2001@pbx.example.net SIP/2.0
Via: SIP/2.0/TLS 192.0.2.21:5061;branch=z9hG4bKm1
Max-Forwards: 70
From: "Zoë Åström" <sips:1001@pbx.example.net>;tag=u8
To: <sips:2001@pbx.example.net>
Call-ID: msg-1
CSeq: 1 MESSAGE
Content-Type: text/plain;charset=UTF-8
Content-Length: {CL}
""",
            "Grüße, ça va ? 👋",
        ),
        {
            "from_display": "Zoë Åström",
            "from_uri": "sips:1001@pbx.example.net",
            "content_type": "text/plain",
            "body": "Grüße, ça va ? 👋".encode(),
        },
    ),
    Vector(
        "lowercase_version_and_tel_from",
        sip(
            """
SUBSCRIBE sip:2001@pbx.example.net sip/2.0
Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKs1
Max-Forwards: 70
From: <tel:+15550100>;tag=t1
To: <sip:2001@pbx.example.net>
Call-ID: sub-1
CSeq: 1 SUBSCRIBE
Event: dialog
Expires: 3600
Contact: <sip:1001@192.0.2.21>
Content-Length: 0
"""
        ),
        {"from_uri": "tel:+15550100", "expires": 3600, "method": "SUBSCRIBE"},
    ),
    Vector(
        "notify_with_body",
        sip(
            """
NOTIFY sip:1001@192.0.2.21 SIP/2.0
Via: SIP/2.0/UDP pbx.example.net;branch=z9hG4bKn1
Max-Forwards: 70
From: <sip:2001@pbx.example.net>;tag=n1
To: <sip:1001@pbx.example.net>;tag=t1
Call-ID: sub-1
CSeq: 1 NOTIFY
Event: message-summary
Subscription-State: active;expires=3599
Content-Type: application/simple-message-summary
Content-Length: {CL}
""",
            "Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n",
        ),
        {"to_tag": "t1", "content_type": "application/simple-message-summary"},
    ),
    Vector(
        "binary_body",
        sip(
            """
INFO sip:2001@pbx.example.net SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKi1
Max-Forwards: 70
From: <sip:1001@pbx.example.net>;tag=i1
To: <sip:2001@pbx.example.net>;tag=i2
Call-ID: info-1
CSeq: 9 INFO
Content-Type: application/octet-stream
Content-Length: {CL}
""",
            bytes(range(256)) + b"\r\n\r\n",
        ),
        {"body": bytes(range(256)) + b"\r\n\r\n"},
    ),
    Vector(
        "response_100_with_timestamp",
        sip(
            """
SIP/2.0 100 Trying
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKd3sk2;rport=5060;received=192.0.2.21
From: "Front Desk" <sip:1001@pbx.example.net>;tag=fd81
To: <sip:2001@pbx.example.net>
Call-ID: 7e1c2f@192.0.2.21
CSeq: 101 INVITE
Timestamp: 54.1
Content-Length: 0
"""
        ),
        {"status": 100, "reason": "Trying", "to_tag": None, "cseq": (101, "INVITE")},
    ),
    Vector(
        "response_200_with_sdp",
        sip(
            """
SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKd3sk2;rport=5060
Record-Route: <sip:pbx.example.net;lr>
From: "Front Desk" <sip:1001@pbx.example.net>;tag=fd81
To: <sip:2001@pbx.example.net>;tag=a7
Call-ID: 7e1c2f@192.0.2.21
CSeq: 101 INVITE
Contact: <sip:2001@192.0.2.30:5062>
Content-Type: application/sdp
Content-Length: {CL}
""",
            OFFER,
        ),
        {
            "status": 200,
            "reason": "OK",
            "to_tag": "a7",
            "record_routes": ["sip:pbx.example.net;lr"],
        },
    ),
    Vector(
        "response_401_challenge",
        sip(
            """
SIP/2.0 401 Unauthorized
Via: SIP/2.0/TCP 198.51.100.7:49152;branch=z9hG4bKreg1;alias
From: <sip:1002@pbx.example.net>;tag=r9
To: <sip:1002@pbx.example.net>;tag=srv1
Call-ID: reg-1002-0001
CSeq: 1 REGISTER
WWW-Authenticate: Digest realm="pbx.example.net", nonce="5a1b", qop="auth", algorithm=MD5
Content-Length: 0
"""
        ),
        {"status": 401, "reason": "Unauthorized"},
    ),
    Vector(
        "response_302_many_contacts",
        sip(
            """
SIP/2.0 302 Moved Temporarily
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKd3sk2
From: <sip:1001@pbx.example.net>;tag=fd81
To: <sip:2001@pbx.example.net>;tag=r3
Call-ID: 7e1c2f@192.0.2.21
CSeq: 101 INVITE
Contact: "Mobile, Bob" <sip:2001@mobile.example.net>;q=0.9, <sip:2001@desk.example.net>;q=0.5
Contact: <tel:+15550123>;q=0.1
Content-Length: 0
"""
        ),
        {
            "contacts": [
                "sip:2001@mobile.example.net",
                "sip:2001@desk.example.net",
                "tel:+15550123",
            ],
            "reason": "Moved Temporarily",
        },
    ),
    Vector(
        "response_without_reason_phrase",
        sip(
            """
SIP/2.0 486
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKd3sk2
From: <sip:1001@pbx.example.net>;tag=fd81
To: <sip:2001@pbx.example.net>;tag=busy
Call-ID: 7e1c2f@192.0.2.21
CSeq: 101 INVITE
Content-Length: 0
"""
        ),
        {"status": 486, "reason": ""},
    ),
    Vector(
        "response_lowercase_version",
        sip(
            """
sip/2.0 603 Decline
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKd3sk2
From: <sip:1001@pbx.example.net>;tag=fd81
To: <sip:2001@pbx.example.net>;tag=dc
Call-ID: 7e1c2f@192.0.2.21
CSeq: 101 INVITE
Content-Length: 0
"""
        ),
        {"status": 603, "reason": "Decline", "to_tag": "dc"},
    ),
    Vector(
        "response_with_long_reason",
        sip(
            """
SIP/2.0 480 Temporarily Unavailable (all 3 devices are busy: desk, mobile, soft)
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKd3sk2
From: <sip:1001@pbx.example.net>;tag=fd81
To: <sip:2001@pbx.example.net>;tag=u1
Call-ID: 7e1c2f@192.0.2.21
CSeq: 101 INVITE
Content-Length: 0
"""
        ),
        {
            "status": 480,
            "reason": "Temporarily Unavailable (all 3 devices are busy: desk, mobile, soft)",
        },
    ),
]

IDS = [v.name for v in VECTORS]


def check(msg: Request | Response, vector: Vector) -> None:
    got = summary(msg)
    for key, value in vector.expect.items():
        assert got[key] == value, key


def test_table_names_are_unique() -> None:
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_parse_and_serialize_unchanged(vector: Vector) -> None:
    msg = parse_message(vector.data)
    check(msg, vector)
    if isinstance(msg, Request):
        validate_request(msg)
    assert bytes(msg) == vector.data


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_changed_message_serializes_with_matching_length(vector: Vector) -> None:
    msg = parse_message(vector.data)
    msg.headers.add_first("X-Hop", "b2bua-1")
    msg.body = msg.body + b"extra"
    data = bytes(msg)
    again = parse_message(data)
    assert again.headers.get("x-hop") == "b2bua-1"
    assert again.headers.get_all("content-length") == [str(len(again.body))]
    assert again.body == vector.data[vector.data.index(b"\r\n\r\n") + 4 :] + b"extra"
    # Everything else reads the same.
    before, after = summary(parse_message(vector.data)), summary(again)
    assert {k: v for k, v in before.items() if k != "body"} == {
        k: v for k, v in after.items() if k != "body"
    }
    # Untouched header lines keep their exact bytes.
    for line in vector.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        if not line.lower().startswith((b"content-length", b"l:")) and line[:1] not in b" \t":
            assert line in data


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_accessors_under_the_contract(vector: Vector) -> None:
    exercise_message(parse_message(vector.data))


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_datagram_with_trailing_bytes(vector: Vector) -> None:
    # "If the transport packet ends before the end of the message body ... the message is
    # discarded"; bytes beyond Content-Length are not part of it (RFC 3261 §18.3).
    msg = parse_message(vector.data + b"\r\nGARBAGE \x00\xff after the body")
    check(msg, vector)
    assert bytes(msg) == vector.data


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_stream_byte_by_byte(vector: Vector) -> None:
    framer = StreamFramer()
    events: list[bytes | str] = []
    for i in range(len(vector.data)):
        framer.feed(vector.data[i : i + 1])
        while (event := framer.next_event()) is not None:
            events.append(event)
    assert events == [vector.data]
    assert framer.buffered == 0
    msg = parse_message(vector.data, stream=True)
    check(msg, vector)
    assert bytes(msg) == vector.data


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_stream_with_keepalives_and_a_following_message(vector: Vector) -> None:
    other = VECTORS[(VECTORS.index(vector) + 1) % len(VECTORS)].data
    stream = b"\r\n\r\n" + vector.data + b"\r\n" + other + b"\r\n\r\n" + vector.data + b"\r\n\r\n"
    for chunk in (1, 3, 64, len(stream)):
        framer = StreamFramer()
        events: list[bytes | str] = []
        for i in range(0, len(stream), chunk):
            framer.feed(stream[i : i + chunk])
            while (event := framer.next_event()) is not None:
                events.append(event)
        assert events == [
            KEEPALIVE_PING,
            vector.data,
            other,
            KEEPALIVE_PING,
            vector.data,
            KEEPALIVE_PING,
        ]
        assert framer.buffered == 0
    # A message followed by the start of the next one: the framer keeps the rest.
    framer = StreamFramer()
    framer.feed(vector.data + other[:10])
    assert framer.next_event() == vector.data
    assert framer.next_event() is None
    assert framer.buffered == 10


def test_datagram_without_content_length_takes_the_rest() -> None:
    data = VECTORS[0].data.replace(b"Content-Length: %d\r\n" % len(OFFER), b"")
    msg = parse_message(data)
    assert msg.body == OFFER
    assert bytes(msg) == data
    # On a stream, no Content-Length means no body.
    assert parse_message(data, stream=True).body == b""


def test_leading_crlf_before_the_start_line_is_ignored() -> None:
    msg = parse_message(b"\r\n\r\n" + VECTORS[0].data)
    check(msg, VECTORS[0])
    assert bytes(msg) == VECTORS[0].data

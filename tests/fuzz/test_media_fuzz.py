"""Fuzzing the media relay's remote input: SDP bodies through offer/answer (plain and SRTP legs)
and RTP/RTCP datagrams through a relay that is up, with DTMF detection and recording on.

The contract: a body we cannot use raises `SdpError` or `MediaError` (the call engine turns
those into 488), and a datagram we cannot use is dropped; nothing else ever escapes. What we
produce from a body we took is SDP we can read again.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import struct
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from media.errors import MediaError
from media.relay import LEGS, SessionCore
from media.sdp import SdpError, SessionDescription

KEY = base64.b64encode(bytes(range(30))).decode()

OFFERS = [
    (
        "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n"
        "t=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    ),
    (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.11\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/SAVP 0 101\r\n"
        "c=IN IP4 192.0.2.11\r\na=rtcp:5005 IN IP4 192.0.2.11\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:32\r\n"
        f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}\r\na=sendonly\r\n"
    ),
    (
        "v=0\r\no=- 7 2 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n"
        "a=ice-ufrag:F7gI\r\na=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n"
        "a=rtpmap:111 opus/48000/2\r\na=candidate:0123 1 udp 2122260223 192.0.2.12 54321 typ host\r\n"
        "a=mid:0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=inactive\r\n"
    ),
    "v=0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8\r\na=recvonly\r\n",
]

SDP_GARBAGE = st.sampled_from([
    "", " ", "\r\n", "\n", "=", "a=", "m=audio", "m=audio 70000 RTP/AVP 0", "m=audio -1 RTP/AVP",
    "m=audio 5004/0 RTP/AVP 0", "c=IN IP4", "c=IN IP4 999.1.1.1", "c=IN IP6 ::g", "c=XX YY ZZ",
    "a=rtpmap:", "a=rtpmap:300 PCMU/8000", "a=rtpmap:101 telephone-event/0", "a=fmtp:",
    "a=rtcp:99999999 IN IP4 x", "a=rtcp:5005 IN IP4", "a=rtcp:abc", "a=crypto:1 X inline:",
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", "a=crypto:x AES_CM_128_HMAC_SHA1_80 inline:"
    + KEY, "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|2^99|1:9999",
    "a=sendonly", "a=inactive", "o=", "o=- x y IN IP4 1.2.3.4", "v=1", "é", "\udcff", "\x00",
    "m=audio 5004 RTP/SAVP", "b=AS:-5", "t=x y",
])


@st.composite
def sdp_bodies(draw: st.DrawFn) -> bytes:
    """A realistic body with a few lines replaced, inserted, dropped or cut."""
    lines = draw(st.sampled_from(OFFERS)).split("\r\n")
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 3))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == 0:
            lines[i] = draw(st.one_of(SDP_GARBAGE, st.text(max_size=40)))
        elif op == 1:
            lines.insert(i, draw(st.one_of(SDP_GARBAGE, st.text(max_size=40))))
        elif op == 2 and lines:
            del lines[i]
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    return eol.join(lines).encode("utf-8", "surrogateescape")


ENCRYPTION = st.sampled_from(["none", "optional", "sdes"])


def session(a: str, b: str) -> SessionCore:
    return SessionCore("fuzz", "198.51.100.1", {"a": 40000, "b": 40002}, random.Random(1),
                       encryption={"a": a, "b": b},  # type: ignore[dict-item]
                       key_source=lambda n: bytes(n))


def readable(out: bytes | None) -> None:
    if out is not None:
        SessionDescription.parse(out)


def sendable(core: SessionCore) -> None:
    """Where the relay would send: IP addresses and ports in range only (a host name would be
    looked up on every packet, a port out of range raises in sendto)."""
    for leg in core.legs.values():
        for address in (leg.destination, leg.rtcp_destination):
            if address is not None:
                ipaddress.ip_address(address[0])
                assert 0 < address[1] < 65536, address


@settings(max_examples=400, deadline=None)
@given(offer=sdp_bodies(), answer=sdp_bodies(), a=ENCRYPTION, b=ENCRYPTION,
       local=st.booleans())
def test_sdp_offer_answer_raise_only_clean_errors(
    offer: bytes, answer: bytes, a: str, b: str, local: bool
) -> None:
    core = session(a, b)
    try:
        if local:
            readable(core.local_answer("a", offer, 0.0))
            sendable(core)
            readable(core.local_offer("b", 1.0))
            readable(core.answer("b", answer, 2.0))
        else:
            readable(core.offer("a", offer, 0.0))
            sendable(core)
            readable(core.answer("b", answer, 1.0))
    except (SdpError, MediaError):
        return
    sendable(core)


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, ssrc) + payload


def dtmf(digit: int, end: bool, duration: int) -> bytes:
    return bytes([digit, (0x80 if end else 0) | 10]) + duration.to_bytes(2, "big")


PACKETS = st.one_of(
    st.binary(max_size=300),
    st.builds(rtp, st.sampled_from([0, 8, 101, 13, 127]), st.integers(0, 65535),
              st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.binary(max_size=200),
              st.booleans()),
    st.builds(lambda d, e, du, s: rtp(101, s, 1000, 7, dtmf(d, e, du)), st.integers(0, 255),
              st.booleans(), st.integers(0, 65535), st.integers(0, 65535)),
    st.builds(lambda body: bytes([0x80, 200]) + len(body).to_bytes(2, "big") + body,
              st.binary(max_size=60)),  # RTCP-looking
)
SOURCES = st.sampled_from([("192.0.2.10", 49170), ("192.0.2.10", 49171), ("203.0.113.9", 1),
                           ("192.0.2.11", 5004), ("2001:db8::1", 9)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=ENCRYPTION, b=ENCRYPTION, offer=st.sampled_from(OFFERS),
       datagrams=st.lists(st.tuples(st.sampled_from(LEGS), st.booleans(), PACKETS, SOURCES),
                          max_size=40))
def test_rtp_and_rtcp_never_raise(
    a: str, b: str, offer: str, datagrams: list[tuple[str, bool, bytes, tuple[str, int]]],
    tmp_path: Path,
) -> None:
    core = session(a, b)
    try:
        core.offer("a", offer.encode(), 0.0)
        core.answer("b", OFFERS[0].encode(), 0.1)
    except (SdpError, MediaError):
        assume(False)
    core.start_recording("a", tmp_path / "rec.wav", 0.2, 5.0, 1.0)
    now = 0.3
    for leg, is_rtcp, data, source in datagrams:
        now += 0.02
        state = core.legs[leg]  # type: ignore[index]
        out = (core.receive_rtcp if is_rtcp else core.receive_rtp)(state, data, source, now)
        if out is not None:
            payload, (host, port) = out
            assert isinstance(payload, bytes) and isinstance(host, str)
            assert 0 < port < 65536, port
        core.tick(now)
    core.tick(now + 100.0)

"""RTP/RTCP parsing and serialization, RFC 4733 events and DTMF de-duplication."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.rtp import (
    DtmfDetector,
    RtcpPacket,
    RtpError,
    RtpExtension,
    RtpPacket,
    TelephoneEvent,
    is_rtcp,
    parse_rtcp,
)

# A PCMU packet as a phone sends it: V=2, M=1, PT=0, seq 0x1234, ts 0x00000a0, ssrc 0xdeadbeef.
PCMU = bytes.fromhex("80801234000000a0deadbeef") + b"\xff" * 160


def test_parse_basic_packet() -> None:
    p = RtpPacket.parse(PCMU)
    assert (p.version, p.marker, p.payload_type) == (2, True, 0)
    assert (p.sequence_number, p.timestamp, p.ssrc) == (0x1234, 0xA0, 0xDEADBEEF)
    assert p.payload == b"\xff" * 160
    assert p.csrc == () and p.extension is None and p.padding == b""
    assert bytes(p) == PCMU


def test_csrc_extension_and_padding_round_trip() -> None:
    data = (
        bytes([0x80 | 0x20 | 0x10 | 2, 0x08])
        + struct.pack("!HII", 7, 8, 9)
        + struct.pack("!II", 1, 2)
        + struct.pack("!HH", 0xBEDE, 1)
        + b"\x10\xaa\x00\x00"
        + b"payload"
        + b"\x00\x07\x03"
    )
    p = RtpPacket.parse(data)
    assert p.csrc == (1, 2)
    assert p.extension == RtpExtension(0xBEDE, b"\x10\xaa\x00\x00")
    assert p.payload == b"payload"
    assert p.padding == b"\x00\x07\x03"  # padding octets kept verbatim, not only their count
    assert bytes(p) == data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (b"\x80\x00" + b"\x00" * 9, "too short"),
        (b"\x40" + b"\x00" * 11, "version 1"),
        (b"\x82" + b"\x00" * 11 + b"\x00\x00\x00\x01", "CSRC"),
        (b"\x90" + b"\x00" * 11 + b"\x00\x01", "extension"),
        (b"\x90" + b"\x00" * 11 + b"\x00\x01\x00\x02" + b"\x00" * 4, "extension"),
        (b"\xa0" + b"\x00" * 11 + b"ab\x00", "padding"),
        (b"\xa0" + b"\x00" * 11 + b"ab\x09", "padding"),
    ],
)
def test_malformed_packets(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError, match=reason):
        RtpPacket.parse(data)


def test_padding_may_fill_whole_payload() -> None:
    data = b"\xa0" + b"\x00" * 11 + b"\x00\x00\x03"
    p = RtpPacket.parse(data)
    assert p.payload == b"" and bytes(p) == data


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=300),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension,
        profile=st.integers(0, 0xFFFF),
        data=st.integers(0, 8).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    ),
    padding=st.just(b"") | st.binary(max_size=20).map(lambda b: b + bytes([len(b) + 1])),
)


@given(packets)
def test_round_trip_from_packet(packet: RtpPacket) -> None:
    data = bytes(packet)
    assert RtpPacket.parse(data) == packet
    assert bytes(RtpPacket.parse(data)) == data


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert bytes(packet) == data


@given(st.binary(min_size=12, max_size=200))
def test_random_v2_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert bytes(packet) == data


# --- RTCP ------------------------------------------------------------------------------------

SR = (
    bytes([0x81, 200])
    + struct.pack("!H", 12)
    + struct.pack("!I", 0x11223344)
    + struct.pack("!IIIII", 0xE0000000, 0x80000000, 1600, 10, 1600)
    + struct.pack("!IIIIII", 0x55667788, 0, 1, 0, 0, 0)
)
SDES = (
    bytes([0x81, 202]) + struct.pack("!H", 2) + struct.pack("!I", 0x11223344) + b"\x01\x00\x00\x00"
)


def test_rtcp_sr_compound() -> None:
    assert is_rtcp(SR + SDES)
    assert not is_rtcp(PCMU)
    sr, sdes = parse_rtcp(SR + SDES)
    assert sr == RtcpPacket(200, 1, 0x11223344, SR[4:], (0xE0000000, 0x80000000, 1600, 10, 1600))
    assert (sdes.packet_type, sdes.ssrc) == (202, 0x11223344)


def test_rtcp_rr() -> None:
    rr = bytes([0x80, 201]) + struct.pack("!HI", 1, 42)
    (p,) = parse_rtcp(rr)
    assert (p.packet_type, p.count, p.ssrc, p.sender_info) == (201, 0, 42, None)


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\xc9\x00",
        bytes([0x80, 201]) + struct.pack("!HI", 5, 42),
        bytes([0x40, 201]) + struct.pack("!HI", 1, 42),
        bytes([0x80, 200]) + struct.pack("!HI", 1, 42),
        SDES,
    ],
)
def test_rtcp_malformed(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtcp(data)


@given(st.binary(max_size=100))
def test_rtcp_random_bytes_raise_only_rtp_error(data: bytes) -> None:
    try:
        parse_rtcp(data)
    except RtpError:
        pass


# --- RFC 4733 --------------------------------------------------------------------------------


def test_telephone_event_payload() -> None:
    ev = TelephoneEvent.parse(b"\x05\x8a\x03\x20")
    assert ev == TelephoneEvent(event=5, end=True, volume=10, duration=800)
    assert ev.digit == "5"
    assert bytes(ev) == b"\x05\x8a\x03\x20"
    assert TelephoneEvent(11, False, 0, 0).digit == "#"
    assert TelephoneEvent(16, False, 0, 0).digit is None
    with pytest.raises(RtpError):
        TelephoneEvent.parse(b"\x05\x8a")


def _event_packet(
    ts: int, event: int, end: bool, duration: int, seq: int, ssrc: int = 1
) -> RtpPacket:
    return RtpPacket(101, seq, ts, ssrc, bytes(TelephoneEvent(event, end, 10, duration)))


def test_dtmf_reports_each_event_once_despite_redundant_end_packets() -> None:
    det = DtmfDetector()
    seq = iter(range(100))
    out = []
    for ts, digit in ((1000, 1), (5000, 11)):
        for d in (160, 320, 480):
            out += det.feed(_event_packet(ts, digit, False, d, next(seq)))
        for _ in range(3):  # the end packet is sent three times
            out += det.feed(_event_packet(ts, digit, True, 640, next(seq)))
    assert [(e.digit, e.duration, e.timestamp) for e in out] == [("1", 640, 1000), ("#", 640, 5000)]


def test_dtmf_same_digit_twice_is_two_events() -> None:
    det = DtmfDetector()
    out = det.feed(_event_packet(1000, 7, True, 400, 1)) + det.feed(
        _event_packet(1000, 7, True, 400, 2)
    )
    out += det.feed(_event_packet(3000, 7, True, 400, 3))
    assert [e.digit for e in out] == ["7", "7"]


def test_dtmf_lost_end_packets_reported_at_next_event() -> None:
    det = DtmfDetector()
    assert det.feed(_event_packet(1000, 3, False, 160, 1)) == []
    out = det.feed(_event_packet(4000, 4, False, 160, 2))
    assert [(e.digit, e.timestamp) for e in out] == [("3", 1000)]
    out = det.feed(_event_packet(4000, 4, True, 480, 3))
    assert [(e.digit, e.timestamp) for e in out] == [("4", 4000)]

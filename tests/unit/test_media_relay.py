"""The sans-IO session core: SDP anchoring, latching, relay decisions, timeouts, recording."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from media.errors import MediaError
from media.g711 import PCMA, PCMU
from media.player import Player
from media.relay import DtmfReceived, Recorder, RtpTimedOut, SessionCore
from media.rtp import RtpPacket, TelephoneEvent
from media.sdp import SessionDescription, codecs, direction
from media.testing import phone_sdp, tone

US = "203.0.113.1"
A = ("192.0.2.10", 4000)
B = ("198.51.100.20", 5000)
T0 = 100.0


def core(**kwargs: float) -> SessionCore:
    return SessionCore("call-1", US, {"a": 20000, "b": 20002}, random.Random(1), **kwargs)


def connected(**kwargs: float) -> SessionCore:
    c = core(**kwargs)
    c.offer("a", phone_sdp(*A), T0)
    c.answer("b", phone_sdp(*B, payload_types=(8, 101)), T0)
    return c


def rtp(seq: int, ts: int = 0, ssrc: int = 7, pt: int = 0, payload: bytes = b"\xff" * 160) -> bytes:
    return bytes(RtpPacket(pt, seq, ts, ssrc, payload))


def test_offer_is_anchored_for_the_other_leg_with_codecs_untouched() -> None:
    c = core()
    offer = phone_sdp(*A, payload_types=(9, 0, 8, 101))
    out = SessionDescription.parse(c.offer("a", offer, T0))
    conn = out.connection_for(0)
    assert conn is not None and conn.host == US
    assert out.media[0].media.port == 20002  # the port facing b
    assert codecs(out) == codecs(SessionDescription.parse(offer))
    origin = out.origin
    assert origin is not None and (origin.address, origin.session_version) == (US, 1)
    answer = c.answer("b", phone_sdp(*B, payload_types=(0, 101)), T0)
    assert answer is not None
    back = SessionDescription.parse(answer)
    assert back.media[0].media.port == 20000
    assert c.legs["a"].playback == ("PCMU", 0) and c.legs["b"].playback == ("PCMU", 0)


def test_origin_version_moves_only_when_the_body_changes() -> None:
    c = connected()
    versions = []
    for sdp in (
        phone_sdp(*A, version=2),
        phone_sdp(*A, version=3),
        phone_sdp(*A, direction="sendonly", version=4),
    ):
        out = SessionDescription.parse(c.offer("a", sdp, T0))
        assert out.origin is not None
        versions.append(out.origin.session_version)
    assert versions == [1, 1, 2]


def test_hold_detection_on_offers() -> None:
    c = connected()
    assert not c.legs["a"].held
    c.offer("a", phone_sdp(*A, direction="sendonly"), T0)
    assert c.legs["a"].held
    c.offer("a", phone_sdp(*A, connection="0.0.0.0"), T0)
    assert c.legs["a"].held and c.legs["a"].destination is None
    c.offer("a", phone_sdp(*A), T0)
    assert not c.legs["a"].held


def test_relay_before_and_after_latching() -> None:
    c = connected()
    a, b = c.legs["a"], c.legs["b"]
    # before b sends anything, a's packets go to b's SDP address
    out = c.receive_rtp(a, rtp(1), ("10.0.0.1", 7000), T0)
    assert out is not None and out[1] == B
    # b sends from a NAT address: latched, and a's packets follow
    assert c.receive_rtp(b, rtp(1, ssrc=9), ("192.0.2.99", 6123), T0) is not None
    out = c.receive_rtp(a, rtp(2), ("10.0.0.1", 7000), T0 + 0.02)
    assert out is not None and out[1] == ("192.0.2.99", 6123)
    # another source for a is dropped while a's latched source is alive...
    assert c.receive_rtp(a, rtp(3), ("10.6.6.6", 1), T0 + 0.5) is None
    assert a.dropped == 1
    # ...and taken after relatch_after seconds of silence (a NAT rebinding)
    assert c.receive_rtp(a, rtp(4), ("10.6.6.6", 1), T0 + 0.02 + 2.0) is not None
    assert a.latched == ("10.6.6.6", 1)
    # a new SDP address from a re-INVITE unlatches
    c.offer("a", phone_sdp("192.0.2.50", 4444, version=2), T0 + 3)
    assert a.destination == ("192.0.2.50", 4444)
    assert c.receive_rtp(a, rtp(5), ("10.7.7.7", 2), T0 + 3.01) is not None
    assert a.latched == ("10.7.7.7", 2)


def test_a_packet_from_the_sdp_address_takes_the_latch_from_another_source() -> None:
    """After a transfer the new party's SDP names its address; the party that left may still
    send for a while: the new one wins the latch, and the old one is dropped."""
    c = connected()
    b = c.legs["b"]
    old = ("198.51.100.77", 7000)
    assert c.receive_rtp(b, rtp(1, ssrc=9), old, T0) is not None  # the one that leaves
    c.answer("b", phone_sdp("198.51.100.30", 5500, version=2), T0 + 1)  # the new party
    assert c.receive_rtp(b, rtp(2, ssrc=9), old, T0 + 1.01) is not None  # nothing latched yet
    assert c.receive_rtp(b, rtp(1, ssrc=3), ("198.51.100.30", 5500), T0 + 1.02) is not None
    assert b.latched == ("198.51.100.30", 5500)
    assert c.receive_rtp(b, rtp(3, ssrc=9), old, T0 + 1.03) is None  # the old one is dropped
    assert b.latched == ("198.51.100.30", 5500)


def test_relayed_packet_is_rewritten_for_the_destination_leg() -> None:
    c = connected()
    out = c.receive_rtp(c.legs["a"], rtp(500, 8000, ssrc=0x55), A, T0)
    assert out is not None
    p = RtpPacket.parse(out[0])
    assert p.ssrc == c.legs["b"].out.ssrc != 0x55
    assert p.marker and p.payload == b"\xff" * 160


def test_not_rtp_is_dropped() -> None:
    c = connected()
    assert c.receive_rtp(c.legs["a"], b"\x00" * 20, A, T0) is None
    assert c.receive_rtp(c.legs["a"], b"\x80\x00", A, T0) is None
    assert c.legs["a"].dropped == 2 and c.legs["a"].latched is None


def test_playback_to_a_leg_stops_the_relay_towards_it() -> None:
    c = connected()
    b = c.legs["b"]
    b.player = Player([b"\xd5" * 160], 8, b.out, T0)
    assert c.receive_rtp(c.legs["a"], rtp(1), A, T0) is None
    assert c.receive_rtp(b, rtp(1), B, T0) is not None  # b -> a still flows


def test_rtcp_relay() -> None:
    c = connected()
    rr = bytes([0x80, 201, 0, 1]) + b"\x00\x00\x00\x2a"
    out = c.receive_rtcp(c.legs["a"], rr, ("192.0.2.10", 4001), T0)
    assert out == (rr, (B[0], B[1] + 1))
    assert c.receive_rtcp(c.legs["a"], b"\x00" * 8, A, T0) is None


def test_dtmf_events_from_relayed_packets() -> None:
    c = connected()
    a = c.legs["a"]
    for seq, end in ((1, False), (2, True), (3, True), (4, True)):
        c.receive_rtp(
            a, rtp(seq, 1600, pt=101, payload=bytes(TelephoneEvent(5, end, 10, 800))), A, T0
        )
    assert [(e.leg, e.event.digit) for e in c.events if isinstance(e, DtmfReceived)] == [("a", "5")]


def test_rtp_timeout_only_while_not_on_hold() -> None:
    c = connected(rtp_timeout=10)
    a, b = c.legs["a"], c.legs["b"]
    c.receive_rtp(a, rtp(1), A, T0 + 1)
    c.tick(T0 + 10.5)
    assert c.events == [RtpTimedOut("b")]  # b never sent anything since the answer at T0
    c.tick(T0 + 11.5)
    assert c.events == [RtpTimedOut("b"), RtpTimedOut("a")]
    c.events.clear()
    c.tick(T0 + 30)
    assert c.events == []  # reported once
    c.receive_rtp(a, rtp(2), A, T0 + 31)
    c.offer("b", phone_sdp(*B, direction="sendonly", version=2), T0 + 31)  # b holds
    c.answer("a", phone_sdp(*A, direction="recvonly", version=2), T0 + 31)
    c.tick(T0 + 100)
    assert c.events == [] and b.held and not a.sends


def recorder(**kwargs: float | None) -> Recorder:
    args: dict[str, float | None] = {"max_seconds": 10.0, "silence_seconds": None}
    args.update(kwargs)
    return Recorder(
        Path("x.wav"), T0, args["max_seconds"] or 10.0, args["silence_seconds"], {0: PCMU, 8: PCMA}
    )


def test_recorder_places_audio_by_timestamp() -> None:
    r = recorder()
    voice = PCMU.encode(tone(500, 0.02))
    r.feed(rtp(1, 1000, payload=voice), T0)
    r.feed(rtp(3, 1320, payload=voice), T0 + 0.04)  # seq 2 lost
    r.feed(rtp(2, 1160, pt=13, payload=b"\x00"), T0 + 0.05)  # CN is not decoded
    r.feed(rtp(0, 840, payload=voice), T0 + 0.05)  # older than the first: ignored
    pcm = r.audio()
    assert len(pcm) == 2 * 480
    assert pcm[320:640] == b"\x00" * 320
    assert pcm[:320] == pcm[640:] == PCMU.decode(voice)


def test_recorder_silence_stop_trims_the_tail() -> None:
    r = recorder(silence_seconds=1.0)
    voice, quiet = PCMU.encode(tone(500, 0.02)), b"\xff" * 160
    t = T0
    for i in range(90):  # 1 s of voice then 0.8 s of silence
        t = T0 + 0.02 * i
        r.feed(rtp(i, 160 * i, payload=voice if i < 50 else quiet), t)
    assert r.stop_reason is None
    assert r.check(T0 + 0.98 + 1.0)
    assert r.stop_reason == "silence"
    assert len(r.audio()) == 2 * (8000 + 4000)  # voice plus half a second of tail


def test_recorder_limits_and_sources() -> None:
    r = recorder(max_seconds=0.05)
    for i in range(5):
        r.feed(rtp(i, 160 * i), T0 + 0.01 * i)
    assert len(r.audio()) == 2 * 400  # capped at max_seconds of audio
    assert r.check(T0 + 0.06) and r.stop_reason == "max_seconds"
    r2 = recorder()
    r2.feed(rtp(1, 0, ssrc=1), T0)
    r2.feed(rtp(1, 99999, ssrc=2), T0 + 1.0)  # a new source goes on at its wall-clock place
    assert len(r2.audio()) == 2 * (8000 + 160)
    r2.stop()
    assert r2.stop_reason == "stopped"
    r2.feed(rtp(2, 160, ssrc=1), T0 + 1.1)
    assert len(r2.audio()) == 2 * (8000 + 160)


def test_local_answer_picks_g711_and_mirrors_direction() -> None:
    c = core()
    offer = phone_sdp(*A, payload_types=(9, 8, 0, 101), direction="sendonly")
    offer += b"m=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    answer = SessionDescription.parse(c.local_answer("a", offer, T0))
    assert [x.name for x in codecs(answer)] == ["PCMA", "TELEPHONE-EVENT"]
    assert direction(answer) == "recvonly"
    assert answer.media[0].media.port == 20000 and answer.media[1].media.port == 0
    assert c.legs["a"].playback == ("PCMA", 8)
    with pytest.raises(MediaError, match="no common codec"):
        c.local_answer("a", phone_sdp(*A, payload_types=(9,)), T0)


def test_local_offer_and_its_answer() -> None:
    c = core()
    c.local_answer("a", phone_sdp(*A, payload_types=(8, 0)), T0)
    offer = SessionDescription.parse(c.local_offer("b", T0))
    assert [x.name for x in codecs(offer)] == ["PCMA", "TELEPHONE-EVENT"]
    assert offer.media[0].media.port == 20002
    assert c.answer("b", phone_sdp(*B, payload_types=(8,)), T0) is None
    assert c.legs["b"].destination == B and c.legs["b"].playback == ("PCMA", 8)
    fresh = core()
    assert [x.name for x in codecs(SessionDescription.parse(fresh.local_offer("b", T0)))] == [
        "PCMU", "PCMA", "TELEPHONE-EVENT",
    ]  # fmt: skip


def test_malformed_sdp_is_a_media_error() -> None:
    with pytest.raises(MediaError, match="malformed SDP from leg a"):
        core().offer("a", b"v=0\r\nm=audio notaport RTP/AVP 0\r\n", T0)


def test_rtcp_attribute_address_is_used() -> None:
    c = core()
    sdp = phone_sdp(*A).replace(b"a=ptime", b"a=rtcp:4999 IN IP4 192.0.2.11\r\na=ptime")
    c.offer("a", sdp, T0)
    assert c.legs["a"].rtcp_destination == ("192.0.2.11", 4999)


def test_no_rtp_timeout_while_the_callee_rings() -> None:
    c = core(rtp_timeout=10)
    c.offer("a", phone_sdp(*A), T0)
    c.tick(T0 + 100)
    assert c.events == []
    c.answer("b", phone_sdp(*B), T0 + 100)
    c.tick(T0 + 105)
    assert c.events == []
    c.tick(T0 + 110)
    assert sorted(e.leg for e in c.events if isinstance(e, RtpTimedOut)) == ["a", "b"]


# -- addresses from remote SDP and packets the relay must not forward -----------------------------


def _offer(connection: str, port: int, extra: str = "") -> bytes:
    return (f"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 {connection}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\n{extra}").encode()


@pytest.mark.parametrize(
    ("connection", "port", "extra", "rtp", "rtcp"),
    [
        ("192.0.2.10", 4000, "", ("192.0.2.10", 4000), ("192.0.2.10", 4001)),
        ("192.0.2.10", 4000, "a=rtcp:4100 IN IP4 192.0.2.99\r\n", ("192.0.2.10", 4000),
         ("192.0.2.99", 4100)),
        # A host name is never looked up (it would block the loop on every packet): the leg's
        # first RTP packet tells where it is.
        ("pbx.example.com", 4000, "", None, None),
        ("192.0.2.10", 4000, "a=rtcp:99999999 IN IP4 not-an-ip\r\n", ("192.0.2.10", 4000),
         ("192.0.2.10", 4001)),
        ("192.0.2.10", 4000, "a=rtcp:4100 IN IP4 not-an-ip\r\n", ("192.0.2.10", 4000), None),
        ("192.0.2.10", 65535, "", ("192.0.2.10", 65535), None),  # no port 65536 for RTCP
        ("0.0.0.0", 4000, "", None, None),
    ],
)
def test_media_addresses_from_sdp_are_ip_addresses_and_ports_in_range(
    connection: str, port: int, extra: str, rtp: tuple[str, int] | None,
    rtcp: tuple[str, int] | None,
) -> None:
    c = core()
    c.offer("a", _offer(connection, port, extra), T0)
    assert c.legs["a"].destination == rtp
    assert c.legs["a"].rtcp_destination == rtcp


@pytest.mark.parametrize(
    "packet",
    [
        b"\x81" + bytes(11),  # one CSRC announced, none there
        b"\x90" + bytes(11) + b"\x00\x00",  # an extension header cut short
        b"\x90" + bytes(11) + b"\xbe\xde\x00\x09" + bytes(8),  # an extension longer than the packet
    ],
)
def test_rtp_whose_header_does_not_fit_is_dropped(packet: bytes) -> None:
    c = connected()
    a = c.legs["a"]
    assert c.receive_rtp(a, packet, A, T0 + 1) is None
    assert a.dropped == 1

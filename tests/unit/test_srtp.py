"""SDES-SRTP: a=crypto in SDP, key choice, libsrtp round trips, and the relay's per-leg SRTP."""

from __future__ import annotations

import base64
import random

import pylibsrtp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.errors import MediaError
from media.relay import SessionCore
from media.rtp import RtpPacket
from media.sdp import (
    Crypto,
    KeyParams,
    SdpError,
    SessionDescription,
    secure_audio_lines,
)
from media.srtp import SrtpContext, SrtpError, choose_crypto
from media.testing import phone_sdp

US = "203.0.113.1"
A = ("192.0.2.10", 4000)
B = ("198.51.100.20", 5000)
T0 = 100.0
KEY_A = bytes(range(30))  # the phone on leg a: its master key and salt
KEY_B = bytes(range(100, 130))


def inline(key: bytes) -> str:
    return "inline:" + base64.b64encode(key).decode()


def srtp_sdp(ip: str, port: int, key: bytes = KEY_A, **kwargs: object) -> bytes:
    crypto = kwargs.pop("crypto", (f"1 AES_CM_128_HMAC_SHA1_80 {inline(key)}",))
    return phone_sdp(ip, port, proto="RTP/SAVP", crypto=crypto, **kwargs)  # type: ignore[arg-type]


def rtp(seq: int, payload: bytes = b"\x55" * 160, ssrc: int = 7) -> bytes:
    return bytes(RtpPacket(0, seq, seq * 160, ssrc, payload))


def core(**kwargs: object) -> SessionCore:
    counter = iter(range(1, 1000))
    # Fixed keys for what we send: 30 bytes of one value per key drawn.
    keys = lambda n: bytes([next(counter)]) * n  # noqa: E731
    return SessionCore("c", US, {"a": 20000, "b": 20002}, random.Random(1), key_source=keys,
                       **kwargs)  # type: ignore[arg-type]


def peer(local: bytes, remote: bytes) -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    """An SRTP endpoint's own sessions: it protects with `local`, unprotects with `remote`."""
    tx = pylibsrtp.Session(pylibsrtp.Policy(local, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(remote, pylibsrtp.Policy.SSRC_ANY_INBOUND))
    return tx, rx


def our_crypto(body: bytes) -> Crypto:
    sdp = SessionDescription.parse(body)
    values = list(sdp.media[0].attributes("crypto"))
    assert len(values) == 1, values
    return Crypto.parse(values[0])


# ---- a=crypto ------------------------------------------------------------------------------


def test_crypto_line_round_trips() -> None:
    value = f"1 AES_CM_128_HMAC_SHA1_80 {inline(KEY_A)}|2^20|1:4 WSH=64"
    c = Crypto.parse(value)
    assert (c.tag, c.suite) == (1, "AES_CM_128_HMAC_SHA1_80")
    assert c.keys == (KeyParams(KEY_A, "2^20", "1:4"),)
    assert c.session_params == ("WSH=64",) and c.usable_params
    assert c.format() == "a=crypto:" + value


@pytest.mark.parametrize("value", [
    "", "1", "1 AES_CM_128_HMAC_SHA1_80", "x AES_CM_128_HMAC_SHA1_80 inline:AAAA",
    "1234567890 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "1 AES_CM_128_HMAC_SHA1_80 uri:xyz",
    "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", "1 S inline:AAAA|1|2:3|4",
])
def test_malformed_crypto_lines_are_sdp_errors(value: str) -> None:
    with pytest.raises(SdpError):
        Crypto.parse(value)


@given(st.text(max_size=120))
def test_crypto_parse_raises_only_sdp_error(value: str) -> None:
    try:
        Crypto.parse(value)
    except SdpError:
        pass


@given(st.binary(min_size=1, max_size=64), st.integers(0, 999_999_999))
def test_crypto_format_parse_round_trip(key: bytes, tag: int) -> None:
    c = Crypto(tag, "AES_CM_128_HMAC_SHA1_32", (KeyParams(key),))
    assert Crypto.parse(c.format().removeprefix("a=crypto:")) == c


def test_secure_audio_lines_switches_proto_and_crypto() -> None:
    lines = ["v=0", "m=audio 1 RTP/AVP 0", "a=crypto:9 X inline:AAAA", "a=sendrecv",
             "m=video 0 RTP/SAVP 96", "a=crypto:1 Y inline:AAAA"]
    crypto = Crypto(2, "AES_CM_128_HMAC_SHA1_80", (KeyParams(KEY_A),))
    out = secure_audio_lines(lines, 1, crypto)
    assert out[1] == "m=audio 1 RTP/SAVP 0"
    assert out[2:4] == ["a=sendrecv", crypto.format()]
    assert out[4:] == lines[4:]  # the other section is left alone
    plain = secure_audio_lines(out, 1, None)
    assert plain[:3] == ["v=0", "m=audio 1 RTP/AVP 0", "a=sendrecv"]


# ---- key choice ----------------------------------------------------------------------------


def test_first_usable_crypto_line_wins() -> None:
    chosen = choose_crypto([
        f"1 AES_256_CM_HMAC_SHA1_80 {inline(bytes(46))}",  # a suite we do not run
        f"2 AES_CM_128_HMAC_SHA1_80 {inline(KEY_A)}|2^20|1:4",  # MKI: not supported
        f"3 AES_CM_128_HMAC_SHA1_80 {inline(KEY_A)} UNENCRYPTED_SRTP",  # must be honoured
        f"4 AES_CM_128_HMAC_SHA1_80 {inline(KEY_A[:20])}",  # too short
        "5 broken",
        f"6 AES_CM_128_HMAC_SHA1_32 {inline(KEY_B)}|2^31",
    ])
    assert (chosen.tag, chosen.suite, chosen.keys[0].key_salt) == (
        6, "AES_CM_128_HMAC_SHA1_32", KEY_B)


@pytest.mark.parametrize("values, words", [
    ([f"1 F8_128_HMAC_SHA1_80 {inline(KEY_A)}"], "no supported crypto suite among F8_128"),
    ([], "no a=crypto line"),
    (["1 AES_CM_128_HMAC_SHA1_80 inline:!!"], "unreadable a=crypto"),
])
def test_no_usable_crypto_is_a_488(values: list[str], words: str) -> None:
    with pytest.raises(MediaError) as info:
        choose_crypto(values)
    assert info.value.status == 488 and words in info.value.reason and "SDP" in info.value.reason


# ---- libsrtp round trips -------------------------------------------------------------------


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
def test_two_contexts_with_crossed_keys_talk(suite: str) -> None:
    alice, bob = SrtpContext(suite, KEY_A, KEY_B), SrtpContext(suite, KEY_B, KEY_A)
    for seq in range(5):
        packet = rtp(seq, bytes([seq]) * 160)
        protected = alice.protect(packet)
        assert protected[:12] == packet[:12] and protected[12:172] != packet[12:]
        assert len(protected) == len(packet) + (10 if suite.endswith("80") else 4)
        assert bob.unprotect(protected) == packet
    rtcp = bytes.fromhex("80c8000600000007") + bytes(20)
    assert alice.unprotect_rtcp(bob.protect_rtcp(rtcp)) == rtcp


def test_tampered_replayed_and_wrong_key_packets_fail() -> None:
    alice, bob = SrtpContext("AES_CM_128_HMAC_SHA1_80", KEY_A, KEY_B), SrtpContext(
        "AES_CM_128_HMAC_SHA1_80", KEY_B, KEY_A)
    protected = alice.protect(rtp(1))
    tampered = bytearray(protected)
    tampered[20] ^= 1
    with pytest.raises(SrtpError):
        bob.unprotect(bytes(tampered))
    assert bob.unprotect(protected) == rtp(1)
    with pytest.raises(SrtpError):  # replayed
        bob.unprotect(protected)
    stranger = SrtpContext("AES_CM_128_HMAC_SHA1_80", KEY_B, KEY_B)
    with pytest.raises(SrtpError):
        stranger.unprotect(alice.protect(rtp(2)))


# ---- the relay -----------------------------------------------------------------------------


def test_srtp_leg_talks_to_plain_leg_through_the_relay() -> None:
    c = core()
    to_b = SessionDescription.parse(c.offer("a", srtp_sdp(*A), T0))
    assert to_b.media[0].media.proto == "RTP/AVP"  # our offers are plain ("optional")
    assert not list(to_b.media[0].attributes("crypto"))
    answer = c.answer("b", phone_sdp(*B), T0)
    assert answer is not None
    back = SessionDescription.parse(answer)
    assert back.media[0].media.proto == "RTP/SAVP"
    ours = our_crypto(answer)
    assert (ours.tag, ours.suite) == (1, "AES_CM_128_HMAC_SHA1_80")
    assert ours.keys[0].key_salt != KEY_A  # our own key for leg a
    phone_tx, phone_rx = peer(KEY_A, ours.keys[0].key_salt)
    # a -> b: decrypted; the payload arrives unchanged.
    for seq in range(3):
        payload = bytes([seq + 1]) * 160
        out = c.receive_rtp(c.legs["a"], phone_tx.protect(rtp(seq, payload)), A, T0)
        assert out is not None and out[1] == B
        assert RtpPacket.parse(out[0]).payload == payload
    # b -> a: encrypted with our key; the phone decrypts the same payload.
    for seq in range(3):
        payload = bytes([0x80 + seq]) * 160
        out = c.receive_rtp(c.legs["b"], rtp(seq, payload, ssrc=9), B, T0)
        assert out is not None and out[1] == A
        assert RtpPacket.parse(phone_rx.unprotect(out[0])).payload == payload
    # RTCP both ways.
    rtcp = bytes.fromhex("80c8000600000007") + bytes(20)
    out_rtcp = c.receive_rtcp(c.legs["a"], phone_tx.protect_rtcp(rtcp), (A[0], A[1] + 1), T0)
    assert out_rtcp is not None and out_rtcp[0] == rtcp
    out_rtcp = c.receive_rtcp(c.legs["b"], rtcp, (B[0], B[1] + 1), T0)
    assert out_rtcp is not None and phone_rx.unprotect_rtcp(out_rtcp[0]) == rtcp


def test_a_forged_packet_is_dropped_and_does_not_move_the_latch() -> None:
    c = core()
    c.offer("a", srtp_sdp(*A), T0)
    c.answer("b", phone_sdp(*B), T0)
    tx, _ = peer(KEY_A, bytes(30))
    assert c.receive_rtp(c.legs["a"], tx.protect(rtp(1)), A, T0) is not None
    forged = peer(KEY_B, bytes(30))[0].protect(rtp(2))
    attacker = ("192.0.2.66", 4000)
    assert c.receive_rtp(c.legs["a"], forged, attacker, T0 + 5) is None
    assert c.legs["a"].latched == A and c.legs["a"].srtp_errors == 1


def test_sdes_leg_gets_srtp_offers_and_must_answer_srtp() -> None:
    c = core(encryption={"b": "sdes"})
    to_b = c.offer("a", phone_sdp(*A), T0)
    sent = our_crypto(to_b)
    assert SessionDescription.parse(to_b).media[0].media.proto == "RTP/SAVP"
    with pytest.raises(MediaError) as info:
        c.answer("b", phone_sdp(*B), T0)
    assert info.value.status == 488
    c.offer("a", phone_sdp(*A, version=2), T0)
    answer = c.answer("b", srtp_sdp(*B, key=KEY_B), T0)
    assert answer is not None and b"a=crypto" not in answer and b"RTP/AVP" in answer
    assert c.legs["b"].srtp is not None and c.legs["a"].srtp is None
    b_tx, b_rx = peer(KEY_B, sent.keys[0].key_salt)
    out = c.receive_rtp(c.legs["a"], rtp(1, b"\x11" * 160), A, T0)
    assert out is not None and RtpPacket.parse(b_rx.unprotect(out[0])).payload == b"\x11" * 160
    back = c.receive_rtp(c.legs["b"], b_tx.protect(rtp(1, b"\x22" * 160)), B, T0)
    assert back is not None and RtpPacket.parse(back[0]).payload == b"\x22" * 160


def test_an_answer_with_another_tag_or_suite_is_refused() -> None:
    c = core(encryption={"b": "sdes"})
    c.offer("a", phone_sdp(*A), T0)
    with pytest.raises(MediaError, match="no a=crypto with tag 1"):
        c.answer("b", srtp_sdp(*B, crypto=(f"2 AES_CM_128_HMAC_SHA1_80 {inline(KEY_B)}",)), T0)
    c.offer("a", phone_sdp(*A), T0)
    with pytest.raises(MediaError, match="does not match"):
        c.answer("b", srtp_sdp(*B, crypto=(f"1 AES_CM_128_HMAC_SHA1_32 {inline(KEY_B)}",)), T0)


def test_plain_offer_from_an_sdes_leg_and_srtp_offer_from_a_none_leg_are_488() -> None:
    with pytest.raises(MediaError) as info:
        core(encryption={"a": "sdes"}).offer("a", phone_sdp(*A), T0)
    assert info.value.status == 488 and "sdes" in info.value.reason
    with pytest.raises(MediaError) as info:
        core(encryption={"a": "none"}).offer("a", srtp_sdp(*A), T0)
    assert info.value.status == 488 and "none" in info.value.reason


def test_unknown_suite_offer_is_488_and_leaves_the_leg_alone() -> None:
    c = core()
    bad = srtp_sdp(*A, crypto=(f"1 AEAD_AES_256_GCM {inline(bytes(44))}",))
    with pytest.raises(MediaError) as info:
        c.offer("a", bad, T0)
    assert info.value.status == 488 and "SDP" in info.value.reason
    assert c.legs["a"].srtp is None and c.legs["a"].sdp_address is None


def test_reinvite_towards_an_optional_srtp_leg_stays_srtp() -> None:
    c = core()
    c.offer("a", srtp_sdp(*A), T0)
    first = our_crypto(c.answer("b", phone_sdp(*B), T0) or b"")
    hold = c.offer("b", phone_sdp(*B, direction="sendonly", version=2), T0)
    assert SessionDescription.parse(hold).media[0].media.proto == "RTP/SAVP"
    # The same key as before: the stream goes on (RFC 4568 lets a re-offer keep its key).
    assert our_crypto(hold).keys == first.keys
    assert c.answer("a", srtp_sdp(*A, direction="recvonly", version=2), T0) is not None
    assert c.legs["a"].srtp is not None


def test_general_path_body_is_secured_too() -> None:
    # Two media sections: not the one-pass path.
    body = srtp_sdp(*A).decode() + "m=video 0 RTP/SAVP 96\r\n"
    c = core()
    out = SessionDescription.parse(c.offer("a", body.encode(), T0))
    assert [m.media.proto for m in out.media] == ["RTP/AVP", "RTP/SAVP"]
    assert not list(out.media[0].attributes("crypto"))
    answer = c.answer("b", phone_sdp(*B).decode().encode() + b"m=video 0 RTP/AVP 96\r\n", T0)
    assert answer is not None and our_crypto(answer).tag == 1


def test_local_answer_and_local_offer_follow_the_leg() -> None:
    c = core()
    answer = SessionDescription.parse(c.local_answer("a", srtp_sdp(*A), T0))
    assert answer.media[0].media.proto == "RTP/SAVP"
    assert list(answer.media[0].attributes("crypto"))
    d = core(encryption={"b": "sdes"})
    offer = SessionDescription.parse(d.local_offer("b", T0))
    assert offer.media[0].media.proto == "RTP/SAVP"
    e = core()
    assert b"RTP/AVP" in e.local_offer("b", T0) and b"crypto" not in e.local_offer("b", T0)

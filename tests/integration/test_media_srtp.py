"""SRTP through the built-in relay over loopback UDP: an SDES-SRTP phone on one leg, a plain
RTP phone on the other; the audio each sends arrives at the other unchanged."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator

import pylibsrtp
import pytest

from media.engine import MediaEngine, MediaSession
from media.g711 import PCMU
from media.library import Sound
from media.rtp import RtpPacket
from media.sdp import Crypto, SessionDescription
from media.testing import UdpPhone, correlation, tone

pytestmark = pytest.mark.integration

IP = "127.0.0.1"
PORTS = (26200, 26299)


class SrtpPhone(UdpPhone):
    """A UdpPhone that speaks SDES-SRTP with its own key."""

    def __init__(self) -> None:
        super().__init__()
        self.key = os.urandom(30)
        self.tx = pylibsrtp.Session(pylibsrtp.Policy(self.key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        self.rx: pylibsrtp.Session | None = None

    def sdp(self, **kwargs: object) -> bytes:
        inline = base64.b64encode(self.key).decode()
        return super().sdp(proto="RTP/SAVP",
                           crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{inline}",), **kwargs)

    def take_answer(self, answer: bytes) -> None:
        sdp = SessionDescription.parse(answer)
        assert sdp.media[0].media.proto == "RTP/SAVP"
        (value,) = sdp.media[0].attributes("crypto")
        key = Crypto.parse(value).keys[0].key_salt
        self.rx = pylibsrtp.Session(pylibsrtp.Policy(key, pylibsrtp.Policy.SSRC_ANY_INBOUND))

    async def send_srtp(self, dest: tuple[str, int], pcm: bytes) -> int:
        data = PCMU.encode(pcm)
        loop = asyncio.get_running_loop()
        start, count = loop.time(), 0
        for i in range(0, len(data), 160):
            delay = start + count * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            packet = RtpPacket(0, 100 + count, 160 * count, 0xABC, data[i : i + 160])
            self.send(self.tx.protect(bytes(packet)), dest)
            count += 1
        return count

    def decrypted_audio(self) -> bytes:
        assert self.rx is not None
        payloads = [RtpPacket.parse(self.rx.unprotect(raw)).payload for raw in self.raw]
        return PCMU.decode(b"".join(payloads))


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    eng = MediaEngine(IP, PORTS, rtp_timeout=5, tick_interval=0.05, warm_pairs=0)
    await eng.start()
    yield eng
    await eng.close()


def address(sdp: bytes) -> tuple[str, int]:
    parsed = SessionDescription.parse(sdp)
    conn = parsed.connection_for(0)
    assert conn is not None
    return conn.host, parsed.media[0].media.port


def matches(received: bytes, sent: bytes) -> float:
    sent = PCMU.decode(PCMU.encode(sent))
    at = sent.find(received[:320])
    assert at >= 0, "the first received frame is not in what was sent"
    return correlation(received, sent[at:])


async def connected(engine: MediaEngine, name: str) -> tuple[
    MediaSession, SrtpPhone, UdpPhone, tuple[str, int], tuple[str, int]
]:
    secure = SrtpPhone()
    await secure.open()
    plain = await UdpPhone().open()
    session = await engine.create_session(name)
    to_plain = session.offer("a", secure.sdp())
    assert b"RTP/AVP" in to_plain and b"a=crypto" not in to_plain
    to_secure = session.answer("b", plain.sdp())
    assert to_secure is not None
    secure.take_answer(to_secure)
    assert session.srtp("a") == "AES_CM_128_HMAC_SHA1_80" and session.srtp("b") is None
    return session, secure, plain, address(to_secure), address(to_plain)


async def test_srtp_leg_and_plain_leg_hear_each_other(engine: MediaEngine) -> None:
    session, secure, plain, secure_dest, plain_dest = await connected(engine, "srtp-1")
    try:
        tone_s, tone_p = tone(440, 1.0), tone(1000, 1.0)
        sent = await asyncio.gather(
            secure.send_srtp(secure_dest, tone_s), plain.send_audio(plain_dest, tone_p))
        await plain.wait_packets(50)
        await secure.wait_packets(50)
        assert sent == [50, 50]
        # The plain phone gets plain RTP whose audio is the secure phone's tone...
        assert matches(plain.audio(), tone_s) > 0.99
        # ...and the secure phone gets SRTP (not readable as is) that decrypts to the tone.
        assert PCMU.decode(b"".join(p.packet.payload[:160] for p in secure.packets)) != \
            PCMU.decode(PCMU.encode(tone_p))[: 50 * 320]
        assert matches(secure.decrypted_audio(), tone_p) > 0.99
        stats = session.stats()
        assert stats["a"]["rx"] == 50 and stats["a"]["srtp_errors"] == 0
    finally:
        secure.close()
        plain.close()


async def test_played_sound_reaches_the_srtp_leg_encrypted(engine: MediaEngine) -> None:
    session, secure, plain, secure_dest, _ = await connected(engine, "srtp-2")
    try:
        sound = Sound.from_linear("t", tone(700, 0.4))
        assert await session.play_once("a", sound)
        await secure.wait_packets(20)
        assert matches(secure.decrypted_audio(), tone(700, 0.4)) > 0.99
        # Packets sealed with another key are dropped and counted.
        stranger = pylibsrtp.Session(
            pylibsrtp.Policy(os.urandom(30), pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        for seq in range(5):
            secure.send(stranger.protect(bytes(RtpPacket(0, seq, 0, 5, b"\xff" * 160))),
                        secure_dest)
        for _ in range(50):
            if session.stats()["a"]["srtp_errors"] == 5:
                break
            await asyncio.sleep(0.01)
        assert session.stats()["a"]["srtp_errors"] == 5
        assert plain.packets == []
    finally:
        secure.close()
        plain.close()

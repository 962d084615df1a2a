"""The media engine over real loopback UDP: relay, latching, hold music, prompts, recording,
DTMF, RTP timeout, RTCP and port management."""

from __future__ import annotations

import asyncio
import itertools
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from media.engine import MediaEngine, MediaSession
from media.errors import MediaError
from media.g711 import PCMA, PCMU
from media.library import SoundLibrary
from media.rtp import DtmfEvent
from media.sdp import SessionDescription
from media.testing import UdpPhone, correlation, tone

pytestmark = pytest.mark.integration

IP = "127.0.0.1"
PORTS = (26000, 26099)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> SoundLibrary:
    return SoundLibrary(tmp_path_factory.mktemp("data"), language="en")


@pytest.fixture
async def engine(library: SoundLibrary) -> AsyncIterator[MediaEngine]:
    eng = MediaEngine(IP, PORTS, library=library, rtp_timeout=0.6, tick_interval=0.05)
    await eng.start()
    yield eng
    await eng.close()


@pytest.fixture
async def phones() -> AsyncIterator[tuple[UdpPhone, UdpPhone]]:
    a, b = await UdpPhone().open(), await UdpPhone().open()
    yield a, b
    a.close()
    b.close()


def our_address(sdp: bytes) -> tuple[str, int]:
    parsed = SessionDescription.parse(sdp)
    conn = parsed.connection_for(0)
    assert conn is not None
    return conn.host, parsed.media[0].media.port


async def connect(
    session: MediaSession, a: UdpPhone, b: UdpPhone
) -> tuple[tuple[str, int], tuple[str, int]]:
    """INVITE from a to b; returns where a and b must send their RTP."""
    to_b = session.offer("a", a.sdp())
    to_a = session.answer("b", b.sdp())
    assert to_a is not None
    return our_address(to_a), our_address(to_b)


def audio_matches(received: bytes, sent: bytes) -> float:
    """Correlation of the received audio with the sent audio (through PCMU), aligned on the
    first received frame."""
    sent = PCMU.decode(PCMU.encode(sent))
    first = received[:320]
    at = sent.find(first)
    assert at >= 0, "the first received frame is not in what was sent"
    return correlation(received, sent[at:])


async def test_relay_both_directions_carries_the_same_audio(
    engine: MediaEngine, phones: tuple[UdpPhone, UdpPhone]
) -> None:
    a, b = phones
    session = await engine.create_session("call-relay")
    a_dest, b_dest = await connect(session, a, b)
    assert a_dest[0] == b_dest[0] == IP and a_dest[1] != b_dest[1]
    tone_a, tone_b = tone(440, 1.0), tone(1000, 1.0)
    sent = await asyncio.gather(
        a.send_audio(a_dest, tone_a, ssrc=1),
        b.send_audio(b_dest, tone_b, ssrc=2, sequence=60000, timestamp=0xFFFFF000),
    )
    await b.wait_packets(50)
    await a.wait_packets(50)
    assert sent == [50, 50]
    # what a sent arrives at b from the port we gave b, and the other way round
    assert {p.source for p in b.packets} == {b_dest}
    assert {p.source for p in a.packets} == {a_dest}
    ssrcs = {p.packet.ssrc for p in b.packets}
    assert len(ssrcs) == 1 and ssrcs != {1}  # our SSRC towards b
    seqs = [p.packet.sequence_number for p in sorted(b.packets, key=lambda p: p.time)]
    assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(seqs))
    assert audio_matches(b.audio(), tone_a) > 0.99
    assert audio_matches(a.audio(), tone_b) > 0.99
    assert session.stats()["a"]["rx"] == 50 and session.stats()["b"]["tx"] == 50


async def test_latching_to_the_real_source_port(
    engine: MediaEngine, phones: tuple[UdpPhone, UdpPhone]
) -> None:
    a, b = phones
    nat = await UdpPhone().open()  # a's packets really come from here (its NAT binding)
    try:
        session = await engine.create_session("call-nat")
        a_dest, b_dest = await connect(session, a, b)
        await b.send_audio(b_dest, tone(600, 0.1), paced=False)  # before a sends: to a's SDP
        await a.wait_packets(5)
        await nat.send_audio(a_dest, tone(440, 0.2), paced=False)
        await b.wait_packets(10)
        await b.send_audio(b_dest, tone(600, 0.2), paced=False, sequence=2000)
        await nat.wait_packets(10)
        assert len(a.packets) == 5  # after latching, nothing goes to the SDP address
        # a stranger cannot take the latched stream over while a is alive
        stranger = await UdpPhone().open()
        await stranger.send_audio(a_dest, tone(300, 0.1), paced=False, ssrc=99)
        await b.send_audio(b_dest, tone(600, 0.1), paced=False, sequence=3000)
        await nat.wait_packets(15)
        assert stranger.packets == []
        assert session.stats()["a"]["dropped"] == 5
        stranger.close()
    finally:
        nat.close()


async def test_hold_plays_the_library_music_then_resumes(
    engine: MediaEngine, library: SoundLibrary, phones: tuple[UdpPhone, UdpPhone]
) -> None:
    a, b = phones
    session = await engine.create_session("call-hold")
    session.hold_music = "default"
    a_dest, _ = await connect(session, a, b)
    await a.send_audio(a_dest, tone(440, 0.2))
    await b.wait_packets(10)
    to_b = session.offer("a", a.sdp(direction="sendonly", version=2))
    assert b"a=sendonly" in to_b
    assert session.held("a") and session.playing("b")
    session.answer("b", b.sdp(direction="recvonly", version=2))
    await b.wait_packets(10 + 40)
    music = b"".join(library.music("default").pcmu)
    held = b"".join(p.packet.payload for p in b.packets[10:50])
    assert music.startswith(held)  # exactly the library frames, from the start
    assert correlation(PCMU.decode(held), PCMU.decode(music[: len(held)])) > 0.99
    session.offer("a", a.sdp(version=3))  # take the call back
    assert not session.held("a") and not session.playing("b")
    count = len(b.packets)
    await a.send_audio(a_dest, tone(440, 0.2), sequence=5000)
    await b.wait_packets(count + 10)
    stream = sorted(b.packets, key=lambda p: p.time)
    seqs = [p.packet.sequence_number for p in stream]
    assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(seqs))
    assert {p.packet.ssrc for p in stream} == {stream[0].packet.ssrc}
    markers = [i for i, p in enumerate(stream) if p.packet.marker]
    assert markers == [0, 10, count]


async def test_play_once_prompt_in_pcma(
    engine: MediaEngine, library: SoundLibrary, phones: tuple[UdpPhone, UdpPhone]
) -> None:
    a, _ = phones
    session = await engine.create_session("call-prompt")
    answer = session.local_answer("a", a.sdp(payload_types=(8, 101)))
    assert b"m=audio" in answer and b" RTP/AVP 8 101" in answer
    prompt = library.prompt("beep")
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await asyncio.wait_for(session.play_once("a", "beep"), 5)
    assert loop.time() - start == pytest.approx(prompt.duration, abs=0.1)
    await a.wait_packets(len(prompt.pcma))
    assert [p.packet.payload for p in a.packets] == list(prompt.pcma)
    assert {p.packet.payload_type for p in a.packets} == {8}
    assert not session.playing("a")
    # an interrupted prompt says so
    task = asyncio.create_task(session.play_once("a", "voicemail_greeting"))
    await a.wait_packets(len(prompt.pcma) + 3)
    session.resume("a")
    assert await asyncio.wait_for(task, 1) is False


async def test_recording_a_tone_to_wav(
    engine: MediaEngine, phones: tuple[UdpPhone, UdpPhone], tmp_path: Path
) -> None:
    a, _ = phones
    session = await engine.create_session("call-record")
    answer = session.local_answer("a", a.sdp(payload_types=(8, 0)))
    dest = our_address(answer)
    path = tmp_path / "vm" / "msg.wav"
    recording = session.record("a", path, max_seconds=10, silence_seconds=0.4)
    sent = tone(700, 1.0)
    await a.send_audio(dest, sent, codec=PCMA)
    result = await asyncio.wait_for(recording, 5)
    assert result.path == path and result.reason == "silence"
    assert result.duration == pytest.approx(1.0, abs=0.03)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        pcm = w.readframes(w.getnframes())
    assert correlation(pcm, PCMA.decode(PCMA.encode(sent))) > 0.99
    assert [p.name for p in path.parent.iterdir()] == ["msg.wav"]  # no temporary file left


async def test_recording_stops_at_max_seconds(
    engine: MediaEngine, phones: tuple[UdpPhone, UdpPhone], tmp_path: Path
) -> None:
    a, _ = phones
    session = await engine.create_session("call-record-max")
    dest = our_address(session.local_answer("a", a.sdp()))
    recording = session.record("a", tmp_path / "m.wav", max_seconds=0.5)
    await a.send_audio(dest, tone(700, 0.8))
    result = await asyncio.wait_for(recording, 5)
    assert result.reason == "max_seconds"
    assert result.duration == pytest.approx(0.5, abs=0.03)


async def test_recording_written_when_the_call_ends(
    engine: MediaEngine, phones: tuple[UdpPhone, UdpPhone], tmp_path: Path
) -> None:
    a, _ = phones
    session = await engine.create_session("call-record-bye")
    dest = our_address(session.local_answer("a", a.sdp()))
    recording = session.record("a", tmp_path / "bye.wav", max_seconds=30)
    await a.send_audio(dest, tone(700, 0.3))
    await asyncio.sleep(0.05)  # let the last packets reach the engine
    await session.close()
    result = await recording
    assert result.reason == "closed" and result.duration == pytest.approx(0.3, abs=0.03)
    empty = (await engine.create_session("call-record-none")).record("a", tmp_path / "none.wav")
    empty.stop()
    assert (await empty).path is None and not (tmp_path / "none.wav").exists()


async def test_dtmf_reported_once_per_key(
    engine: MediaEngine, phones: tuple[UdpPhone, UdpPhone]
) -> None:
    a, b = phones
    got: list[tuple[str, DtmfEvent]] = []
    done = asyncio.Event()

    def on_dtmf(leg: str, event: DtmfEvent) -> None:
        got.append((leg, event))
        if len(got) == 3:
            done.set()

    session = await engine.create_session("call-dtmf", on_dtmf=on_dtmf)
    a_dest, _ = await connect(session, a, b)
    seq = 100
    for i, key in enumerate((1, 11, 1)):
        seq += a.send_dtmf(a_dest, key, timestamp=8000 * (i + 1), sequence=seq)
    await asyncio.wait_for(done.wait(), 2)
    assert [(leg, e.digit) for leg, e in got] == [("a", "1"), ("a", "#"), ("a", "1")]
    await b.wait_packets(18)  # the events are relayed too


async def test_rtp_timeout_but_not_on_hold(
    engine: MediaEngine, phones: tuple[UdpPhone, UdpPhone]
) -> None:
    a, b = phones
    timeouts: list[tuple[str, str]] = []
    fired = asyncio.Event()

    def make(call: str) -> object:
        def on_timeout(leg: str) -> None:
            timeouts.append((call, leg))
            fired.set()

        return on_timeout

    live = await engine.create_session("call-live", on_timeout=make("live"))  # type: ignore[arg-type]
    held = await engine.create_session("call-held", on_timeout=make("held"))  # type: ignore[arg-type]
    a_dest, b_dest = await connect(live, a, b)
    await connect(held, a, b)
    held.offer("a", a.sdp(direction="inactive", version=2))
    held.answer("b", b.sdp(direction="inactive", version=2))
    await a.send_audio(a_dest, tone(440, 0.1))
    await b.send_audio(b_dest, tone(440, 0.1))
    await asyncio.wait_for(fired.wait(), 3)
    await asyncio.sleep(0.1)
    assert sorted(timeouts) == [("live", "a"), ("live", "b")]


async def test_rtcp_is_relayed_on_the_next_port(
    engine: MediaEngine, phones: tuple[UdpPhone, UdpPhone]
) -> None:
    a, b = phones
    a_rtcp, b_rtcp = await UdpPhone(port=0).open(), None
    b_rtcp_sock = await UdpPhone().open()
    try:
        session = await engine.create_session("call-rtcp")
        to_b = session.offer("a", a.sdp())
        sdp_b = b.sdp().replace(b"a=ptime:20", f"a=rtcp:{b_rtcp_sock.port}\r\na=ptime:20".encode())
        to_a = session.answer("b", sdp_b)
        assert to_a is not None and f"a=rtcp:{our_address(to_a)[1] + 1}".encode() in to_a
        a_dest = our_address(to_a)
        rr = bytes([0x80, 201, 0, 1]) + (42).to_bytes(4, "big")
        a_rtcp.send(rr, (a_dest[0], a_dest[1] + 1))
        for _ in range(50):
            if b_rtcp_sock.raw:
                break
            await asyncio.sleep(0.01)
        assert b_rtcp_sock.raw == [rr]
        assert our_address(to_b)[1] + 1 != a_dest[1] + 1
        del b_rtcp
    finally:
        a_rtcp.close()
        b_rtcp_sock.close()


async def test_ports_are_released_and_the_pool_can_run_out(library: SoundLibrary) -> None:
    engine = MediaEngine(IP, (26100, 26107), library=library)  # four even ports: two sessions
    await engine.start()
    try:
        assert engine.free_ports == 4
        s1 = await engine.create_session("c1")
        s2 = await engine.create_session("c2")
        assert engine.free_ports == 0
        assert sorted(s1.ports.values()) + sorted(s2.ports.values()) == [26100, 26102, 26104, 26106]
        with pytest.raises(MediaError, match="no free RTP port"):
            await engine.create_session("c3")
        with pytest.raises(MediaError, match="exists already"):
            await engine.create_session("c1")
        await s1.close()
        assert engine.free_ports == 2 and "c1" not in engine.sessions
        s3 = await engine.create_session("c3")  # the freed ports bind again
        assert sorted(s3.ports.values()) == sorted(s1.ports.values())
        with pytest.raises(MediaError, match="closed"):
            s1.offer("a", b"v=0\r\n")
    finally:
        await engine.close()
    assert engine.free_ports == 4


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


RTP = bytes([0x80, 0]) + bytes(10) + bytes(160)  # a minimal PCMU packet


async def test_a_quiet_released_pair_is_reused_without_new_sockets(library: SoundLibrary) -> None:
    clock = FakeClock()
    engine = MediaEngine(IP, (26110, 26119), library=library, clock=clock, warm_pairs=8,
                         quarantine=1.0)
    await engine.start()
    try:
        s1 = await engine.create_session("c1")
        first = dict(s1.ports)
        sockets = {leg: s1._rtp[leg] for leg in first}
        await s1.close()
        assert engine.free_ports == 5  # the two warm pairs count as free
        clock.now += 0.5  # too soon: fresh ports
        s2 = await engine.create_session("c2")
        assert not set(s2.ports.values()) & set(first.values())
        clock.now += 1.0  # quiet long enough: the same sockets serve the next call
        s3 = await engine.create_session("c3")
        assert sorted(s3.ports.values()) == sorted(first.values())
        assert {id(s) for s in s3._rtp.values()} == {id(s) for s in sockets.values()}
        for sock in sockets.values():
            assert sock.fileno() >= 0  # still open
        await s2.close()
        await s3.close()
    finally:
        await engine.close()
    assert all(sock.fileno() == -1 for sock in sockets.values())  # closed with the engine
    assert engine.free_ports == 5


async def test_a_pair_still_receiving_the_old_call_is_not_handed_out(
    library: SoundLibrary, phones: tuple[UdpPhone, UdpPhone]
) -> None:
    a, b = phones
    clock = FakeClock()
    engine = MediaEngine(IP, (26120, 26123), library=library, clock=clock, warm_pairs=8,
                         quarantine=1.0)  # two even ports: one session
    await engine.start()
    try:
        s1 = await engine.create_session("c1")
        a_dest, _ = await connect(s1, a, b)
        await s1.close()
        clock.now += 5.0
        a.send(RTP, a_dest)  # the caller's phone did not stop sending
        for _ in range(50):
            await asyncio.sleep(0.01)
            if engine._ports._warm[0].quiet_since == clock.now:
                break
        # The pool has nothing else: the stray stream was read and dropped (it reaches no
        # session), and the noisy pair only goes out once nothing else is left.
        assert engine._ports._warm[0].quiet_since == clock.now
        clock.now += 0.5
        a.send(RTP, a_dest)  # queued on the socket (the loop does not run) when the pair goes out
        time.sleep(0.02)
        s2 = await engine.create_session("c2")  # no other port: the warm pairs, drained first
        to_b = s2.offer("a", a.sdp())
        assert to_b
        await asyncio.sleep(0.05)  # the loop reads whatever is on the sockets
        assert s2.core.legs["a"].latched is None  # the stale packet did not latch the new call
        assert s2.core.legs["a"].rx_packets == 0
        await s2.close()
    finally:
        await engine.close()


async def test_without_warm_pairs_released_ports_close_at_once(library: SoundLibrary) -> None:
    engine = MediaEngine(IP, (26124, 26127), library=library, warm_pairs=0)
    await engine.start()
    try:
        s1 = await engine.create_session("c1")
        sockets = list(s1._rtp.values()) + list(s1._rtcp.values())
        await s1.close()
        assert all(sock.fileno() == -1 for sock in sockets)
        assert engine.free_ports == 2
    finally:
        await engine.close()


async def test_bad_sdp_and_codecs_are_media_errors(
    engine: MediaEngine, phones: tuple[UdpPhone, UdpPhone]
) -> None:
    a, _ = phones
    session = await engine.create_session("call-bad")
    with pytest.raises(MediaError, match="malformed SDP"):
        session.offer("a", b"v=0\r\nm=audio notaport RTP/AVP 0\r\n")
    with pytest.raises(MediaError, match="no common codec"):
        session.local_answer("a", a.sdp(payload_types=(9,)))
    with pytest.raises(MediaError, match="no PCMU or PCMA"):
        session.play("b", "default")


async def test_hold_without_g711_on_the_held_leg_still_works(
    engine: MediaEngine, phones: tuple[UdpPhone, UdpPhone]
) -> None:
    a, b = phones
    session = await engine.create_session("call-g722")
    session.hold_music = "default"
    session.offer("a", a.sdp(payload_types=(9, 101)))
    session.answer("b", b.sdp(payload_types=(9, 101)))
    to_b = session.offer("a", a.sdp(payload_types=(9, 101), direction="sendonly", version=2))
    assert b"a=sendonly" in to_b and session.held("a") and not session.playing("b")

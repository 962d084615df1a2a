"""`[media] backend = "rtpengine"` with a real rtpengine (Debian `rtpengine-daemon`, userspace),
a real `b2bua run` and SIPp phones whose SDP points at plain UDP sockets of the test: the audio
of each side reaches the other through rtpengine's ports, the call is deleted from rtpengine at
hang-up, and an rtpengine that stops answering fails the call cleanly."""

from __future__ import annotations

import audioop
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b2bua.testing.rtpengine import RTPENGINE, RunningRtpengine, start_rtpengine
from b2bua.testing.server import start_server
from media.library import SoundLibrary
from media.rtpengine_backend import RtpengineMedia
from media.testing import correlation
from tests.integration.conftest import SCENARIOS, make_config
from tests.integration.flows import call, call_records, device, uac_expect, uac_reinvite

UAC_CALL = (SCENARIOS / "uac_call.xml").read_text()
UAS_ANSWER = (SCENARIOS / "uas_answer.xml").read_text()


def media(address: tuple[str, int]) -> str:
    return f'\n[media]\nbackend = "rtpengine"\nrtpengine = "{address[0]}:{address[1]}"\n'


@pytest.fixture
def rtpengine(tmp_path: Path, sipp_required: None) -> Iterator[RunningRtpengine]:
    if RTPENGINE is None:
        pytest.fail("rtpengine is missing: scripts/setup --test installs rtpengine-daemon")
    engine = start_rtpengine(tmp_path / "rtpengine")
    try:
        yield engine
    finally:
        engine.stop()


class Phone:
    """A UDP socket standing for a phone's RTP port: sends numbered PCMU packets at 50/s to a
    destination once it has one, and keeps what it receives."""

    def __init__(self, tag: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.tag = tag
        self.sent: list[bytes] = []
        self.received: list[bytes] = []

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def payload(self, n: int) -> bytes:
        # Distinct payloads: a phone tag and a packet number, then a sawtooth in mu-law bytes.
        return struct.pack("!HH", self.tag, n) + bytes((n + i) % 256 for i in range(156))

    def talk(self, destination: tuple[str, int], packets: int) -> None:
        start = time.monotonic()
        for n in range(packets):
            payload = self.payload(n)
            header = struct.pack("!BBHII", 0x80, 0, n, 160 * n, 0x1000 + self.tag)
            self.sock.sendto(header + payload, destination)
            self.sent.append(payload)
            self._receive_until(start + (n + 1) * 0.02)
        self._receive_until(time.monotonic() + 0.3)

    def _receive_until(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            self.received.append(data[12:])

    def close(self) -> None:
        self.sock.close()


def sdp_port(xml: str, port: int) -> str:
    return xml.replace("m=audio [media_port]", f"m=audio {port}")


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def facing(engine: RunningRtpengine, call_id: str) -> dict[int, int]:
    """rtpengine's RTP port facing each endpoint of the call: {endpoint port: local port}."""
    answer = engine.command("query", {"call-id": call_id})
    ports: dict[int, int] = {}
    for monologue in answer.get("tags", {}).values():
        for section in monologue.get("medias", []):
            for stream in section.get("streams", []):
                if b"RTP" in stream.get("flags", []):
                    ports[stream["endpoint"]["port"]] = stream["local port"]
    return ports


def test_audio_crosses_rtpengine_both_ways_and_the_call_is_deleted_at_hang_up(
    tmp_path: Path, rtpengine: RunningRtpengine
) -> None:
    server = start_server(make_config(tmp_path, extra=media(rtpengine.ng)))
    caller_phone, callee_phone = Phone(1), Phone(2)
    try:
        callee = device(server, "uas_answer", "1001", "secret1001", tmp_path / "callee",
                        xml=sdp_port(UAS_ANSWER, callee_phone.port))
        outcome: dict[str, Any] = {}
        caller = threading.Thread(target=lambda: outcome.setdefault("r", call(
            server, sdp_port(UAC_CALL, caller_phone.port), tmp_path / "caller",
            pause_ms=5000)))
        caller.start()
        (call_id,) = wait_for(rtpengine.calls, 10, "the call in rtpengine")
        ports = wait_for(lambda: (lambda p: p if len(p) == 2 else None)(facing(rtpengine, call_id)),
                         10, "both legs negotiated in rtpengine")
        first, last = rtpengine.ports
        assert set(ports) == {caller_phone.port, callee_phone.port}
        assert all(first <= p <= last for p in ports.values()), ports
        talkers = [
            threading.Thread(target=phone.talk, args=(("127.0.0.1", ports[phone.port]), 100))
            for phone in (caller_phone, callee_phone)
        ]
        for t in talkers:
            t.start()
        for t in talkers:
            t.join()
        caller.join(30)
        result = outcome["r"]
        assert result.ok, result.describe()
        r = callee.result()
        assert r.ok, r.describe()
        # The SDP each phone got points at rtpengine's ports, not at the other phone.
        assert f"m=audio {ports[callee_phone.port]} " in r.messages()
        assert f"m=audio {ports[caller_phone.port]} " in result.messages()
        # Each side heard what the other said, payload for payload. rtpengine's worker threads
        # may swap neighbouring packets, and a loaded machine may lose a few: what is bounded is
        # how far any packet strays from its place, not how many pairs come in order.
        for listener, talker in ((callee_phone, caller_phone), (caller_phone, callee_phone)):
            numbers = [struct.unpack_from("!HH", p)[1] for p in listener.received]
            assert len(numbers) >= 90, len(numbers)
            assert len(set(numbers)) == len(numbers)  # no duplicates
            assert listener.received == [talker.payload(n) for n in numbers]
            place = {n: i for i, n in enumerate(sorted(numbers))}
            strays = [(i, n) for i, n in enumerate(numbers) if abs(place[n] - i) > 3]
            assert not strays, (strays, numbers)
        # Hung up: rtpengine forgot the call (deleted at once, not after its delete delay).
        wait_for(lambda: call_id not in rtpengine.calls(), 5, "the call deleted in rtpengine")
        assert rtpengine.command("query", {"call-id": call_id})["result"] == b"error"
        assert "rtpengine" in server.log()
    finally:
        caller_phone.close()
        callee_phone.close()
        server.stop()


def test_rtpengine_not_answering_the_offer_fails_the_call_with_503(
    tmp_path: Path, sipp_required: None
) -> None:
    # Something bound on the ng port that never answers (as a dead or overloaded daemon).
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        server = start_server(make_config(tmp_path, extra=media(silent.getsockname())))
        try:
            t0 = time.monotonic()
            result = call(server, uac_expect(503), tmp_path / "caller")
            assert result.ok, result.describe()
            assert time.monotonic() - t0 < 10
            assert "rtpengine did not answer offer" in server.log()
            records = wait_for(lambda: call_records(server), 5, "the call record")
            assert records[0]["outcome"] == "failed"
        finally:
            server.stop()
    finally:
        silent.close()


def test_rtpengine_silent_at_the_answer_ends_both_legs(
    tmp_path: Path, rtpengine: RunningRtpengine
) -> None:
    server = start_server(make_config(tmp_path, extra=media(rtpengine.ng)))
    stopped = False
    try:
        # The callee rings 2.5 s then answers; meanwhile rtpengine freezes (SIGSTOP): the ng
        # answer for the 200 times out, the caller gets 503 and the callee, ACKed, gets a BYE.
        callee = device(server, "uas_answer", "1001", "secret1001", tmp_path / "callee",
                        pause_ms=2500)
        outcome: dict[str, Any] = {}
        caller = threading.Thread(target=lambda: outcome.setdefault("r", call(
            server, uac_expect(503), tmp_path / "caller")))
        caller.start()
        wait_for(rtpengine.calls, 10, "the call in rtpengine")
        rtpengine.process.send_signal(signal.SIGSTOP)
        stopped = True
        caller.join(30)
        result = outcome["r"]
        assert result.ok, result.describe()
        r = callee.result()
        assert r.ok, r.describe()  # ACK, then our BYE, answered 200
        assert "rtpengine did not answer answer" in server.log()
        records = wait_for(lambda: call_records(server), 5, "the call record")
        assert records[0]["outcome"] == "failed"
    finally:
        if stopped:
            rtpengine.process.send_signal(signal.SIGCONT)
        server.stop()



def test_hold_plays_the_callees_music_through_rtpengine(
    tmp_path: Path, rtpengine: RunningRtpengine
) -> None:
    server = start_server(make_config(tmp_path, extra=media(rtpengine.ng)))
    held = Phone(2)
    try:
        xml = sdp_port((SCENARIOS / "uas_answer_reinvite.xml").read_text(), held.port)
        callee = device(server, "uas_answer_reinvite", "1001", "secret1001", tmp_path / "callee",
                        xml=xml)
        listening = threading.Thread(target=held._receive_until, args=(time.monotonic() + 12,))
        listening.start()
        # INVITE, 200, ACK, then a sendonly re-INVITE (hold) kept 4 s, then BYE.
        result = call(server, uac_reinvite().replace(
            '  <send retrans="500" start_rtd="bye"', '  <pause milliseconds="4000"/>\n'
            '  <send retrans="500" start_rtd="bye"'), tmp_path / "caller", pause_ms=500)
        assert result.ok, result.describe()
        r = callee.result()
        assert r.ok, r.describe()
        listening.join()
    finally:
        held.close()
        server.stop()
    assert "play media" in rtpengine.log()
    assert len(held.received) > 100, f"only {len(held.received)} RTP packets during the hold"
    heard = audioop.ulaw2lin(b"".join(held.received), 2)
    music = audioop.ulaw2lin(b"".join(SoundLibrary(tmp_path / "lib").music("default").pcmu), 2)
    fragment = heard[8000:16000]  # half a second, a little after the hold began
    offset, _factor = audioop.findfit(music[: 8000 * 2 * 12], fragment)
    corr = correlation(fragment, music[2 * offset : 2 * offset + len(fragment)])
    assert corr > 0.95, corr


async def test_a_dead_rtpengine_is_reported_and_shutdown_stays_bounded() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    backend = RtpengineMedia(silent.getsockname(), timeout=0.5, retransmit=0.1)
    try:
        await backend.start()
        assert not await backend.check()
        for i in range(50):
            await backend.create_session(f"call-{i}")
        t0 = time.monotonic()
        await backend.close()  # 50 deletes nobody answers: at once, not one after the other
        assert time.monotonic() - t0 < 2.0
        assert not backend.sessions
    finally:
        silent.close()


def test_an_announcement_moves_the_call_to_the_built_in_relay(
    tmp_path: Path, rtpengine: RunningRtpengine
) -> None:
    from tests.integration.test_media_destinations import CALL_THEN_BYE_IN, USERS

    server = start_server(make_config(tmp_path, extra=USERS.format() + media(rtpengine.ng)))
    try:
        t0 = time.monotonic()
        # 0499... matches only `*` of user 1005: answered by us, the message plays, our BYE.
        xml = CALL_THEN_BYE_IN.replace("sip:0611223344@", "sip:0499887766@")
        result = call(server, xml, tmp_path / "caller", service="1005")
        assert result.ok, result.describe()
        assert time.monotonic() - t0 > 1.5  # the message lasted
        assert "built-in relay takes the call over from rtpengine" in server.log()
        wait_for(lambda: not rtpengine.calls(), 5, "the rtpengine call deleted")
    finally:
        server.stop()


def test_no_rtp_through_rtpengine_ends_the_call_after_rtp_timeout(
    tmp_path: Path, rtpengine: RunningRtpengine
) -> None:
    from tests.integration.test_media_destinations import CALL_THEN_BYE_IN

    config = make_config(tmp_path, extra=media(rtpengine.ng) + "rtp_timeout = 2\n")
    server = start_server(config)
    try:
        # Neither SIPp phone sends RTP: after about 2 s (at most 3) both legs get our BYE.
        callee = device(server, "uas_answer", "1001", "secret1001", tmp_path / "callee")
        t0 = time.monotonic()
        result = call(server, CALL_THEN_BYE_IN, tmp_path / "caller")
        assert result.ok, result.describe()
        assert 1.5 < time.monotonic() - t0 < 8
        r = callee.result()
        assert r.ok, r.describe()
        assert "no RTP from leg" in server.log()
        wait_for(lambda: not rtpengine.calls(), 5, "the rtpengine call deleted")
    finally:
        server.stop()

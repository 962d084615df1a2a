"""Hold music with real RTP: the caller puts the call on hold (re-INVITE sendonly) and the held
party receives the callee's hold music from the B2BUA: the very audio of the music class."""

from __future__ import annotations

import audioop
import socket
import threading
from pathlib import Path

from b2bua.testing.server import start_server
from media.library import SoundLibrary
from media.rtp import RtpPacket
from media.testing import correlation
from tests.integration.conftest import SCENARIOS, make_config
from tests.integration.flows import call, device, uac_reinvite


def test_the_held_party_hears_the_hold_music(tmp_path: Path) -> None:
    server = start_server(make_config(tmp_path))
    # The callee: a SIPp desk phone whose SDP points at a plain UDP socket that keeps every
    # RTP packet it gets.
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtp.settimeout(0.2)
    packets: list[bytes] = []
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            try:
                packets.append(rtp.recv(2048))
            except TimeoutError:
                continue

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    port = rtp.getsockname()[1]
    xml = (SCENARIOS / "uas_answer_reinvite.xml").read_text().replace(
        "m=audio [media_port]", f"m=audio {port}")
    try:
        callee = device(server, "uas_answer_reinvite", "1001", "secret1001", tmp_path / "callee",
                        xml=xml)
        # INVITE, 200, ACK, then a sendonly re-INVITE (hold) kept 4 s, then BYE.
        result = call(server, uac_reinvite().replace(
            '  <send retrans="500" start_rtd="bye"', '  <pause milliseconds="4000"/>\n'
            '  <send retrans="500" start_rtd="bye"'), tmp_path / "caller", pause_ms=500)
        assert result.ok, result.describe()
        r = callee.result()
        assert r.ok, r.describe()
    finally:
        stop.set()
        receiver.join()
        rtp.close()
        server.stop()
    assert len(packets) > 100, f"only {len(packets)} RTP packets reached the held party"
    parsed = [RtpPacket.parse(p) for p in packets]
    assert {p.payload_type for p in parsed} == {0}
    assert len({p.ssrc for p in parsed}) == 1
    heard = audioop.ulaw2lin(b"".join(p.payload for p in parsed), 2)
    music = audioop.ulaw2lin(b"".join(SoundLibrary(tmp_path / "lib").music("default").pcmu), 2)
    fragment = heard[8000:16000]  # half a second, a little after the hold began
    offset, _factor = audioop.findfit(music[: 8000 * 2 * 12], fragment)  # longer one first
    corr = correlation(fragment, music[2 * offset : 2 * offset + len(fragment)])
    assert corr > 0.99, corr

"""The rtpengine backend's pure mapping: leg SDP -> ng arguments (tags, flags, NAT), and a
session driven against a scripted ng client (offers, answers, hold music, delete)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from media.errors import MediaError
from media.library import Sound
from media.rtpengine import NgError
from media.rtpengine_backend import (
    RtpengineMedia,
    answer_args,
    behind_nat,
    delete_args,
    offer_args,
    play_args,
    received_packets,
    sdp_host,
    sends,
)
from media.testing import phone_sdp

COMMON = {"replace": ["origin", "session-connection"], "ICE": "remove"}


def test_offer_from_the_caller_then_a_reinvite_from_the_callee() -> None:
    sdp = phone_sdp("203.0.113.5", 4000)
    assert offer_args("c1", "a", sdp) == {"call-id": "c1", "from-tag": "a", "sdp": sdp, **COMMON}
    # Once answered, an offer (re-INVITE, UPDATE) names the other leg as to-tag.
    assert offer_args("c1", "b", sdp, renegotiation=True) == {
        "call-id": "c1", "from-tag": "b", "to-tag": "a", "sdp": sdp, **COMMON,
    }  # fmt: skip


def test_answer_names_the_offerer_as_from_tag() -> None:
    sdp = phone_sdp("203.0.113.6", 4002)
    assert answer_args("c1", "b", sdp) == {
        "call-id": "c1", "from-tag": "a", "to-tag": "b", "sdp": sdp, **COMMON,
    }  # fmt: skip
    assert answer_args("c1", "a", sdp)["from-tag"] == "b"  # a late offer came from the callee


@pytest.mark.parametrize(
    ("sdp_address", "source", "nat"),
    [
        ("192.168.1.20", "198.51.100.7", True),  # a phone behind a home router
        ("10.1.2.3", "198.51.100.7", True),
        ("172.20.0.5", "198.51.100.7", True),
        ("100.64.3.3", "198.51.100.7", True),  # carrier-grade NAT
        ("fd00::5", "2001:db8::7", True),
        ("198.51.100.7", "198.51.100.7", False),  # says its own public address
        ("203.0.113.9", "198.51.100.7", False),  # a public media address (SBC, media server)
        ("192.168.1.20", "192.168.1.20", False),  # on the LAN with us
        ("192.168.1.20", "127.0.0.1", False),  # tests and local proxies
        ("0.0.0.0", "198.51.100.7", False),  # RFC 2543 hold, not an address
        ("192.168.1.20", "2001:db8::7", False),  # families differ: leave it to rtpengine
        (None, "198.51.100.7", False),
        ("192.168.1.20", None, False),
        ("not-an-ip", "198.51.100.7", False),
    ],
)
def test_behind_nat(sdp_address: str | None, source: str | None, nat: bool) -> None:
    assert behind_nat(sdp_address, source) is nat


def test_a_natted_leg_gets_the_sip_source_address() -> None:
    sdp = phone_sdp("192.168.1.20", 4000)
    args = offer_args("c1", "a", sdp, source="198.51.100.7")
    assert args["flags"] == ["SIP-source-address"]
    assert args["received-from"] == ["IP4", "198.51.100.7"]
    assert "flags" not in offer_args("c1", "a", phone_sdp("198.51.100.7", 4000),
                                     source="198.51.100.7")
    assert answer_args("c1", "b", sdp, source="198.51.100.8")["received-from"] == [
        "IP4", "198.51.100.8"]


def test_sdp_host_reads_the_first_active_audio_connection() -> None:
    assert sdp_host(phone_sdp("192.0.2.1", 4000)) == "192.0.2.1"
    assert sdp_host(b"garbage") is None


def test_delete_and_play() -> None:
    assert delete_args("c1") == {"call-id": "c1", "delete-delay": 0}
    args = play_args("c1", "b", Path("/var/music/default.wav"))
    assert args["from-tag"] == "b" and args["file"] == "/var/music/default.wav"
    assert args["repeat-times"] > 1000


class ScriptedClient:
    """Stands for `NgClient`: records requests, answers offers/answers with a rewritten body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.fail: dict[str, MediaError] = {}

    async def request(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append((command, dict(body)))
        if command in self.fail:
            raise self.fail[command]
        if command in ("offer", "answer"):
            return {"result": b"ok", "sdp": body["sdp"].replace(b"192.0.2", b"127.0.0")}
        return {"result": b"ok"}

    def commands(self) -> list[str]:
        return [c for c, _ in self.requests]


async def backend(tmp_path: Path) -> tuple[RtpengineMedia, ScriptedClient]:
    media = RtpengineMedia(("127.0.0.1", 9), music_dir=tmp_path)
    client = ScriptedClient()
    media.client = client  # type: ignore[assignment]
    media.started = True
    return media, client


async def test_session_offer_answer_hold_and_delete(tmp_path: Path) -> None:
    media, client = await backend(tmp_path)
    session = await media.create_session("call-1")
    session.hold_music = Sound.silence(0.2, name="quiet")
    out = await session.offer("a", phone_sdp("192.0.2.1", 4000))
    assert b"c=IN IP4 127.0.0.1" in out
    await session.answer("b", phone_sdp("192.0.2.2", 5000))
    assert "to-tag" not in client.requests[0][1]
    # Hold from a: the re-INVITE goes through rtpengine, then b hears the hold music.
    await session.offer("a", phone_sdp("192.0.2.1", 4000, direction="sendonly", version=2))
    assert client.commands() == ["offer", "answer", "offer", "play media"]
    assert client.requests[2][1]["to-tag"] == "b"
    play = client.requests[3][1]
    assert play["from-tag"] == "b"
    assert Path(play["file"]).read_bytes()[:4] == b"RIFF"
    assert session.held("a") and session.playing("b")
    # Taken back: the music stops.
    await session.offer("a", phone_sdp("192.0.2.1", 4000, version=3))
    assert client.commands()[-2:] == ["offer", "stop media"]
    assert not session.held("a") and not session.playing("b")
    await session.close()
    assert client.requests[-1] == ("delete", {"call-id": "call-1", "delete-delay": 0})
    assert "call-1" not in media.sessions
    with pytest.raises(MediaError):
        await session.offer("a", phone_sdp("192.0.2.1", 4000))


async def test_hold_music_failure_does_not_fail_the_reinvite(tmp_path: Path) -> None:
    media, client = await backend(tmp_path)
    session = await media.create_session("call-2")
    session.hold_music = Sound.silence(0.2, name="quiet")
    client.fail["play media"] = NgError("rtpengine play media: Failed to start media playback")
    await session.offer("a", phone_sdp("192.0.2.1", 4000))
    await session.answer("b", phone_sdp("192.0.2.2", 5000))
    out = await session.offer("b", phone_sdp("192.0.2.2", 5000, direction="inactive", version=2))
    assert b"a=inactive" in out
    assert session.held("b") and not session.playing("a")


async def test_errors_propagate_and_delete_errors_do_not(tmp_path: Path) -> None:
    media, client = await backend(tmp_path)
    session = await media.create_session("call-3")
    client.fail["offer"] = MediaError("rtpengine did not answer offer in 3.0 s")
    with pytest.raises(MediaError, match="did not answer"):
        await session.offer("a", phone_sdp("192.0.2.1", 4000))
    client.fail["delete"] = MediaError("rtpengine did not answer delete in 3.0 s")
    await session.close()  # logged, not raised: the call is over anyway
    with pytest.raises(MediaError, match="exists already"):
        await media.create_session("call-4") and await media.create_session("call-4")


def query(a: int, b: int) -> dict[str, Any]:
    def tag(packets: int, port: int) -> dict[str, Any]:
        return {"medias": [{"streams": [
            {"local port": port, "flags": [b"RTP", b"filled"], "stats": {"packets": packets}},
            {"local port": port + 1, "flags": [b"RTCP"], "stats": {"packets": 99}},
        ]}]}
    return {"result": b"ok", "tags": {"a": tag(a, 30000), "b": tag(b, 30010)}}


def rx(a: int, b: int) -> dict[str, int]:
    return received_packets(query(a, b))


def test_received_packets_counts_rtp_per_tag() -> None:
    assert received_packets(query(7, 0)) == {"a": 7, "b": 0}
    assert received_packets({"result": b"ok"}) == {}


def test_sends_follows_direction_and_address() -> None:
    assert sends(phone_sdp("192.0.2.1", 4000))
    assert sends(phone_sdp("192.0.2.1", 4000, direction="sendonly"))
    assert not sends(phone_sdp("192.0.2.1", 4000, direction="recvonly"))
    assert not sends(phone_sdp("192.0.2.1", 4000, connection="0.0.0.0"))
    assert not sends(b"garbage")


async def test_rtp_timeout_like_the_built_in_relay(tmp_path: Path) -> None:
    media, _client = await backend(tmp_path)
    now = [100.0]
    media.clock = lambda: now[0]
    session = await media.create_session("call-5")
    await session.offer("a", phone_sdp("192.0.2.1", 4000))
    assert session.watch(rx(0, 0), now[0] + 50, 10) == []  # not answered: ringing
    await session.answer("b", phone_sdp("192.0.2.2", 5000, direction="recvonly"))
    assert session.watch(rx(0, 0), 105.0, 10) == []
    assert session.watch(rx(300, 0), 109.0, 10) == []  # a talks, b only listens
    assert session.watch(rx(300, 0), 118.0, 10) == []  # a's count moved at 109
    assert session.watch(rx(300, 0), 119.5, 10) == ["a"]
    assert session.watch(rx(300, 0), 130.0, 10) == []  # once
    # A new offer re-arms; while a leg holds, nothing times out.
    now[0] = 140.0
    await session.offer("b", phone_sdp("192.0.2.2", 5000, direction="sendonly", version=2))
    assert session.watch(rx(300, 0), 200.0, 10) == []
    # rtpengine forgot the call (restart, its own timeout): reported once.
    await session.offer("b", phone_sdp("192.0.2.2", 5000, version=3))
    assert session.watch(None, 201.0, 10) == ["a"]
    assert session.watch(None, 202.0, 10) == []

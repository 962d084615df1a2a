"""The ng client against a fake rtpengine on loopback: answers, retransmission, errors, timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from media.errors import MediaError
from media.rtpengine import NgClient, NgError, bdecode, bencode

pytestmark = pytest.mark.integration


class FakeRtpengine(asyncio.DatagramProtocol):
    """Answers ng commands; drops the first datagram of every cookie (to force a retransmit)."""

    def __init__(self) -> None:
        self.seen: dict[bytes, int] = {}
        self.commands: list[dict[str, Any]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.silent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        cookie, _, payload = data.partition(b" ")
        self.seen[cookie] = self.seen.get(cookie, 0) + 1
        if self.silent or self.seen[cookie] == 1:
            return
        request = bdecode(payload)
        self.commands.append(request)
        command = request["command"]
        if command == b"ping":
            answer: dict[str, Any] = {"result": "pong"}
        elif command == b"offer":
            answer = {"result": "ok", "sdp": request["sdp"].replace(b"10.0.0.1", b"127.0.0.9")}
        else:
            answer = {"result": "error", "error-reason": "Unknown call-id"}
        assert self.transport is not None
        self.transport.sendto(cookie + b" " + bencode(answer), addr)


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeRtpengine, tuple[str, int]]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        FakeRtpengine, local_addr=("127.0.0.1", 0)
    )
    yield proto, transport.get_extra_info("sockname")
    transport.close()


async def test_commands_retransmitted_and_answered(
    server: tuple[FakeRtpengine, tuple[str, int]],
) -> None:
    fake, address = server
    client = NgClient(address, timeout=2.0, retransmit=0.05)
    await client.open()
    try:
        assert await client.ping()
        answer = await client.command(
            "offer", call_id="c1", from_tag="t1", sdp=b"c=IN IP4 10.0.0.1\r\n"
        )
        assert answer["sdp"] == b"c=IN IP4 127.0.0.9\r\n"
        assert fake.commands[1]["call-id"] == b"c1" and fake.commands[1]["from-tag"] == b"t1"
        assert all(n >= 2 for n in fake.seen.values())
        with pytest.raises(NgError, match="Unknown call-id"):
            await client.command("delete", call_id="nope")
        fake.silent = True
        client.timeout = 0.2
        with pytest.raises(MediaError, match="did not answer"):
            await client.command("query", call_id="c1")
    finally:
        client.close()
    with pytest.raises(MediaError, match="not open"):
        await client.ping()

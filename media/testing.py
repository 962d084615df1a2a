"""Test helpers for media: a scriptable UDP "phone", test tones and audio comparison.

Shipped with the package so that the call engine's tests (and benchmarks) can drive real RTP
over loopback without a SIP stack.
"""

from __future__ import annotations

import asyncio
import math
import struct
from dataclasses import dataclass
from typing import Any

from media.g711 import PCMU, G711Codec
from media.rtp import RtpPacket, TelephoneEvent

__all__ = ["ReceivedPacket", "UdpPhone", "correlation", "phone_sdp", "tone"]


def tone(freq: float, seconds: float, amplitude: float = 0.4, rate: int = 8000) -> bytes:
    """A sine tone as 8 kHz mono s16le."""
    n = int(seconds * rate)
    scale = amplitude * 32767
    w = 2 * math.pi * freq / rate
    return struct.pack(f"<{n}h", *(round(scale * math.sin(w * i)) for i in range(n)))


def correlation(a: bytes, b: bytes) -> float:
    """Normalized cross-correlation at lag 0 of two s16le signals (over the shorter length)."""
    n = min(len(a), len(b)) // 2
    if n == 0:
        return 0.0
    x = struct.unpack(f"<{n}h", a[: 2 * n])
    y = struct.unpack(f"<{n}h", b[: 2 * n])
    sxy = sum(p * q for p, q in zip(x, y, strict=True))
    sxx = sum(p * p for p in x)
    syy = sum(q * q for q in y)
    if sxx == 0 or syy == 0:
        return 0.0
    return float(sxy / math.sqrt(sxx * syy))


def phone_sdp(
    ip: str,
    port: int,
    *,
    payload_types: tuple[int, ...] = (0, 8, 101),
    direction: str = "sendrecv",
    version: int = 1,
    connection: str | None = None,
    proto: str = "RTP/AVP",
    crypto: tuple[str, ...] = (),
) -> bytes:
    """The SDP a simple phone would send; `crypto` are a=crypto values (with RTP/SAVP)."""
    names = {0: "PCMU/8000", 8: "PCMA/8000", 9: "G722/8000", 101: "telephone-event/8000"}
    lines = [
        "v=0",
        f"o=phone 1 {version} IN IP4 {ip}",
        "s=call",
        f"c=IN IP4 {connection or ip}",
        "t=0 0",
        f"m=audio {port} {proto} {' '.join(map(str, payload_types))}",
    ]
    lines += [f"a=rtpmap:{pt} {names[pt]}" for pt in payload_types if pt in names]
    if 101 in payload_types:
        lines.append("a=fmtp:101 0-16")
    lines += ["a=ptime:20", f"a={direction}"]
    lines += [f"a=crypto:{value}" for value in crypto]
    return ("\r\n".join(lines) + "\r\n").encode()


@dataclass(frozen=True, slots=True)
class ReceivedPacket:
    packet: RtpPacket
    source: tuple[str, int]
    time: float


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, phone: UdpPhone) -> None:
        self.phone = phone

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.phone._received(data, addr)


class UdpPhone:
    """One UDP socket on loopback that sends and records RTP."""

    def __init__(self, ip: str = "127.0.0.1", port: int = 0) -> None:
        self.ip = ip
        self.port = port
        self.packets: list[ReceivedPacket] = []
        self.raw: list[bytes] = []
        self._transport: asyncio.DatagramTransport | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> UdpPhone:
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.ip, self.port)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    @property
    def address(self) -> tuple[str, int]:
        return (self.ip, self.port)

    def sdp(self, **kwargs: Any) -> bytes:
        return phone_sdp(self.ip, self.port, **kwargs)

    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self._loop is not None
        self.raw.append(data)
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            return
        self.packets.append(ReceivedPacket(packet, addr, self._loop.time()))
        for count, future in list(self._waiters):
            if len(self.packets) >= count and not future.done():
                future.set_result(None)

    async def wait_packets(self, count: int, timeout: float = 5.0) -> None:
        """Until `count` RTP packets in all have arrived (TimeoutError otherwise)."""
        if len(self.packets) >= count:
            return
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        entry = (count, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(entry)

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        assert self._transport is not None
        self._transport.sendto(data, dest)

    async def send_audio(
        self,
        dest: tuple[str, int],
        pcm: bytes,
        *,
        codec: G711Codec = PCMU,
        payload_type: int | None = None,
        ssrc: int = 0x1234,
        sequence: int = 1000,
        timestamp: int = 5000,
        ptime: float = 0.02,
        paced: bool = True,
    ) -> int:
        """Send `pcm` as 20 ms G.711 packets (paced on the loop clock); returns packets sent."""
        assert self._loop is not None
        data = codec.encode(pcm)
        pt = codec.payload_type if payload_type is None else payload_type
        start = self._loop.time()
        count = 0
        for i in range(0, len(data), 160):
            if paced:
                delay = start + count * ptime - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            packet = RtpPacket(
                pt, (sequence + count) & 0xFFFF, (timestamp + 160 * count) & 0xFFFFFFFF, ssrc,
                data[i : i + 160], marker=count == 0,
            )  # fmt: skip
            self.send(bytes(packet), dest)
            count += 1
        return count

    def send_dtmf(
        self,
        dest: tuple[str, int],
        event: int,
        *,
        timestamp: int,
        sequence: int,
        ssrc: int = 0x1234,
        payload_type: int = 101,
        steps: int = 3,
    ) -> int:
        """An RFC 4733 event: `steps` progress packets then the end packet three times."""
        n = 0
        for i in range(steps):
            ev = TelephoneEvent(event, False, 10, 160 * (i + 1))
            self.send(
                bytes(RtpPacket(payload_type, sequence + n, timestamp, ssrc, bytes(ev), i == 0)),
                dest,
            )
            n += 1
        for _ in range(3):
            ev = TelephoneEvent(event, True, 10, 160 * (steps + 1))
            self.send(
                bytes(RtpPacket(payload_type, sequence + n, timestamp, ssrc, bytes(ev))), dest
            )
            n += 1
        return n

    def audio(self, codec: G711Codec = PCMU, payload_type: int | None = None) -> bytes:
        """The received audio of one payload type, decoded, in arrival order."""
        pt = codec.payload_type if payload_type is None else payload_type
        return codec.decode(
            b"".join(p.packet.payload for p in self.packets if p.packet.payload_type == pt)
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

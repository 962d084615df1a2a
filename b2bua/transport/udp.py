"""UDP transport: one socket per listening address, datagrams straight to the receiver."""

from __future__ import annotations

import asyncio
import logging
import socket

from b2bua.sip.flow import Flow
from b2bua.transport.base import ListenSpec, Receiver

log = logging.getLogger(__name__)

RCVBUF = 4 * 1024 * 1024


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, spec: ListenSpec, receiver: Receiver) -> None:
        self.spec = spec
        self.receiver = receiver
        self.transport: asyncio.DatagramTransport | None = None
        self.local_host = spec.host
        self.local_port = spec.port
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            except OSError:
                pass
            addr = sock.getsockname()
            self.local_host, self.local_port = addr[0], addr[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int] | tuple[str, int, int, int]) -> None:
        if len(data) <= 4 and not data.strip(b"\r\n\x00"):
            return  # keep-alive (CRLF or empty) from a NATed device: nothing to answer on UDP
        flow = Flow("udp", addr[0], addr[1], None, self.local_host, self.local_port)
        self.receiver.message_received(data, flow)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: a device went away; timers will notice.
        self.errors += 1
        log.debug("udp %s: %s", self.spec, exc)

    def send(self, data: bytes, host: str, port: int) -> None:
        if self.transport is not None:
            self.transport.sendto(data, (host, port))


async def listen_udp(spec: ListenSpec, receiver: Receiver) -> UdpEndpoint:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpEndpoint(spec, receiver), local_addr=(spec.host, spec.port), family=family
    )
    return protocol

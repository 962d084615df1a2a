"""UDP transport: one non-blocking socket per listening address, drained in batches.

The socket is read with `loop.add_reader` and up to `BATCH` datagrams per wake-up (a loaded
stack then pays one loop iteration for many packets), and written with a plain `sendto`: no
transport object, no per-packet future. A send that would block (the socket buffer is full) is
queued and flushed when the socket is writable again, in order.

A datagram is read into one buffer kept for the socket, then copied out at its size. Reading
with `recvfrom(65535)` instead allocates 64 KB per datagram and shrinks it in place: the C
allocator's heap then fills with holes that later small allocations pin, and a busy server's
resident memory grew by 30 MB in ten minutes while the objects it held stayed flat.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import deque

from b2bua.sip.flow import Flow
from b2bua.transport.base import ListenSpec, Receiver

log = logging.getLogger(__name__)

RCVBUF = 4 * 1024 * 1024
SNDBUF = 4 * 1024 * 1024
BATCH = 64
MAX_DATAGRAM = 65_535
MAX_QUEUED = 10_000


class UdpEndpoint:
    """`shared`: several worker processes bind this address (SO_REUSEPORT, see b2bua.workers).
    `exclusive` is then checked first: no other process may hold the address already, or two
    servers would silently split its traffic."""

    def __init__(
        self, spec: ListenSpec, receiver: Receiver, *, shared: bool = False,
        exclusive: bool = True,
    ) -> None:
        self.spec = spec
        self.receiver = receiver
        family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        for opt, size in ((socket.SO_RCVBUF, RCVBUF), (socket.SO_SNDBUF, SNDBUF)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError:
                pass
        sock.setblocking(False)
        if shared:
            if exclusive and spec.port != 0:
                with socket.socket(family, socket.SOCK_DGRAM) as probe:
                    probe.bind((spec.host, spec.port))  # EADDRINUSE if anyone holds it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((spec.host, spec.port))
        self.sock = sock
        self.local_host, self.local_port = sock.getsockname()[:2]
        self._buffer = memoryview(bytearray(MAX_DATAGRAM))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        self.errors = 0
        self.dropped_sends = 0
        self.closed = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        recv_into = self.sock.recvfrom_into
        buffer = self._buffer
        receiver = self.receiver
        local_host, local_port = self.local_host, self.local_port
        for _ in range(BATCH):
            try:
                size, addr = recv_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ICMP port unreachable and the like: a device went away; timers will notice.
                self.errors += 1
                log.debug("udp %s: %s", self.spec, exc)
                continue
            data = buffer[:size].tobytes()
            if size <= 4 and not data.strip(b"\r\n\x00"):
                continue  # keep-alive (CRLF or empty) from a NATed device: nothing to answer
            receiver.message_received(data, Flow("udp", addr[0], addr[1], None, local_host, local_port))

    def send(self, data: bytes, host: str, port: int) -> None:
        if self._queue:
            self._enqueue(data, (host, port))
            return
        try:
            self.sock.sendto(data, (host, port))
        except (BlockingIOError, InterruptedError):
            self._enqueue(data, (host, port))
        except OSError as exc:
            self.errors += 1
            if exc.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                log.debug("udp send to %s:%s: %s", host, port, exc)

    def _enqueue(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(self._queue) >= MAX_QUEUED:
            self.dropped_sends += 1
            return
        if not self._queue and self._loop is not None:
            self._loop.add_writer(self.sock.fileno(), self._writable)
        self._queue.append((data, addr))

    def _writable(self) -> None:
        queue = self._queue
        while queue:
            data, addr = queue[0]
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.errors += 1
            queue.popleft()
        if self._loop is not None:
            self._loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            if self._queue:
                self._loop.remove_writer(self.sock.fileno())
        self.sock.close()


async def listen_udp(
    spec: ListenSpec, receiver: Receiver, *, shared: bool = False, exclusive: bool = True
) -> UdpEndpoint:
    endpoint = UdpEndpoint(spec, receiver, shared=shared, exclusive=exclusive)
    endpoint.start(asyncio.get_running_loop())
    return endpoint

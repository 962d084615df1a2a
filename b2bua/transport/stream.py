"""TCP and TLS transports: stream framing, connection reuse, RFC 5626 CRLF keep-alive.

Every connection, accepted or opened by us, gets an id; messages that arrive on it carry that id
in their `Flow`, so responses and later requests to the same device (a NATed softphone that
registered over TCP) reuse it. A CRLFCRLF ping is answered with a CRLF pong (RFC 5626 §4.4.1).
A framing error closes the connection: the stream cannot be resynchronised.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl

from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.framing import KEEPALIVE_PING, StreamFramer
from b2bua.transport.base import ListenSpec, Receiver

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class StreamConnection(asyncio.Protocol):
    def __init__(self, kind: str, receiver: Receiver, pool: ConnectionPool) -> None:
        self.kind = kind
        self.receiver = receiver
        self.pool = pool
        self.id = next(_ids)
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.flow: Flow | None = None
        self.pings = 0
        self.aliases: list[tuple[str, str, int]] = []  # other (transport, host, port) keys

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.flow = Flow(self.kind, peer[0], peer[1], self.id, local[0], local[1])
        self.pool.add(self)

    def data_received(self, data: bytes) -> None:
        framer = self.framer
        framer.feed(data)
        assert self.flow is not None
        while True:
            try:
                event = framer.next_event()
            except SipParseError as exc:
                log.info("%s: closing, framing error: %s", self.flow, exc.reason)
                self.close()
                return
            if event is None:
                return
            if event == KEEPALIVE_PING:
                self.pings += 1
                self.write(b"\r\n")
                continue
            assert isinstance(event, bytes)
            self.receiver.message_received(event, self.flow)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.remove(self)
        if self.flow is not None:
            self.receiver.connection_lost(self.flow)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Open connections by id and by (transport, remote address), for reuse."""

    def __init__(self) -> None:
        self.by_id: dict[int, StreamConnection] = {}
        self.by_remote: dict[tuple[str, str, int], StreamConnection] = {}

    def add(self, conn: StreamConnection) -> None:
        assert conn.flow is not None
        self.by_id[conn.id] = conn
        self.by_remote[(conn.kind, conn.flow.host, conn.flow.port)] = conn

    def alias(self, conn: StreamConnection, host: str, port: int) -> None:
        """`conn` also reaches `host`:`port` (a host name it was opened to)."""
        key = (conn.kind, host, port)
        if conn.flow is not None and key != (conn.kind, conn.flow.host, conn.flow.port):
            self.by_remote[key] = conn
            conn.aliases.append(key)

    def remove(self, conn: StreamConnection) -> None:
        self.by_id.pop(conn.id, None)
        keys = list(conn.aliases)
        if conn.flow is not None:
            keys.append((conn.kind, conn.flow.host, conn.flow.port))
        for key in keys:
            if self.by_remote.get(key) is conn:
                del self.by_remote[key]

    def find(self, flow: Flow) -> StreamConnection | None:
        if flow.connection_id is not None:
            conn = self.by_id.get(flow.connection_id)
            if conn is not None:
                return conn
        return self.by_remote.get((flow.transport, flow.host, flow.port))

    def close_all(self) -> None:
        for conn in list(self.by_id.values()):
            conn.close()


class StreamTransport:
    """Listeners and outgoing connections of one kind (tcp or tls)."""

    def __init__(
        self,
        kind: str,
        receiver: Receiver,
        pool: ConnectionPool,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.kind = kind
        self.receiver = receiver
        self.pool = pool
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.servers: list[asyncio.Server] = []
        self._pending: dict[tuple[str, int], list[bytes]] = {}

    def _factory(self) -> StreamConnection:
        return StreamConnection(self.kind, self.receiver, self.pool)

    async def listen(self, spec: ListenSpec) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self._factory, spec.host, spec.port, ssl=self.server_ssl, reuse_address=True
        )
        self.servers.append(server)
        sockname = server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    def send(self, data: bytes, flow: Flow) -> None:
        conn = self.pool.find(flow)
        if conn is not None:
            conn.write(data)
            return
        key = (flow.host, flow.port)
        queued = self._pending.get(key)
        if queued is not None:
            queued.append(data)
            return
        self._pending[key] = [data]
        asyncio.get_running_loop().create_task(self._connect(flow))

    async def _connect(self, flow: Flow) -> None:
        key = (flow.host, flow.port)
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    self._factory,
                    flow.host,
                    flow.port,
                    ssl=self.client_ssl if self.kind == "tls" else None,
                    server_hostname=flow.host if self.kind == "tls" else None,
                ),
                timeout=10,
            )
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            log.info("%s:%s:%s: connect failed: %s", self.kind, flow.host, flow.port, exc)
            self._pending.pop(key, None)
            self.receiver.connection_lost(flow)
            return
        assert isinstance(conn, StreamConnection)
        self.pool.alias(conn, flow.host, flow.port)
        for data in self._pending.pop(key, []):
            conn.write(data)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()

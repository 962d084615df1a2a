"""All listening sockets and connections of the process, behind one `send(data, flow)`."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from b2bua.sip.flow import Flow
from b2bua.transport.base import ListenSpec, Receiver
from b2bua.transport.stream import ConnectionPool, StreamTransport
from b2bua.transport.udp import UdpEndpoint, listen_udp

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LocalAddress:
    transport: str
    host: str
    port: int

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class TransportManager:
    def __init__(
        self,
        receiver: Receiver,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.receiver = receiver
        self.pool = ConnectionPool()
        self.udp: list[UdpEndpoint] = []
        self.streams = {
            "tcp": StreamTransport("tcp", receiver, self.pool),
            "tls": StreamTransport("tls", receiver, self.pool, server_ssl, client_ssl),
        }
        self.local: dict[str, LocalAddress] = {}  # first listening address per transport
        self._udp_local: dict[tuple[str, int], LocalAddress] = {}
        self.sent = 0
        # Several workers (b2bua.workers): UDP addresses are shared, and in workers other than
        # the first, bytes for TCP/TLS flows go to the first one (`stream_relay`).
        self.shared = False
        self.primary = True
        self.stream_relay: Callable[[bytes, Flow], None] | None = None

    async def listen(self, spec: ListenSpec) -> LocalAddress:
        if spec.transport == "udp":
            endpoint = await listen_udp(
                spec, self.receiver, shared=self.shared, exclusive=self.primary
            )
            self.udp.append(endpoint)
            address = LocalAddress("udp", endpoint.local_host, endpoint.local_port)
        else:
            if spec.transport == "tls" and self.streams["tls"].server_ssl is None:
                raise ValueError("tls listener needs server.tls_cert and server.tls_key")
            host, port = await self.streams[spec.transport].listen(spec)
            address = LocalAddress(spec.transport, host, port)
        self.local.setdefault(spec.transport, address)
        log.info("listening on %s:%s", spec.transport, address.hostport)
        return address

    def advertise(self, spec: ListenSpec) -> None:
        """A TCP/TLS address the first worker listens on, for our Via and Contact on such
        flows in the other workers."""
        self.local.setdefault(spec.transport, LocalAddress(spec.transport, spec.host, spec.port))

    def local_for(self, flow: Flow) -> LocalAddress:
        """Our address as seen on that flow (for Via sent-by and Contact)."""
        if flow.local_host is not None and flow.local_port is not None and flow.transport == "udp":
            key = (flow.local_host, flow.local_port)  # one of our sockets: a few keys at most
            address = self._udp_local.get(key)
            if address is None:
                address = self._udp_local[key] = LocalAddress("udp", *key)
            return address
        address = self.local.get(flow.transport) or next(iter(self.local.values()))
        return address

    def send(self, data: bytes, flow: Flow) -> None:
        self.sent += 1
        if flow.transport == "udp":
            endpoint = self._udp_for(flow)
            if endpoint is None:
                log.warning("no UDP socket to send to %s", flow)
                return
            endpoint.send(data, flow.host, flow.port)
        elif self.stream_relay is not None:
            self.stream_relay(data, flow)
        else:
            self.streams[flow.transport].send(data, flow)

    def _udp_for(self, flow: Flow) -> UdpEndpoint | None:
        if not self.udp:
            return None
        if flow.local_port is not None:
            for ep in self.udp:
                if ep.local_port == flow.local_port and ep.local_host == flow.local_host:
                    return ep
        v6 = ":" in flow.host
        for ep in self.udp:
            if (":" in ep.local_host) == v6:
                return ep
        return self.udp[0]

    async def close(self) -> None:
        for ep in self.udp:
            ep.close()
        for stream in self.streams.values():
            await stream.close()
        self.pool.close_all()

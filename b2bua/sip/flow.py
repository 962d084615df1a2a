"""Where a message came from or goes to: the flow (RFC 5626 speaks of flows too).

A `Flow` is the transport, the remote address and, for connection-oriented transports, the id of
the connection it arrived on (so a response or a request to a NATed device reuses it). The SIP
layers only carry flows around; the transport adapters give them meaning.
"""

from __future__ import annotations

from typing import NamedTuple

RELIABLE = frozenset({"tcp", "tls"})


class Flow(NamedTuple):
    """Immutable and hashable. A named tuple rather than a frozen dataclass: one is made per
    datagram received, and a frozen dataclass costs four times as much to build."""

    transport: str  # "udp" | "tcp" | "tls"
    host: str  # remote address as a string, IPv6 without brackets
    port: int
    connection_id: int | None = None  # set for tcp/tls: which connection it came on
    local_host: str | None = None  # our address it arrived on (picks the socket to reply from)
    local_port: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    @property
    def remote(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"

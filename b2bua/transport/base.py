"""What the transports hand to the SIP stack, and what the stack asks of them.

Transports are thin asyncio adapters: they turn socket events into `(bytes, Flow)` for a
`Receiver` and send bytes to a `Flow`. They know nothing of SIP except stream framing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from b2bua.sip.flow import Flow


class Receiver(Protocol):
    def message_received(self, data: bytes, flow: Flow) -> None: ...

    def connection_lost(self, flow: Flow) -> None: ...


@dataclass(frozen=True, slots=True)
class ListenSpec:
    transport: str  # udp | tcp | tls
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenSpec:
        """`udp:127.0.0.1:5060`, `tcp:[::1]:5060`, `tls:0.0.0.0:5061`."""
        transport, sep, rest = text.partition(":")
        transport = transport.lower()
        if not sep or transport not in ("udp", "tcp", "tls"):
            raise ValueError(f"expected udp|tcp|tls:HOST:PORT, got {text!r}")
        if rest.startswith("["):
            end = rest.find("]")
            host, port_text = rest[1:end], rest[end + 2 :]
        else:
            host, _, port_text = rest.rpartition(":")
        if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"expected udp|tcp|tls:HOST:PORT, got {text!r}")
        return cls(transport, host, int(port_text))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"

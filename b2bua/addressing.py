"""Our own SIP identity on a flow: the Via and Contact a new request or a response carries.

Pure: the transports know which local address faces a flow (`Addresses.local_for`), the token
source makes the branch; nothing is sent from here.
"""

from __future__ import annotations

from typing import Protocol

from b2bua.sip.flow import Flow
from b2bua.sip.transaction import MAGIC_COOKIE
from b2bua.tokens import TokenSource


class LocalAddress(Protocol):
    @property
    def hostport(self) -> str: ...


class Addresses(Protocol):
    """Our own address as a peer on `flow` sees it."""

    def local_for(self, flow: Flow) -> LocalAddress: ...


class Local:
    """Via and Contact for what we send on a flow."""

    __slots__ = ("addresses", "tokens")

    def __init__(self, addresses: Addresses, tokens: TokenSource) -> None:
        self.addresses = addresses
        self.tokens = tokens

    def via(self, flow: Flow) -> tuple[str, str]:
        """Our Via for a new request on `flow` and its branch: a fresh one, with the magic
        cookie (RFC 3261 §8.1.1.7), rport asked (RFC 3581)."""
        branch = MAGIC_COOKIE + self.tokens.token(8)
        local = self.addresses.local_for(flow)
        return f"SIP/2.0/{flow.transport.upper()} {local.hostport};branch={branch};rport", branch

    def contact(self, flow: Flow, user: str = "b2bua") -> str:
        local = self.addresses.local_for(flow)
        transport = "" if flow.transport == "udp" else f";transport={flow.transport}"
        return f"<sip:{user}@{local.hostport}{transport}>"

    def hostport(self, flow: Flow) -> str:
        return self.addresses.local_for(flow).hostport

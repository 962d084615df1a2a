"""What the trunk layer needs to know about one trunk, independent of how it was configured.

`TrunkSpec` is built from the `[[trunks]]` table of the configuration (`TrunkSpec.from_config`
reads any object with the same attribute names, so this package does not depend on the
configuration's classes) and is immutable: a configuration change builds new specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from b2bua.trunks.digest import Credentials

__all__ = ["NumberFormat", "Transport", "TrunkSpec"]

Transport = Literal["udp", "tcp", "tls"]
NumberFormat = Literal["national", "e164"]
MediaEncryption = Literal["sdes", "optional", "none"]
DEFAULT_PORTS: dict[str, int] = {"udp": 5060, "tcp": 5060, "tls": 5061}


@dataclass(frozen=True, slots=True)
class TrunkSpec:
    """One trunk: where it is, how we authenticate to it, and what it carries."""

    name: str
    host: str
    port: int | None = None  # None: the transport's default port
    transport: Transport = "udp"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    register: bool = False
    register_expires: int = 600
    lines: int = 0  # concurrent calls, inbound + outbound; 0 = unlimited
    caller_id: str | None = None
    prefixes: tuple[str, ...] = ()  # () takes every outbound number
    options_ping: float = 0.0  # seconds between OPTIONS; 0 disables
    number_format: NumberFormat = "national"
    media_encryption: MediaEncryption = "optional"
    domain: str | None = None  # the carrier's SIP domain, default `host`

    @property
    def credentials(self) -> Credentials | None:
        if self.username is None or self.password is None:
            return None
        return Credentials(self.username, self.password)

    @property
    def sip_domain(self) -> str:
        return self.domain or self.host

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def target_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.transport]

    def uri(self, user: str | None = None) -> str:
        """A SIP URI at the trunk (`sips:` never: TLS is a hop property, RFC 5630)."""
        transport = "" if self.transport == "udp" else f";transport={self.transport}"
        at = f"{user}@" if user else ""
        return f"sip:{at}{self.hostport}{transport}"

    def takes(self, number: str) -> bool:
        """Whether an outbound `number` matches this trunk's `prefixes`."""
        return not self.prefixes or number.startswith(self.prefixes)

    @classmethod
    def from_config(cls, trunk: Any) -> TrunkSpec:
        """From a configured trunk: `address` is `HOST[:PORT]` (a string, or an object with
        `host` and `port`); keys the configuration does not have take their defaults."""
        address = trunk.address
        if isinstance(address, str):
            host, port = _split_hostport(address)
        else:
            host, port = address.host, getattr(address, "port", None)

        def get(name: str, default: Any) -> Any:
            value = getattr(trunk, name, None)
            return default if value is None else value

        return cls(
            name=trunk.name,
            host=host,
            port=port,
            transport=get("transport", "udp"),
            username=get("username", None),
            password=get("password", None),
            register=bool(get("register_", get("register", False))),
            register_expires=int(get("register_expires", 600)),
            lines=int(get("lines", 0)),
            caller_id=get("caller_id", None),
            prefixes=tuple(get("prefixes", ())),
            options_ping=float(get("options_ping", 0)),
            number_format=get("number_format", "national"),
            media_encryption=get("media_encryption", "optional"),
        )


def _split_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return text, None

"""Who is who: extensions, system extensions, trunks and dialled numbers, indexed for calls.

Built once from the configuration (and again on a live config change); read on every call.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

_STRIP = str.maketrans("", "", " .-()/")


def normalize_number(number: str, country_code: str) -> str:
    """National form of a dialled or presented number: `+33 6 12..` and `0033612..` -> `0612..`.

    Extensions and short codes are returned unchanged (only separators removed).
    """
    n = number.translate(_STRIP)
    if n.startswith("+"):
        rest = n[1:]
        if country_code and rest.startswith(country_code):
            return "0" + rest[len(country_code) :]
        return "00" + rest
    if country_code and n.startswith("00" + country_code):
        return "0" + n[2 + len(country_code) :]
    return n


def to_e164(number: str, country_code: str) -> str:
    """E.164 form for a trunk: `0612..` -> `+33612..`; `00..` -> `+..`; short numbers unchanged."""
    n = normalize_number(number, country_code)
    if n.startswith("00"):
        return "+" + n[2:]
    if n.startswith("0") and country_code:
        return "+" + country_code + n[1:]
    return n


@dataclass(frozen=True, slots=True)
class Trunk:
    name: str
    host: str
    port: int
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    did: dict[str, str]  # normalised dialled number -> extension
    number_format: str = "e164"


class Directory:
    def __init__(self, config: Any) -> None:
        server = config.server
        self.domain: str = server.domain
        self.country_code: str = str(getattr(server, "country_code", "") or "")
        self.users: dict[str, Any] = {u.extension: u for u in config.users}
        self.system: dict[str, Any] = {s.extension: s for s in getattr(config, "system_extensions", [])}
        self.trunks: list[Trunk] = []
        for t in getattr(config, "trunks", []):
            host, _, port = str(t.address).rpartition(":")
            nets = tuple(ipaddress.ip_network(n, strict=False) for n in t.inbound_from)
            did = {normalize_number(k, self.country_code): v for k, v in dict(t.did).items()}
            fmt = getattr(t, "number_format", "e164") or "e164"
            self.trunks.append(Trunk(t.name, host.strip("[]"), int(port), nets, did, fmt))

    def is_extension(self, ext: str) -> bool:
        return ext in self.users or ext in self.system

    def trunk_for_source(self, host: str) -> Trunk | None:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return None
        for trunk in self.trunks:
            for net in trunk.networks:
                if addr.version == net.version and addr in net:
                    return trunk
        return None

    def outbound_trunk(self) -> Trunk | None:
        return self.trunks[0] if self.trunks else None

    def user(self, ext: str) -> Any | None:
        return self.users.get(ext)

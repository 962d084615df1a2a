"""Who is who: extensions, system extensions, trunks and dialled numbers, indexed for calls.

Built once from the configuration (and again on a live config change); read on every call.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any

from b2bua.rules.numbers import normalize_number
from b2bua.sip.flow import Flow
from b2bua.trunks.model import TrunkSpec

__all__ = ["Directory", "Trunk", "normalize_number", "to_e164"]


def to_e164(number: str, country_code: str) -> str:
    """E.164 form for a trunk: `0612..` -> `+33612..`; foreign `+..` kept; short numbers as is."""
    n = normalize_number(number, country_code)
    if n.startswith("0") and not n.startswith("00") and country_code:
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
    """One company's extensions, system extensions, trunks and DIDs. A tenant's trunks are
    named `NAME@TENANT` (`tenant`, b2bua.tenants.names): every tenant's are in one trunk
    service."""

    def __init__(self, config: Any, tenant: str = "") -> None:
        server = config.server
        self.domain: str = server.domain
        self.country_code: str = str(getattr(server, "country_code", "") or "")
        self.pickup_prefix: str = str(getattr(server, "pickup_prefix", "**"))
        self.group_pickup: str = str(getattr(server, "group_pickup", "*8"))
        self.users: dict[str, Any] = {u.extension: u for u in config.users}
        self.system: dict[str, Any] = {s.extension: s for s in getattr(config, "system_extensions", [])}
        self.trunks: list[Trunk] = []
        suffix = f"@{tenant}" if tenant else ""
        self.trunk_specs = tuple(
            replace(spec, name=spec.name + suffix) if suffix else spec
            for spec in (TrunkSpec.from_config(t) for t in getattr(config, "trunks", ())))
        # Whether any leg may have to speak SRTP, or refuse it (b2bua.calls.trunking).
        self.srtp_configured = any(s.media_encryption != "optional" for s in self.trunk_specs) or any(
            getattr(d, "media_encryption", "optional") != "optional"
            for u in self.users.values() for d in getattr(u, "devices", ()))
        self._source_cache: dict[str, Trunk | None] = {}
        for t in getattr(config, "trunks", []):
            host, port = t.address.host, t.address.port
            nets = tuple(ipaddress.ip_network(n, strict=False) for n in t.inbound_from)
            did = {normalize_number(k, self.country_code): v for k, v in dict(t.did).items()}
            fmt = getattr(t, "number_format", "e164") or "e164"
            self.trunks.append(Trunk(t.name + suffix, host.strip("[]"), int(port), nets, did, fmt))

    def is_extension(self, ext: str) -> bool:
        return ext in self.users or ext in self.system

    def trunk_for_source(self, host: str) -> Trunk | None:
        """The trunk that `host` (a source address) belongs to, if any (cached per address)."""
        cache = self._source_cache
        if host in cache:
            return cache[host]
        trunk = self._match_source(host)
        if len(cache) < 65_536:
            cache[host] = trunk
        return trunk

    def _match_source(self, host: str) -> Trunk | None:
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

    def device_encryption(self, ext: str, device: int | None) -> str:
        """The `media_encryption` of device number `device` of extension `ext`."""
        if not self.srtp_configured or device is None:
            return "optional"
        devices = getattr(self.users.get(ext), "devices", ())
        if 0 <= device < len(devices):
            return str(getattr(devices[device], "media_encryption", "optional"))
        return "optional"

    def caller_encryption(self, ext: str, flow: Flow, location: Any, now: float) -> str:
        """The `media_encryption` of the device of `ext` that calls from `flow`: the device
        of the binding on that flow, else the one mode all the user's devices share."""
        devices = getattr(self.users.get(ext), "devices", ())
        modes = {str(getattr(d, "media_encryption", "optional")) for d in devices}
        if len(modes) <= 1:
            return modes.pop() if modes else "optional"
        for binding in location.lookup(ext, now):
            bound = binding.flow
            if bound.host == flow.host and (bound.port == flow.port or (
                    bound.connection_id is not None and bound.connection_id == flow.connection_id)):
                return self.device_encryption(ext, binding.device)
        return "optional"

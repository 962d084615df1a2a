"""Which tenant a request, a number or a name belongs to (docs/tenants.md).

Theory of operation
-------------------
`Tenants` holds every served company (`b2bua.tenants.model.Tenant`) and the indexes that
answer, in one dict lookup each:

- `get(key)` and `of(name)`: the tenant of a key, or of a scoped name (`1001@acme.example`,
  b2bua.tenants.names), as the registrar hands authenticated callers to the call engine;
- `for_domain(host)`: the tenant whose SIP domain is `host`;
- `inbound(trunk, dialled)`: a carrier's call belongs to the tenant that owns the DID, and
  enters through that tenant's trunk (`did_owner`);
- `trunk_for_source(host)`: the trunk, of any tenant, whose `inbound_from` covers a source
  address (cached per address, as `Directory.trunk_for_source`);
- `trunks`: every tenant's trunks (their names scoped), for the trunk service.

While a single tenant is served, `only` is that tenant and the lookups are skipped: the
single-company path costs what it cost before tenants. Sans-IO, no clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from b2bua.calls.directory import Trunk
from b2bua.rules.numbers import normalize_number
from b2bua.tenants.model import Tenant
from b2bua.tenants.names import DEFAULT, tenant_of

__all__ = ["Tenants"]

_CACHE_MAX = 65_536


class Tenants:
    """Every served tenant and the indexes over them (module docstring)."""

    def __init__(self, tenants: Iterable[Tenant]) -> None:
        self._by_key: dict[str, Tenant] = {}
        self._by_domain: dict[str, Tenant] = {}
        self._dids: dict[str, Tenant] = {}  # normalised DID -> its tenant
        self._trunks: dict[str, Trunk] = {}  # scoped trunk name -> trunk
        self._source_cache: dict[str, Trunk | None] = {}
        self.only: Tenant | None = None
        for tenant in tenants:
            self._add(tenant)
        self._changed()
        if DEFAULT not in self._by_key:
            raise ValueError("the top-level company (key '') is always served")

    # -- membership ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Tenant]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    @property
    def default(self) -> Tenant:
        """The top-level company (`[server] domain`)."""
        return self._by_key[DEFAULT]

    @property
    def keys(self) -> list[str]:
        return list(self._by_key)

    def install(self, tenant: Tenant) -> Tenant:
        """Add `tenant`, or update the served tenant of its key in place from it (calls in
        progress hold that object, and count on it); the indexes follow. Returns the served object."""
        served = self._by_key.get(tenant.key)
        if served is None:
            self._add(tenant)
            self._changed()
            return tenant
        self._drop(served)
        served.domain = tenant.domain
        served.name = tenant.name
        served.config = tenant.config
        served.directory = tenant.directory
        served.limits = tenant.limits
        served.origin = tenant.origin
        served.rules = tenant.rules
        self._add(served)
        self._changed()
        return served

    def remove(self, key: str) -> Tenant | None:
        """Stop serving tenant `key` (never the top-level company); the tenant removed."""
        if key == DEFAULT:
            raise ValueError("the top-level company cannot be removed")
        old = self._by_key.get(key)
        if old is not None:
            self._drop(old)
            self._changed()
        return old

    def _add(self, tenant: Tenant) -> None:
        self._by_key[tenant.key] = tenant
        self._by_domain[tenant.domain.lower()] = tenant
        directory = tenant.directory
        for trunk in directory.trunks:
            self._trunks[trunk.name] = trunk
            for number in trunk.did:
                self._dids.setdefault(number, tenant)

    def _drop(self, tenant: Tenant) -> None:
        self._by_key.pop(tenant.key, None)
        if self._by_domain.get(tenant.domain.lower()) is tenant:
            del self._by_domain[tenant.domain.lower()]
        for trunk in tenant.directory.trunks:
            if self._trunks.get(trunk.name) is trunk:
                del self._trunks[trunk.name]
            for number in trunk.did:
                if self._dids.get(number) is tenant:
                    del self._dids[number]

    def _changed(self) -> None:
        self._source_cache.clear()
        self.only = next(iter(self._by_key.values())) if len(self._by_key) == 1 else None

    # -- lookups -------------------------------------------------------------------------------
    def get(self, key: str) -> Tenant | None:
        return self._by_key.get(key)

    def of(self, name: str) -> Tenant | None:
        """The tenant of a scoped name (`1001` is the top-level company's)."""
        only = self.only
        if only is not None:
            return only
        return self._by_key.get(tenant_of(name))

    def for_domain(self, host: str) -> Tenant | None:
        """The tenant whose SIP domain is `host` (case-insensitive)."""
        return self._by_domain.get(host.lower())

    def did_owner(self, number: str) -> Tenant | None:
        """The tenant one of whose trunks maps the normalised `number` to an extension."""
        return self._dids.get(number)

    @property
    def trunks(self) -> list[Trunk]:
        """Every tenant's trunks (names scoped)."""
        return list(self._trunks.values())

    def trunk(self, name: str) -> Trunk | None:
        """A trunk by its scoped name."""
        return self._trunks.get(name)

    def trunk_for_source(self, host: str) -> Trunk | None:
        """The trunk, of any tenant, whose `inbound_from` covers source address `host`."""
        only = self.only
        if only is not None:
            return only.directory.trunk_for_source(host)
        cache = self._source_cache
        if host in cache:
            return cache[host]
        found = self._match_source(host)
        if len(cache) < _CACHE_MAX:
            cache[host] = found
        return found

    def _match_source(self, host: str) -> Trunk | None:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return None
        for tenant in self._by_key.values():
            for trunk in tenant.directory.trunks:
                for net in trunk.networks:
                    if addr.version == net.version and addr in net:
                        return trunk
        return None

    def inbound(self, trunk: Trunk, dialled: str, host: str | None = None
                ) -> tuple[Tenant, Trunk]:
        """The tenant and trunk of a carrier's call to `dialled` that came in through `trunk`
        (from source address `host`): the DID's owner, through its own trunk when one of
        them takes calls from that carrier; otherwise the company of `trunk` (which then
        finds no such DID)."""
        only = self.only
        if only is not None:
            return only, trunk
        came = self._by_key.get(tenant_of(trunk.name)) or self.default
        number = normalize_number(dialled, came.directory.country_code)
        owner = self._dids.get(number)
        if owner is None or owner is came:
            return came, trunk
        declaring = [t for t in owner.directory.trunks if number in t.did]
        for candidate in (*declaring, *owner.directory.trunks):
            if candidate.host == trunk.host and candidate.port == trunk.port:
                return owner, candidate
            if host is not None and _covers(candidate, host):
                return owner, candidate
        return came, trunk


def _covers(trunk: Trunk, host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(addr.version == net.version and addr in net for net in trunk.networks)

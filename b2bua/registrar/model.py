"""What the registrar works with: bindings, the users and devices it serves, its settings, and the
location store interface.

`RegistrarSettings.from_config()` and `users_from_config()` are the thin adapter to
`b2bua.config.Config`; tests build the same objects from plain values.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from b2bua.push.model import PushTarget
from b2bua.sip.flow import Flow
from b2bua.sip.message import Response

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
DEVICE_TYPES = ("sip", "softphone", "teams", "other")


@dataclass(frozen=True, slots=True)
class RegistrarSettings:
    domain: str
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    nonce_ttl: int = 300
    keepalive_interval: int = 30  # 0: no OPTIONS keep-alive
    unreachable_grace: int = 120
    lockout_failures: int = 10
    lockout_window: int = 60
    lockout_seconds: int = 300
    # Our own addresses: an IP literal among them is accepted as the domain of a REGISTER.
    # A wildcard (0.0.0.0, ::) accepts any IP literal.
    local_addresses: tuple[str, ...] = ()
    max_bindings_per_aor: int = 32
    max_contacts_per_request: int = 16
    # Push notification services configured ([push]): RFC 8599 parameters of other providers get
    # 555; with none, `pn-*` parameters are ignored (no push, no Feature-Caps).
    push_providers: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Any, local_addresses: Iterable[str] = ()) -> RegistrarSettings:
        """From `b2bua.config.Config` (`.server` and `.registrar`)."""
        server = config.server
        reg = config.registrar
        push = getattr(config, "push", None)
        providers = tuple(
            name for name in ("apns", "fcm") if getattr(push, name, None) is not None
        )
        hosts: list[str] = []
        for spec in getattr(server, "listen", ()):
            host = str(getattr(spec, "host", ""))
            if host not in hosts:
                hosts.append(host)
        for host in local_addresses:
            if host not in hosts:
                hosts.append(host)
        return cls(
            domain=str(server.domain),
            auth_algorithms=tuple(server.auth_algorithms),
            min_expires=int(reg.min_expires),
            max_expires=int(reg.max_expires),
            default_expires=int(reg.default_expires),
            nonce_ttl=int(reg.nonce_ttl),
            keepalive_interval=int(reg.keepalive_interval),
            unreachable_grace=int(reg.unreachable_grace),
            lockout_failures=int(reg.lockout_failures),
            lockout_window=int(reg.lockout_window),
            lockout_seconds=int(reg.lockout_seconds),
            local_addresses=tuple(hosts),
            push_providers=providers,
        )


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A configured device of a user. `contact` makes it static (it never registers)."""

    type: str
    label: str
    username: str | None = None
    contact: str | None = None
    transport: str = "udp"  # how a static contact without a transport parameter is reached

    @property
    def static(self) -> bool:
        return self.contact is not None


@dataclass(frozen=True, slots=True)
class UserAccount:
    extension: str
    name: str
    secret: str
    devices: tuple[DeviceSpec, ...] = ()

    def device_username(self, index: int) -> str:
        """The name device `index` (0-based) registers and authenticates as."""
        return self.devices[index].username or self.extension


def users_from_config(config: Any) -> list[UserAccount]:
    """The `[[users]]` of a `b2bua.config.Config`."""
    out: list[UserAccount] = []
    for user in config.users:
        devices = tuple(
            DeviceSpec(
                type=str(d.type),
                label=str(d.label),
                username=getattr(d, "username", None),
                contact=getattr(d, "contact", None),
                transport=str(getattr(d, "transport", "udp") or "udp"),
            )
            for d in getattr(user, "devices", ())
        )
        out.append(UserAccount(str(user.extension), str(user.name), str(user.secret), devices))
    return out


@dataclass(slots=True, eq=False)
class Binding:
    """One contact of an extension, where requests for it are sent.

    `aor` is the extension; `username` the address-of-record user the device registered as (the
    extension or a device username). `key` identifies the binding among the extension's: the
    instance id (and reg-id under outbound) when the device sent one, else the contact URI.
    `expires_at`, `last_seen` and `registered_at` are wall-clock seconds (Unix time).
    """

    aor: str
    username: str
    key: str
    contact: str
    flow: Flow
    expires_at: float
    call_id: str
    cseq: int
    instance: str | None = None
    reg_id: int | None = None
    user_agent: str | None = None
    q: float | None = None
    path: tuple[str, ...] = ()
    device: int | None = None  # 0-based index in the user's configured devices
    outbound: bool = False  # RFC 5626 flow-bound binding
    reachable: bool = True
    last_seen: float = 0.0
    registered_at: float = 0.0
    unreachable_since: float | None = None
    static: bool = False
    keepalive_at: float | None = field(default=None, repr=False)  # next OPTIONS probe
    push: PushTarget | None = None  # RFC 8599: the device can be woken by a push
    last_push_at: float | None = None  # wall clock
    last_push_result: str | None = None  # PushResult.describe()

    def expires_in(self, now: float) -> int:
        """Whole seconds left (rounded up, so a live binding never shows 0)."""
        if self.static:
            return 0
        return max(0, math.ceil(self.expires_at - now))

    def live(self, now: float) -> bool:
        return self.static or self.expires_at > now

    @property
    def source(self) -> str:
        return str(self.flow)

    def intern(self) -> Binding:
        """Share the strings that many bindings repeat (memory at 100,000 bindings)."""
        self.aor = sys.intern(self.aor)
        self.username = sys.intern(self.username)
        if self.user_agent is not None:
            self.user_agent = sys.intern(self.user_agent)
        return self


@dataclass(frozen=True, slots=True)
class DeviceClaim:
    """Which registering identity (instance id or contact) a configured device was given."""

    extension: str
    device: int
    identity: str
    claimed_at: float


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of `Registrar.authenticate()`.

    When `ok` is false, `response` is what to answer (401/407 with fresh challenges, or 403
    for a locked-out source); when true, `username` authenticated as `extension`. `counted`:
    this request counted a failed authentication (towards lockout), so its retransmissions
    must be absorbed (a stateful answer); a refusal that counted nothing would be the same
    again and may be sent statelessly (RFC 3261 §8.2.7).
    """

    ok: bool
    username: str | None = None
    extension: str | None = None
    response: Response | None = None
    stale: bool = False
    reason: str = ""
    counted: bool = False


class StoreError(Exception):
    """The location store could not commit a change."""


@dataclass(frozen=True, slots=True)
class StoreBatch:
    """The changes of one REGISTER, to be committed in one transaction before it is answered:
    what the store seam carries, whether the store is local (SQLite) or across the network."""

    upserts: tuple[Binding, ...] = ()
    deletes: tuple[tuple[str, str], ...] = ()
    claims: tuple[DeviceClaim, ...] = ()


class LocationStore(Protocol):
    """Persistence of bindings and device claims; every call is committed before it returns."""

    def load_all(self) -> Iterable[Binding]: ...

    def load_aor(self, aor: str) -> Iterable[Binding]: ...

    def upsert(self, binding: Binding) -> None: ...

    def delete(self, aor: str, key: str) -> None: ...

    def purge_expired(self, now: float) -> int: ...

    def apply(
        self,
        upserts: Sequence[Binding],
        deletes: Sequence[tuple[str, str]],
        claims: Sequence[DeviceClaim] = (),
    ) -> None:
        """All of it in one transaction, or nothing (raises StoreError)."""
        ...

    def load_claims(self) -> Iterable[DeviceClaim]: ...

    def housekeep(self, updated: Sequence[Binding], removed: Sequence[Binding]) -> None:
        """Commit what housekeeping changed (keep-alive results, push results, expiry, closed
        connections): `updated` bindings changed in place, `removed` ones gone. A store shared
        by several nodes applies each only to the row as this process knew it (same Call-ID
        and CSeq), never over a newer registration; raises StoreError or queues the work."""
        ...


class MemoryLocationStore:
    """A LocationStore in a dict: for tests and benchmarks (nothing survives the process)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Binding] = {}
        self.claims: dict[tuple[str, int], DeviceClaim] = {}
        self.fail_next = False  # make the next apply() fail (tests of the 500 path)

    def load_all(self) -> Iterable[Binding]:
        return [_copy(b) for b in self.rows.values()]

    def load_aor(self, aor: str) -> Iterable[Binding]:
        return [_copy(b) for b in self.rows.values() if b.aor == aor]

    def upsert(self, binding: Binding) -> None:
        self.apply([binding], [])

    def delete(self, aor: str, key: str) -> None:
        self.apply([], [(aor, key)])

    def purge_expired(self, now: float) -> int:
        old = [k for k, b in self.rows.items() if not b.static and b.expires_at <= now]
        for k in old:
            del self.rows[k]
        return len(old)

    def apply(
        self,
        upserts: Sequence[Binding],
        deletes: Sequence[tuple[str, str]],
        claims: Sequence[DeviceClaim] = (),
    ) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StoreError("injected failure")
        for aor, key in deletes:
            self.rows.pop((aor, key), None)
        for b in upserts:
            self.rows[(b.aor, b.key)] = _copy(b)
        for c in claims:
            self.claims[(c.extension, c.device)] = c

    def load_claims(self) -> Iterable[DeviceClaim]:
        return list(self.claims.values())

    def housekeep(self, updated: Sequence[Binding], removed: Sequence[Binding]) -> None:
        self.apply(updated, [(b.aor, b.key) for b in removed])


def _copy(b: Binding) -> Binding:
    return Binding(
        aor=b.aor,
        username=b.username,
        key=b.key,
        contact=b.contact,
        flow=b.flow,
        expires_at=b.expires_at,
        call_id=b.call_id,
        cseq=b.cseq,
        instance=b.instance,
        reg_id=b.reg_id,
        user_agent=b.user_agent,
        q=b.q,
        path=b.path,
        device=b.device,
        outbound=b.outbound,
        reachable=b.reachable,
        last_seen=b.last_seen,
        registered_at=b.registered_at,
        unreachable_since=b.unreachable_since,
        push=b.push,
        last_push_at=b.last_push_at,
        last_push_result=b.last_push_result,
    )

"""The location service: the bindings of every extension, where to send a request to each one,
their expiry and keep-alive, and the flows they depend on.

Theory of operation
-------------------
Sans-IO: no socket, no clock, no asyncio; `now` is wall-clock Unix time (bindings survive a
restart, so their expiry must mean the same thing to the next process).

Bindings live in a dict per extension, keyed by identity (`binding_key`). REGISTER processing
(b2bua.registrar.core) decides the changes, has them committed to the `LocationStore`, and only
then calls `apply_register`: what `lookup` returns is always what the store holds.

Expiry, the end of an unreachable binding's grace and keep-alive probes sit in two heaps with
lazy deletion: a refreshed binding leaves its old entry behind, and the entry is dropped when it
surfaces and no longer matches the binding. `next_deadline()` is the earliest entry;
`expire(now)` and `keepalive_due(now)` consume them.

Push-capable bindings (RFC 8599: the device registered `pn-provider`/`pn-prid`) outlive their
flow: when the connection closes or the device stops answering keep-alives they become
unreachable but stay until they expire, since a push can wake the device. `push_bindings` lists
them for the call engine; `BindingAppeared` tells it when a binding is added or comes back on a
new flow (a woken device that registered again).
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import logging
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from b2bua.registrar.model import (
    Binding,
    DeviceClaim,
    LocationStore,
    RegistrarSettings,
    StoreError,
)
from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.headers import parse_name_addr
from b2bua.sip.uri import SipUri, parse_sip_uri

log = logging.getLogger("b2bua.registrar")

_EXPIRE = 0
_GRACE = 1
_SIGNIFICANT_URI_PARAMS = ("transport", "user", "ttl", "method", "maddr")
_TARGET_CACHE_SIZE = 65_536


def contact_identity(uri: SipUri) -> str:
    """A canonical text of a contact URI for binding matching (RFC 3261 §19.1.4 in spirit:
    scheme, unescaped user, host case-insensitively, port, and the parameters that always
    matter; other parameters do not make a different binding)."""
    parts = [uri.scheme, ":", uri.user_unescaped or "", "@", uri.host.lower()]
    if uri.port is not None:
        parts.append(f":{uri.port}")
    for name in _SIGNIFICANT_URI_PARAMS:
        value = uri.params.get(name)
        if value is not None:
            parts.append(f";{name}={value.lower()}")
    return "".join(parts)


def binding_key(username: str, instance: str | None, reg_id: int | None, uri: SipUri) -> str:
    """Identity of a binding within an extension: the AOR user, then the instance id (and the
    reg-id for an outbound flow) when the device sent one, else the contact URI."""
    if instance:
        tail = f"#{reg_id}" if reg_id is not None else ""
        return f"{username}|i:{instance}{tail}"
    return f"{username}|c:{contact_identity(uri)}"


def binding_identity(binding: Binding) -> str:
    """What a device claim remembers: the instance id, else the contact."""
    if binding.instance:
        return "i:" + binding.instance
    return binding.key.split("|", 1)[1]


def contact_is_natted(contact: SipUri, flow: Flow) -> bool:
    """True when the Contact's address cannot be the one the REGISTER came from: its host is an
    IP literal other than the source address. A different port on the same host is a UA that
    listens elsewhere (or registers on behalf of others), not a NAT: a NAT rewrites addresses."""
    try:
        contact_ip = ipaddress.ip_address(contact.host_for_socket)
    except ValueError:
        return False  # a host name: trust it
    try:
        source_ip = ipaddress.ip_address(flow.host)
    except ValueError:
        return True
    return contact_ip != source_ip


def static_flow(uri: SipUri, transport_default: str = "udp") -> Flow:
    """Where a static contact is reached: its URI's transport parameter, TLS for `sips:`,
    else the device's configured `transport`."""
    transport = uri.transport or ("tls" if uri.scheme == "sips" else transport_default)
    port = uri.port or (5061 if transport == "tls" else 5060)
    return Flow(transport, uri.host_for_socket, port)


@dataclass(frozen=True, slots=True)
class BindingAppeared:
    """A binding was added to `aor`, or registered again from another flow than before (or after
    it was unreachable): a device that can take requests now. The call engine adds it to a call
    that is still ringing the extension (fork-late)."""

    aor: str
    binding: Binding


class LocationService:
    """Bindings and static contacts of the served extensions (see module docstring)."""

    def __init__(
        self,
        settings: RegistrarSettings,
        store: LocationStore,
        counters: dict[str, int] | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self.counters = counters if counters is not None else {"store_errors": 0, "expired": 0}
        self._static: dict[str, list[Binding]] = {}
        self._bindings: dict[str, dict[str, Binding]] = {}
        self._by_connection: dict[int, set[tuple[str, str]]] = {}
        self._claims: dict[tuple[str, int], DeviceClaim] = {}
        self._deadlines: list[tuple[float, int, int, str, str]] = []
        self._keepalives: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        self._count = 0
        # target_for() per (contact, flow, flags): the same device is called again and again.
        self._target_cache: dict[tuple[object, ...], tuple[SipUri, Flow]] = {}
        # An extension whose bindings this process committed (for the other workers).
        self.on_change: Callable[[str], None] | None = None
        self.on_binding_appeared: Callable[[BindingAppeared], None] | None = None

    # -- static contacts and claims --------------------------------------------------------------
    def set_static(self, static: Mapping[str, list[Binding]]) -> None:
        self._static = dict(static)

    def replace_static(self, old: Iterable[str], static: Mapping[str, list[Binding]]) -> None:
        """The static contacts of extensions `old` replaced by `static` (one tenant's)."""
        for aor in old:
            self._static.pop(aor, None)
        self._static.update(static)

    def claim(self, extension: str, device: int) -> DeviceClaim | None:
        return self._claims.get((extension, device))

    # -- persistence -------------------------------------------------------------------------------
    def restore(
        self, now: float, keep: Callable[[Binding], bool], *, connections_survived: bool = False
    ) -> int:
        """Load the store's bindings (expired ones, and those `keep` refuses, deleted). TCP/TLS
        connections did not survive the restart, so their bindings come back unreachable (unless
        `connections_survived`: another process holds them). Returns the count loaded."""
        deletes: list[tuple[str, str]] = []
        try:
            self._store.purge_expired(now)
            claims = list(self._store.load_claims())
            for b in self._store.load_all():
                if not b.live(now) or not keep(b):
                    deletes.append((b.aor, b.key))
                    continue
                if b.flow.reliable and not connections_survived:
                    b.reachable = False
                    b.unreachable_since = now
                self._insert(b, now, spread=True)
            if deletes:
                self._store.apply([], deletes)
        except StoreError as exc:
            self.counters["store_errors"] += 1
            log.error("location store: %s", exc)
            raise
        for claim in claims:
            self._claims[(claim.extension, claim.device)] = claim
        return self._count

    def reload(self, extension: str, now: float, keep: Callable[[Binding], bool]) -> int:
        """Another worker changed `extension`'s bindings (b2bua.workers): read them back from
        the store, with that extension's device claims. Returns the count loaded."""
        try:
            rows = list(self._store.load_aor(extension))
            claims = [c for c in self._store.load_claims() if c.extension == extension]
        except StoreError as exc:
            self.counters["store_errors"] += 1
            log.error("location store: could not reload %s: %s", extension, exc)
            return 0
        return self.install(extension, rows, claims, now, keep)

    def install(
        self,
        extension: str,
        rows: Iterable[Binding],
        claims: Iterable[DeviceClaim],
        now: float,
        keep: Callable[[Binding], bool],
    ) -> int:
        """Replace `extension`'s bindings and device claims with `rows` and `claims`, as read
        back from the store (`reload`, or a shared store's change notice read asynchronously,
        b2bua.pgstore). Returns the count loaded."""
        before = dict(self._bindings.get(extension, {}))
        for b in before.values():
            self._remove(b)
        loaded = 0
        appeared: list[Binding] = []
        for b in rows:
            if b.live(now) and keep(b):
                self._insert(b, now)
                loaded += 1
                if _is_new_flow(before.get(b.key), b):
                    appeared.append(b)
        for key in [k for k in self._claims if k[0] == extension]:
            del self._claims[key]
        for claim in claims:
            self._claims[(claim.extension, claim.device)] = claim
        self.compact()
        for b in appeared:
            self._appeared(b)
        return loaded

    def write(
        self,
        upserts: Iterable[Binding] = (),
        removed: Iterable[Binding] = (),
        *,
        what: str = "",
        notify: bool = True,
    ) -> bool:
        """Commit housekeeping changes (not a REGISTER's: those are committed before they are
        applied): `upserts` changed in place, `removed` gone. The store is given the bindings
        themselves, so a store shared by several nodes can leave alone a row that another
        node has registered again meanwhile (`LocationStore.housekeep`). A failure is logged
        and counted; memory goes on regardless."""
        ups, gone = list(upserts), list(removed)
        try:
            self._store.housekeep(ups, gone)
        except StoreError as exc:
            self.counters["store_errors"] += 1
            log.error("location store%s: %s", f" ({what})" if what else "", exc)
            return False
        if notify and self.on_change is not None:
            for extension in {b.aor for b in ups} | {b.aor for b in gone}:
                self.on_change(extension)
        return True

    # -- what REGISTER processing reads and applies -------------------------------------------------
    def current(self, extension: str) -> Mapping[str, Binding]:
        """The extension's bindings by key (read-only view)."""
        return self._bindings.get(extension, {})

    def apply_register(
        self,
        extension: str,
        changes: Mapping[str, Binding | None],
        claims: Iterable[DeviceClaim],
        now: float,
    ) -> None:
        """Make a committed REGISTER's changes visible: `changes` maps binding keys to the new
        binding (None: removed)."""
        current = self._bindings.get(extension, {})
        appeared: list[Binding] = []
        for claim in claims:
            self._claims[(claim.extension, claim.device)] = claim
        for key, new in changes.items():
            old = current.get(key)
            if old is not None:
                self._remove(old)
            if new is not None:
                self._insert(new, now)
                if _is_new_flow(old, new):
                    appeared.append(new)
        self.compact()
        for b in appeared:
            self._appeared(b)

    def _appeared(self, binding: Binding) -> None:
        if self.on_binding_appeared is not None:
            self.on_binding_appeared(BindingAppeared(binding.aor, binding))

    # -- lookup --------------------------------------------------------------------------------------
    def lookup(
        self, extension: str, now: float, *, include_unreachable: bool = False
    ) -> list[Binding]:
        """Where to ring `extension`: live registered bindings (one per instance id: the
        reachable, most recently registered flow) and the static contacts; highest q first."""
        out: list[Binding] = []
        by_instance: dict[str, Binding] = {}
        for b in self._bindings.get(extension, {}).values():
            if not b.live(now) or (not b.reachable and not include_unreachable):
                continue
            if b.instance:
                cur = by_instance.get(b.instance)
                if cur is None or (b.reachable, b.registered_at) > (
                    cur.reachable,
                    cur.registered_at,
                ):
                    by_instance[b.instance] = b
            else:
                out.append(b)
        out.extend(by_instance.values())
        out.extend(self._static.get(extension, ()))
        out.sort(
            key=lambda b: (
                -(b.q if b.q is not None else 1.0),
                b.device if b.device is not None else 1 << 30,
                b.registered_at,
            )
        )
        return out

    def push_bindings(self, extension: str, now: float) -> list[Binding]:
        """The live push-capable bindings of `extension`, one per device (instance id, else push
        token): the most recently registered. `reachable` says whether its flow still works."""
        best: dict[str, Binding] = {}
        for b in self._bindings.get(extension, {}).values():
            if b.push is None or not b.live(now):
                continue
            device = b.instance or f"{b.push.provider}:{b.push.prid}"
            cur = best.get(device)
            if cur is None or (b.reachable, b.registered_at) > (cur.reachable, cur.registered_at):
                best[device] = b
        return sorted(best.values(), key=lambda b: (b.device if b.device is not None else 1 << 30,
                                                    b.registered_at))

    def get(self, aor: str, key: str) -> Binding | None:
        return self._bindings.get(aor, {}).get(key)

    def bindings(self, extension: str) -> list[Binding]:
        """Every registered binding of `extension` (expired-but-not-purged and unreachable
        included), for display."""
        return list(self._bindings.get(extension, {}).values())

    def extensions(self) -> list[str]:
        return list(self._bindings)

    def static_bindings(self, extension: str) -> list[Binding]:
        return list(self._static.get(extension, ()))

    def __len__(self) -> int:
        return self._count

    def target_for(self, binding: Binding) -> tuple[SipUri, Flow]:
        """Request-URI and flow for a request to `binding`.

        The Request-URI is the Contact as registered. The flow is the one the REGISTER came on
        (source address, port, connection) for outbound bindings, TCP/TLS, a Path, and a UDP
        device whose Contact names another address than its source (NAT); otherwise the
        Contact's own address, sent from the local socket the REGISTER arrived on."""
        key = (binding.contact, binding.flow, binding.static, binding.outbound, binding.path)
        cached = self._target_cache.get(key)
        if cached is not None:
            return cached
        target = _target(binding)
        if len(self._target_cache) >= _TARGET_CACHE_SIZE:
            self._target_cache.clear()
        self._target_cache[key] = target
        return target

    # -- push results ----------------------------------------------------------------------------------
    def record_push(self, binding: Binding, at: float, result: str, *, token_invalid: bool) -> None:
        """The outcome of a push to `binding` (shown on the device card); a dead token removes the
        binding's push data (RFC 8599 parameters), which then behaves as an ordinary binding."""
        b = self._bindings.get(binding.aor, {}).get(binding.key)
        if b is None:
            return
        b.last_push_at = at
        b.last_push_result = result[:120]
        if token_invalid and b.push is not None:
            log.warning("%s: push token of %s no longer valid (%s): push data removed",
                        b.aor, b.contact, result)
            b.push = None
            if not b.reachable:
                self._schedule_grace(b)
        self.write([b], what="push result")

    # -- time --------------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When `expire` / `keepalive_due` next have something to do."""
        self._clean_tops()
        deadlines, keepalives = self._deadlines, self._keepalives
        if not deadlines:
            return keepalives[0][0] if keepalives else None
        first = deadlines[0][0]
        return min(first, keepalives[0][0]) if keepalives else first

    def expire(self, now: float, gone_users: Callable[[str], bool] | None = None) -> list[Binding]:
        """Remove expired bindings, unreachable ones past their grace, and (with `gone_users`)
        those of extensions that are no longer served; returns them."""
        removed: list[Binding] = []
        grace = self.settings.unreachable_grace
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, kind, aor, key = heapq.heappop(heap)
            b = self._bindings.get(aor, {}).get(key)
            if b is None:
                continue
            if kind == _EXPIRE and b.expires_at <= now:
                removed.append(b)
            elif (
                kind == _GRACE
                and not b.reachable
                and b.push is None
                and b.unreachable_since is not None
                and b.unreachable_since + grace <= now
            ):
                removed.append(b)
        if gone_users is not None:
            for aor in [a for a in self._bindings if gone_users(a)]:
                removed.extend(self._bindings[aor].values())
        if removed:
            # Every worker expires bindings itself: no notice to the others.
            self.write([], removed, what="expired bindings", notify=False)
            for b in removed:
                self._remove(b)
                log.info("%s: binding %s removed (%s)", b.aor, b.contact,
                         "expired" if b.expires_at <= now else "unreachable")
            self.counters["expired"] += len(removed)
        self.compact()
        return removed

    def keepalive_due(self, now: float) -> list[Binding]:
        """UDP bindings to probe now (OPTIONS, answered via `keepalive_result`)."""
        due: list[Binding] = []
        heap = self._keepalives
        interval = self.settings.keepalive_interval
        while heap and heap[0][0] <= now:
            when, _, aor, key = heapq.heappop(heap)
            b = self._bindings.get(aor, {}).get(key)
            if b is None or b.keepalive_at != when:
                continue
            due.append(b)
            b.keepalive_at = now + interval
            heapq.heappush(heap, (b.keepalive_at, next(self._seq), aor, key))
        return due

    def keepalive_result(self, binding: Binding, ok: bool, now: float) -> None:
        """Outcome of a probe: a device that stopped answering becomes unreachable (no longer
        returned by `lookup`) and is removed after `unreachable_grace` unless it answers or
        registers again (a push-capable one stays until it expires)."""
        b = self._bindings.get(binding.aor, {}).get(binding.key)
        if b is not binding:
            return
        if ok:
            b.last_seen = now
            if b.reachable:
                return
            b.reachable = True
            b.unreachable_since = None
            log.info("%s: %s reachable again", b.aor, b.contact)
        else:
            if not b.reachable:
                return
            self._mark_unreachable(b, now)
        self.write([b], what="keep-alive")

    def connection_closed(self, connection_id: int, now: float) -> list[Binding]:
        """A TCP/TLS connection went away: its bindings are removed, except RFC 5626 outbound
        ones, which stay (unreachable) for `unreachable_grace` for the UA to re-register, and
        push-capable ones, which stay until they expire. Returns the bindings affected."""
        keys = self._by_connection.pop(connection_id, set())
        affected: list[Binding] = []
        gone: list[Binding] = []
        kept: list[Binding] = []
        for aor, key in keys:
            b = self._bindings.get(aor, {}).get(key)
            if b is None or b.flow.connection_id != connection_id:
                continue
            affected.append(b)
            if b.outbound or b.push is not None:
                if b.reachable:
                    self._mark_unreachable(b, now)
                    kept.append(b)
            else:
                gone.append(b)
        if kept or gone:
            self.write(kept, gone, what="connection closed")
        for b in gone:
            self._remove(b)
        return affected

    # -- internals -----------------------------------------------------------------------------------------
    def _mark_unreachable(self, b: Binding, now: float) -> None:
        b.reachable = False
        b.unreachable_since = now
        if b.push is None:
            self._schedule_grace(b)
        log.info("%s: %s unreachable", b.aor, b.contact)

    def _schedule_grace(self, b: Binding) -> None:
        if b.unreachable_since is None:
            return
        when = b.unreachable_since + self.settings.unreachable_grace
        heapq.heappush(self._deadlines, (when, next(self._seq), _GRACE, b.aor, b.key))

    def _insert(self, b: Binding, now: float, *, spread: bool = False) -> None:
        table = self._bindings.setdefault(b.aor, {})
        if b.key not in table:
            self._count += 1
        table[b.key] = b
        heapq.heappush(self._deadlines, (b.expires_at, next(self._seq), _EXPIRE, b.aor, b.key))
        if not b.reachable and b.push is None:
            self._schedule_grace(b)
        if b.flow.connection_id is not None:
            self._by_connection.setdefault(b.flow.connection_id, set()).add((b.aor, b.key))
        interval = self.settings.keepalive_interval
        # A binding registered through an edge proxy (a Path) is kept alive by the edge, which
        # holds the device's flow (RFC 5626 §5.2 puts keep-alives on the first hop).
        if interval > 0 and b.flow.transport == "udp" and not b.path:
            offset: float = interval
            if spread:
                # After a restart, spread the probes over one interval instead of a burst.
                offset = interval * (zlib.crc32(b.key.encode()) % 1000 + 1) / 1000
            b.keepalive_at = now + offset
            heapq.heappush(self._keepalives, (b.keepalive_at, next(self._seq), b.aor, b.key))
        else:
            b.keepalive_at = None

    def _remove(self, b: Binding) -> None:
        table = self._bindings.get(b.aor)
        if table is None or table.get(b.key) is not b:
            return
        del table[b.key]
        self._count -= 1
        if not table:
            del self._bindings[b.aor]
        b.keepalive_at = None
        cid = b.flow.connection_id
        if cid is not None:
            keys = self._by_connection.get(cid)
            if keys is not None:
                keys.discard((b.aor, b.key))
                if not keys:
                    del self._by_connection[cid]

    def _clean_tops(self) -> None:
        grace = self.settings.unreachable_grace
        heap = self._deadlines
        while heap:
            when, _, kind, aor, key = heap[0]
            b = self._bindings.get(aor, {}).get(key)
            if b is not None:
                if kind == _EXPIRE and b.expires_at == when:
                    break
                if (
                    kind == _GRACE
                    and not b.reachable
                    and b.push is None
                    and b.unreachable_since is not None
                    and b.unreachable_since + grace == when
                ):
                    break
            heapq.heappop(heap)
        kheap = self._keepalives
        while kheap:
            when, _, aor, key = kheap[0]
            b = self._bindings.get(aor, {}).get(key)
            if b is not None and b.keepalive_at == when:
                break
            heapq.heappop(kheap)

    def compact(self) -> None:
        """Rebuild the heaps when refreshed bindings left too many dead entries behind."""
        limit = 2 * self._count + 1024
        if len(self._deadlines) > limit:
            grace = self.settings.unreachable_grace
            fresh: list[tuple[float, int, int, str, str]] = []
            for table in self._bindings.values():
                for b in table.values():
                    fresh.append((b.expires_at, next(self._seq), _EXPIRE, b.aor, b.key))
                    if not b.reachable and b.push is None and b.unreachable_since is not None:
                        fresh.append(
                            (b.unreachable_since + grace, next(self._seq), _GRACE, b.aor, b.key)
                        )
            heapq.heapify(fresh)
            self._deadlines = fresh
        if len(self._keepalives) > limit:
            kfresh = [
                (b.keepalive_at, next(self._seq), b.aor, b.key)
                for table in self._bindings.values()
                for b in table.values()
                if b.keepalive_at is not None
            ]
            heapq.heapify(kfresh)
            self._keepalives = kfresh


def _is_new_flow(old: Binding | None, new: Binding) -> bool:
    """A binding that did not exist, or comes back from another flow or after being unreachable."""
    return old is None or old.flow != new.flow or not old.reachable


def path_hop(path: tuple[str, ...], flow: Flow) -> Flow:
    """Where a request to a binding registered with a Path goes: the first Path URI (RFC 3327:
    the stored Path becomes the request's Route set, whose first entry is the next hop). The
    REGISTER's own flow when that is the same address (its connection and local socket are
    reused), else the hop's address from our own socket: another node of a cluster sends to
    the edge that holds the device's flow, not to the socket the REGISTER reached."""
    try:
        hop = parse_name_addr(path[0]).uri
    except (SipParseError, IndexError):
        return flow
    if not isinstance(hop, SipUri):
        return flow
    transport = hop.transport or ("tls" if hop.scheme == "sips" else "udp")
    port = hop.port or (5061 if transport == "tls" else 5060)
    host = hop.host_for_socket
    if (host, port, transport) == (flow.host, flow.port, flow.transport):
        return flow
    return Flow(transport, host, port)


def _target(binding: Binding) -> tuple[SipUri, Flow]:
    uri = parse_sip_uri(binding.contact)
    flow = binding.flow
    if binding.path and not binding.static:
        return uri, path_hop(binding.path, flow)
    if binding.static or binding.outbound or flow.reliable:
        return uri, flow
    if contact_is_natted(uri, flow):
        return uri, flow
    transport = uri.transport if uri.transport in ("udp", "tcp", "tls") else flow.transport
    port = uri.port or (5061 if transport == "tls" else 5060)
    return uri, Flow(transport, uri.host_for_socket, port, None, flow.local_host, flow.local_port)

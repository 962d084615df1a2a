"""The registrar: REGISTER processing (RFC 3261 §10.3, RFC 5626 §6, RFC 8599) and digest
authentication, in front of the location service (b2bua.registrar.location) and the brute-force
lockout (b2bua.registrar.lockout).

Theory of operation
-------------------
Sans-IO: no socket, no clock, no asyncio. `now` is wall-clock Unix time in seconds.

A REGISTER is processed in two halves around the commit of its changes, so that the store may be
local (SQLite, committed in tens of microseconds) or across the network (awaited):

1. `begin_register(request, flow, now)` checks everything and returns either the final
   `Response` (a challenge, an error, a fetch) or a `PendingRegister`, whose `batch` (a
   `StoreBatch`) must be committed in one transaction;
2. the shell commits `pending.batch` and calls `finish_register(pending, error, now)`, which
   makes the changes visible (on success) and returns the response: RFC 3261 §10.3 step 7,
   "The binding updates MUST be committed (that is, made visible to the proxy or redirect
   server) if and only if all binding updates and additions succeed", so the 200 goes out only
   after the commit, and a failed commit is a 500 that changed nothing.

`handle_register` does both with the registrar's own (synchronous) store; `b2bua.registrar.shell`
drives an asynchronous one. Between the two halves no other REGISTER of the same extension may
begin (the shell serializes them).

Time: `next_deadline()` is the earliest of the location service's deadlines (expiry, end of an
unreachable binding's grace, keep-alive probes); `handle_deadline(now)` and `keepalive_due(now)`
do what is due, and sweep the (bounded) nonce-count and lockout tables at most every 10 s.

Tenants (docs/tenants.md): every company served has a realm, its SIP domain, with its own
digest credentials and users. The top-level company's (tenant key `''`) is `settings.domain`;
`set_tenant` adds or replaces another's. Inside the registrar a tenant's extensions, device
usernames and bindings are known by scoped names (`1001@acme.example`, b2bua.tenants.names;
the top-level company's stay `1001`): the location service, the store and the call engine
never mix two companies' extension 1001. A request's tenant is the realm of its credentials,
else the domain its From, Request-URI or To names, else the top-level company; it is
challenged in that realm and authenticates only that tenant's users.

Device mapping, NAT, push and lockout are explained in docs/registrar.md.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

from b2bua.push.model import PushParamError, PushTarget
from b2bua.registrar.digest import DigestServer, DigestSyntaxError, Verdict, parse_credentials
from b2bua.registrar.location import (
    BindingAppeared,
    LocationService,
    binding_identity,
    binding_key,
    contact_identity,
    contact_is_natted,
    static_flow,
)
from b2bua.registrar.lockout import MAX_TRACKED_SOURCES, Lockout
from b2bua.registrar.model import (
    WILDCARD_HOSTS,
    AuthResult,
    Binding,
    DeviceClaim,
    DeviceSpec,
    LocationStore,
    RegistrarSettings,
    StoreBatch,
    StoreError,
    UserAccount,
    users_from_config,
)
from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.grammar import is_digits, quote
from b2bua.sip.headers import NameAddr, canonical_name, parse_name_addr
from b2bua.sip.message import Request, Response, is_utf8, make_response
from b2bua.sip.uri import SipUri, parse_sip_uri
from b2bua.tenants.names import scoped, split

log = logging.getLogger("b2bua.registrar")

__all__ = [
    "MAX_TRACKED_SOURCES",
    "SUPPORTED",
    "BindingAppeared",
    "PendingRegister",
    "Registrar",
    "binding_identity",
    "binding_key",
    "contact_identity",
    "contact_is_natted",
]

# Option tags we implement (RFC 3261 §8.2.2.3: a Require we do not know gets 420).
SUPPORTED = ("outbound", "path")
_STORED_HEADERS = ("call-id", "contact", "user-agent", "path")
SWEEP_INTERVAL = 10.0  # seconds between sweeps of the nonce-count and lockout tables
_PN_PARAMS = ("pn-provider", "pn-prid", "pn-param")


def _path_has_ob(value: str) -> bool:
    try:
        uri = parse_name_addr(value).uri
    except SipParseError:
        return False
    return isinstance(uri, SipUri) and "ob" in uri.params


def _push_target(uri: SipUri) -> PushTarget | None:
    """RFC 8599: the `pn-*` URI parameters of a Contact (percent-escapes undone)."""
    params = {name: unquote(v) if (v := uri.params.get(name)) is not None else None
              for name in _PN_PARAMS}
    return PushTarget.from_uri_params(params)


# User agents known to fail on SHA-256 challenges (User-Agent prefix, lower case).
MD5_ONLY_AGENTS = ("baresip",)


@dataclass(slots=True, eq=False)
class Realm:
    """One tenant's part of the registrar: its domain (the digest realm), credentials and
    served extensions (scoped names), and its device limit (0: none)."""

    key: str
    domain: str
    digest: DigestServer
    extensions: frozenset[str] = frozenset()
    usernames: frozenset[str] = frozenset()
    static: frozenset[str] = frozenset()
    max_devices: int = 0


def _realm_param(value: str) -> str | None:
    """The realm of a credentials header value (None when absent or unreadable: the digest
    check then answers it). Read with the digest code's own parser, so a `realm=` inside
    another quoted parameter is not taken for the realm."""
    try:
        return parse_credentials(value)[1].get("realm")
    except DigestSyntaxError:
        return None


@dataclass(slots=True, eq=False)
class PendingRegister:
    """A REGISTER whose changes wait for their commit (`batch`); see the module docstring."""

    request: Request
    extension: str
    username: str
    batch: StoreBatch
    changes: dict[str, Binding | None]
    outbound: bool = False
    push_asked: bool = False  # a Contact carried pn-provider: answer with Feature-Caps
    removed_all: bool = False
    contacts: int = 0
    flow: Flow | None = field(default=None, repr=False)


class Registrar:
    """REGISTER processing and authentication for the configured users (module docstring)."""

    def __init__(
        self,
        settings: RegistrarSettings,
        users: Iterable[UserAccount],
        store: LocationStore,
        *,
        nonce_key: bytes,
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self.settings = settings
        self._store = store
        self._random = random_bytes
        self._nonce_key = nonce_key
        self._digest = self._digest_for(settings.domain)
        self._default = Realm("", settings.domain, self._digest)
        self._realms: dict[str, Realm] = {"": self._default}  # by tenant key
        self._domains: dict[str, Realm] = {settings.domain.lower(): self._default}
        self._only: Realm | None = self._default  # set while one tenant is served
        self._users: dict[str, UserAccount] = {}
        self._extension_of: dict[str, str] = {}  # username (extension or device) -> extension
        self._users_changed = False
        self._last_sweep = -math.inf
        self.counters: dict[str, int] = {
            "register_ok": 0,
            "auth_challenged": 0,
            "auth_failed": 0,
            "auth_malformed": 0,
            "auth_stale": 0,
            "locked_refused": 0,
            "lockouts": 0,
            "store_errors": 0,
            "expired": 0,
            "push_refused": 0,
        }
        self.location = LocationService(settings, store, self.counters)
        self.lockout = Lockout(
            settings.lockout_failures, settings.lockout_window, settings.lockout_seconds
        )
        # For the other workers: a failed authentication (source, time).
        self.on_failure: Callable[[str, float], None] | None = None
        self.set_users(users)

    @classmethod
    def from_config(
        cls,
        config: Any,
        store: LocationStore,
        *,
        nonce_key: bytes,
        random_bytes: Callable[[int], bytes],
        local_addresses: Iterable[str] = (),
    ) -> Registrar:
        """A registrar for a `b2bua.config.Config` (call `restore(now)` next)."""
        return cls(
            RegistrarSettings.from_config(config, local_addresses),
            users_from_config(config),
            store,
            nonce_key=nonce_key,
            random_bytes=random_bytes,
        )

    # -- hooks of the location service ------------------------------------------------------------
    @property
    def on_change(self) -> Callable[[str], None] | None:
        """Called with an extension whose bindings this process committed (b2bua.workers)."""
        return self.location.on_change

    @on_change.setter
    def on_change(self, callback: Callable[[str], None] | None) -> None:
        self.location.on_change = callback

    @property
    def on_binding_appeared(self) -> Callable[[BindingAppeared], None] | None:
        """Called when a binding is added, or registers again from a new flow (fork-late)."""
        return self.location.on_binding_appeared

    @on_binding_appeared.setter
    def on_binding_appeared(self, callback: Callable[[BindingAppeared], None] | None) -> None:
        self.location.on_binding_appeared = callback

    # ---------------------------------------------------------------------------------------
    # Users
    def _digest_for(self, realm: str) -> DigestServer:
        s = self.settings
        return DigestServer(realm, s.auth_algorithms, key=self._nonce_key,
                            nonce_ttl=s.nonce_ttl, random_bytes=self._random)

    def set_users(self, users: Iterable[UserAccount]) -> None:
        """(Re)load the top-level company's users: credentials, usernames and static contacts.
        Bindings of users that disappeared are dropped at the next `restore`/`handle_deadline`."""
        self.set_tenant("", self.settings.domain, users)

    def set_tenant(self, key: str, domain: str, users: Iterable[UserAccount],
                   max_devices: int = 0) -> None:
        """Add or replace tenant `key` (domain `domain`, its digest realm) with `users` (their
        extensions and usernames as configured, unscoped). `max_devices`: most live bindings
        the tenant may have at once (0: no limit)."""
        old = self._realms.get(key)
        if old is not None and old.domain == domain:
            realm = old
        else:
            realm = Realm(key, domain, self._digest if key == "" and domain ==
                          self.settings.domain else self._digest_for(domain))
        self._forget(old)
        realm.max_devices = max_devices
        credentials: dict[str, str] = {}
        static: dict[str, list[Binding]] = {}
        extensions: list[str] = []
        usernames: list[str] = []
        for given in users:
            ext = scoped(given.extension, key)
            devices = tuple(
                DeviceSpec(d.type, d.label, scoped(d.username, key) if d.username else None,
                           d.contact, d.transport) for d in given.devices)
            user = UserAccount(ext, given.name, given.secret, devices)
            self._users[ext] = user
            extensions.append(ext)
            self._extension_of[ext] = ext
            usernames.append(ext)
            credentials[given.extension] = user.secret
            for index, device in enumerate(given.devices):
                name = device.username or given.extension
                self._extension_of[scoped(name, key)] = ext
                usernames.append(scoped(name, key))
                credentials[name] = user.secret
                if device.contact is not None:
                    try:
                        uri = parse_sip_uri(device.contact)
                    except SipParseError as exc:
                        log.warning("ignoring static contact %r of %s: %s", device.contact,
                                    ext, exc.reason)
                        continue
                    static.setdefault(ext, []).append(
                        Binding(
                            aor=ext,
                            username=scoped(name, key),
                            key=f"static:{index}",
                            contact=device.contact,
                            flow=static_flow(uri, device.transport),
                            expires_at=math.inf,
                            call_id="",
                            cseq=0,
                            device=index,
                            static=True,
                        )
                    )
        realm.extensions = frozenset(extensions)
        realm.usernames = frozenset(usernames)
        realm.static = frozenset(static)
        self.location.replace_static(old.static if old is not None else (), static)
        realm.digest.set_credentials(credentials)
        self._realms[key] = realm
        self._domains[domain.lower()] = realm
        self._only = realm if len(self._realms) == 1 else None
        self._users_changed = True

    def drop_tenant(self, key: str) -> None:
        """Stop serving tenant `key`: its users authenticate no more; its bindings go at the
        next `handle_deadline` (called at once by the shell)."""
        if key == "":
            raise ValueError("the top-level company cannot be dropped")
        realm = self._realms.pop(key, None)
        if realm is None:
            return
        self._forget(realm)
        self.location.replace_static(realm.static, {})
        self._only = next(iter(self._realms.values())) if len(self._realms) == 1 else None
        self._users_changed = True

    def _forget(self, realm: Realm | None) -> None:
        if realm is None:
            return
        for ext in realm.extensions:
            self._users.pop(ext, None)
        for name in realm.usernames:
            self._extension_of.pop(name, None)
        if self._domains.get(realm.domain.lower()) is realm:
            del self._domains[realm.domain.lower()]

    @property
    def tenants(self) -> list[str]:
        """The keys of the tenants served."""
        return list(self._realms)

    def realm_of(self, key: str) -> Realm | None:
        return self._realms.get(key)

    def _realm_for(self, request: Request) -> Realm:
        """The tenant a request belongs to (module docstring): one dict lookup or a few; none
        while a single tenant is served."""
        only = self._only
        if only is not None:
            return only
        domains = self._domains
        for name in ("authorization", "proxy-authorization"):
            for value in request.headers.get_all(name):
                realm_name = _realm_param(value)
                if realm_name is not None:
                    found = domains.get(realm_name.lower())
                    if found is not None:
                        return found
        for uri in (_uri_of(request, "from"), request.request_uri, _uri_of(request, "to")):
            if isinstance(uri, SipUri):
                found = domains.get(uri.host.lower())
                if found is not None:
                    return found
        return self._default

    def tenant_of(self, request: Request) -> str:
        """The key of the tenant a request belongs to (see `_realm_for`)."""
        return self._realm_for(request).key

    def extension_for(self, username: str) -> str | None:
        """The extension a username (extension or device username) belongs to, both scoped."""
        return self._extension_of.get(username)

    def user(self, extension: str) -> UserAccount | None:
        return self._users.get(extension)

    def _served(self, b: Binding) -> bool:
        return self._extension_of.get(b.username) == b.aor

    def device_count(self, key: str, now: float) -> int:
        """Live registered bindings of tenant `key` (its device limit counts these)."""
        realm = self._realms.get(key)
        if realm is None:
            return 0
        current = self.location.current
        return sum(1 for ext in realm.extensions for b in current(ext).values() if b.live(now))

    # ---------------------------------------------------------------------------------------
    # Persistence
    def restore(self, now: float, *, connections_survived: bool = False) -> int:
        """Load the bindings of the store (expired ones purged). TCP/TLS connections did not
        survive the restart, so their bindings come back unreachable, for `unreachable_grace`
        seconds: time for the device to notice and register again (unless
        `connections_survived`: another process holds them). Returns the count loaded."""
        return self.location.restore(now, self._served, connections_survived=connections_survived)

    def reload(self, extension: str, now: float) -> int:
        """Another worker changed `extension`'s bindings (b2bua.workers): read them back from
        the store, with that extension's device claims. Returns the count loaded."""
        return self.location.reload(extension, now, self._served)

    def install(
        self, extension: str, rows: Iterable[Binding], claims: Iterable[DeviceClaim], now: float
    ) -> int:
        """`extension`'s bindings and claims as read back from a shared store (another node
        changed them, b2bua.pgstore): they replace what this process holds."""
        return self.location.install(extension, rows, claims, now, self._served)

    # ---------------------------------------------------------------------------------------
    # REGISTER
    def handle_register(self, request: Request, flow: Flow, now: float) -> Response:
        """Process a REGISTER (RFC 3261 §10.3) with the registrar's own store, committed before
        the response is returned."""
        outcome = self.begin_register(request, flow, now)
        if isinstance(outcome, Response):
            return outcome
        error: str | None = None
        try:
            self.commit(outcome.batch)
        except StoreError as exc:
            error = str(exc) or "store error"
        return self.finish_register(outcome, error, now)

    def commit(self, batch: StoreBatch) -> None:
        """Commit a batch with the registrar's own store (StoreError on failure)."""
        if batch.upserts or batch.deletes or batch.claims:
            self._store.apply(batch.upserts, batch.deletes, batch.claims)

    def begin_register(self, request: Request, flow: Flow, now: float) -> Response | PendingRegister:
        """First half of a REGISTER: the final response, or the changes to commit."""
        try:
            return self._register(request, flow, now)
        except SipParseError as exc:
            return self._reply(request, exc.status, exc.reason)

    def finish_register(
        self, pending: PendingRegister, error: str | None, now: float
    ) -> Response:
        """Second half: `error` is None when `pending.batch` was committed, else what went
        wrong (the answer is then 500 and nothing changed)."""
        request = pending.request
        if error is not None:
            self.counters["store_errors"] += 1
            log.error("location store failed, REGISTER %s refused: %s", request.call_id[:64], error)
            return self._reply(request, 500, "Location Store Failure")
        batch = pending.batch
        if self.on_change is not None:
            for extension in {b.aor for b in batch.upserts} | {aor for aor, _ in batch.deletes}:
                self.on_change(extension)
        self.location.apply_register(pending.extension, pending.changes, batch.claims, now)
        if pending.removed_all:
            log.info("%s: all bindings of %s removed", pending.extension, pending.username)
        else:
            self.counters["register_ok"] += 1
            log.debug("%s: REGISTER from %s ok (%d contacts)", pending.extension, pending.flow,
                      pending.contacts)
        return self._ok(request, pending.extension, pending.username, now,
                        outbound=pending.outbound, push_asked=pending.push_asked)

    def _register(self, request: Request, flow: Flow, now: float) -> Response | PendingRegister:
        if self.lockout.is_locked(flow.host, now):
            self.counters["locked_refused"] += 1
            log.debug("REGISTER from locked-out source %s refused", flow.host)
            return self._reply(request, 403)
        # Step 1: the Request-URI names a domain we hold bindings for.
        realm = self._realm_for(request)
        ruri = request.request_uri
        if not isinstance(ruri, SipUri) or not self._is_our_host(ruri.host, flow, realm):
            return self._reply(request, 403, "Domain Not Served Here")
        # Step 2: "the registrar MUST process the Require header field values as described
        # for UASs in Section 8.2.2" -> 420 with the tags we do not support.
        unsupported = [t for t in request.headers.values("require") if t.lower() not in SUPPORTED]
        if unsupported:
            return self._reply(request, 420, headers=[("Unsupported", ", ".join(unsupported))])
        # Steps 3 and 4: authenticate, then authorize for the To address-of-record.
        auth = self._authenticate(request, flow, now, "Authorization", realm)
        if not auth.ok:
            assert auth.response is not None
            return auth.response
        # What a binding stores (and the dashboard shows) must be UTF-8 text.
        for name in _STORED_HEADERS:
            if not all(is_utf8(v) for v in request.headers.get_all(name)):
                return self._reply(request, 400, f"{canonical_name(name)} Is Not UTF-8")
        # Step 5: "If the address-of-record is not valid for the domain in the Request-URI,
        # the registrar MUST send a 404 (Not Found) response".
        to_uri = request.to.uri
        if not isinstance(to_uri, SipUri) or not to_uri.user or not self._is_our_host(
            to_uri.host, flow, realm
        ):
            return self._reply(request, 404)
        username = scoped(to_uri.user_unescaped or "", realm.key)
        extension = self._extension_of.get(username)
        if extension is None:
            return self._reply(request, 404)
        if extension != auth.extension:
            return self._reply(request, 403, "Not Allowed To Register This Address")

        header_expires = request.expires
        values = request.headers.values("contact")
        if any(v.strip() == "*" for v in values):
            # Step 6: "*" only alone, with Expires: 0.
            if len(values) != 1:
                return self._reply(request, 400, "Contact * Must Be Alone")
            if header_expires != 0:
                return self._reply(request, 400, "Contact * Requires Expires 0")
            return self._remove_all(request, extension, username, now)
        if not values:
            return self._ok(request, extension, username, now, outbound=False)
        if len(values) > self.settings.max_contacts_per_request:
            return self._reply(request, 403, "Too Many Contacts")
        return self._update(request, flow, extension, username, header_expires, now, realm)

    def _remove_all(
        self, request: Request, extension: str, username: str, now: float
    ) -> Response | PendingRegister:
        call_id = request.call_id
        cseq = request.cseq.number
        mine = [b for b in self.location.current(extension).values() if b.username == username]
        for b in mine:
            # "If it does agree, it MUST remove the binding only if the CSeq in the request is
            # higher than the value stored for that binding. Otherwise, the update MUST be
            # aborted and the request fails."
            if b.live(now) and b.call_id == call_id and cseq <= b.cseq:
                return self._reply(request, 500, "Out Of Order Request")
        batch = StoreBatch(deletes=tuple((b.aor, b.key) for b in mine))
        return PendingRegister(request, extension, username, batch,
                               dict.fromkeys((b.key for b in mine), None), removed_all=True)

    def _update(
        self,
        request: Request,
        flow: Flow,
        extension: str,
        username: str,
        header_expires: int | None,
        now: float,
        realm: Realm | None = None,
    ) -> Response | PendingRegister:
        s = self.settings
        call_id = request.call_id
        cseq = request.cseq.number
        supported = {t.lower() for t in request.headers.values("supported")}
        path = tuple(request.headers.values("path"))
        user_agent = request.headers.get("user-agent")
        if user_agent is not None:
            user_agent = user_agent[:200]
        current = self.location.current(extension)
        changes: dict[str, Binding | None] = {}
        outbound_used = False
        push_asked = False
        for contact in request.contacts:
            uri = contact.uri
            if not isinstance(uri, SipUri):
                return self._reply(request, 400, "Unsupported Contact URI Scheme")
            requested = self._requested_expires(contact, header_expires)
            # "If and only if the requested expiration interval is greater than zero AND
            # smaller than one hour AND less than a registrar-configured minimum, the registrar
            # MAY reject the registration with a response of 423 (Interval Too Brief). This
            # response MUST contain a Min-Expires header field".
            if 0 < requested < 3600 and requested < s.min_expires:
                return self._reply(request, 423, headers=[("Min-Expires", str(s.min_expires))])
            expires = min(requested, s.max_expires)
            push: PushTarget | None = None
            if s.push_providers and "pn-provider" in uri.params:
                push_asked = True
                try:
                    push = _push_target(uri)
                except PushParamError as exc:
                    return self._reply(request, 400, exc.reason)
                if push is not None and push.provider not in s.push_providers:
                    # RFC 8599 defines 555 (Push Notification Service Not Supported) for a
                    # REGISTER naming a push notification service the proxy does not support.
                    self.counters["push_refused"] += 1
                    return self._reply(request, 555, "Push Notification Service Not Supported",
                                       headers=[self._feature_caps()])
            instance = contact.param("+sip.instance") or None
            reg_id = self._reg_id(contact)
            # RFC 5626 §6: reg-id without +sip.instance is ignored; outbound applies when the
            # UA supports it and we are its first hop (no Path, or a Path marked 'ob').
            outbound = (
                instance is not None
                and reg_id is not None
                and "outbound" in supported
                and (not path or _path_has_ob(path[0]))
            )
            if outbound:
                if outbound_used:
                    return self._reply(request, 400, "Several Contacts With reg-id")
                outbound_used = True
            key = binding_key(split(username)[1], instance, reg_id if outbound else None, uri)
            if key in changes:
                existing = changes[key]
            else:
                existing = current.get(key)
                if existing is not None and not existing.live(now):
                    existing = None
                # Step 7: same Call-ID and a CSeq not higher -> abort, the request fails.
                if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                    return self._reply(request, 500, "Out Of Order Request")
            if expires == 0:
                changes[key] = None
                continue
            changes[key] = Binding(
                aor=extension,
                username=username,
                key=key,
                contact=str(uri),
                flow=flow,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                instance=instance,
                reg_id=reg_id,
                user_agent=user_agent,
                q=self._q(contact),
                path=path,
                device=existing.device if existing is not None else None,
                outbound=outbound,
                reachable=True,
                last_seen=now,
                registered_at=existing.registered_at if existing is not None else now,
                push=push,
                last_push_at=existing.last_push_at if existing is not None else None,
                last_push_result=existing.last_push_result if existing is not None else None,
            ).intern()

        # One binding per push token: a device that registers again without an instance id
        # (or with another one) under the same token replaces its previous binding instead of
        # ringing twice. Flows of one instance (RFC 5626 reg-ids) are left as they are.
        tokens = {(b.push.provider, b.push.prid): b.instance
                  for b in changes.values() if b is not None and b.push is not None}
        if tokens:
            for key, old in current.items():
                if key in changes or old.username != username or old.push is None:
                    continue
                token = (old.push.provider, old.push.prid)
                if token in tokens and (old.instance is None or old.instance != tokens[token]):
                    changes[key] = None

        live_after = {k for k, b in current.items() if b.live(now)}
        for key, new in changes.items():
            if new is None:
                live_after.discard(key)
            else:
                live_after.add(key)
        if len(live_after) > s.max_bindings_per_aor:
            return self._reply(request, 403, "Too Many Registrations")
        if realm is not None and realm.max_devices:
            added = sum(1 for k in live_after if k not in current or not current[k].live(now))
            if added and self.device_count(realm.key, now) + added > realm.max_devices:
                # The tenant's limit of registered devices (docs/tenants.md, Limits).
                self.counters["device_limit"] = self.counters.get("device_limit", 0) + 1
                return self._reply(request, 403, "Device Limit Reached")

        # Devices for bindings that have none yet.
        new_claims: dict[tuple[str, int], DeviceClaim] = {}
        for new in changes.values():
            if new is not None and new.device is None:
                new.device = self._assign_device(new, now, changes, new_claims)

        batch = StoreBatch(
            upserts=tuple(b for b in changes.values() if b is not None),
            deletes=tuple((extension, k) for k, b in changes.items() if b is None and k in current),
            claims=tuple(new_claims.values()),
        )
        return PendingRegister(request, extension, username, batch, changes,
                               outbound=outbound_used, push_asked=push_asked,
                               contacts=len(changes), flow=flow)

    def _requested_expires(self, contact: NameAddr, header_expires: int | None) -> int:
        """The contact's expires parameter, else the Expires header, else our default."""
        value = contact.params.get("expires")
        if value is not None:
            if not is_digits(value) or len(value) > 10:
                raise SipParseError("Malformed Contact expires")
            return int(value)
        if header_expires is not None:
            return header_expires
        return self.settings.default_expires

    def _reg_id(self, contact: NameAddr) -> int | None:
        value = contact.params.get("reg-id")
        if value is None:
            return None
        if not is_digits(value) or len(value) > 9 or int(value) == 0:
            raise SipParseError("Malformed reg-id")
        return int(value)

    @staticmethod
    def _q(contact: NameAddr) -> float | None:
        value = contact.params.get("q")
        if value is None:
            return None
        try:
            q = float(value)
        except ValueError:
            raise SipParseError("Malformed q") from None
        if not 0.0 <= q <= 1.0 or len(value) > 5:
            raise SipParseError("Malformed q")
        return q

    def _feature_caps(self) -> tuple[str, str]:
        # RFC 8599: the proxy names the push notification services it supports in the
        # 'sip.pns' feature-capability indicator of a Feature-Caps header field.
        return ("Feature-Caps", f'*;+sip.pns="{",".join(self.settings.push_providers)}"')

    def _ok(
        self, request: Request, extension: str, username: str, now: float, *, outbound: bool,
        push_asked: bool = False,
    ) -> Response:
        headers: list[tuple[str, str]] = []
        mine = sorted(
            (
                b
                for b in self.location.current(extension).values()
                if b.username == username and b.live(now)
            ),
            key=lambda b: (b.registered_at, b.key),
        )
        for b in mine:
            value = f"<{b.contact}>;expires={b.expires_in(now)}"
            if b.instance:
                value += f";+sip.instance={quote(b.instance)}"
            if b.reg_id is not None:
                value += f";reg-id={b.reg_id}"
            if b.q is not None:
                value += f";q={b.q:g}"
            headers.append(("Contact", value))
        if outbound:
            # RFC 5626 §6: the registrar "MUST include the 'outbound' option-tag in a Require
            # header field in its response to that REGISTER request".
            headers.append(("Require", "outbound"))
            if self.settings.keepalive_interval > 0:
                headers.append(("Flow-Timer", str(self.settings.keepalive_interval)))
        supported = {t.lower() for t in request.headers.values("supported")}
        if "path" in supported:
            for value in request.headers.values("path"):
                headers.append(("Path", value))
        headers.append(("Supported", ", ".join(SUPPORTED)))
        if push_asked:
            headers.append(self._feature_caps())
        # "The response SHOULD contain a Date header field."
        headers.append(("Date", formatdate(now, usegmt=True)))
        return self._reply(request, 200, headers=headers)

    def _reply(
        self,
        request: Request,
        status: int,
        reason: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Response:
        return make_response(
            request, status, reason, to_tag=self._random(6).hex(), headers=headers
        )

    def _is_our_host(self, host: str, flow: Flow, realm: Realm | None = None) -> bool:
        domain = realm.domain if realm is not None else self.settings.domain
        if host.lower() == domain.lower():
            return True
        bare = host[1:-1] if host.startswith("[") else host
        try:
            ip = ipaddress.ip_address(bare)
        except ValueError:
            return False
        ours = list(self.settings.local_addresses)
        if flow.local_host:
            ours.append(flow.local_host)
        for addr in ours:
            if addr in WILDCARD_HOSTS:
                return True
            try:
                if ipaddress.ip_address(addr) == ip:
                    return True
            except ValueError:
                continue
        return False

    # ---------------------------------------------------------------------------------------
    # Devices
    def _assign_device(
        self,
        binding: Binding,
        now: float,
        changes: dict[str, Binding | None],
        pending: dict[tuple[str, int], DeviceClaim],
    ) -> int | None:
        """Map a registering identity to one configured device of its username:
        1. the device already claimed by this identity; 2. else the first device of that
        username never claimed; 3. else the first whose claimant has no live binding left.
        Otherwise none (the binding still rings, shown as unassigned)."""
        user = self._users.get(binding.aor)
        if user is None:
            return None
        ext = binding.aor
        candidates = [
            i
            for i, d in enumerate(user.devices)
            if not d.static and (d.username or ext) == binding.username
        ]
        if not candidates:
            return None
        identity = binding_identity(binding)

        def claim_of(i: int) -> DeviceClaim | None:
            return pending.get((ext, i)) or self.location.claim(ext, i)

        for i in candidates:
            c = claim_of(i)
            if c is not None and c.identity == identity:
                return i
        for i in candidates:
            if claim_of(i) is None:
                pending[(ext, i)] = DeviceClaim(ext, i, identity, now)
                return i
        live = {
            binding_identity(b)
            for b in self.location.current(ext).values()
            if b.live(now) and changes.get(b.key, b) is not None
        }
        live.update(binding_identity(b) for b in changes.values() if b is not None)
        live.discard(identity)
        for i in candidates:
            c = claim_of(i)
            if c is not None and c.identity not in live:
                pending[(ext, i)] = DeviceClaim(ext, i, identity, now)
                return i
        return None

    # ---------------------------------------------------------------------------------------
    # Authentication (REGISTER and, for the call engine, INVITE)
    def authenticate(
        self,
        request: Request,
        now: float,
        header: str = "Proxy-Authorization",
        *,
        flow: Flow | None = None,
    ) -> AuthResult:
        """Check a request's digest credentials. With `Proxy-Authorization` a failure answers
        407 + Proxy-Authenticate, with `Authorization` 401 + WWW-Authenticate. The source
        (`flow`, else `request.source` when it is a Flow) is subject to lockout."""
        if flow is None and isinstance(request.source, Flow):
            flow = request.source
        return self._authenticate(request, flow, now, header, self._realm_for(request))

    def _authenticate(
        self, request: Request, flow: Flow | None, now: float, header: str, realm: Realm
    ) -> AuthResult:
        if header.lower() == "authorization":
            status, challenge = 401, "WWW-Authenticate"
        else:
            status, challenge = 407, "Proxy-Authenticate"
        host = flow.host if flow is not None else None
        if host is not None and self.lockout.is_locked(host, now):
            self.counters["locked_refused"] += 1
            return AuthResult(False, response=self._reply(request, 403), reason="locked out")
        digest = realm.digest
        result = digest.verify(
            request.method, request.request_uri_text, request.headers.get_all(header), now
        )
        if result.verdict is Verdict.OK and result.username is not None:
            username = scoped(result.username, realm.key)
            extension = self._extension_of.get(username)
            if extension is not None:
                return AuthResult(True, username, extension)
        if result.verdict is Verdict.FAILED or result.verdict is Verdict.MALFORMED:
            # A malformed credential is a failed authentication too: counted towards lockout.
            self.counters["auth_failed"] += 1
            log.debug("authentication failed from %s: %s", host, result.reason)
            if host is not None and self._failed(host, now):
                return AuthResult(False, response=self._reply(request, 403), reason="locked out",
                                  counted=True)
            if result.verdict is Verdict.MALFORMED:
                self.counters["auth_malformed"] += 1
                return AuthResult(
                    False, response=self._reply(request, 400, "Malformed Credentials"),
                    reason=result.reason, counted=True,
                )
        elif result.verdict is Verdict.STALE:
            self.counters["auth_stale"] += 1
        else:
            self.counters["auth_challenged"] += 1
        stale = result.verdict is Verdict.STALE
        algorithms = None
        agent = (request.headers.get("user-agent") or "").lower()
        if any(agent.startswith(prefix) for prefix in MD5_ONLY_AGENTS):
            # Tolerated quirk "md5-only agent": these user agents abort on any SHA-256
            # challenge (Debian 12's baresip 1.0 does, even after an MD5 one), so they are
            # offered MD5 alone when MD5 is allowed at all.
            algorithms = ("MD5",)
            self.counters["md5_only_agent"] = self.counters.get("md5_only_agent", 0) + 1
        headers = [
            (challenge, v)
            for v in digest.challenges(now, stale=stale, algorithms=algorithms)
        ]
        return AuthResult(
            False,
            response=self._reply(request, status, headers=headers),
            stale=stale,
            reason=result.reason or "credentials required",
            counted=result.verdict is Verdict.FAILED,
        )

    # -- lockout -------------------------------------------------------------------------------
    def _failed(self, host: str, now: float) -> bool:
        """An authentication from `host` failed here: count it, and tell the other workers."""
        if self.on_failure is not None:
            self.on_failure(host, now)
        return self._record_failure(host, now)

    def count_failure(self, host: str, now: float) -> None:
        """An authentication from `host` failed in another worker: every worker counts every
        failure, so each locks the source out at the same count."""
        self._record_failure(host, now)

    def _record_failure(self, host: str, now: float) -> bool:
        locked = self.lockout.record_failure(host, now)
        if locked:
            self.counters["lockouts"] += 1
        return locked

    @property
    def failures(self) -> int:
        """Failed authentications counted so far (towards lockout); read it before handling a
        REGISTER for `repeatable`."""
        return self.counters["auth_failed"]

    def repeatable(self, response: Response, failures_before: int) -> bool:
        """Whether `response` to a REGISTER would be the same if the request came again, so it
        may be sent statelessly (RFC 3261 §8.2.7): a challenge (no credentials, credentials
        for another realm, a stale nonce) or a 403 (a domain we do not serve, a source already
        locked out) while no failed authentication was counted since `failures_before`. A
        counted failure stays stateful, so that its retransmissions are not counted again, and
        so does an answer that changed bindings. A failure another request counted meanwhile
        only makes the answer stateful, which is always safe."""
        return response.status in (401, 403) and self.failures == failures_before

    def is_locked_out(self, host: str, now: float) -> bool:
        return self.lockout.is_locked(host, now)

    def locked_sources(self, now: float) -> dict[str, float]:
        """Locked-out source addresses and when each lockout ends."""
        return self.lockout.locked_sources(now)

    def unlock(self, host: str) -> None:
        self.lockout.unlock(host)

    # ---------------------------------------------------------------------------------------
    # Location service (b2bua.registrar.location)
    def lookup(
        self, extension: str, now: float, *, include_unreachable: bool = False
    ) -> list[Binding]:
        """Where to ring `extension`: live registered bindings (one per instance id: the
        reachable, most recently registered flow) and the static contacts; highest q first."""
        return self.location.lookup(extension, now, include_unreachable=include_unreachable)

    def push_bindings(self, extension: str, now: float) -> list[Binding]:
        """The live push-capable bindings of `extension`, one per device."""
        return self.location.push_bindings(extension, now)

    def record_push(self, binding: Binding, at: float, result: str, *, token_invalid: bool) -> None:
        """The outcome of a push to `binding`; a dead token removes its push data."""
        self.location.record_push(binding, at, result, token_invalid=token_invalid)

    def bindings(self, extension: str) -> list[Binding]:
        """Every registered binding of `extension` (expired-but-not-purged and unreachable
        included), for display."""
        return self.location.bindings(extension)

    def static_bindings(self, extension: str) -> list[Binding]:
        return self.location.static_bindings(extension)

    def __len__(self) -> int:
        return len(self.location)

    def target_for(self, binding: Binding) -> tuple[SipUri, Flow]:
        """Request-URI and flow for a request to `binding` (LocationService.target_for)."""
        return self.location.target_for(binding)

    def keepalive_due(self, now: float) -> list[Binding]:
        """UDP bindings to probe now (OPTIONS, answered via `keepalive_result`)."""
        return self.location.keepalive_due(now)

    def keepalive_result(self, binding: Binding, ok: bool, now: float) -> None:
        self.location.keepalive_result(binding, ok, now)

    def connection_closed(self, connection_id: int, now: float) -> list[Binding]:
        """A TCP/TLS connection went away (LocationService.connection_closed)."""
        return self.location.connection_closed(connection_id, now)

    # ---------------------------------------------------------------------------------------
    # Time
    def next_deadline(self) -> float | None:
        """When `handle_deadline` / `keepalive_due` next have something to do: a binding's,
        or, while the lockout table holds failures or lockouts, its next sweep (the table is
        bounded, but what a flood of bad credentials left there must go when it is over, on
        a server where no binding ever expires too). The nonce-count table, filled only by
        good credentials, is swept on the same wake-ups."""
        deadline = self.location.next_deadline()
        if self.lockout.tracking:
            sweep = self._last_sweep + SWEEP_INTERVAL
            if deadline is None or sweep < deadline:
                deadline = sweep
        return deadline

    @property
    def users_changed(self) -> bool:
        """The served users changed since the last `handle_deadline`: a pass is due now (the
        bindings of a user who is gone go)."""
        return self._users_changed

    def handle_deadline(self, now: float) -> list[Binding]:
        """Remove expired bindings and unreachable ones past their grace (and those of users no
        longer configured); sweep the nonce-count and lockout tables. Returns the removed."""
        gone = None
        if self._users_changed:
            self._users_changed = False
            users = self._users
            gone = lambda aor: aor not in users  # noqa: E731
        removed = self.location.expire(now, gone)
        if now - self._last_sweep >= SWEEP_INTERVAL:
            self._last_sweep = now
            for realm in self._realms.values():
                realm.digest.purge(now)
            self.lockout.purge(now)
        return removed


def _uri_of(request: Request, header: str) -> object:
    """The URI of a From or To header, None when it cannot be read."""
    try:
        return (request.from_ if header == "from" else request.to).uri
    except SipParseError:
        return None

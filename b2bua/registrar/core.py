"""The registrar: REGISTER processing (RFC 3261 §10.3, RFC 5626 §6), the location service the call
engine asks where to send a call, keep-alive and expiry of bindings, and brute-force lockout.

Theory of operation
-------------------
Sans-IO: no socket, no clock, no asyncio. The server calls `handle_register(request, flow, now)`
for each REGISTER and sends the response it returns; it re-arms one timer at `next_deadline()`
and then calls `handle_deadline(now)` (expiry, unreachable bindings) and `keepalive_due(now)`
(UDP bindings to probe with OPTIONS, answered through `keepalive_result`). `now` is wall-clock
Unix time in seconds: bindings survive a restart, so their expiry must mean the same thing to
the next process.

Bindings live in a dict per extension, keyed by identity (see `binding_key`); every change is
written to the `LocationStore` before it becomes visible, and a REGISTER's 200 is returned only
after its whole batch committed (RFC 3261 §10.3 step 7: "The binding updates MUST be committed
... if and only if all binding updates and additions succeed").

Expiry, the end of an unreachable binding's grace and keep-alive probes sit in two heaps with
lazy deletion: a refreshed binding leaves its old entry behind, and the entry is dropped when it
surfaces and no longer matches the binding.

Device mapping, NAT and lockout are explained in docs/registrar.md.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import logging
import math
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from email.utils import formatdate
from typing import Any

from b2bua.registrar.digest import DigestServer, Verdict
from b2bua.registrar.model import (
    WILDCARD_HOSTS,
    AuthResult,
    Binding,
    DeviceClaim,
    LocationStore,
    RegistrarSettings,
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

log = logging.getLogger("b2bua.registrar")

# Option tags we implement (RFC 3261 §8.2.2.3: a Require we do not know gets 420).
SUPPORTED = ("outbound", "path")
MAX_TRACKED_SOURCES = 50_000
_STORED_HEADERS = ("call-id", "contact", "user-agent", "path")
SWEEP_INTERVAL = 10.0  # seconds between sweeps of the nonce-count and lockout tables
_EXPIRE = 0
_GRACE = 1
_SIGNIFICANT_URI_PARAMS = ("transport", "user", "ttl", "method", "maddr")


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


def _path_has_ob(value: str) -> bool:
    try:
        uri = parse_name_addr(value).uri
    except SipParseError:
        return False
    return isinstance(uri, SipUri) and "ob" in uri.params


def _static_flow(uri: SipUri) -> Flow:
    transport = uri.transport or ("tls" if uri.scheme == "sips" else "udp")
    port = uri.port or (5061 if transport == "tls" else 5060)
    return Flow(transport, uri.host_for_socket, port)


# User agents known to fail on SHA-256 challenges (User-Agent prefix, lower case).
MD5_ONLY_AGENTS = ("baresip",)


class Registrar:
    """Registrar and location service for the configured users (see module docstring)."""

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
        self._digest = DigestServer(
            settings.domain,
            settings.auth_algorithms,
            key=nonce_key,
            nonce_ttl=settings.nonce_ttl,
            random_bytes=random_bytes,
        )
        self._users: dict[str, UserAccount] = {}
        self._extension_of: dict[str, str] = {}  # username (extension or device) -> extension
        self._static: dict[str, list[Binding]] = {}
        self._bindings: dict[str, dict[str, Binding]] = {}
        self._by_connection: dict[int, set[tuple[str, str]]] = {}
        self._claims: dict[tuple[str, int], DeviceClaim] = {}
        self._deadlines: list[tuple[float, int, int, str, str]] = []
        self._keepalives: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        self._count = 0
        self._users_changed = False
        self._last_sweep = -math.inf
        self._failures: dict[str, deque[float]] = {}
        # target_for() per (contact, flow, flags): the same device is called again and again.
        self._target_cache: dict[tuple[object, ...], tuple[SipUri, Flow]] = {}
        self._locked_until: dict[str, float] = {}
        # For the other workers: an extension whose bindings this process committed, and a
        # failed authentication (source, time).
        self.on_change: Callable[[str], None] | None = None
        self.on_failure: Callable[[str, float], None] | None = None
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
        }
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

    # ---------------------------------------------------------------------------------------
    # Users
    def set_users(self, users: Iterable[UserAccount]) -> None:
        """(Re)load the served users: credentials, usernames and static contacts. Bindings of
        users that disappeared are dropped at the next `restore`/`handle_deadline`."""
        self._users = {u.extension: u for u in users}
        self._users_changed = True
        self._extension_of = {}
        credentials: dict[str, str] = {}
        self._static = {}
        for user in self._users.values():
            self._extension_of[user.extension] = user.extension
            credentials[user.extension] = user.secret
            for index, device in enumerate(user.devices):
                name = device.username or user.extension
                self._extension_of[name] = user.extension
                credentials[name] = user.secret
                if device.contact is not None:
                    try:
                        uri = parse_sip_uri(device.contact)
                    except SipParseError as exc:
                        log.warning("ignoring static contact %r of %s: %s", device.contact,
                                    user.extension, exc.reason)
                        continue
                    self._static.setdefault(user.extension, []).append(
                        Binding(
                            aor=user.extension,
                            username=name,
                            key=f"static:{index}",
                            contact=device.contact,
                            flow=_static_flow(uri),
                            expires_at=math.inf,
                            call_id="",
                            cseq=0,
                            device=index,
                            static=True,
                        )
                    )
        self._digest.set_credentials(credentials)

    def extension_for(self, username: str) -> str | None:
        """The extension a username (extension or device username) belongs to."""
        return self._extension_of.get(username)

    def user(self, extension: str) -> UserAccount | None:
        return self._users.get(extension)

    # ---------------------------------------------------------------------------------------
    # Persistence
    def restore(self, now: float, *, connections_survived: bool = False) -> int:
        """Load the bindings of the store (expired ones purged). TCP/TLS connections did not
        survive the restart, so their bindings come back unreachable, for `unreachable_grace`
        seconds: time for the device to notice and register again (unless
        `connections_survived`: another process holds them). Returns the count loaded."""
        deletes: list[tuple[str, str]] = []
        try:
            self._store.purge_expired(now)
            claims = list(self._store.load_claims())
            rows = self._store.load_all()
            for b in rows:
                if not b.live(now) or self._extension_of.get(b.username) != b.aor:
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

    # ---------------------------------------------------------------------------------------
    # REGISTER
    def handle_register(self, request: Request, flow: Flow, now: float) -> Response:
        """Process a REGISTER (RFC 3261 §10.3) and return the response to send."""
        try:
            return self._register(request, flow, now)
        except SipParseError as exc:
            return self._reply(request, exc.status, exc.reason)

    def _register(self, request: Request, flow: Flow, now: float) -> Response:
        if self._is_locked(flow.host, now):
            self.counters["locked_refused"] += 1
            log.debug("REGISTER from locked-out source %s refused", flow.host)
            return self._reply(request, 403)
        # Step 1: the Request-URI names a domain we hold bindings for.
        ruri = request.request_uri
        if not isinstance(ruri, SipUri) or not self._is_our_host(ruri.host, flow):
            return self._reply(request, 403, "Domain Not Served Here")
        # Step 2: "the registrar MUST process the Require header field values as described
        # for UASs in Section 8.2.2" -> 420 with the tags we do not support.
        unsupported = [t for t in request.headers.values("require") if t.lower() not in SUPPORTED]
        if unsupported:
            return self._reply(request, 420, headers=[("Unsupported", ", ".join(unsupported))])
        # Steps 3 and 4: authenticate, then authorize for the To address-of-record.
        auth = self._authenticate(request, flow, now, "Authorization")
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
            to_uri.host, flow
        ):
            return self._reply(request, 404)
        username = to_uri.user_unescaped or ""
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
        return self._update(request, flow, extension, username, header_expires, now)

    def _remove_all(self, request: Request, extension: str, username: str, now: float) -> Response:
        call_id = request.call_id
        cseq = request.cseq.number
        mine = [b for b in self._bindings.get(extension, {}).values() if b.username == username]
        for b in mine:
            # "If it does agree, it MUST remove the binding only if the CSeq in the request is
            # higher than the value stored for that binding. Otherwise, the update MUST be
            # aborted and the request fails."
            if b.live(now) and b.call_id == call_id and cseq <= b.cseq:
                return self._reply(request, 500, "Out Of Order Request")
        if not self._commit(request, [], [(b.aor, b.key) for b in mine], []):
            return self._reply(request, 500, "Location Store Failure")
        for b in mine:
            self._remove(b)
        log.info("%s: all bindings of %s removed", extension, username)
        return self._ok(request, extension, username, now, outbound=False)

    def _update(
        self,
        request: Request,
        flow: Flow,
        extension: str,
        username: str,
        header_expires: int | None,
        now: float,
    ) -> Response:
        s = self.settings
        call_id = request.call_id
        cseq = request.cseq.number
        supported = {t.lower() for t in request.headers.values("supported")}
        path = tuple(request.headers.values("path"))
        user_agent = request.headers.get("user-agent")
        if user_agent is not None:
            user_agent = user_agent[:200]
        current = self._bindings.get(extension, {})
        changes: dict[str, Binding | None] = {}
        outbound_used = False
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
            key = binding_key(username, instance, reg_id if outbound else None, uri)
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
            ).intern()

        live_after = {k for k, b in current.items() if b.live(now)}
        for key, new in changes.items():
            if new is None:
                live_after.discard(key)
            else:
                live_after.add(key)
        if len(live_after) > s.max_bindings_per_aor:
            return self._reply(request, 403, "Too Many Registrations")

        # Devices for bindings that have none yet.
        new_claims: dict[tuple[str, int], DeviceClaim] = {}
        for new in changes.values():
            if new is not None and new.device is None:
                new.device = self._assign_device(new, now, changes, new_claims)

        upserts = [b for b in changes.values() if b is not None]
        deletes = [(extension, k) for k, b in changes.items() if b is None and k in current]
        if not self._commit(request, upserts, deletes, list(new_claims.values())):
            return self._reply(request, 500, "Location Store Failure")
        self._claims.update(new_claims)
        for key, new in changes.items():
            old = current.get(key)
            if old is not None:
                self._remove(old)
            if new is not None:
                self._insert(new, now)
        self._compact()
        self.counters["register_ok"] += 1
        log.debug("%s: REGISTER from %s ok (%d contacts)", extension, flow, len(changes))
        return self._ok(request, extension, username, now, outbound=outbound_used)

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

    def _commit(
        self,
        request: Request,
        upserts: Sequence[Binding],
        deletes: Sequence[tuple[str, str]],
        claims: Sequence[DeviceClaim],
    ) -> bool:
        try:
            self._store.apply(upserts, deletes, claims)
        except StoreError as exc:
            self.counters["store_errors"] += 1
            log.error("location store failed, REGISTER %s refused: %s", request.call_id[:64], exc)
            return False
        if self.on_change is not None:
            for extension in {b.aor for b in upserts} | {aor for aor, _ in deletes}:
                self.on_change(extension)
        return True

    def _ok(
        self, request: Request, extension: str, username: str, now: float, *, outbound: bool
    ) -> Response:
        headers: list[tuple[str, str]] = []
        mine = sorted(
            (
                b
                for b in self._bindings.get(extension, {}).values()
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

    def _is_our_host(self, host: str, flow: Flow) -> bool:
        if host.lower() == self.settings.domain.lower():
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
            return pending.get((ext, i)) or self._claims.get((ext, i))

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
            for b in self._bindings.get(ext, {}).values()
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
        return self._authenticate(request, flow, now, header)

    def _authenticate(
        self, request: Request, flow: Flow | None, now: float, header: str
    ) -> AuthResult:
        if header.lower() == "authorization":
            status, challenge = 401, "WWW-Authenticate"
        else:
            status, challenge = 407, "Proxy-Authenticate"
        host = flow.host if flow is not None else None
        if host is not None and self._is_locked(host, now):
            self.counters["locked_refused"] += 1
            return AuthResult(False, response=self._reply(request, 403), reason="locked out")
        result = self._digest.verify(
            request.method, request.request_uri_text, request.headers.get_all(header), now
        )
        if result.verdict is Verdict.OK and result.username is not None:
            extension = self._extension_of.get(result.username)
            if extension is not None:
                return AuthResult(True, result.username, extension)
        if result.verdict is Verdict.FAILED or result.verdict is Verdict.MALFORMED:
            # A malformed credential is a failed authentication too: counted towards lockout.
            self.counters["auth_failed"] += 1
            log.debug("authentication failed from %s: %s", host, result.reason)
            if host is not None and self._failed(host, now):
                return AuthResult(False, response=self._reply(request, 403), reason="locked out")
            if result.verdict is Verdict.MALFORMED:
                self.counters["auth_malformed"] += 1
                return AuthResult(
                    False, response=self._reply(request, 400, "Malformed Credentials"),
                    reason=result.reason,
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
            for v in self._digest.challenges(now, stale=stale, algorithms=algorithms)
        ]
        return AuthResult(
            False,
            response=self._reply(request, status, headers=headers),
            stale=stale,
            reason=result.reason or "credentials required",
        )

    # -- lockout -------------------------------------------------------------------------------
    def _is_locked(self, host: str, now: float) -> bool:
        until = self._locked_until.get(host)
        if until is None:
            return False
        if until <= now:
            del self._locked_until[host]
            return False
        return True

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
        s = self.settings
        window = self._failures.get(host)
        if window is None:
            if len(self._failures) >= MAX_TRACKED_SOURCES:
                self._purge_failures(now)
                if len(self._failures) >= MAX_TRACKED_SOURCES:
                    del self._failures[next(iter(self._failures))]
            window = self._failures[host] = deque()
        window.append(now)
        while window and window[0] <= now - s.lockout_window:
            window.popleft()
        if len(window) < s.lockout_failures:
            return False
        del self._failures[host]
        self._locked_until[host] = now + s.lockout_seconds
        self.counters["lockouts"] += 1
        log.warning(
            "source %s locked out for %d s after %d failed authentications in %d s",
            host, s.lockout_seconds, s.lockout_failures, s.lockout_window,
        )
        return True

    def _purge_failures(self, now: float) -> None:
        limit = now - self.settings.lockout_window
        for host in [h for h, w in self._failures.items() if not w or w[-1] <= limit]:
            del self._failures[host]
        for host in [h for h, t in self._locked_until.items() if t <= now]:
            del self._locked_until[host]

    def is_locked_out(self, host: str, now: float) -> bool:
        return self._is_locked(host, now)

    def locked_sources(self, now: float) -> dict[str, float]:
        """Locked-out source addresses and when each lockout ends."""
        return {h: t for h, t in self._locked_until.items() if t > now}

    def unlock(self, host: str) -> None:
        self._locked_until.pop(host, None)
        self._failures.pop(host, None)

    # ---------------------------------------------------------------------------------------
    # Location service
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

    def bindings(self, extension: str) -> list[Binding]:
        """Every registered binding of `extension` (expired-but-not-purged and unreachable
        included), for display."""
        return list(self._bindings.get(extension, {}).values())

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
        target = self._target(binding)
        if len(self._target_cache) >= 65_536:
            self._target_cache.clear()
        self._target_cache[key] = target
        return target

    def _target(self, binding: Binding) -> tuple[SipUri, Flow]:
        uri = parse_sip_uri(binding.contact)
        flow = binding.flow
        if binding.static or binding.outbound or flow.reliable or binding.path:
            return uri, flow
        if contact_is_natted(uri, flow):
            return uri, flow
        transport = uri.transport if uri.transport in ("udp", "tcp", "tls") else flow.transport
        port = uri.port or (5061 if transport == "tls" else 5060)
        return uri, Flow(
            transport, uri.host_for_socket, port, None, flow.local_host, flow.local_port
        )

    # ---------------------------------------------------------------------------------------
    # Time
    def next_deadline(self) -> float | None:
        """When `handle_deadline` / `keepalive_due` next have something to do."""
        self._clean_tops()
        times = []
        if self._deadlines:
            times.append(self._deadlines[0][0])
        if self._keepalives:
            times.append(self._keepalives[0][0])
        return min(times) if times else None

    def handle_deadline(self, now: float) -> list[Binding]:
        """Remove expired bindings and unreachable ones past their grace; returns them."""
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
                and b.unreachable_since is not None
                and b.unreachable_since + grace <= now
            ):
                removed.append(b)
        if self._users_changed:
            # Bindings of users removed from the configuration.
            self._users_changed = False
            for aor in [a for a in self._bindings if a not in self._users]:
                removed.extend(self._bindings[aor].values())
        if removed:
            try:
                self._store.apply([], [(b.aor, b.key) for b in removed])
            except StoreError as exc:
                self.counters["store_errors"] += 1
                log.error("location store: could not delete expired bindings: %s", exc)
            for b in removed:
                self._remove(b)
                log.info("%s: binding %s removed (%s)", b.aor, b.contact,
                         "expired" if b.expires_at <= now else "unreachable")
            self.counters["expired"] += len(removed)
        if now - self._last_sweep >= SWEEP_INTERVAL:
            self._last_sweep = now
            self._digest.purge(now)
            self._purge_failures(now)
        self._compact()
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
        registers again."""
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
        self._persist(b)

    def connection_closed(self, connection_id: int, now: float) -> list[Binding]:
        """A TCP/TLS connection went away: its bindings are removed, except RFC 5626 outbound
        ones, which stay (unreachable) for `unreachable_grace` for the UA to re-register.
        Returns the bindings affected."""
        keys = self._by_connection.pop(connection_id, set())
        affected: list[Binding] = []
        gone: list[Binding] = []
        for aor, key in keys:
            b = self._bindings.get(aor, {}).get(key)
            if b is None or b.flow.connection_id != connection_id:
                continue
            affected.append(b)
            if b.outbound:
                if b.reachable:
                    self._mark_unreachable(b, now)
                    self._persist(b)
            else:
                gone.append(b)
        if gone:
            try:
                self._store.apply([], [(b.aor, b.key) for b in gone])
            except StoreError as exc:
                self.counters["store_errors"] += 1
                log.error("location store: %s", exc)
            for b in gone:
                self._remove(b)
            if self.on_change is not None:
                for extension in {b.aor for b in gone}:
                    self.on_change(extension)
        return affected

    def reload(self, extension: str, now: float) -> int:
        """Another worker changed `extension`'s bindings (b2bua.workers): read them back from
        the store, with that extension's device claims. Returns the count loaded."""
        try:
            rows = list(self._store.load_aor(extension))
            claims = [c for c in self._store.load_claims() if c.extension == extension]
        except StoreError as exc:
            self.counters["store_errors"] += 1
            log.error("location store: could not reload %s: %s", extension, exc)
            return 0
        for b in list(self._bindings.get(extension, {}).values()):
            self._remove(b)
        loaded = 0
        for b in rows:
            if b.live(now) and self._extension_of.get(b.username) == b.aor:
                self._insert(b, now)
                loaded += 1
        for key in [k for k in self._claims if k[0] == extension]:
            del self._claims[key]
        for claim in claims:
            self._claims[(claim.extension, claim.device)] = claim
        self._compact()
        return loaded

    # ---------------------------------------------------------------------------------------
    # Internals
    def _mark_unreachable(self, b: Binding, now: float) -> None:
        b.reachable = False
        b.unreachable_since = now
        when = now + self.settings.unreachable_grace
        heapq.heappush(self._deadlines, (when, next(self._seq), _GRACE, b.aor, b.key))
        log.info("%s: %s unreachable", b.aor, b.contact)

    def _persist(self, b: Binding) -> None:
        try:
            self._store.apply([b], [])
        except StoreError as exc:
            self.counters["store_errors"] += 1
            log.error("location store: %s", exc)
            return
        if self.on_change is not None:
            self.on_change(b.aor)

    def _insert(self, b: Binding, now: float, *, spread: bool = False) -> None:
        table = self._bindings.setdefault(b.aor, {})
        if b.key not in table:
            self._count += 1
        table[b.key] = b
        heapq.heappush(self._deadlines, (b.expires_at, next(self._seq), _EXPIRE, b.aor, b.key))
        if not b.reachable and b.unreachable_since is not None:
            when = b.unreachable_since + self.settings.unreachable_grace
            heapq.heappush(self._deadlines, (when, next(self._seq), _GRACE, b.aor, b.key))
        if b.flow.connection_id is not None:
            self._by_connection.setdefault(b.flow.connection_id, set()).add((b.aor, b.key))
        interval = self.settings.keepalive_interval
        if interval > 0 and b.flow.transport == "udp":
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

    def _compact(self) -> None:
        """Rebuild the heaps when refreshed bindings left too many dead entries behind."""
        limit = 2 * self._count + 1024
        if len(self._deadlines) > limit:
            grace = self.settings.unreachable_grace
            fresh: list[tuple[float, int, int, str, str]] = []
            for table in self._bindings.values():
                for b in table.values():
                    fresh.append((b.expires_at, next(self._seq), _EXPIRE, b.aor, b.key))
                    if not b.reachable and b.unreachable_since is not None:
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

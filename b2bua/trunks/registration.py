"""Outbound registration with a carrier (RFC 3261 §10.2), sans-IO.

Theory of operation. A `Registration` keeps one binding of our Contact at a trunk's registrar.
It is driven by three inputs: `handle_response(response, now)` (a final response to the
REGISTER it asked for), `handle_failure(reason, now)` (the transaction timed out or the transport
failed) and `handle_deadline(now)`; its outputs are the requests in `take_requests()` and the
time of its next deadline, `next_deadline()`. Nothing in it reads a clock or sleeps.

States (`RegistrationState`): UNREGISTERED (not started, or stopped), REGISTERING (a REGISTER is
out), REGISTERED (bound; a refresh may be out), FAILED (waiting to try again), REJECTED (the
carrier refused our credentials; waiting long before trying again). `registered` says whether a
binding is believed to exist: it survives a failed refresh until the binding's expiry.

- A 2xx binds us for the expiry the registrar granted to our Contact (its `expires` parameter,
  else the Expires header, else what we asked), and a refresh goes out before the binding
  expires: at half the granted time, or 30 s before it, whichever is later.
- A 401/407 is answered once with credentials; a second challenge to a request that carried
  credentials means they were refused, unless it says `stale=true` (RFC 7616 §3.3: the client
  may retry "without re-prompting the user").
- 403, or a refused second challenge, is REJECTED: one warning, then a retry after the longest
  back-off only, so wrong credentials never turn into a storm of REGISTERs.
- 423 Interval Too Brief is retried at once with the registrar's Min-Expires (§10.2.8).
- Any other failure (4xx-6xx, timeout, transport) is FAILED: a retry after an exponential
  back-off, `base * 2^(n-1)` capped at `max_backoff`, taken at random between 50% and 100%
  (RFC 5626 §4.5), or after the response's Retry-After when it has one. The first failure
  of a kind is a warning, the same failure again only a debug line.

All registrations of one boot use the same Call-ID with an increasing CSeq (§10.2.4: "a UA
SHOULD use the same Call-ID for all registrations during a single boot cycle"), so a restart
registers afresh.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Response
from b2bua.sip.uri import SipUri, parse_uri
from b2bua.trunks.digest import Challenge, ChallengeError, choose_challenges
from b2bua.trunks.model import TrunkSpec
from b2bua.trunks.requests import OutgoingRequest, build_request, retry_after, with_credentials

__all__ = ["Registration", "RegistrationState", "TrunkEvent"]

DEFAULT_BASE_BACKOFF = 30.0
DEFAULT_MAX_BACKOFF = 1800.0
RESPONSE_GUARD = 40.0  # a REGISTER with no outcome after this long counts as timed out
MAX_MIN_EXPIRES = 86400


class RegistrationState(enum.Enum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class TrunkEvent:
    """Something worth a log line: `level` is a `logging` level."""

    trunk: str
    level: int
    message: str


def refresh_delay(granted: float) -> float:
    """When to refresh a binding granted for `granted` seconds: half-way, or 30 s before it
    expires, whichever is later."""
    return max(granted / 2, granted - 30)


class Registration:
    """The registration of one trunk (see the module docstring)."""

    def __init__(
        self,
        trunk: TrunkSpec,
        *,
        contact: str,
        random_token: Callable[[], str],
        random_fraction: Callable[[], float] | None = None,
        base_backoff: float = DEFAULT_BASE_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
    ) -> None:
        if trunk.username is None:
            raise ValueError(f"trunk {trunk.name}: registering needs a username")
        self.trunk = trunk
        self.contact = contact  # the Contact header value, e.g. "<sip:0442@192.0.2.1:5060>"
        self.random_token = random_token
        self.random_fraction = random_fraction or random.Random().random
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.expires = trunk.register_expires
        self.state = RegistrationState.UNREGISTERED
        self.registered = False
        self.last_error: str | None = None
        self.failures = 0  # consecutive
        self.expires_at: float | None = None
        self.call_id = f"{random_token()}{random_token()}"
        self.aor = f"sip:{trunk.username}@{trunk.sip_domain}"
        self._cseq = 0
        self._pending: int | None = None  # CSeq of the REGISTER that is out
        self._pending_auth = False  # it carried credentials
        self._pending_expires = 0
        self._guard_at: float | None = None
        self._send_at: float | None = None  # next REGISTER (refresh or retry)
        self._outbox: list[OutgoingRequest] = []
        self._events: list[TrunkEvent] = []
        self._stopping = False

    # ---- inputs -------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Register now (at start-up, after a restart, or after a configuration change)."""
        self._stopping = False
        if self._pending is None:
            self._send(now)

    def stop(self, now: float) -> None:
        """Remove our binding (Expires: 0) if we have one; nothing more is sent after it."""
        self._stopping = True
        self._send_at = None
        if self.registered:
            self._send(now, expires=0)
        else:
            self._pending = None
            self._guard_at = None
            self.state = RegistrationState.UNREGISTERED

    def handle_response(self, response: Response, now: float) -> None:
        """A response to a REGISTER we sent (others, and provisional ones, are ignored)."""
        try:
            cseq = response.cseq
        except SipParseError:
            return
        if cseq.method != "REGISTER" or cseq.number != self._pending or response.status < 200:
            return
        self._pending = None
        self._guard_at = None
        status = response.status
        what = f"{status} {response.reason}"
        if self._stopping:
            if status in (401, 407) and not self._pending_auth and self._answer(response, now):
                return  # the un-REGISTER with credentials is out
            self._unbound(now)
            self.state = RegistrationState.UNREGISTERED
            return
        if 200 <= status < 300:
            self._bound(response, now)
        elif status in (401, 407):
            self._challenged(response, what, now)
        elif status == 403:
            self._rejected(f"{what}: the carrier refused our credentials", now)
        elif status == 423:
            self._too_brief(response, what, now)
        else:
            self._failed(f"{what}", now, retry_after(response))

    def handle_failure(self, reason: str, now: float) -> None:
        """The REGISTER that is out timed out or could not be sent (`reason` says which)."""
        if self._pending is None:
            return
        self._pending = None
        self._guard_at = None
        if self._stopping:
            self.state = RegistrationState.UNREGISTERED
            self._unbound(now)
            return
        self._failed(reason, now)

    def handle_deadline(self, now: float) -> None:
        if self._guard_at is not None and now >= self._guard_at:
            self.handle_failure("no response to REGISTER", now)
        if self.expires_at is not None and now >= self.expires_at:
            self._unbound(now)
            self._event(logging.WARNING, "registration expired")
        if self._send_at is not None and now >= self._send_at and self._pending is None:
            self._send(now)

    # ---- outputs ------------------------------------------------------------------------

    def take_requests(self) -> list[OutgoingRequest]:
        out, self._outbox = self._outbox, []
        return out

    def take_events(self) -> list[TrunkEvent]:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        times = [t for t in (self._guard_at, self.expires_at, self._send_at) if t is not None]
        if self._pending is not None and self._send_at is not None:
            times.remove(self._send_at)  # sent once the REGISTER that is out has its outcome
        return min(times) if times else None

    @property
    def next_attempt(self) -> float | None:
        return self._send_at

    @property
    def pending(self) -> bool:
        """A REGISTER is out, waiting for its outcome."""
        return self._pending is not None

    # ---- transitions --------------------------------------------------------------------

    def _send(
        self, now: float, *, expires: int | None = None, challenges: list[Challenge] | None = None
    ) -> None:
        trunk = self.trunk
        self._cseq += 1
        exp = self.expires if expires is None else expires
        request = build_request(
            "REGISTER",
            trunk.uri(),
            from_uri=self.aor,
            to_uri=self.aor,
            from_tag=self.random_token(),
            call_id=self.call_id,
            cseq=self._cseq,
            contact=self.contact,
            headers=(("Expires", str(exp)),),
        )
        credentials = trunk.credentials
        if challenges and credentials is not None:
            with_credentials(request, challenges, credentials, self.random_token)
        self._pending = self._cseq
        self._pending_auth = bool(challenges)
        self._pending_expires = exp
        self._guard_at = now + RESPONSE_GUARD
        self._send_at = None
        if self.state is not RegistrationState.REGISTERED:
            self.state = RegistrationState.REGISTERING
        self._outbox.append(OutgoingRequest(trunk.name, "register", request))

    def _bound(self, response: Response, now: float) -> None:
        granted = self._granted(response)
        if granted <= 0:
            self._failed("registrar granted no time to our Contact", now)
            return
        was_ok = self.registered and self.state is RegistrationState.REGISTERED
        recovered = self.failures
        self.state = RegistrationState.REGISTERED
        self.registered = True
        self.expires_at = now + granted
        self._send_at = now + refresh_delay(granted)
        self.failures = 0
        self.last_error = None
        if not was_ok:
            again = f" after {recovered} failed attempt(s)" if recovered else ""
            self._event(logging.INFO, f"registered for {granted:g} s{again}")
        else:
            self._event(logging.DEBUG, f"registration refreshed for {granted:g} s")

    def _granted(self, response: Response) -> float:
        """The expiry the registrar gave our Contact (§10.2.4)."""
        ours = _contact_key(self.contact)
        try:
            contacts = response.contacts
        except SipParseError:
            contacts = []
        for contact in contacts:
            try:
                key = _contact_key(contact.uri)
            except SipParseError:
                continue
            if key == ours and contact.params.get("expires"):
                value = contact.params["expires"] or ""
                if value.isdigit():
                    return float(value)
        try:
            header = response.expires
        except SipParseError:
            header = None
        if header is not None:
            return float(header)
        return float(self._pending_expires)

    def _challenged(self, response: Response, what: str, now: float) -> None:
        credentials = self.trunk.credentials
        if credentials is None:
            self._rejected(f"{what}: the carrier asks for credentials and the trunk has none",
                           now)
            return
        try:
            challenges = choose_challenges(
                response.headers.get_all("www-authenticate"),
                response.headers.get_all("proxy-authenticate"),
            )
        except ChallengeError as e:
            self._failed(f"{what}: cannot answer the challenge: {e}", now)
            return
        if self._pending_auth and not any(c.stale for c in challenges):
            self._rejected(f"{what}: the carrier refused our credentials", now)
            return
        self._send(now, challenges=challenges, expires=self._pending_expires)

    def _answer(self, response: Response, now: float) -> bool:
        """Send the REGISTER again with credentials for this challenge, if we can."""
        if self.trunk.credentials is None:
            return False
        try:
            challenges = choose_challenges(
                response.headers.get_all("www-authenticate"),
                response.headers.get_all("proxy-authenticate"),
            )
        except ChallengeError:
            return False
        self._send(now, challenges=challenges, expires=self._pending_expires)
        return True

    def _too_brief(self, response: Response, what: str, now: float) -> None:
        value = (response.headers.get("min-expires") or "").strip()
        if value.isdigit() and self.expires < int(value) <= MAX_MIN_EXPIRES:
            self.expires = int(value)
            self._event(logging.INFO, f"{what}: registering for {value} s instead")
            self._send(now)
        else:
            self._failed(f"{what} without a usable Min-Expires", now)

    def _failed(self, error: str, now: float, wait: float | None = None) -> None:
        self.failures += 1
        if wait is None:
            bound = min(self.max_backoff, self.base_backoff * 2 ** (self.failures - 1))
            wait = bound * (0.5 + 0.5 * self.random_fraction())
        else:
            wait = min(wait, self.max_backoff)
        self._retry(RegistrationState.FAILED, error, now, wait)

    def _rejected(self, error: str, now: float) -> None:
        self.failures += 1
        self._unbound(now)
        self._retry(RegistrationState.REJECTED, error, now, self.max_backoff)

    def _retry(self, state: RegistrationState, error: str, now: float, wait: float) -> None:
        repeated = self.last_error == error  # cleared by a success only
        self.state = state
        self.last_error = error
        self._send_at = now + wait
        level = logging.DEBUG if repeated else logging.WARNING
        self._event(level, f"registration failed: {error}; next attempt in {wait:.0f} s")

    def _unbound(self, now: float) -> None:
        self.registered = False
        self.expires_at = None

    def _event(self, level: int, message: str) -> None:
        self._events.append(TrunkEvent(self.trunk.name, level, message))


def _contact_key(contact: object) -> tuple[str, str, int | None] | None:
    """What identifies our Contact in a registrar's answer: user, host, port."""
    if isinstance(contact, str):
        text = contact.strip()
        if text.startswith("<"):
            text = text[1:].partition(">")[0]
        contact = parse_uri(text)
    if not isinstance(contact, SipUri):
        return None
    return (contact.user or "", contact.host.lower(), contact.port)

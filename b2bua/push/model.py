"""What a push is: the device's push address (RFC 8599 `pn-*` parameters), the notification sent
to it, and the provider's verdict.

Pure values, no I/O. The registrar keeps a `PushTarget` on the binding it came with; the call
engine builds a `Notification`; a provider client turns both into one HTTP request and the answer
into a `PushResult`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

APNS = "apns"
FCM = "fcm"
PROVIDERS = (APNS, FCM)

# RFC 8599: pn-prid, pn-param and pn-provider are URI parameters (pvalue characters); a
# device token, an FCM registration token or an APNs topic stays far below these sizes.
MAX_PRID = 4096
MAX_PARAM = 256
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9.-]{0,31}\Z")


class PushParamError(ValueError):
    """The `pn-*` parameters of a Contact cannot designate a device (`reason` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PushTarget:
    """Where to push: the PNS (`pn-provider`), the device's address at that PNS (`pn-prid`) and
    the provider-specific parameter (`pn-param`: for APNs the Team ID and the topic, for FCM the
    project ID), as RFC 8599 names them."""

    provider: str
    prid: str
    param: str = ""

    @classmethod
    def from_uri_params(cls, params: Mapping[str, str | None]) -> PushTarget | None:
        """The target a Contact URI designates, None when it has no `pn-provider` or no
        `pn-prid`.

        RFC 8599: a UA that wants push notifications puts `pn-provider`, `pn-prid` and (when
        its PNS needs one) `pn-param` in the Contact URI of its REGISTER. A `pn-provider`
        alone gives nothing to push to (the answer's Feature-Caps still say what is
        supported)."""
        provider = params.get("pn-provider")
        if provider is None:
            return None
        provider = provider.strip().lower()
        if not _PROVIDER.match(provider):
            raise PushParamError("Malformed pn-provider")
        prid = (params.get("pn-prid") or "").strip()
        if not prid:
            return None
        if len(prid) > MAX_PRID:
            raise PushParamError("pn-prid Too Long")
        param = (params.get("pn-param") or "").strip()
        if len(param) > MAX_PARAM:
            raise PushParamError("pn-param Too Long")
        return cls(provider, prid, param)

    def short(self) -> str:
        """For logs: the provider and the end of the device token, never the whole token."""
        return f"{self.provider}:…{self.prid[-8:]}"


class CallEvent(enum.Enum):
    """What a notification announces."""

    INCOMING = "call"  # a call rings: wake up and register
    ENDED = "call_ended"  # the call the device was woken for is over (answered, cancelled)


@dataclass(frozen=True, slots=True)
class Notification:
    """The content of one push. `call_id` is the Call-ID of the INVITE the device will receive
    (its branch of the fork), so the softphone can match the push with the INVITE; `ttl` is how
    long the push is worth delivering (the wait for a woken device), in seconds."""

    event: CallEvent
    call_id: str
    caller: str  # the caller's number (the From user)
    display_name: str = ""
    reason: str = ""  # ENDED: "answered_elsewhere", "cancelled", "timeout"
    ttl: float = 10.0

    def data(self) -> dict[str, str]:
        """The fields every provider carries (FCM data values must be strings)."""
        out = {
            "type": self.event.value,
            "call_id": self.call_id,
            "caller": self.caller,
            "display_name": self.display_name,
        }
        if self.reason:
            out["reason"] = self.reason
        return out


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # the provider accepted the push
    INVALID_TOKEN = "invalid_token"  # the device token is dead: forget it
    REJECTED = "rejected"  # the provider refused this push (our configuration, the payload)
    FAILED = "failed"  # the provider is unwell (5xx, 429, connection refused)
    TIMEOUT = "timeout"  # no answer in time


@dataclass(frozen=True, slots=True)
class PushResult:
    """The provider's answer to one push. `reason` is its error code (`Unregistered`,
    `BadDeviceToken`, `UNREGISTERED`...) or what went wrong on our side; `message_id` the id the
    provider gave an accepted push (`apns-id`, the FCM message name)."""

    outcome: Outcome
    status: int | None = None
    reason: str = ""
    message_id: str | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome is Outcome.DELIVERED

    @property
    def token_invalid(self) -> bool:
        return self.outcome is Outcome.INVALID_TOKEN

    def describe(self) -> str:
        """One line for logs and the device card: `delivered`, `invalid_token (410 Unregistered)`."""
        if self.outcome is Outcome.DELIVERED:
            return "delivered"
        detail = " ".join(x for x in (str(self.status or ""), self.reason) if x)
        return f"{self.outcome.value} ({detail})" if detail else self.outcome.value


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request for the HTTP shell to send: `path` is appended to the provider's base URL."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


class PushConfigError(ValueError):
    """A push setting or credential file is unusable. `field` is the configuration key
    (`push.apns.key_file`), `reason` what is wrong; the configuration layer adds FILE:LINE."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

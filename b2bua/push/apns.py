"""Apple Push Notification service: token-based provider authentication and VoIP pushes.

Theory of operation
-------------------
APNs speaks HTTP/2 only: one `POST /3/device/<device token>` per push on a long-lived connection,
authenticated by a provider token, an ES256 JSON Web Token signed with the team's `.p8` key:
header `{"alg": "ES256", "kid": <key id>}`, claims `{"iss": <team id>, "iat": <issue time>}`.
Apple refuses a token older than one hour (403 ExpiredProviderToken) and one renewed more often
than every 20 minutes (429 TooManyProviderTokenUpdates), so `ProviderToken` signs one and reuses
it for 50 minutes; an ExpiredProviderToken (a clock that drifted) makes it sign a fresh one, and
the push is tried once more.

The pure half (`apns_request`, `apns_result`, `apns_topic`) builds the request and reads the
answer; `ApnsClient` is the thin asyncio shell around an `httpx` HTTP/2 client.

RFC 8599 (APNs): `pn-prid` is the device token and `pn-param` the Apple Team ID, a dot, and
the topic (the app's bundle ID; `.voip` at the end for PushKit VoIP pushes). Linphone-style
parameters name several services at the end (`TEAMID.org.example.app.voip&remote`) and give one
token per service in `pn-prid` (`TOKEN1:voip&TOKEN2:remote`): the VoIP one is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import jwt

from b2bua.push.credentials import ApnsCredentials
from b2bua.push.model import (
    HttpRequest,
    Notification,
    Outcome,
    PushResult,
    PushTarget,
)

log = logging.getLogger("b2bua.push.apns")

PRODUCTION_URL = "https://api.push.apple.com"
SANDBOX_URL = "https://api.sandbox.push.apple.com"
# Apple: "Refresh your token no more than once every 20 minutes and no less than once every
# 60 minutes."
TOKEN_RENEW_AFTER = 50 * 60
# The device token is sent as hexadecimal digits (32 bytes today; Apple may make them longer).
_MAX_TOKEN_HEX = 200
# Reasons for which the device token is dead (the binding's push address is forgotten).
# 410 Unregistered: "The device token is inactive for the specified topic."
INVALID_TOKEN_REASONS = frozenset({"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic"})


@dataclass(frozen=True, slots=True)
class ApnsTopic:
    """What `pn-param` says: the topic to send to and the push type it takes."""

    team_id: str
    topic: str
    push_type: str  # "voip" (PushKit) or "alert"

    @property
    def voip(self) -> bool:
        return self.push_type == "voip"


def apns_topic(param: str) -> ApnsTopic:
    """Read an APNs `pn-param` (RFC 8599): `TEAMID.bundle.id[.services]`. ValueError when it
    names no topic."""
    team, dot, rest = param.partition(".")
    if not dot or not team or not rest:
        raise ValueError("pn-param is not TEAMID.topic")
    head, _, last = rest.rpartition(".")
    services = set(last.split("&")) if head else set()
    if services and services <= {"voip", "remote", "background"}:
        bundle = head
    else:
        bundle, services = rest, set()
    if "voip" in services:
        return ApnsTopic(team, bundle + ".voip", "voip")
    return ApnsTopic(team, bundle, "alert")


def device_token(prid: str, push_type: str) -> str:
    """The token for `push_type` in a `pn-prid` (`TOKEN` or `TOKEN1:voip&TOKEN2:remote`)."""
    if ":" not in prid:
        return prid
    wanted = "voip" if push_type == "voip" else "remote"
    for part in prid.split("&"):
        token, _, service = part.partition(":")
        if service == wanted:
            return token
    return prid.split("&", 1)[0].partition(":")[0]


def collapse_id(call_id: str) -> str:
    """`apns-collapse-id` for a call (at most 64 bytes): the push that ends a call replaces, on a
    device that was offline, the push that announced it, so a late phone never rings for it."""
    return hashlib.sha256(call_id.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def apns_request(
    target: PushTarget, notification: Notification, bearer: str, now: float, apns_id: str
) -> HttpRequest:
    """The HTTP/2 request for one push. ValueError when the target cannot be pushed to."""
    topic = apns_topic(target.param)
    token = device_token(target.prid, topic.push_type)
    if not token or len(token) > _MAX_TOKEN_HEX or not all(c in "0123456789abcdefABCDEF" for c in token):
        raise ValueError("device token is not hexadecimal")
    payload: dict[str, object]
    if topic.voip:
        # PushKit hands the whole payload to the app, which must report a call to CallKit.
        payload = {"aps": {}}
    else:
        title = notification.display_name or notification.caller
        payload = {"aps": {"alert": {"title": title}, "sound": "default"}}
    payload.update(notification.data())
    headers = (
        ("authorization", f"bearer {bearer}"),
        ("apns-topic", topic.topic),
        ("apns-push-type", topic.push_type),
        # 10: "send the notification immediately" (required for VoIP pushes).
        ("apns-priority", "10"),
        # A call push is worthless once the call stopped waiting for the device: Apple stores
        # it at most until then (a UNIX time in seconds; 0 would mean "try once").
        ("apns-expiration", str(math.ceil(now + notification.ttl))),
        ("apns-collapse-id", collapse_id(notification.call_id)),
        ("apns-id", apns_id),
        ("content-type", "application/json"),
    )
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return HttpRequest("POST", f"/3/device/{token}", headers, body)


def apns_result(status: int, headers: httpx.Headers | dict[str, str], body: bytes) -> PushResult:
    """Read APNs's answer: 200 with `apns-id`, or an error status with `{"reason": ...}`."""
    message_id = headers.get("apns-id")
    if status == 200:
        return PushResult(Outcome.DELIVERED, 200, "", message_id)
    reason = ""
    try:
        data = json.loads(body) if body else {}
        if isinstance(data, dict):
            reason = str(data.get("reason", ""))[:100]
    except (ValueError, UnicodeDecodeError):
        reason = "unreadable answer"
    if reason in INVALID_TOKEN_REASONS or status == 410:
        return PushResult(Outcome.INVALID_TOKEN, status, reason or "Unregistered", message_id)
    if status == 429 or status >= 500:
        return PushResult(Outcome.FAILED, status, reason, message_id)
    return PushResult(Outcome.REJECTED, status, reason, message_id)


class ProviderToken:
    """The provider authentication token, signed once and reused for `TOKEN_RENEW_AFTER`."""

    def __init__(self, credentials: ApnsCredentials) -> None:
        self._credentials = credentials
        self._token: str | None = None
        self._issued_at = -math.inf
        self.signed = 0  # tokens signed so far

    def bearer(self, now: float) -> str:
        if self._token is None or now - self._issued_at >= TOKEN_RENEW_AFTER:
            return self.renew(now)
        return self._token

    def renew(self, now: float) -> str:
        c = self._credentials
        self._token = jwt.encode(
            {"iss": c.team_id, "iat": int(now)}, c.key, algorithm="ES256",
            headers={"kid": c.key_id},
        )
        self._issued_at = now
        self.signed += 1
        return self._token


class ApnsClient:
    """Sends pushes to APNs over one HTTP/2 connection (`httpx`, prior knowledge on an `http://`
    URL: a local stand-in). `send` never raises: every failure is a `PushResult`."""

    provider = "apns"

    def __init__(
        self,
        credentials: ApnsCredentials,
        *,
        url: str = PRODUCTION_URL,
        timeout: float = 5.0,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._token = ProviderToken(credentials)
        self._clock = clock
        self._new_id = new_id
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url,
            http1=False,
            http2=True,
            verify=verify,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=4, keepalive_expiry=3600),
        )

    @property
    def tokens_signed(self) -> int:
        return self._token.signed

    async def send(self, target: PushTarget, notification: Notification) -> PushResult:
        now = self._clock()
        result = await self._send_once(target, notification, self._token.bearer(now), now)
        if result.reason == "ExpiredProviderToken":
            log.info("APNs: provider token expired, signing a new one")
            result = await self._send_once(target, notification, self._token.renew(now), now)
        return result

    async def _send_once(
        self, target: PushTarget, notification: Notification, bearer: str, now: float
    ) -> PushResult:
        try:
            request = apns_request(target, notification, bearer, now, self._new_id())
        except ValueError as exc:
            return PushResult(Outcome.INVALID_TOKEN, None, str(exc))
        try:
            response = await self._http.request(
                request.method, request.path, headers=list(request.headers), content=request.body
            )
        except httpx.TimeoutException:
            return PushResult(Outcome.TIMEOUT, None, "no answer")
        except httpx.HTTPError as exc:
            return PushResult(Outcome.FAILED, None, _describe(exc))
        return apns_result(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._http.aclose()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


__all__ = [
    "INVALID_TOKEN_REASONS",
    "PRODUCTION_URL",
    "SANDBOX_URL",
    "ApnsClient",
    "ApnsCredentials",
    "ApnsTopic",
    "ProviderToken",
    "apns_request",
    "apns_result",
    "apns_topic",
    "collapse_id",
    "device_token",
]

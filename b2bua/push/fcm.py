"""Firebase Cloud Messaging, HTTP v1 API: OAuth2 access token from a service-account key, high
priority data messages.

Theory of operation
-------------------
FCM v1 takes `POST /v1/projects/<project>/messages:send` with `Authorization: Bearer <access
token>`. The access token comes from Google's OAuth2 token endpoint (the service account's
`token_uri`) through the JWT bearer grant (RFC 7523 §2.1): we sign an RS256 assertion with the
service account's private key (`iss` = `client_email`, `scope` = firebase.messaging, `aud` =
`token_uri`, one hour of validity) and trade it for a token valid about an hour (`expires_in`).
`AccessTokenCache` keeps it until a minute before it expires; concurrent pushes share one refresh.
A 401 (the token was revoked, or our clock is off) drops it and the push is tried once more.

The message is a data message (the app decides what to show) with `android.priority = high`:
only high priority messages wake an app in Doze, and `android.ttl` drops a push nobody can use
any more (the call stopped waiting). Errors are `google.rpc.Status` JSON; the FCM error code sits
in `details[].errorCode` (`UNREGISTERED`, `INVALID_ARGUMENT`, `QUOTA_EXCEEDED`...).

RFC 8599 (FCM): `pn-prid` is the registration token, `pn-param` the project ID. The message is
sent to the service account's project, which is the one the token was issued for (apps often put
their numeric sender ID in `pn-param`, which the v1 API does not take).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from b2bua.push.credentials import ServiceAccount
from b2bua.push.model import (
    HttpRequest,
    Notification,
    Outcome,
    PushResult,
    PushTarget,
)

log = logging.getLogger("b2bua.push.fcm")

DEFAULT_URL = "https://fcm.googleapis.com"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
REFRESH_MARGIN = 60.0  # a token is renewed this long before it expires


class AuthError(Exception):
    """The token endpoint refused the grant or could not be reached."""


def token_request(account: ServiceAccount, now: float) -> bytes:
    """The form body of the token request."""
    return urlencode({"grant_type": GRANT_TYPE, "assertion": account.assertion(now)}).encode()


def token_response(status: int, body: bytes, now: float) -> tuple[str, float]:
    """(access token, when it expires) from the token endpoint's answer; AuthError otherwise."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if status != 200 or not isinstance(data, dict):
        detail = ""
        if isinstance(data, dict):
            detail = f"{data.get('error', '')} {data.get('error_description', '')}".strip()
        raise AuthError(f"token endpoint answered {status} {detail[:120]}".rstrip())
    token = data.get("access_token")
    expires_in = data.get("expires_in", 3600)
    if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
        raise AuthError("token endpoint answered without access_token")
    return token, now + float(expires_in)


def fcm_request(project_id: str, target: PushTarget, notification: Notification, bearer: str) -> HttpRequest:
    message: dict[str, Any] = {
        "token": target.prid,
        "data": notification.data(),
        "android": {"priority": "high", "ttl": f"{max(0, math.ceil(notification.ttl))}s"},
    }
    body = json.dumps({"message": message}, separators=(",", ":"), ensure_ascii=False).encode()
    headers = (("authorization", f"Bearer {bearer}"), ("content-type", "application/json"))
    return HttpRequest("POST", f"/v1/projects/{quote(project_id, safe='')}/messages:send", headers, body)


def fcm_result(status: int, body: bytes) -> PushResult:
    """Read FCM's answer: 200 `{"name": ...}`, or a `google.rpc.Status` error."""
    try:
        data = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    if status == 200:
        name = data.get("name")
        return PushResult(Outcome.DELIVERED, 200, "", name if isinstance(name, str) else None)
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    assert isinstance(error, dict)
    code = str(error.get("status", ""))
    message = str(error.get("message", ""))
    token_field = False
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict):
            continue
        if detail.get("errorCode"):
            code = str(detail["errorCode"])
        violations = detail.get("fieldViolations")
        for violation in violations if isinstance(violations, list) else ():
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                token_field = True
    code = code[:60] or "error"
    if code == "UNREGISTERED" or status == 404:
        return PushResult(Outcome.INVALID_TOKEN, status, code)
    if code == "INVALID_ARGUMENT" and (token_field or "registration token" in message.lower()):
        # Google's documentation warns that INVALID_ARGUMENT also reports faults in the message
        # itself, so it marks the token dead only when the error points at the token.
        return PushResult(Outcome.INVALID_TOKEN, status, code)
    if status in (429, 401) or status >= 500:
        return PushResult(Outcome.FAILED, status, code)
    return PushResult(Outcome.REJECTED, status, code)


class AccessTokenCache:
    """The OAuth2 access token, fetched once and reused until `REFRESH_MARGIN` before its end;
    concurrent callers wait for the same refresh."""

    def __init__(
        self, account: ServiceAccount, http: httpx.AsyncClient, clock: Callable[[], float]
    ) -> None:
        self._account = account
        self._http = http
        self._clock = clock
        self._token: str | None = None
        self._expires_at = -math.inf
        self._lock = asyncio.Lock()
        self.fetched = 0  # tokens obtained so far

    def invalidate(self, token: str) -> None:
        if self._token == token:
            self._token = None

    async def get(self) -> str:
        token = self._valid()
        if token is not None:
            return token
        async with self._lock:
            token = self._valid()
            if token is not None:
                return token
            now = self._clock()
            try:
                response = await self._http.post(
                    self._account.token_uri,
                    content=token_request(self._account, now),
                    headers={"content-type": "application/x-www-form-urlencoded"},
                )
            except httpx.TimeoutException:
                raise
            except httpx.HTTPError as exc:
                raise AuthError(f"token endpoint: {type(exc).__name__}") from exc
            token, expires_at = token_response(response.status_code, response.content, now)
            self._token, self._expires_at = token, expires_at
            self.fetched += 1
            return token

    def _valid(self) -> str | None:
        if self._token is not None and self._clock() < self._expires_at - REFRESH_MARGIN:
            return self._token
        return None


class FcmClient:
    """Sends FCM v1 messages (`httpx`; HTTP/2 where the server offers it). `send` never raises:
    every failure is a `PushResult`."""

    provider = "fcm"

    def __init__(
        self,
        account: ServiceAccount,
        *,
        url: str = DEFAULT_URL,
        timeout: float = 5.0,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url,
            http2=True,
            verify=verify,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=20, keepalive_expiry=600),
        )
        self.tokens = AccessTokenCache(account, self._http, clock)

    async def send(self, target: PushTarget, notification: Notification) -> PushResult:
        result, bearer = await self._send_once(target, notification)
        if result.status == 401 and bearer is not None:
            log.info("FCM: access token refused, fetching a new one")
            self.tokens.invalidate(bearer)
            result, _ = await self._send_once(target, notification)
        return result

    async def _send_once(
        self, target: PushTarget, notification: Notification
    ) -> tuple[PushResult, str | None]:
        try:
            bearer = await self.tokens.get()
        except httpx.TimeoutException:
            return PushResult(Outcome.TIMEOUT, None, "token endpoint: no answer"), None
        except AuthError as exc:
            return PushResult(Outcome.FAILED, None, str(exc)), None
        request = fcm_request(self.account.project_id, target, notification, bearer)
        try:
            response = await self._http.request(
                request.method, request.path, headers=list(request.headers), content=request.body
            )
        except httpx.TimeoutException:
            return PushResult(Outcome.TIMEOUT, None, "no answer"), bearer
        except httpx.HTTPError as exc:
            text = str(exc)[:120]
            return PushResult(Outcome.FAILED, None, f"{type(exc).__name__}: {text}".rstrip(": ")), bearer
        return fcm_result(response.status_code, response.content), bearer

    async def aclose(self) -> None:
        await self._http.aclose()

"""A local stand-in for Firebase Cloud Messaging (HTTP v1) and Google's OAuth2 token endpoint, for
tests (aiohttp, HTTP/1.1).

`POST /token` is the JWT bearer grant (RFC 7523): it verifies the assertion's RS256 signature
with the service account's public key, its `kid`, `iss`, `aud` (= `token_uri`), `scope` and
lifetime, and answers `{"access_token", "expires_in", "token_type"}` or `{"error":
"invalid_grant", ...}`. `POST /v1/projects/<project>/messages:send` checks the bearer token, the
project and the message, and answers `{"name": ...}` or Google's `google.rpc.Status` error JSON with
the FCM error code in `details` (404 UNREGISTERED, 400 INVALID_ARGUMENT, 401 UNAUTHENTICATED,
403 PERMISSION_DENIED...). Registration tokens are added with `add_device`; `unregister` makes one
answer 404 UNREGISTERED. `delay` makes it slow, `fail_with` makes every send an error.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt
from aiohttp import web

from b2bua.testing.net import free_port
from b2bua.testing.push_keys import ServiceAccountKey

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_STATUS_OF = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
              404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    project: str
    token: str
    data: dict[str, str]
    android: dict[str, Any]
    at: float  # time.monotonic()


class FcmStandIn:
    def __init__(
        self, *, host: str = "127.0.0.1", token_lifetime: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = free_port(socket.SOCK_STREAM, host)
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.account: ServiceAccountKey | None = None
        self.devices: set[str] = set()
        self.unregistered: set[str] = set()
        self.delay = 0.0
        self.token_delay = 0.0
        self.fail_with: tuple[int, str] | None = None
        self.access_tokens: dict[str, float] = {}  # token -> expires at
        self.token_requests = 0
        self.received: list[ReceivedMessage] = []
        self.answers: list[tuple[int, str]] = []
        self.on_push: Callable[[ReceivedMessage], None] | None = None
        self._runner: web.AppRunner | None = None
        self._count = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def trust(self, account: ServiceAccountKey) -> None:
        """The service account whose assertions the token endpoint accepts."""
        self.account = account

    def add_device(self, token: str) -> None:
        self.devices.add(token)

    def unregister(self, token: str) -> None:
        self.unregistered.add(token)

    def revoke_tokens(self) -> None:
        """Every access token issued so far stops working (401 on the next send)."""
        self.access_tokens.clear()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for_pushes(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} messages received, {count} expected")
            await asyncio.sleep(0.005)
        return self.received

    # -- OAuth2 token endpoint -------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        form = parse_qs((await request.read()).decode("utf-8", "replace"))
        if form.get("grant_type") != [GRANT_TYPE]:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        assertion = (form.get("assertion") or [""])[0]
        account = self.account
        if account is None:
            return _oauth_error("invalid_grant", "No service account is trusted")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, account.public_key, algorithms=["RS256"],
                                audience=self.token_uri,
                                options={"verify_exp": False, "verify_iat": False,
                                         "require": ["iss", "aud", "iat", "exp", "scope"]})
        except jwt.PyJWTError as exc:
            return _oauth_error("invalid_grant", f"Invalid JWT: {exc}")
        now = self.clock()
        if header.get("kid") != account.private_key_id:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        if claims["iss"] != account.client_email:
            return _oauth_error("invalid_grant", "Invalid issuer")
        if SCOPE not in str(claims["scope"]).split():
            return _oauth_error("invalid_scope", "Invalid OAuth scope")
        iat, exp = claims["iat"], claims["exp"]
        if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > 3600:
            return _oauth_error("invalid_grant", "Invalid JWT: lifetime over one hour")
        if exp <= now or iat > now + 300:
            return _oauth_error("invalid_grant",
                                "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
        token = "ya29.stand-in." + os.urandom(16).hex()
        self.access_tokens[token] = now + self.token_lifetime
        return web.json_response({"access_token": token, "expires_in": self.token_lifetime,
                                  "token_type": "Bearer"})

    # -- messages:send -----------------------------------------------------------------------------
    async def _send(self, request: web.Request) -> web.Response:
        status, code, message, body = await self._check(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.answers.append((status, code))
        if status == 200:
            return web.json_response(body)
        return _fcm_error(status, code, message, body.get("field"))

    async def _check(self, request: web.Request) -> tuple[int, str, str, dict[str, Any]]:
        project = request.match_info["project"]
        auth = request.headers.get("Authorization", "")
        bearer = auth[7:].strip() if auth.startswith("Bearer ") else ""
        expires = self.access_tokens.get(bearer)
        if expires is None or expires <= self.clock():
            return 401, "UNAUTHENTICATED", (
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential."), {}
        if self.account is None or project != self.account.project_id:
            return 403, "PERMISSION_DENIED", f"Permission denied on project {project}", {}
        try:
            payload = json.loads(await request.read())
            message = payload["message"]
            token = message["token"]
            data = message.get("data", {})
            android = message.get("android", {})
        except (ValueError, KeyError, TypeError):
            return 400, "INVALID_ARGUMENT", "Invalid JSON payload received.", {}
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return 400, "INVALID_ARGUMENT", "Invalid value at 'message.data'",\
                {"field": "message.data"}
        if not isinstance(android, dict) or android.get("priority", "normal") not in ("normal", "high"):
            return 400, "INVALID_ARGUMENT", "Invalid value at 'message.android.priority'",\
                {"field": "message.android.priority"}
        if self.fail_with is not None:
            return self.fail_with[0], self.fail_with[1], "stand-in failure", {}
        if token in self.unregistered:
            return 404, "UNREGISTERED", "Requested entity was not found.", {}
        if token not in self.devices:
            return 400, "INVALID_ARGUMENT", \
                "The registration token is not a valid FCM registration token", {}
        self._count += 1
        self.received.append(ReceivedMessage(project, token, dict(data), dict(android),
                                             time.monotonic()))
        if self.on_push is not None:
            self.on_push(self.received[-1])
        return 200, "", "", {"name": f"projects/{project}/messages/0:{self._count}"}


def _oauth_error(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)


def _fcm_error(status: int, code: str, message: str, field: str | None) -> web.Response:
    details: list[dict[str, Any]] = []
    if code not in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        details.append({"@type": FCM_ERROR, "errorCode": code})
    if field:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": field, "description": message}]})
    error: dict[str, Any] = {"code": status, "message": message,
                             "status": _STATUS_OF.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=status)

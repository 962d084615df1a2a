"""A local stand-in for Apple's push service (APNs) for tests: HTTP/2 (TLS with ALPN `h2`, or
cleartext with prior knowledge on an `http://` URL), served by hypercorn.

It checks what Apple checks and answers as Apple does: the provider token (an ES256 JWT verified
with the team key's public half; `kid` and `iss` must match, older than an hour is 403
ExpiredProviderToken), the path `/3/device/<token>`, `apns-topic`, `apns-push-type`,
`apns-priority`, `apns-expiration`, `apns-id`, `apns-collapse-id` and the payload; then 200 with
`apns-id`, or the error status with `{"reason": ...}` (410 adds `timestamp`). Devices are added
with `add_device(token, topic)`; `unregister(token)` makes a token answer 410 Unregistered, an
unknown one answers 400 BadDeviceToken. `delay` makes it slow; `fail_with` makes every answer an
error (e.g. 503 ServiceUnavailable). Each accepted push is kept in `received` and handed to
`on_push` (a scripted phone "wakes up" there).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from hypercorn.asyncio import serve
from hypercorn.config import Config

from b2bua.testing.net import free_port
from b2bua.testing.push_keys import ApnsKey, Certificate

log = logging.getLogger("b2bua.testing.apns")

_TOKEN = re.compile(r"[0-9a-fA-F]{64}\Z")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
MAX_VOIP_PAYLOAD = 5120
MAX_PAYLOAD = 4096


@dataclass(frozen=True, slots=True)
class ReceivedPush:
    token: str
    topic: str
    push_type: str
    priority: int
    expiration: int
    collapse_id: str | None
    apns_id: str
    payload: dict[str, Any]
    http_version: str
    provider_token: str
    at: float  # time.monotonic() when it arrived


class ApnsStandIn:
    def __init__(
        self,
        key: ApnsKey,
        *,
        host: str = "127.0.0.1",
        certificate: Certificate | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.host = host
        self.port = free_port(socket.SOCK_STREAM, host)
        self.certificate = certificate
        self.clock = clock
        self.devices: dict[str, str] = {}  # token -> topic
        self.unregistered: dict[str, float] = {}  # token -> when (Unix seconds)
        self.delay = 0.0
        self.fail_with: tuple[int, str] | None = None
        self.received: list[ReceivedPush] = []
        self.answers: list[tuple[int, str]] = []  # (status, reason) of every request
        self.provider_tokens: set[str] = set()
        self.on_push: Callable[[ReceivedPush], None] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.certificate is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def add_device(self, token: str, topic: str) -> None:
        self.devices[token.lower()] = topic

    def unregister(self, token: str) -> None:
        self.unregistered[token.lower()] = self.clock()

    async def start(self) -> None:
        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        config.h2_max_concurrent_streams = 1000
        config.keep_alive_timeout = 60.0
        config.graceful_timeout = 0.5
        config.errorlog = None
        config.accesslog = None
        if self.certificate is not None:
            config.certfile = str(self.certificate.cert_file)
            config.keyfile = str(self.certificate.key_file)
            config.alpn_protocols = ["h2"]  # Apple speaks HTTP/2 only
        self._task = asyncio.get_running_loop().create_task(
            serve(self._app, config, shutdown_trigger=self._stop.wait, mode="asgi")  # type: ignore[arg-type]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            return
        raise TimeoutError("APNs stand-in did not start")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()

    async def wait_for_pushes(self, count: int, timeout: float = 5.0) -> list[ReceivedPush]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} pushes received, {count} expected")
            await asyncio.sleep(0.005)
        return self.received

    # -- the ASGI application ------------------------------------------------------------------
    async def _app(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, reason, apns_id, push = self._answer(scope, headers, body)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.answers.append((status, reason))
        out_headers = [(b"apns-id", apns_id.encode())]
        payload = b""
        if status != 200:
            error: dict[str, Any] = {"reason": reason}
            if status == 410:
                error["timestamp"] = int(self.unregistered.get(push.token if push else "", 0) * 1000)
            payload = json.dumps(error).encode()
            out_headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": payload})
        if push is not None and status == 200:
            self.received.append(push)
            if self.on_push is not None:
                self.on_push(push)

    def _answer(
        self, scope: dict[str, Any], headers: dict[str, str], body: bytes
    ) -> tuple[int, str, str, ReceivedPush | None]:
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        if scope.get("http_version") != "2":
            return 505, "HTTP/2 required", apns_id, None
        if scope["method"] != "POST":
            return 405, "MethodNotAllowed", apns_id, None
        path = scope["path"]
        if not path.startswith("/3/device/"):
            return 404, "BadPath", apns_id, None
        token = path[len("/3/device/"):].lower()
        # Provider token.
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return 403, "MissingProviderToken", apns_id, None
        bearer = auth[7:].strip()
        try:
            header = jwt.get_unverified_header(bearer)
            claims = jwt.decode(bearer, self.key.public_key, algorithms=["ES256"],
                                options={"verify_iat": False, "require": ["iss", "iat"]})
        except jwt.PyJWTError:
            return 403, "InvalidProviderToken", apns_id, None
        if header.get("kid") != self.key.key_id or claims.get("iss") != self.key.team_id:
            return 403, "InvalidProviderToken", apns_id, None
        iat = claims.get("iat")
        if not isinstance(iat, int) or iat > self.clock() + 60:
            return 403, "InvalidProviderToken", apns_id, None
        if self.clock() - iat > 3600:
            return 403, "ExpiredProviderToken", apns_id, None
        self.provider_tokens.add(bearer)
        # Headers.
        topic = headers.get("apns-topic")
        if not topic:
            return 400, "MissingTopic", apns_id, None
        push_type = headers.get("apns-push-type", "alert")
        if push_type == "voip" and not topic.endswith(".voip"):
            return 400, "InvalidPushType", apns_id, None
        if push_type not in ("alert", "background", "voip"):
            return 400, "InvalidPushType", apns_id, None
        if "apns-id" in headers and not _UUID.match(headers["apns-id"]):
            return 400, "BadMessageId", apns_id, None
        priority = headers.get("apns-priority", "10")
        if priority not in ("5", "10", "1"):
            return 400, "BadPriority", apns_id, None
        expiration = headers.get("apns-expiration", "0")
        if not expiration.isdigit():
            return 400, "BadExpirationDate", apns_id, None
        collapse = headers.get("apns-collapse-id")
        if collapse is not None and len(collapse.encode()) > 64:
            return 400, "BadCollapseId", apns_id, None
        # Payload.
        if not body:
            return 400, "PayloadEmpty", apns_id, None
        if len(body) > (MAX_VOIP_PAYLOAD if push_type == "voip" else MAX_PAYLOAD):
            return 413, "PayloadTooLarge", apns_id, None
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, "BadPayload", apns_id, None
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return 400, "BadPayload", apns_id, None
        if self.fail_with is not None:
            return self.fail_with[0], self.fail_with[1], apns_id, None
        # The device.
        push = ReceivedPush(token, topic, push_type, int(priority), int(expiration), collapse,
                            apns_id, payload, "2", bearer, time.monotonic())
        if not _TOKEN.match(token):
            return 400, "BadDeviceToken", apns_id, None
        if token in self.unregistered:
            return 410, "Unregistered", apns_id, push
        known = self.devices.get(token)
        if known is None:
            return 400, "BadDeviceToken", apns_id, None
        if known != topic:
            return 400, "DeviceTokenNotForTopic", apns_id, None
        return 200, "", apns_id, push

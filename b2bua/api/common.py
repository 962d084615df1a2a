"""What every dashboard handler shares: the `Dashboard` context, JSON errors, access checks,
and the one path every settings change takes (validate off the loop, then store and apply in one
transaction)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from b2bua.api.worker import Worker, validate
from b2bua.config import Config, format_path
from b2bua.settings import Account, SettingsRejected, SettingsStore, user_scope

log = logging.getLogger("b2bua.api")

M = TypeVar("M", bound=BaseModel)

class ApiError(Exception):
    """An error answered as JSON: `{"error": code, "message": ..., "issues": [...]}`."""

    def __init__(
        self, status: int, code: str, message: str, issues: list[dict[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.issues = issues or []
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.issues:
            body["issues"] = self.issues
        return web.json_response(body, status=self.status, headers=self.headers)


def rejected(exc: SettingsRejected) -> ApiError:
    issues = [
        {"field": format_path(path) or "(user)", "reason": issue.reason}
        for path, issue in exc.relative()
    ]
    first = issues[0] if issues else {"field": "?", "reason": "invalid"}
    return ApiError(exc.status, "validation", f"{first['field']}: {first['reason']}", issues)


@dataclass
class Dashboard:
    """Everything the handlers need, built once per app."""

    server: Any
    store: SettingsStore
    clock: Callable[[], float]
    library: Any
    policy: Any
    throttle: Any
    worker: Worker = field(default_factory=Worker)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    known_revision: int = 0
    admin_ready: asyncio.Task[None] | None = None
    wav_cache: dict[tuple[str, int], bytes] = field(default_factory=dict)
    # The rule table compiled for the configuration `change` is installing (see `install`).
    ready: tuple[Config, Any] | None = None

    @property
    def config(self) -> Config:
        config: Config = self.server.config
        return config

    @property
    def data_dir(self) -> Path:
        return Path(self.config.server.data_dir)

    async def change(
        self, build: Callable[[], tuple[dict[str, Any], Any]], save: Callable[[Any, Config], None],
        extension: str | None,
    ) -> Config:
        """Apply one change: `build()` returns (merged dict, what to store); the merged dict is
        validated in the worker process and its rules compiled in a thread; `save(stored,
        config)` writes it in one transaction that also installs the configuration (`install`).
        Serialized: one change at a time."""
        async with self.lock:
            raw, row = build()
            config = await self.validate(raw, extension)
            table = await self.compile(config)
            self.ready = (config, table)
            try:
                save(row, config)
            finally:
                self.ready = None
            self.known_revision = self.store.revision()
            return config

    async def compile(self, config: Config) -> Any:
        """The rule table of `config`, compiled in a thread: with thousands of users compiling
        takes seconds, and the loop keeps serving SIP meanwhile (the thread lets go of the GIL
        every few milliseconds) instead of stopping for all of it."""
        from b2bua.rules import compile_rules

        try:
            return await asyncio.to_thread(compile_rules, config)
        except ValueError as exc:
            log.error("a validated change did not compile: %s", exc)
            raise ApiError(422, "validation", f"rules: {exc}",
                           [{"field": "(rules)", "reason": str(exc)}]) from None

    def install(self, config: Config) -> None:
        """`Server.apply_config`, with the table `change` compiled for this configuration."""
        ready = self.ready
        table = ready[1] if ready is not None and ready[0] is config else None
        self.server.apply_config(config, table)

    async def reload_if_changed(self) -> bool:
        """Re-read the stored settings when another process (b2bua import) changed them."""
        revision = self.store.revision()
        if revision == self.known_revision:
            return False
        async with self.lock:
            revision = self.store.revision()
            overrides, uploads = self.store.overrides(), self.store.uploads()
            raw = self.store.merged_raw(overrides, uploads)
            try:
                config = await self.validate(raw, None)
            except ApiError:
                config = self.store.effective()
            self.server.apply_config(config, await self.compile(config))
            self.known_revision = revision
            log.info("stored settings changed elsewhere (revision %d): applied", revision)
            return True

    async def validate(self, raw: dict[str, Any], extension: str | None) -> Config:
        """The Config for `raw`, validated in the worker process; ApiError (422) naming each
        field otherwise."""
        store = self.store
        config, issues = await self.worker.run(
            validate, raw, store.base.source, store.base_dir or Path.cwd()
        )
        if config is None:
            raise rejected(SettingsRejected(issues, user_scope(raw, extension)))
        return config

    def now(self) -> float:
        return self.clock()


DASHBOARD_KEY = web.AppKey("dashboard", Dashboard)


def dashboard(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD_KEY]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """The signed-in session of a request."""

    account: Account
    token_hash: str
    csrf: str
    expires_at: float


SESSION_KEY = web.RequestKey("dashboard_session", SessionInfo)


def session_of(request: web.Request) -> SessionInfo:
    info = request.get(SESSION_KEY)
    if info is None:
        raise ApiError(401, "unauthenticated", "sign in first")
    return info


def account(request: web.Request) -> Account:
    return session_of(request).account


def require_admin(request: web.Request) -> Account:
    acc = account(request)
    if acc.role != "admin":
        raise ApiError(403, "forbidden", "administrators only")
    return acc


def user_extension(request: web.Request) -> str:
    """The `{ext}` of the path, if the signed-in account may manage it (its own, or admin)."""
    acc = account(request)
    ext = request.match_info["ext"]
    if acc.role != "admin" and acc.extension != ext:
        raise ApiError(403, "forbidden", "you can only manage your own extension")
    if dashboard(request).config.user(ext) is None:
        raise ApiError(404, "not_found", f"no user with extension {ext}")
    return ext


async def body_json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send JSON (Content-Type: application/json)")
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None


def parse_model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues = [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "(body)",
                "reason": e["msg"].removeprefix("Value error, "),
            }
            for e in exc.errors(include_url=False)
        ]
        raise ApiError(
            422, "validation", f"{issues[0]['field']}: {issues[0]['reason']}", issues
        ) from None


def iso(ts: float | None, tz: Any = None) -> str | None:
    from datetime import UTC, datetime

    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, UTC)
    return (dt.astimezone(tz) if tz is not None else dt).isoformat(timespec="seconds")


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def wall() -> float:
    return time.time()

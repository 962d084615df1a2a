"""What every dashboard handler shares: the `Dashboard` context, JSON errors, access checks,
and the one path every settings change takes (validate off the loop, then store and apply in one
transaction)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from b2bua.api.messages import text
from b2bua.api.worker import Worker, validate
from b2bua.config import Config, ConfigIssue, KeyPath, format_path
from b2bua.config.lang import LANGUAGES, Lang, negotiate
from b2bua.config.loader import problem_of
from b2bua.settings import Account, SettingsRejected, SettingsStore, user_scope
from b2bua.tenants.names import scoped

log = logging.getLogger("b2bua.api")

M = TypeVar("M", bound=BaseModel)

@dataclass(frozen=True, slots=True)
class Text:
    """A message for a person, worded in the request's language when the answer is written
    (b2bua.api.messages, b2bua.config.messages)."""

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def render(self, lang: Lang) -> str:
        return text(self.code, self.params, lang)


def msg(code: str, **params: Any) -> Text:
    """`Text(code, params)`: `ApiError(404, "not_found", msg("no_user", extension=ext))`."""
    return Text(code, params)


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem (or warning) about one field, as the person sees it: `field` counts rows from
    1 (`schedule.hours[5].end`). `literal` is a message given as text (not translated)."""

    code: str
    field: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    literal: str | None = None

    def to_json(self, lang: Lang) -> dict[str, str]:
        message = self.literal if self.literal is not None else text(self.code, self.params, lang)
        return {"code": self.code, "field": self.field, "message": message, "reason": message}


def _issue(value: Issue | Mapping[str, Any]) -> Issue:
    if isinstance(value, Issue):
        return value
    if "reason" in value and "params" not in value:
        return Issue(str(value.get("code", "invalid")), str(value["field"]),
                     literal=str(value["reason"]))
    return Issue(str(value["code"]), str(value["field"]), dict(value.get("params") or {}))


class ApiError(Exception):
    """An error answered as JSON: `{"error": code, "message": ..., "issues": [...]}` (docs/api.md),
    worded in the request's language. `message` is a `Text` (or, from older code, plain text);
    without one, a validation error's message is its first issue."""

    def __init__(
        self, status: int, code: str, message: str | Text | None = None,
        issues: Sequence[Issue | Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message if isinstance(message, str) else code)
        self.status = status
        self.code = code
        self.message = message
        self.issues = [_issue(i) for i in issues or ()]
        self.headers = dict(headers or {})

    def body(self, lang: Lang) -> dict[str, Any]:
        issues = [i.to_json(lang) for i in self.issues]
        if isinstance(self.message, Text):
            message = self.message.render(lang)
        elif self.message is not None:
            message = self.message
        elif issues:
            sep = " : " if lang == "fr" else ": "
            message = f"{issues[0]['field']}{sep}{issues[0]['message']}"
        else:
            message = self.code
        body: dict[str, Any] = {"error": self.code, "message": message}
        if issues:
            body["issues"] = issues
        return body

    def response(self, lang: Lang = "en") -> web.Response:
        return web.json_response(self.body(lang), status=self.status, headers=self.headers)


def invalid(*issues: Issue, status: int = 422) -> ApiError:
    """A validation error (422) listing `issues`."""
    return ApiError(status, "validation", None, list(issues))


def config_issues(pairs: Iterable[tuple[KeyPath, ConfigIssue]]) -> list[Issue]:
    """Configuration issues with their paths relative to what was changed, as `Issue`s."""
    return [
        Issue(issue.code, format_path(path, first=1) or "(user)",
              {**issue.params, "reason": issue.reason})
        for path, issue in pairs
    ]


def rejected(exc: SettingsRejected) -> ApiError:
    return ApiError(exc.status, "validation", None, config_issues(exc.relative()))


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

    # Boards of the other tenants (docs/tenants.md), made at first use; on the top-level one.
    boards: dict[str, Dashboard] = field(default_factory=dict)

    @property
    def config(self) -> Config:
        if not self.store.tenant:
            config: Config = self.server.config
            return config
        served = self.server.tenants.get(self.store.tenant)
        if served is None:  # deleted meanwhile
            raise ApiError(404, "not_found", msg("no_tenant", domain=self.store.tenant))
        tenant_config: Config = served.config
        return tenant_config

    @property
    def table(self) -> Any:
        """The compiled rule table this tenant's calls follow."""
        if not self.store.tenant:
            return self.server.rulebook.table
        served = self.server.tenants.get(self.store.tenant)
        if served is None:
            raise ApiError(404, "not_found", msg("no_tenant", domain=self.store.tenant))
        return served.rules.table

    def for_tenant(self, key: str) -> Dashboard:
        """The board of tenant `key` (this one for the top-level company): its settings store,
        sound library and configuration; the worker, lock, policy and throttle are shared."""
        if not key:
            return self
        board = self.boards.get(key)
        service: Any = getattr(self.server, "tenant_service", None)
        store = service.stores.get(key) if service is not None else None
        if service is None or store is None:
            raise ApiError(404, "not_found", msg("no_tenant", domain=key))
        if board is None or board.store is not store:
            board = dataclasses.replace(
                self, store=store, library=service.library(key), wav_cache={}, ready=None,
                boards={}, admin_ready=None)
            board.known_revision = store.revision()
            self.boards[key] = board
        return board

    @property
    def data_dir(self) -> Path:
        """Where this tenant's uploads live (`data_dir`, or `data_dir/tenants/DOMAIN`)."""
        return self.store.files_dir

    @property
    def root_dir(self) -> Path:
        """The server's `data_dir` (voicemail boxes are found from it by their scoped name)."""
        return Path(self.config.server.data_dir)

    @property
    def tenant(self) -> str:
        """The key of the tenant this board serves (`''`: the top-level company)."""
        return self.store.tenant

    def box(self, extension: str) -> str:
        """`extension` of this tenant as voicemail, MWI and the registrar name it."""
        return scoped(extension, self.store.tenant)

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
            raise invalid(Issue("invalid_rules", "(rules)", {"reason": str(exc)})) from None

    def install(self, config: Config) -> None:
        """`Server.apply_config`, with the table `change` compiled for this configuration."""
        ready = self.ready
        table = ready[1] if ready is not None and ready[0] is config else None
        self.server.apply_tenant(self.store.tenant, config, table)

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
            self.server.apply_tenant(self.store.tenant, config, await self.compile(config))
            self.known_revision = revision
            # `b2bua import` may have replaced sounds: from now on they are read again.
            bridge = getattr(self.server, "bridge", None)
            if bridge is not None:
                bridge.sounds_changed()
            else:
                self.library.forget()
            self.library.changed("*")  # and in the other workers
            self.wav_cache.clear()
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
        valid: Config = config
        return valid

    def now(self) -> float:
        return self.clock()


DASHBOARD_KEY = web.AppKey("dashboard", Dashboard)


TENANT_KEY = web.RequestKey("dashboard_tenant", str)


def dashboard(request: web.Request) -> Dashboard:
    """The board of the request's tenant (its account's, or the one the platform administrator
    names with `?tenant=DOMAIN`; docs/tenants.md)."""
    board = request.app[DASHBOARD_KEY]
    key = request.get(TENANT_KEY)
    return board.for_tenant(key) if key else board


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """The signed-in session of a request."""

    account: Account
    token_hash: str
    csrf: str
    expires_at: float


SESSION_KEY = web.RequestKey("dashboard_session", SessionInfo)


def session_of(request: web.Request) -> SessionInfo:
    info: SessionInfo | None = request.get(SESSION_KEY)
    if info is None:
        raise ApiError(401, "unauthenticated", msg("sign_in"))
    return info


def account(request: web.Request) -> Account:
    return session_of(request).account


def require_admin(request: web.Request) -> Account:
    acc = account(request)
    if acc.role != "admin":
        raise ApiError(403, "forbidden", msg("admins_only"))
    return acc


def require_platform_admin(request: web.Request) -> Account:
    """The provider's administrator (`admin`), who alone manages tenants."""
    acc = require_admin(request)
    if acc.tenant:
        raise ApiError(403, "forbidden", msg("platform_admin_only"))
    return acc


def user_extension(request: web.Request) -> str:
    """The `{ext}` of the path, if the signed-in account may manage it (its own, or admin)."""
    acc = account(request)
    ext = request.match_info["ext"]
    if acc.role != "admin" and acc.extension != ext:
        raise ApiError(403, "forbidden", msg("own_extension_only"))
    if dashboard(request).config.user(ext) is None:
        raise ApiError(404, "not_found", msg("no_user", extension=ext))
    return ext


async def body_json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", msg("send_json"))
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", msg("bad_json")) from None


def parse_model(model: type[M], data: Any) -> M:
    """`model` from a request body; a 422 naming each field (from 1) and why otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues = []
        for e in exc.errors(include_url=False):
            code, params = problem_of(e)
            issues.append(Issue(code, format_path(e["loc"], first=1) or "(body)", params))
        raise invalid(*issues) from None


def request_lang(request: web.Request) -> Lang:
    """The language of the answer: `?lang=`, else `Accept-Language`, else the signed-in user's
    `language`, else the server's (docs/api.md, Languages)."""
    chosen = request.query.get("lang")
    for lang in LANGUAGES:
        if chosen == lang:
            return lang
    negotiated = negotiate(request.headers.get("Accept-Language"))
    if negotiated is not None:
        return negotiated
    return own_lang(request)


def own_lang(request: web.Request) -> Lang:
    """The signed-in user's `language` (the server's for the administrator or no session)."""
    if request.app.get(DASHBOARD_KEY) is None:
        return "fr"
    try:
        board = dashboard(request)
    except ApiError:  # its tenant was deleted meanwhile
        board = request.app[DASHBOARD_KEY]
    info = request.get(SESSION_KEY)
    if info is not None and info.account.extension is not None:
        user = board.config.user(info.account.extension)
        if user is not None and user.language is not None:
            return user.language
    return board.config.server.language


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

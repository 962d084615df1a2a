"""Dashboard sign-in: password check, session cookie, CSRF token, throttling of wrong logins.

- `POST /api/login {"login", "password"}`: a user signs in with their extension and their
  dashboard password (their SIP secret until they choose one); the administrator with `admin`.
  Success sets the `b2bua_session` cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) and
  returns the CSRF token.
- Every state-changing request (POST, PUT, PATCH, DELETE) must carry `X-CSRF-Token`: the token of
  its session. A request whose `Origin` is not this server is refused as well.
- A session ends after `idle` seconds without a request, or `lifetime` seconds after sign-in,
  or at `POST /api/logout`, or when the password changes (other sessions).
- Wrong logins are throttled per login name (after `max_failures` within `window` seconds)
  and per source address (`max_failures_ip`): further attempts get 429 for `lockout` seconds
  (doubling while the failures go on, up to 15 minutes), whatever the password.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, Field

from b2bua.api.common import (
    SESSION_KEY,
    TENANT_KEY,
    ApiError,
    Dashboard,
    Issue,
    SessionInfo,
    account,
    body_json,
    dashboard,
    msg,
    parse_model,
    session_of,
)
from b2bua.settings import (
    ADMIN_LOGIN,
    Account,
    forget_password,
    hash_password,
    session_hash,
    set_password,
    stored_password,
    verify_password,
)
from b2bua.tenants.names import parse_login, scoped

COOKIE = "b2bua_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Paths served without a session.
PUBLIC = frozenset({"/api/login", "/api/openapi.json"})
# Checked against when a login does not exist, so that it takes as long as a wrong password.
_DUMMY_HASH = "$pbkdf2-sha256$600000$MDAwMDAwMDAwMDAwMDAwMA$" + "A" * 43


@dataclass
class AuthPolicy:
    idle: float = 30 * 60
    lifetime: float = 12 * 3600
    max_failures: int = 5  # per login name
    max_failures_ip: int = 20  # per source address (an office behind NAT shares one)
    window: float = 15 * 60
    lockout: float = 60
    max_lockout: float = 15 * 60
    touch_every: float = 30


@dataclass
class _Failures:
    times: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    lockouts: int = 0


class Throttle:
    """Failed sign-ins per key (address, login name), in memory."""

    def __init__(self, policy: AuthPolicy) -> None:
        self.policy = policy
        self._by_key: dict[str, _Failures] = {}

    def retry_after(self, keys: list[str], now: float) -> float:
        wait = 0.0
        for key in keys:
            f = self._by_key.get(key)
            if f is not None and f.locked_until > now:
                wait = max(wait, f.locked_until - now)
        return wait

    def failed(self, keys: list[str], now: float) -> None:
        p = self.policy
        for key in keys:
            f = self._by_key.setdefault(key, _Failures())
            f.times = [t for t in f.times if t > now - p.window]
            f.times.append(now)
            limit = p.max_failures_ip if key.startswith("ip:") else p.max_failures
            if len(f.times) >= limit:
                f.locked_until = now + min(p.lockout * (2**f.lockouts), p.max_lockout)
                f.lockouts += 1
                f.times.clear()
        if len(self._by_key) > 10_000:
            self._by_key = {
                k: v for k, v in self._by_key.items() if v.locked_until > now or v.times
            }

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._by_key.pop(key, None)


class LoginRequest(BaseModel):
    login: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class PasswordChange(BaseModel):
    current: str = Field(min_length=1, max_length=256)
    new: str = Field(min_length=8, max_length=256)


class PasswordSet(BaseModel):
    password: str | None = Field(default=None, min_length=8, max_length=256)


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.netloc.lower() == (request.host or "").lower()


def _tenant_of_login(board: Dashboard, login: str) -> tuple[str, str]:
    """(tenant key, scoped login) of what a person typed: `1001` or `admin` is the top-level
    company's (as is `1001@` its own domain), `1001@acme.example` tenant acme.example's."""
    name, domain = parse_login(login)
    if domain is None or domain == board.config.server.domain.lower():
        return "", name
    return domain, scoped(name, domain)


async def _check_password(board: Dashboard, login: str, password: str) -> Account | None:
    """The account of `login` (scoped: `1001@acme.example`) on its tenant's `board`."""
    conn = board.store.conn
    name = login.partition("@")[0]
    stored = stored_password(conn, login)
    if stored is not None:
        role, encoded, ext = stored
        if role == "user" and (ext is None or board.config.user(ext) is None):
            await asyncio.to_thread(verify_password, password, _DUMMY_HASH)
            return None
        ok = await asyncio.to_thread(verify_password, password, encoded)
        return Account(login, role, ext) if ok else None
    user = board.config.user(name) if name != ADMIN_LOGIN else None
    if user is None:
        await asyncio.to_thread(verify_password, password, _DUMMY_HASH)
        return None
    # No dashboard password yet: the SIP secret is the initial one.
    if hmac.compare_digest(password.encode(), str(user.secret).encode()):
        return Account(login, "user", name)
    return None


def _language(acc: Account, board: Any) -> str:
    """The account's language: the user's `language`, the server's for the administrator."""
    if acc.extension is not None:
        user = board.config.user(acc.extension)
        if user is not None and user.language is not None:
            return str(user.language)
    return str(board.config.server.language)


def _session_json(acc: Account, csrf: str, expires_at: float, board: Any) -> dict[str, Any]:
    name = None
    if acc.extension is not None:
        user = board.config.user(acc.extension)
        name = user.name if user is not None else None
    return {
        "login": acc.login,
        "role": acc.role,
        "extension": acc.extension,
        "name": name,
        "csrf_token": csrf,
        "idle_timeout": board.policy.idle,
        "expires_at": expires_at,
        "language": _language(acc, board),
        # docs/tenants.md: the account's company, and whether it manages tenants
        "tenant": acc.tenant or None,
        "domain": board.config.server.domain,
        "platform_admin": acc.role == "admin" and not acc.tenant,
    }


async def login(request: web.Request) -> web.Response:
    board = dashboard(request)
    data = parse_model(LoginRequest, await body_json(request))
    now = board.now()
    keys = [f"ip:{request.remote}", f"login:{data.login.lower()}"]
    wait = board.throttle.retry_after(keys, now)
    if wait > 0:
        raise ApiError(429, "throttled", msg("throttled", seconds=math.ceil(wait)),
                       headers={"Retry-After": str(math.ceil(wait))})
    if board.admin_ready is not None and data.login == ADMIN_LOGIN:
        await asyncio.shield(board.admin_ready)  # created at start, hashed in a thread
    key, scoped_login = _tenant_of_login(board, data.login)
    try:
        own = board.for_tenant(key)
    except ApiError:  # no such tenant: answered like a wrong password
        own = None
        await asyncio.to_thread(verify_password, data.password, _DUMMY_HASH)
    acc = await _check_password(own, scoped_login, data.password) if own else None
    if acc is None:
        board.throttle.failed(keys, board.now())
        raise ApiError(401, "bad_credentials", msg("bad_credentials"))
    board.throttle.succeeded(keys)
    board.worker.warm_up()  # the next change will need it
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    conn = board.store.conn
    conn.execute(
        "INSERT INTO dashboard_sessions (token_hash, login, role, extension, csrf, created_at,"
        " last_seen, tenant) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (session_hash(token), acc.login, acc.role, acc.extension, csrf, now, now, acc.tenant),
    )
    assert own is not None
    response = web.json_response(_session_json(acc, csrf, now + board.policy.lifetime, own))
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=request.secure, path="/",
        max_age=int(board.policy.lifetime),
    )
    return response


async def logout(request: web.Request) -> web.Response:
    board = dashboard(request)
    info = request.get(SESSION_KEY)
    if info is not None:
        board.store.conn.execute("DELETE FROM dashboard_sessions WHERE token_hash = ?",
                                 (info.token_hash,))
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def session(request: web.Request) -> web.Response:
    board = dashboard(request)
    info = session_of(request)
    return web.json_response(_session_json(info.account, info.csrf, info.expires_at, board))


async def change_own_password(request: web.Request) -> web.Response:
    board = dashboard(request)
    acc = account(request)
    data = parse_model(PasswordChange, await body_json(request))
    now = board.now()
    keys = [f"ip:{request.remote}", f"login:{acc.login.lower()}"]
    wait = board.throttle.retry_after(keys, now)
    if wait > 0:
        raise ApiError(429, "throttled", msg("throttled", seconds=math.ceil(wait)),
                       headers={"Retry-After": str(math.ceil(wait))})
    if await _check_password(board.for_tenant(acc.tenant), acc.login, data.current) is None:
        board.throttle.failed(keys, now)
        raise ApiError(403, "bad_credentials", msg("wrong_current_password"),
                       [Issue("wrong_current_password", "current")])
    encoded = await asyncio.to_thread(hash_password, data.new)
    set_password(board.store.conn, acc, encoded, now, session_of(request).token_hash)
    return web.json_response({"ok": True})


async def set_user_password(request: web.Request) -> web.Response:
    """Admin: set a user's dashboard password, or `null` to go back to the SIP secret."""
    from b2bua.api.common import require_admin, user_extension

    require_admin(request)
    ext = user_extension(request)
    board = dashboard(request)
    data = parse_model(PasswordSet, await body_json(request))
    login = board.box(ext)  # `1001@acme.example` in a tenant
    if data.password is None:
        forget_password(board.store.conn, login)
    else:
        encoded = await asyncio.to_thread(hash_password, data.password)
        set_password(board.store.conn, Account(login, "user", ext), encoded, board.now(), None)
    return web.json_response({"ok": True})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the session cookie for /api/ requests; enforce CSRF on state changes."""
    path = request.path
    if not path.startswith("/api/"):
        return await handler(request)
    board = dashboard(request)
    if request.method in UNSAFE and not _same_origin(request):
        raise ApiError(403, "csrf", msg("cross_origin"))
    token = request.cookies.get(COOKIE)
    if token:
        now = board.now()
        digest = session_hash(token)
        row = board.store.conn.execute(
            "SELECT login, role, extension, csrf, created_at, last_seen FROM dashboard_sessions"
            " WHERE token_hash = ?",
            (digest,),
        ).fetchone()
        if row is not None:
            policy = board.policy
            created, last_seen = float(row[4]), float(row[5])
            if now - last_seen > policy.idle or now - created > policy.lifetime:
                board.store.conn.execute(
                    "DELETE FROM dashboard_sessions WHERE token_hash = ?", (digest,)
                )
            else:
                acc = Account(str(row[0]), str(row[1]), row[2])
                own = _served_board(board, acc.tenant)
                if own is None or (acc.role == "user" and (
                    acc.extension is None or own.config.user(acc.extension) is None
                )):
                    acc = None  # type: ignore[assignment]
                if acc is not None:
                    request[TENANT_KEY] = _acting_tenant(request, board, acc)
                    request[SESSION_KEY] = SessionInfo(
                        acc, digest, str(row[3]), created + policy.lifetime
                    )
                    if now - last_seen > policy.touch_every:
                        board.store.conn.execute(
                            "UPDATE dashboard_sessions SET last_seen = ? WHERE token_hash = ?",
                            (now, digest),
                        )
    if path in PUBLIC:
        return await handler(request)
    info = request.get(SESSION_KEY)
    if info is None:
        raise ApiError(401, "unauthenticated", msg("sign_in"))
    if request.method in UNSAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent.encode(), info.csrf.encode()):
            raise ApiError(403, "csrf", msg("csrf_missing"))
    return await handler(request)


def _served_board(board: Dashboard, key: str) -> Dashboard | None:
    """The board of tenant `key`, None once the tenant is no longer served."""
    try:
        return board.for_tenant(key)
    except ApiError:
        return None


def _acting_tenant(request: web.Request, board: Dashboard, acc: Account) -> str:
    """The tenant a request acts on: its account's; the platform administrator may name one
    with `?tenant=DOMAIN` (docs/tenants.md)."""
    wanted = request.query.get("tenant")
    if acc.tenant or acc.role != "admin" or not wanted:
        return acc.tenant
    key = wanted.strip().lower()
    if key == board.config.server.domain.lower():
        return ""
    board.for_tenant(key)  # 404 when no such tenant
    return key


def purge_sessions(board: Any, now: float) -> None:
    p = board.policy
    board.store.conn.execute(
        "DELETE FROM dashboard_sessions WHERE last_seen < ? OR created_at < ?",
        (now - p.idle, now - p.lifetime),
    )

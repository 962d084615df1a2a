"""`/api/tenants`: the platform administrator (`admin`) lists, creates, changes and deletes the
companies the server serves, live (docs/tenants.md).

A tenant created here is stored in the `tenants` table (b2bua.tenants.store) and served at once:
its realm answers REGISTERs, its administrator `admin@DOMAIN` signs in with the password given
here, its users are created from its board (`?tenant=DOMAIN` on the users' routes, or signed in
as its administrator). A tenant of the configuration file can have its `name` and `limits`
changed here (stored over the file), and be deleted only from the file. Deleting a tenant
refuses its new calls and registrations at once; its calls in progress end by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from b2bua.api.common import (
    ApiError,
    Dashboard,
    Issue,
    body_json,
    dashboard,
    invalid,
    msg,
    parse_model,
    require_platform_admin,
)
from b2bua.config import Limits
from b2bua.settings import Account, hash_password, set_password
from b2bua.store import transaction
from b2bua.tenants.store import TenantRow, save_row, section_of, stored_rows

# RFC 1035 host names: labels of letters, digits and hyphens, at least one dot.
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")


class NewTenant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=3, max_length=253)
    name: str = Field(min_length=1, max_length=100)
    limits: Limits = Field(default_factory=Limits)
    admin_password: str | None = Field(default=None, min_length=8, max_length=256)


class TenantChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    limits: dict[str, int] | None = None
    admin_password: str | None = Field(default=None, min_length=8, max_length=256)


def _service(board: Dashboard) -> Any:
    return board.server.tenant_service


def _tenant_json(board: Dashboard, key: str) -> dict[str, Any]:
    server = board.server
    tenant = server.tenants.get(key)
    if tenant is None:
        raise ApiError(404, "not_found", msg("no_tenant", domain=key))
    limits = tenant.limits
    return {
        "domain": tenant.domain,
        "name": tenant.name,
        "default": not key,
        "origin": tenant.origin,
        "limits": {"users": limits.users, "devices": limits.devices, "calls": limits.calls},
        "users": len(tenant.config.users),
        "devices": server.registrar.device_count(key, server.stack.now()),
        "calls": tenant.calls,
    }


async def list_tenants(request: web.Request) -> web.Response:
    require_platform_admin(request)
    board = dashboard(request)
    return web.json_response(
        {"tenants": [_tenant_json(board, t.key) for t in board.server.tenants]})


async def get_tenant(request: web.Request) -> web.Response:
    require_platform_admin(request)
    board = dashboard(request)
    return web.json_response(_tenant_json(board, _key(request)))


def _key(request: web.Request) -> str:
    key = request.match_info["domain"].strip().lower()
    board = dashboard(request)
    if key == board.config.server.domain.lower():
        return ""
    if key not in board.server.tenants:
        raise ApiError(404, "not_found", msg("no_tenant", domain=key))
    return key


async def _set_admin_password(board: Dashboard, key: str, password: str) -> None:
    encoded = await asyncio.to_thread(hash_password, password)
    set_password(board.store.conn, Account(f"admin@{key}", "admin", None), encoded,
                 board.now(), None)


def _apply(board: Dashboard) -> None:
    """Serve the stored list of tenants now (this process); the others notice its revision."""
    board.server.refresh_settings()


async def create_tenant(request: web.Request) -> web.Response:
    acc = require_platform_admin(request)
    board = dashboard(request)
    data = parse_model(NewTenant, await body_json(request))
    domain = data.domain.strip().lower()
    if not _DOMAIN.match(domain):
        raise invalid(Issue("invalid_domain", "domain", {"value": data.domain}))
    rows = stored_rows(board.store.conn)
    taken = {t.domain.lower() for t in board.server.tenants} | {
        s.domain for s in board.server.base_config.tenants}
    if domain in taken or (domain in rows and not rows[domain].deleted):
        raise ApiError(409, "exists", msg("tenant_exists", domain=domain),
                       [Issue("tenant_exists", "domain", {"domain": domain})])
    values: dict[str, Any] = {"name": data.name, "limits": data.limits.model_dump()}
    try:
        section_of(domain, values, board.store.base_dir)
    except ValidationError as exc:
        raise invalid(*(Issue("invalid", ".".join(map(str, e["loc"])) or "(body)",
                              {"reason": e["msg"]}) for e in exc.errors())) from None
    async with board.lock:
        save_row(board.store.conn, TenantRow(domain, values, created=True), board.now(),
                 acc.login)
        _apply(board)
    if data.admin_password is not None:
        await _set_admin_password(board, domain, data.admin_password)
    return web.json_response(_tenant_json(board, domain), status=201)


async def change_tenant(request: web.Request) -> web.Response:
    acc = require_platform_admin(request)
    board = dashboard(request)
    key = _key(request)
    data = parse_model(TenantChange, await body_json(request))
    if not key and (data.name is not None or data.limits is not None):
        # The top-level company is `[server] domain`: it has no limits, its name is its domain.
        raise invalid(Issue("invalid", "name" if data.name is not None else "limits",
                            {"reason": "the platform's own company is changed in the file"}))
    if data.name is not None or data.limits is not None:
        row = stored_rows(board.store.conn).get(key) or TenantRow(key)
        values = dict(row.values)
        if data.name is not None:
            values["name"] = data.name
        if data.limits is not None:
            current = _service(board).limits(key)
            merged = {"users": current.users, "devices": current.devices,
                      "calls": current.calls, **data.limits}
            try:
                values["limits"] = Limits.model_validate(merged).model_dump()
            except ValidationError as exc:
                raise invalid(*(Issue("invalid", "limits." + ".".join(map(str, e["loc"])),
                                      {"reason": e["msg"]}) for e in exc.errors())) from None
            users = len(board.server.tenants.get(key).config.users)
            most = values["limits"]["users"]
            if most and users > most:
                raise invalid(Issue("tenant_user_limit", "limits.users",
                                    {"max": most, "count": users}))
        async with board.lock:
            save_row(board.store.conn, TenantRow(key, values, row.created, row.deleted),
                     board.now(), acc.login)
            _apply(board)
    if data.admin_password is not None:
        if not key:
            raise invalid(Issue("invalid", "admin_password",
                                {"reason": "the platform administrator changes their own"}))
        await _set_admin_password(board, key, data.admin_password)
    return web.json_response(_tenant_json(board, key))


async def delete_tenant(request: web.Request) -> web.Response:
    acc = require_platform_admin(request)
    board = dashboard(request)
    key = _key(request)
    if not key:
        raise ApiError(403, "forbidden", msg("tenant_from_file", domain=board.config.server.domain))
    row = stored_rows(board.store.conn).get(key)
    if row is None or not row.created:
        raise ApiError(409, "from_file", msg("tenant_from_file", domain=key))
    async with board.lock:
        save_row(board.store.conn, TenantRow(key, row.values, created=True, deleted=True),
                 board.now(), acc.login)
        _apply(board)
    # Its accounts, sessions and stored settings go with it (its files under
    # data_dir/tenants/DOMAIN stay, for the operator to archive or remove).
    conn = board.store.conn
    with transaction(conn):
        for table in ("dashboard_sessions", "dashboard_accounts"):
            conn.execute(f"DELETE FROM {table} WHERE login LIKE ?", (f"%@{key}",))
        for table in ("user_settings", "music_uploads", "announcement_uploads", "voicemail"):
            with contextlib.suppress(sqlite3.OperationalError):  # a table not made yet
                conn.execute(f"DELETE FROM {table} WHERE tenant = ?", (key,))
    return web.json_response({"ok": True, "domain": key})


__all__ = ["change_tenant", "create_tenant", "delete_tenant", "get_tenant", "list_tenants"]

"""HTTP endpoints of softphone provisioning (tokens from `b2bua qr`).

GET /provision/{token}       Linphone remote-provisioning XML (lpconfig)
GET /provision/{token}.json  the same settings as JSON (server, domain, username, password, ...)

A token works once, whichever format asks first: a second use, or a use after its expiry, is
410 Gone; a token never issued is 404. Responses are `Cache-Control: no-store`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from b2bua.registrar.provisioning import (
    ProvisioningError,
    TokenState,
    consume_token,
    device_settings,
    linphone_xml,
)
from b2bua.registrar.sqlite_store import ensure_schema
from b2bua.store import DB_NAME, open_database
from b2bua.tenants.names import split

log = logging.getLogger("b2bua.api.provisioning")

_TOKEN = "{token:[A-Za-z0-9_-]{16,128}}"
_NO_STORE = {"Cache-Control": "no-store"}


def add_provisioning_routes(
    app: web.Application,
    db_path_or_conn: sqlite3.Connection | str | Path,
    config: Any,
    *,
    listen: Iterable[Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Add the provisioning routes to `app`. The database is the shared one: a connection, the
    data directory, or the path of the SQLite file. `listen` (objects with transport, host,
    port) names the SIP addresses really served; by default those of `app["server"].listen`
    when the app carries its server (the `--listen` overrides), else the configuration's."""
    if isinstance(db_path_or_conn, sqlite3.Connection):
        conn = db_path_or_conn
    else:
        path = Path(db_path_or_conn)
        conn = open_database(path.parent if path.name == DB_NAME else path)
    ensure_schema(conn)

    def _listen(request: web.Request) -> Iterable[Any] | None:
        if listen is not None:
            return listen
        server = request.app.get("server")
        served = getattr(server, "listen", None)
        return list(served) if served else None

    def handle(request: web.Request, as_json: bool) -> web.Response:
        token = request.match_info["token"]
        state, grant = consume_token(conn, token, clock())
        if state is TokenState.UNKNOWN:
            raise web.HTTPNotFound(text="unknown provisioning token\n", headers=_NO_STORE)
        if state is not TokenState.VALID or grant is None:
            raise web.HTTPGone(text=f"provisioning token {state.value}\n", headers=_NO_STORE)
        # A tenant's device (EXT@DOMAIN, docs/tenants.md) gets its company's settings.
        tenant, extension = split(grant.extension)
        company = config
        if tenant:
            tenants = getattr(request.app.get("server"), "tenants", None)
            served = tenants.get(tenant) if tenants is not None else None
            if served is None:
                raise web.HTTPGone(text="this company is no longer served\n", headers=_NO_STORE)
            company = served.config
        try:
            settings = device_settings(company, extension, grant.device, _listen(request))
        except ProvisioningError as exc:
            raise web.HTTPGone(text=f"{exc}\n", headers=_NO_STORE) from None
        peer = request.remote or "?"
        log.info("provisioning: device %d of %s fetched by %s", grant.device + 1,
                 grant.extension, peer)
        if as_json:
            return web.json_response(settings.as_json(), headers=_NO_STORE)
        return web.Response(
            text=linphone_xml(settings), content_type="application/xml", headers=_NO_STORE
        )

    async def get_json(request: web.Request) -> web.Response:
        return handle(request, True)

    async def get_xml(request: web.Request) -> web.Response:
        return handle(request, False)

    app.router.add_get(f"/provision/{_TOKEN}.json", get_json)
    app.router.add_get(f"/provision/{_TOKEN}", get_xml)

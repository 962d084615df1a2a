"""The HTTP side of `b2bua run`: health, metrics, softphone provisioning, the REST API and the
dashboard (docs/api.md, docs/dashboard.md).

Everything runs on the SIP event loop. Handlers stay short: SQLite calls are tens of
microseconds; what could take milliseconds (validating and compiling a changed configuration,
sampling a week of decisions, hashing a password, decoding audio) runs in a worker thread or
a subprocess, so the SIP hot path never waits behind a dashboard request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from b2bua.api.auth import (
    UNSAFE,
    AuthPolicy,
    Handler,
    Throttle,
    purge_sessions,
    session_middleware,
)
from b2bua.api.common import DASHBOARD_KEY, ApiError, Dashboard, msg, request_lang

log = logging.getLogger("b2bua.api")

STATIC_DIR = Path(__file__).resolve().parent / "static"
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
}
_POLL_SECONDS = 2.0
_TASK_KEY = web.AppKey("dashboard_task", asyncio.Task)


# French for the reasons aiohttp answers with by itself (no route, wrong method...).
_HTTP_REASONS_FR = {
    400: "requête invalide",
    404: "introuvable",
    405: "méthode non permise",
    413: "trop volumineux",
    415: "type de contenu non pris en charge",
}


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON errors under /api/ in the request's language; `warnings` on every successful write;
    security headers everywhere."""
    try:
        response = await handler(request)
    except ApiError as exc:
        response = exc.response(request_lang(request))
    except (web.HTTPException, HttpProcessingError) as exc:
        # HttpProcessingError: a malformed body part (a multipart header that does not parse)
        # met while a handler reads the body, answered 400 like a malformed request.
        if not request.path.startswith("/api/"):
            raise
        if not isinstance(exc, web.HTTPException):
            exc = web.HTTPBadRequest()
        reason_fr = _HTTP_REASONS_FR.get(exc.status, exc.reason)
        error = ApiError(exc.status, exc.reason.lower().replace(" ", "_"),
                         msg("http_error", reason=exc.reason, reason_fr=reason_fr))
        response = error.response(request_lang(request))
    else:
        if request.method in UNSAFE and request.path.startswith("/api/"):
            _with_warnings(response)
    response.headers.update(_SECURITY_HEADERS)
    if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def _with_warnings(response: web.StreamResponse) -> None:
    """Every successful write answers `warnings` (docs/api.md): an empty list where the handler
    had none to give."""
    if not isinstance(response, web.Response) or not 200 <= response.status < 300:
        return
    if response.content_type != "application/json" or not isinstance(response.body, bytes):
        return
    try:
        data = json.loads(response.body)
    except ValueError:
        return
    if isinstance(data, dict) and "warnings" not in data:
        data["warnings"] = []
        response.body = json.dumps(data, ensure_ascii=False).encode("utf-8")


def _library(server: Any, config: Any) -> Any:
    """The media layer's sound library when the server has one (shared cache), else ours."""
    library = getattr(server, "library", None)
    if library is not None:
        return library
    from media.library import SoundLibrary

    return SoundLibrary(Path(config.server.data_dir), language=config.server.language)


def build_app(
    server: Any,
    *,
    clock: Callable[[], float] = time.time,
    policy: AuthPolicy | None = None,
) -> web.Application:
    """The aiohttp application of `server` (a `b2bua.server.Server`, started)."""
    from b2bua.api.openapi import ROUTES, build_openapi
    from b2bua.settings import attach_settings

    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_errors,
                                                                          session_middleware])
    with warnings.catch_warnings():  # the provisioning routes look the server up by name
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["server"] = server
    store = getattr(server, "settings", None) or attach_settings(server)
    policy = policy or AuthPolicy()
    board = Dashboard(
        server=server, store=store, clock=clock, library=_library(server, server.config),
        policy=policy, throttle=Throttle(policy),
    )
    board.known_revision = store.revision()
    app[DASHBOARD_KEY] = board

    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "bindings": len(server.registrar),
                "active_calls": server.totals()["calls_active"],
            }
        )

    async def metrics(request: web.Request) -> web.Response:
        """Every worker's counters added up (b2bua.workers)."""
        lines = []
        totals = server.totals()
        for name in ("sip_messages_received_total", "sip_messages_dropped_total",
                     "sip_stateless_replies_total", "sip_timer_wakeups_total",
                     "gc_objects_since_collection"):
            lines.append(f"b2bua_{name} {totals[name]}")
        lines.append(f"b2bua_sip_bindings {len(server.registrar)}")
        lines.append(f"b2bua_calls_active {totals['calls_active']}")
        for name, value in totals.items():
            if name.startswith("calls_total:"):
                kind = name.partition(":")[2]
                lines.append(f'b2bua_calls_total{{kind="{kind}"}} {value}')
            elif name.startswith("push_sent_total:"):
                provider = name.partition(":")[2]
                lines.append(f'b2bua_push_sent_total{{provider="{provider}"}} {value}')
            elif name.startswith("push_results_total:"):
                _, provider, outcome = name.split(":", 2)
                lines.append(f'b2bua_push_results_total{{provider="{provider}",'
                             f'outcome="{outcome}"}} {value}')
            elif name.startswith("push_fork_total:"):
                kind = name.partition(":")[2]
                lines.append(f'b2bua_push_fork_total{{kind="{kind}"}} {value}')
            elif name.startswith("b2bua_"):  # transactions, dialogs, memory, overload guard
                lines.append(f"{name} {value}")
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    openapi_text = json.dumps(build_openapi(), ensure_ascii=False)

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=openapi_text, content_type="application/json")

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/openapi.json", openapi)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False, show_index=False)

    from b2bua.api.provisioning import add_provisioning_routes

    add_provisioning_routes(app, server.db, _LiveConfig(server))

    async def start_background(app: web.Application) -> None:
        board.admin_ready = asyncio.get_running_loop().create_task(_create_admin(board))
        app[_TASK_KEY] = asyncio.get_running_loop().create_task(_background(board))

    async def stop_background(app: web.Application) -> None:
        task = app.get(_TASK_KEY)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        board.worker.close()

    app.on_startup.append(start_background)
    app.on_cleanup.append(stop_background)
    return app


class _LiveConfig:
    """The server's current configuration, read at each use (provisioning after a change)."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server.config, name)


async def _create_admin(board: Dashboard) -> None:
    """The `admin` account at the first start: password from B2BUA_ADMIN_PASSWORD, or generated
    and logged once. Hashed in a thread (hashlib releases the GIL) so start-up does not wait."""
    from b2bua.settings import (
        ADMIN_LOGIN,
        ADMIN_PASSWORD_ENV,
        admin_missing,
        admin_password,
        create_admin,
        hash_password,
    )

    conn = board.store.conn
    if not admin_missing(conn):
        return
    password, generated = admin_password(os.environ.get(ADMIN_PASSWORD_ENV))
    encoded = await asyncio.to_thread(hash_password, password)
    if create_admin(conn, encoded, board.now()) and generated:
        log.warning(
            "dashboard: created the administrator account: login %r, password %r "
            "(shown this once; change it from the dashboard)", ADMIN_LOGIN, password,
        )


async def _background(board: Dashboard) -> None:
    """Apply settings changed by another process; purge ended sessions."""
    last_purge = 0.0
    while True:
        await asyncio.sleep(_POLL_SECONDS)
        try:
            await board.reload_if_changed()
            tenants = getattr(board.server, "tenants", None)
            for key, child in list(board.boards.items()):  # docs/tenants.md
                if tenants is None or key not in tenants:
                    board.boards.pop(key, None)  # deleted: its board goes with it
                else:
                    await child.reload_if_changed()
            now = board.now()
            if now - last_purge > 300:
                purge_sessions(board, now)
                last_purge = now
        except asyncio.CancelledError:
            raise
        except Exception:  # a task boundary: log and keep serving
            log.exception("dashboard background task failed")

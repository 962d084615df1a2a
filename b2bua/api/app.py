"""The HTTP side of `b2bua run`: health, metrics, softphone provisioning (dashboard to come)."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def build_app(server: Any) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app["server"] = server

    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "bindings": len(server.registrar),
                "active_calls": len(server.calls.active),
            }
        )

    async def metrics(request: web.Request) -> web.Response:
        lines = []
        stack = server.stack
        for name, value in (
            ("sip_messages_received_total", stack.received),
            ("sip_messages_dropped_total", stack.dropped),
            ("sip_stateless_replies_total", stack.stateless_replies),
            ("sip_bindings", len(server.registrar)),
            ("calls_active", len(server.calls.active)),
        ):
            lines.append(f"b2bua_{name} {value}")
        for name, value in server.calls.counters.items():
            lines.append(f'b2bua_calls_total{{kind="{name}"}} {value}')
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    try:
        from b2bua.api.provisioning import add_provisioning_routes
    except ImportError:  # pragma: no cover - while the registrar's HTTP side is absent
        pass
    else:
        add_provisioning_routes(app, server.db, server.config)
    return app

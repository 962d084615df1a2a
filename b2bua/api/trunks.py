"""`GET /api/trunks` (admin): each trunk's registration, health and lines, as `b2bua trunks
--json` shows them, live from the running server (the process that serves the dashboard is
the one that registers to the trunks)."""

from __future__ import annotations

from aiohttp import web

from b2bua.api.common import dashboard, require_admin


async def list_trunks(request: web.Request) -> web.Response:
    require_admin(request)
    trunks = getattr(dashboard(request).server, "trunks", None)
    rows = [row.to_json() for row in trunks.status()] if trunks is not None else []
    return web.json_response({"trunks": rows})

"""What the command line reads with `[store] url`: an in-memory SQLite copy of the shared store
as it is now (stored settings, accounts, voicemail index, call records, bindings), in the very
tables a node's local copy has, so that `b2bua trace`, `week`, `check`, `export`, `devices` and
`calls` read it as they read `data_dir/b2bua.sqlite` on a single machine."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from b2bua.pgstore.db import CONNECT_TIMEOUT, safe_url
from b2bua.pgstore.location import _COLUMNS, CLAIMS, read_binding, read_claim
from b2bua.pgstore.replica import Replica
from b2bua.registrar.model import Binding, DeviceClaim
from b2bua.registrar.sqlite_store import SqliteLocationStore
from b2bua.store import _BASE_SCHEMA


async def _fetch(url: str) -> tuple[list[Any], list[Binding], list[DeviceClaim]]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    try:
        has = await conn.fetchval("SELECT to_regclass('shared_rows') IS NOT NULL")
        if not has:
            return [], [], []  # no node ever started on this database
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch("SELECT tbl, tenant, pk, row FROM shared_rows")
            bindings = await conn.fetch(f"SELECT {_COLUMNS} FROM registrar_bindings")
            claims = await conn.fetch(CLAIMS)
    finally:
        await conn.close()
    return (list(rows), [read_binding(r, "") for r in bindings],
            [read_claim(r) for r in claims])


def snapshot(url: str) -> sqlite3.Connection:
    """The copy (OSError naming the store when PostgreSQL cannot be read)."""
    try:
        rows, bindings, claims = asyncio.run(_fetch(url))
    except Exception as exc:
        raise OSError(f"store {safe_url(url)}: {exc}") from exc
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(_BASE_SCHEMA)
    replica = Replica(conn, None, None, "snapshot", 0)  # type: ignore[arg-type]
    replica.install()
    replica._apply((r[0], r[1], r[2], r[3]) for r in rows)
    SqliteLocationStore(conn).apply(bindings, [], claims)
    return conn

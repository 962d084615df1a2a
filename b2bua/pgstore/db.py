"""A node's handle on the shared PostgreSQL database: a small pool for reads, one ordered
writer (b2bua.pgstore.writer), the schema migrated at open, shared secrets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from b2bua.pgstore.schema import LOCK_KEY, migrate
from b2bua.pgstore.writer import Writer

log = logging.getLogger("b2bua.pgstore")

CONNECT_TIMEOUT = 10.0
MAX_NODES = 1024  # node numbers fit the low 10 bits of replicated row ids


def safe_url(url: str) -> str:
    """`url` without its password (for logs)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


class SharedDatabase:
    def __init__(self, url: str, pool: Any, writer: Writer) -> None:
        self.url = url
        self.pool = pool
        self.writer = writer

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 4) -> SharedDatabase:
        """Connect, migrate the schema, start the writer (asyncpg errors and OSError when the
        server cannot be reached)."""
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size,
                                         timeout=CONNECT_TIMEOUT, command_timeout=30)
        async with pool.acquire() as conn:
            await migrate(conn)

        async def connect() -> Any:
            return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT, command_timeout=30)

        writer = Writer(connect)
        writer.start()
        return cls(url, pool, writer)

    async def connect(self) -> Any:
        """A connection of its own (LISTEN, session advisory locks)."""
        return await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)

    async def secret(self, name: str, size: int, random_bytes: Callable[[int], bytes]) -> bytes:
        """A secret every node shares (the digest nonce key), made by the first to ask."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO cluster_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                name, random_bytes(size))
            value = await conn.fetchval("SELECT value FROM cluster_meta WHERE key = $1", name)
        return bytes(value)

    async def join(self, node: str, sip: str | None = None, http: str | None = None) -> int:
        """Enter `node` in `cluster_nodes` (again, after a restart); its number, 1 to 1023,
        kept for the node's name."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
                number = await conn.fetchval(
                    "SELECT number FROM cluster_nodes WHERE name = $1", node)
                if number is None:
                    number = await conn.fetchval(
                        "SELECT coalesce(max(number), 0) + 1 FROM cluster_nodes")
                    if number >= MAX_NODES:
                        raise RuntimeError(f"more than {MAX_NODES - 1} nodes in the cluster")
                await conn.execute(
                    "INSERT INTO cluster_nodes (name, number, sip, http) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (name) DO UPDATE SET sip = EXCLUDED.sip,"
                    " http = EXCLUDED.http, started_at = now()", node, number, sip, http)
        return int(number)

    async def close(self) -> None:
        await self.writer.close()
        await self.pool.close()

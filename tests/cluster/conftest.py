"""Fixtures of the multi-node tests: one real PostgreSQL per test session (Debian's server in a
temporary directory, on a free loopback port, stopped by its PID), a fresh database per test."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.testing.postgres import RunningPostgres, postgres_bin, start_postgres

_databases = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def postgres() -> Iterator[RunningPostgres]:
    if postgres_bin() is None:
        pytest.fail("PostgreSQL is missing: scripts/setup --test installs Debian's postgresql")
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


def new_database(server: RunningPostgres) -> str:
    """A new empty database on `server`; its URL."""
    import asyncpg

    name = f"t{next(_databases)}"

    async def create() -> None:
        conn = await asyncpg.connect(server.url)
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()

    asyncio.run(create()) if not _loop_running() else None
    return server.url.rsplit("/", 1)[0] + "/" + name


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def pg_url(postgres: RunningPostgres, tmp_path: Path) -> str:
    """The URL of a fresh, empty database (made in a thread: the test may run a loop)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(new_database, postgres).result()

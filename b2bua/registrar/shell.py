"""The asyncio shell of REGISTER processing for a location store reached over the network.

`Registrar.handle_register` commits with the registrar's own synchronous store (SQLite, tens of
microseconds). A store across the network (PostgreSQL for several nodes) is awaited instead:
`RegisterShell.register(request, flow)` runs `begin_register`, awaits the store's `commit` of the
`StoreBatch`, then `finish_register`, so the 200 still goes out only after the commit and a
failed commit is still a 500 that changed nothing.

Between the two halves the registrar must not begin another REGISTER of the same address of
record (it would decide against bindings about to change): the shell keeps one lock per To user
and lets REGISTERs of different users run concurrently.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

from b2bua.registrar.core import Registrar
from b2bua.registrar.model import StoreBatch, StoreError
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response
from b2bua.sip.uri import SipUri


class AsyncLocationStore(Protocol):
    async def commit(self, batch: StoreBatch) -> None:
        """All of the batch in one transaction, or nothing (raises StoreError)."""
        ...


class RegisterShell:
    def __init__(
        self,
        registrar: Registrar,
        store: AsyncLocationStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registrar = registrar
        self.store = store
        self.clock = clock
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def register(self, request: Request, flow: Flow) -> Response:
        """Process one REGISTER; the response is final (the commit, if any, is done)."""
        to_uri = request.to.uri
        key = (to_uri.user_unescaped or "") if isinstance(to_uri, SipUri) else ""
        async with self.locked(key):
            outcome = self.registrar.begin_register(request, flow, self.clock())
            if isinstance(outcome, Response):
                return outcome
            error: str | None = None
            try:
                await self.store.commit(outcome.batch)
            except StoreError as exc:
                error = str(exc) or "store error"
            return self.registrar.finish_register(outcome, error, self.clock())

    @asynccontextmanager
    async def locked(self, key: str) -> AsyncIterator[None]:
        """Hold the lock of To user `key`: no REGISTER of it is between its two halves
        meanwhile (also taken to install bindings another node changed)."""
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

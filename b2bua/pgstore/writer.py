"""One ordered writer per node: every change this node makes to PostgreSQL, group-committed.

Theory of operation
-------------------
Callers never wait on the network inside the event loop's callbacks: they `submit` a `Job`
(its statements, in order, and the notices to send with them) and go on, or `await run(job)`
when the answer depends on the commit (a REGISTER's 200, RFC 3261 §10.3: "The binding updates
MUST be committed ... if and only if all binding updates and additions succeed").

One task takes every job queued so far and commits them in one transaction on its own
connection (group commit: at 500 REGISTER/s a batch holds a few dozen of them, one round of
commit for all); consecutive statements with the same SQL go out as one `executemany`. Jobs
are committed in the order they were submitted, so a write-behind housekeeping change can
never overtake a REGISTER committed after it. `pg_notify` in the same transaction reaches the
other nodes at commit, never before.

When a batch fails, its jobs are tried again one by one, so that one bad row fails only its
own REGISTER. A job that still fails gets `StoreError` (awaited jobs) or is logged and counted
(write-behind). A connection that broke is replaced at the next batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from b2bua.registrar.model import StoreError

log = logging.getLogger("b2bua.pgstore")

MAX_BATCH = 512


@dataclass(slots=True)
class Job:
    statements: list[tuple[str, Sequence[Any]]] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)  # (channel, payload)
    what: str = ""
    done: asyncio.Future[None] | None = None


class Writer:
    def __init__(self, connect: Callable[[], Awaitable[Any]]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._queue: deque[Job] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.counters = {"jobs": 0, "batches": 0, "failed": 0}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def submit(self, job: Job) -> None:
        """Queue `job` (write-behind: nobody waits for it)."""
        self._queue.append(job)
        self._idle.clear()
        self._wake.set()

    async def run(self, job: Job) -> None:
        """Queue `job` and wait for its commit (StoreError when it could not be committed)."""
        job.done = asyncio.get_running_loop().create_future()
        self.submit(job)
        await job.done

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed (or has failed)."""
        await self._idle.wait()

    async def close(self) -> None:
        if self._task is not None:
            if self._queue:
                try:
                    await asyncio.wait_for(self.flush(), 5.0)
                except TimeoutError:
                    log.error("store: %d changes not written at stop", len(self._queue))
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
                await self._commit(batch)
            self._idle.set()

    async def _commit(self, batch: list[Job]) -> None:
        self.counters["batches"] += 1
        self.counters["jobs"] += len(batch)
        try:
            await self._transaction(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._failed(batch[0], exc)
                return
            for job in batch:  # one by one: only the bad one fails
                try:
                    await self._transaction([job])
                except Exception as one:
                    self._failed(job, one)
                else:
                    _resolve(job, None)
            return
        for job in batch:
            _resolve(job, None)

    async def _transaction(self, batch: list[Job]) -> None:
        conn = self._conn
        if conn is None or conn.is_closed():
            self._conn = conn = await self._connect()
        async with conn.transaction():
            sql: str | None = None
            rows: list[Sequence[Any]] = []
            for job in batch:
                for text, args in job.statements:
                    if text != sql:
                        if sql is not None:
                            await _execute(conn, sql, rows)
                        sql, rows = text, []
                    rows.append(args)
                for channel, payload in job.notices:
                    if sql is not None:
                        await _execute(conn, sql, rows)
                        sql, rows = None, []
                    await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
            if sql is not None:
                await _execute(conn, sql, rows)

    def _failed(self, job: Job, exc: BaseException) -> None:
        self.counters["failed"] += 1
        if job.done is None:
            log.error("store: %s not written: %s", job.what or "change", exc)
        _resolve(job, StoreError(str(exc) or type(exc).__name__))


async def _execute(conn: Any, sql: str, rows: list[Sequence[Any]]) -> None:
    if len(rows) == 1:
        await conn.execute(sql, *rows[0])
    else:
        await conn.executemany(sql, rows)


def _resolve(job: Job, error: StoreError | None) -> None:
    done = job.done
    if done is None or done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)

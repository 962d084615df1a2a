"""A server as one node of a cluster over a shared PostgreSQL store (`[store] url`).

Theory of operation
-------------------
`Server.start` asks the node for its SQLite connection (`open`: a fresh local copy of the
shared tables, b2bua.pgstore.replica) and its registrar (`build_registrar`: bindings from
PostgreSQL, the nonce key every node shares), then `attach`es it once the stack, the call
engine and the media port exist:

- REGISTERs go through `RegisterShell` (the core's `register_later` seam): the 200 is sent
  once PostgreSQL has committed the bindings;
- one connection LISTENs: `b2bua_bindings` (another node committed an address of record: it is
  read back, under the same per-user lock as REGISTERs, and installed), `b2bua_shared` (rows of
  the shared tables changed: pulled into SQLite, then settings applied, MWI subscribers told,
  sound caches cleared), `b2bua_auth` (a failed authentication on another node: counted here
  too, so a source is locked out by every node at `lockout_failures`). The same connection
  holds the node's liveness lock (b2bua.pgstore.journal);
- a task ships the local SQLite changes every `SHIP_INTERVAL` (and the API awaits it before it
  answers a write), pulls every `PULL_INTERVAL` in case a notice was lost, and looks for dead
  nodes' calls every `journal.SCAN_INTERVAL`;
- the call engine journals its answered calls (`on_answered` / `on_ended`).

If the listening connection breaks (PostgreSQL restarted), it is opened again, and everything
is pulled and every known address of record read back, since notices may have been missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from b2bua.pgstore.db import SharedDatabase, safe_url
from b2bua.pgstore.journal import SCAN_INTERVAL, DialogJournal, end_orphan
from b2bua.pgstore.location import CHANNEL as BINDINGS_CHANNEL
from b2bua.pgstore.location import PgLocationStore, read_notice
from b2bua.pgstore.replica import CHANNEL as SHARED_CHANNEL
from b2bua.pgstore.replica import Replica
from b2bua.pgstore.writer import Job
from b2bua.registrar import NONCE_KEY_NAME, Registrar
from b2bua.registrar.shell import RegisterShell
from b2bua.store import open_database
from b2bua.tenants.names import scoped

log = logging.getLogger("b2bua.pgstore")

AUTH_CHANNEL = "b2bua_auth"
SHIP_INTERVAL = 0.1
PULL_INTERVAL = 2.0
PRUNE_INTERVAL = 600.0
SETTINGS_TABLES = frozenset({"user_settings", "music_uploads", "announcement_uploads", "meta",
                             "tenants"})
SOUND_TABLES = frozenset({"music_uploads", "announcement_uploads"})


def node_name(config: Any, listen: list[Any]) -> str:
    """`[store] node`, else the host name and the first SIP port."""
    if config.store.node:
        return str(config.store.node)
    port = listen[0].port if listen else 5060
    return f"{socket.gethostname()}-{port}"


class ClusterNode:
    def __init__(self, server: Any) -> None:
        self.server = server
        config = server.config
        self.url: str = str(config.store.url)
        self.node = node_name(config, server.listen)
        self.db: SharedDatabase | None = None
        self.number = 0
        self.cache_dir: Path | None = None
        self.replica: Replica | None = None
        self.store: PgLocationStore | None = None
        self.shell: RegisterShell | None = None
        self.journal: DialogJournal | None = None
        self._listener: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_aors: set[str] = set()
        self._aor_task: asyncio.Task[None] | None = None
        self._pull_wanted = asyncio.Event()
        self._settings_lock = asyncio.Lock()
        self._ship_lock = asyncio.Lock()
        self._settings_revision = -1
        self._background: set[asyncio.Task[Any]] = set()

    # -- start -------------------------------------------------------------------------------
    async def open(self) -> sqlite3.Connection:
        """Connect, migrate, join the cluster, build the local SQLite copy; its connection."""
        if self.server.role is not None:
            raise OSError("with [store] url each node runs one worker (workers = 1): add nodes "
                          "for more cores (docs/cluster.md)")
        try:
            self.db = db = await SharedDatabase.open(self.url)
        except (OSError, Exception) as exc:
            raise OSError(f"store {safe_url(self.url)}: {exc}") from exc
        listen = self.server.listen
        sip = str(listen[0]) if listen else None
        self.number = await db.join(self.node, sip, self.server.http)
        self.cache_dir = Path(tempfile.mkdtemp(prefix=f"b2bua-{self.node}-"))
        conn = open_database(self.cache_dir)
        self.replica = Replica(conn, db.pool, db.writer, self.node, self.number)
        self.replica.install()
        loaded = await self.replica.load()
        self.journal = DialogJournal(db.writer, self.node, self.number)
        self._listener = await self._listen()
        await self.journal.lock_self(self._listener)
        self.journal.started(time.time())
        log.info("node %s (number %d) of the cluster on %s: %d shared rows loaded", self.node,
                 self.number, safe_url(self.url), loaded)
        return conn

    async def build_registrar(self, config: Any, now: float,
                              local_addresses: list[str], tenants: Any = ()) -> Registrar:
        """The registrar over PostgreSQL, its users those of the effective configuration (the
        TOML and the stored settings: a user created from the dashboard keeps its bindings),
        and every tenant's (key, domain, users, device limit)."""
        from b2bua.settings import SettingsStore

        assert self.db is not None and self.replica is not None
        effective = SettingsStore(self.replica.conn, config).effective()
        key = await self.db.secret(NONCE_KEY_NAME, 32, os.urandom)
        self.store = store = PgLocationStore(self.db.pool, self.db.writer, self.node)
        await store.preload(now)
        registrar = Registrar.from_config(effective, store, nonce_key=key,
                                          random_bytes=os.urandom,
                                          local_addresses=local_addresses)
        for key, domain, users, max_devices in tenants:
            registrar.set_tenant(key, domain, users, max_devices)
        registrar.restore(now, connections_survived=False)
        self.shell = RegisterShell(registrar, store)
        return registrar

    def attach(self) -> None:
        """Wire the node into the running server (see the module docstring)."""
        server = self.server
        assert self.replica is not None and self.journal is not None
        server.core.register_later = self._register
        server.registrar.on_failure = self._auth_failed
        self.replica.on_change = self._shared_changed
        server.calls.on_answered = self.journal.answered
        server.calls.on_ended = self.journal.ended
        self._settings_revision = server.settings.revision()
        loop = asyncio.get_running_loop()
        for job in (self._ship_loop, self._pull_loop, self._scan_loop, self._prune_loop):
            self._tasks.append(loop.create_task(job()))

    # -- REGISTER ---------------------------------------------------------------------------
    def _register(self, tx: Any, request: Any, flow: Any) -> None:
        self._spawn(self._register_task(tx, request, flow))

    async def _register_task(self, tx: Any, request: Any, flow: Any) -> None:
        from b2bua.commands import Respond

        assert self.shell is not None
        registrar = self.shell.registrar
        failures = registrar.failures
        response = await self.shell.register(request, flow)
        stack = self.server.stack
        stack.outbox.append(Respond(tx, response,
                                    stateless=registrar.repeatable(response, failures)))
        stack.flush()

    # -- notices -----------------------------------------------------------------------------
    async def _listen(self) -> Any:
        assert self.db is not None
        conn = await self.db.connect()
        await conn.add_listener(BINDINGS_CHANNEL, self._on_notice)
        await conn.add_listener(SHARED_CHANNEL, self._on_notice)
        await conn.add_listener(AUTH_CHANNEL, self._on_notice)
        conn.add_termination_listener(self._on_listener_lost)
        return conn

    def _on_notice(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        node, _, rest = payload.partition("\t")
        if node == self.node:
            return
        if channel == BINDINGS_CHANNEL:
            self._pending_aors.add(read_notice(rest))
            if self._aor_task is None or self._aor_task.done():
                self._aor_task = asyncio.get_running_loop().create_task(self._reload_aors())
        elif channel == SHARED_CHANNEL:
            self._pull_wanted.set()
        elif channel == AUTH_CHANNEL:
            host, _, when = rest.rpartition(" ")
            try:
                self.server.registrar.count_failure(host, float(when))
            except ValueError:
                log.warning("unusable authentication notice %r", payload)

    def _on_listener_lost(self, _conn: Any) -> None:
        log.error("store: the notification connection closed; opening it again")
        self._spawn(self._relisten())

    async def _relisten(self) -> None:
        assert self.journal is not None
        while True:
            try:
                self._listener = await self._listen()
                await self.journal.lock_self(self._listener)
                break
            except Exception as exc:  # the server may take a while to come back
                log.error("store: cannot listen again: %s", exc)
                await asyncio.sleep(1.0)
        self._pending_aors.update(self.server.registrar.location.extensions())
        self._pending_aors.update(u.extension for u in self.server.config.users)
        self._aor_task = asyncio.get_running_loop().create_task(self._reload_aors())
        self._pull_wanted.set()

    async def _reload_aors(self) -> None:
        assert self.store is not None and self.shell is not None
        while self._pending_aors:
            aor = self._pending_aors.pop()
            try:
                async with self.shell.locked(aor):
                    rows, claims = await self.store.fetch_aor(aor)
                    self.server.registrar.install(aor, rows, claims, time.time())
            except Exception as exc:  # a task boundary: the next notice or restart fixes it
                log.error("store: could not read bindings of %s back: %s", aor, exc)

    def _auth_failed(self, host: str, when: float) -> None:
        assert self.db is not None
        self.db.writer.submit(Job(notices=[(AUTH_CHANNEL, f"{self.node}\t{host} {when!r}")],
                                  what="lockout notice"))

    # -- shared rows ---------------------------------------------------------------------------
    async def ship(self) -> None:
        """Send this node's SQLite changes to PostgreSQL now (the API awaits it). One shipping
        at a time: a second caller waits for the first, then ships what came meanwhile."""
        replica = self.replica
        if replica is None:
            return
        async with self._ship_lock:
            if replica.pending():
                await replica.ship()

    async def _ship_loop(self) -> None:
        while True:
            await asyncio.sleep(SHIP_INTERVAL)
            try:
                await self.ship()
            except Exception as exc:  # left in the outbox: tried again
                log.error("store: local changes not shipped yet: %s", exc)

    async def _pull_loop(self) -> None:
        assert self.replica is not None
        while True:
            try:
                await asyncio.wait_for(self._pull_wanted.wait(), PULL_INTERVAL)
            except TimeoutError:
                pass
            self._pull_wanted.clear()
            try:
                await self.replica.pull()
            except Exception as exc:
                log.error("store: could not read the other nodes' changes: %s", exc)

    def _shared_changed(self, touched: dict[str, list[dict[str, Any]]]) -> None:
        server = self.server
        if SETTINGS_TABLES & touched.keys():
            self._spawn(self._apply_settings())
        if SOUND_TABLES & touched.keys():
            bridge = getattr(server, "bridge", None)
            if bridge is not None:
                bridge.sounds_changed()
        boxes = {scoped(str(row["extension"]), str(row.get("tenant") or ""))
                 for row in touched.get("voicemail", []) if row.get("extension") is not None}
        for box in sorted(boxes):
            server.message_left(box, tell_others=False)

    async def _apply_settings(self) -> None:
        """Another node stored settings: apply them (compiled in a thread) if the revision
        moved. Calls in flight keep their decision."""

        server = self.server
        async with self._settings_lock:
            try:
                # Tenant by tenant (docs/tenants.md): only those whose revision moved.
                for key, revision in server.refresh_settings():
                    log.info("settings of revision %d of %s applied (stored by another node)",
                             revision, key or "the top-level company")
            except Exception:  # a task boundary: keep serving the configuration in force
                log.exception("stored settings could not be applied")

    def http_middleware(self) -> Any:
        """An aiohttp middleware: a write is in PostgreSQL before the API answers it."""
        from aiohttp import web

        @web.middleware
        async def ship_writes(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
            response = await handler(request)
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                try:
                    await self.ship()
                except Exception as exc:
                    log.error("store: change not shipped before the answer: %s", exc)
            return response

        return ship_writes

    async def _prune_loop(self) -> None:
        assert self.replica is not None
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            await self.replica.prune()

    # -- dead nodes ------------------------------------------------------------------------------
    async def _scan_loop(self) -> None:
        assert self.journal is not None
        while True:
            try:
                for node, key, entry in await self.journal.orphans(self._listener):
                    end_orphan(self.server, node, key, entry)
            except Exception as exc:  # a task boundary: try again at the next scan
                log.error("store: dialog journal scan failed: %s", exc)
            await asyncio.sleep(SCAN_INTERVAL)

    def delete_media(self, call_key: str) -> None:
        """A dead node's call: its media in rtpengine goes too."""
        rtpengine = getattr(self.server, "rtpengine", None)
        if rtpengine is None:
            return
        from media.rtpengine_backend import delete_args

        async def delete() -> None:
            try:
                await rtpengine.client.request("delete", delete_args(call_key))
            except Exception as exc:  # it may have timed the call out already
                log.info("rtpengine delete of %s: %s", call_key, exc)

        self._spawn(delete())

    # -- stop ---------------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        try:
            await self.ship()
        except Exception as exc:
            log.error("store: local changes not shipped at stop: %s", exc)
        if self._listener is not None:
            self._listener.remove_termination_listener(self._on_listener_lost)
            await self._listener.close()
        if self.db is not None:
            await self.db.close()
        if self.cache_dir is not None:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

"""`b2bua run`: wire every layer together on one event loop and serve until SIGINT/SIGTERM.

Start order: configuration, store, registrar (bindings loaded back from SQLite), rules, transaction
layer and stack, call engine, transports, HTTP. Stop order is the reverse; the store is closed
last so every binding and call record written before the signal is on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from b2bua import allocator
from b2bua.config import Announcement, Config, ConfigError, load_config
from b2bua.sip.flow import Flow
from b2bua.sip.message import clear_caches
from b2bua.tokens import TokenSource, worker_prefix
from b2bua.transport.base import ListenSpec
from b2bua.transport.guard import GuardedReceiver, GuardSettings
from b2bua.workers import (
    AUTH_FAILED,
    BINDINGS,
    SETTINGS,
    SOUNDS,
    VOICEMAIL,
    Channel,
    Handlers,
    Role,
    Supervisor,
    channel_sockets,
    parent_gone,
    port_range,
    primary_role,
)

log = logging.getLogger("b2bua")

TEST_NOW_ENV = "B2BUA_TEST_NOW"
# When the cyclic collector runs (see `serve`): when the server is quiet (few transactions)
# and the last collection is that old, or whenever this many more container objects live than
# at the last collection (a leak: under load at 300 calls/s with 3 devices, 443,000 after 20 s,
# so under a million once the 32-second transaction timers turn over).
COLLECT_WHEN_QUIET_EVERY = 600.0
QUIET_TRANSACTIONS = 200
COLLECT_AFTER_GROWTH = 20_000_000
LOAD_SAMPLE_INTERVAL = 0.1  # seconds between two samples of the loop's load
# Open files `b2bua run` asks for (see `raise_open_files_limit`): room for 4,096 warm RTP port
# pairs (media.engine.WARM_PAIRS) within three quarters of it, and for everything else.
OPEN_FILES = 65_536


def wall_clock_from_env() -> Callable[[], float]:
    """The wall clock the rules see. Tests may pin it with B2BUA_TEST_NOW=ISO8601 (it then runs
    on from that instant); nothing else in the product reads that variable."""
    pinned = os.environ.get(TEST_NOW_ENV)
    if not pinned:
        return time.time
    start = datetime.fromisoformat(pinned)
    if start.tzinfo is None:
        raise SystemExit(f"{TEST_NOW_ENV} needs an offset, e.g. 2026-01-05T10:00:00+01:00")
    base = start.timestamp()
    t0 = time.monotonic()
    log.warning("wall clock pinned to %s for tests", pinned)
    return lambda: base + (time.monotonic() - t0)


def cmd_run(args: argparse.Namespace) -> int:
    role = Role.parse(args.worker) if getattr(args, "worker", None) else None
    worker_tag = f"[{role.index}]" if role is not None else ""
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format=f"%(asctime)s %(levelname)s %(name)s{worker_tag}: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if role is None:
        log.info("memory allocator: %s", allocator.active())
    listen = [ListenSpec.parse(x) for x in args.listen] if args.listen else [
        ListenSpec(s.transport, s.host, s.port) for s in config.server.listen
    ]
    http: str | None = args.http or f"{config.server.http.host}:{config.server.http.port}"
    argv: list[str] = []
    socks: list[socket.socket] = []
    if role is None:
        count = getattr(args, "workers", None) or config.server.workers
        if count > 1:
            socks = channel_sockets(count)
            role = primary_role(count, socks)
            logging.getLogger().handlers[0].setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s[0]: %(message)s"))
            argv = [sys.executable, "-m", "b2bua", "run", "--config", str(args.config),
                    "--log-level", args.log_level]
    else:
        http = None  # the first worker serves HTTP
    raise_open_files_limit()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is optional outside Linux
        runner = asyncio.run
    try:
        runner(serve(config, listen, http, role, argv, socks))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    # Everything is saved and closed (Server.stop). Skip the interpreter's own teardown: with
    # the collector off, it would walk and free everything a busy server still holds (2.4 s
    # after 900 calls at 300 calls/s), and `b2bua run` would linger after SIGTERM.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def raise_open_files_limit(want: int = OPEN_FILES) -> int:
    """Raise this process's soft limit on open files towards `want` (never past the hard
    limit); the limit now in force. Sockets are files: two per RTP port pair, and released
    pairs are kept open for the next calls (media.engine), within three quarters of the limit
    less 1,024 files. A service manager's default soft limit, 1,024, would allow none; its
    hard limit is usually far higher, and a process may raise its own soft limit up to it."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        return soft
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX, or refused
        return -1


class Server:
    """Every layer of a running B2BUA (also used in-process by tests)."""

    def __init__(
        self, config: Config, listen: list[ListenSpec], http: str | None,
        role: Role | None = None, argv: list[str] | None = None,
        channel_socks: list[socket.socket] | None = None,
    ) -> None:
        self.config = config  # the top-level company's effective configuration (after start)
        self.base_config = config  # the whole file, with its [[tenants]]
        self.listen = listen
        self.http = http
        self.role = role  # None: the only process; else this worker's place (b2bua.workers)
        self.primary = role is None or role.primary
        self._argv = argv or []
        self._channel_socks = channel_socks or []  # the first worker's: every worker's
        self.channel: Channel | None = None
        self.supervisor: Supervisor | None = None
        self.journal: Any = None  # b2bua.workers_journal.WorkerJournal, with several workers
        self.push: Any = None  # b2bua.push.service.PushService, when [push] has a provider
        self.settings: Any = None  # b2bua.settings.SettingsStore, set by attach_settings
        self.cluster: Any = None  # b2bua.pgstore.node.ClusterNode with [store] url
        self.tenant_service: Any = None  # b2bua.tenants.service.TenantService
        self.tenants: Any = None  # b2bua.tenants.registry.Tenants
        self._peers_counters: dict[int, dict[str, int]] = {}  # other workers' last report
        self._settings_revision = -1
        self._settings_task: asyncio.Task[None] | None = None
        self.stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.http_runner: Any = None

    async def start(self) -> None:
        from b2bua.addressing import Local
        from b2bua.calls.engine import CallEngine
        from b2bua.calls.model import MediaMode
        from b2bua.calls.mwi import MessageWaiting
        from b2bua.calls.records import CallRecorder
        from b2bua.calls.trunking import make_trunks
        from b2bua.core import Core
        from b2bua.registrar import build_registrar
        from b2bua.rules import RuleBook, compile_rules
        from b2bua.sip.transaction import TimerConfig, TransactionLayer
        from b2bua.stack import SipStack
        from b2bua.store import open_database
        from b2bua.tenants.service import TenantService
        from b2bua.transport.ingress import Ingress
        from b2bua.transport.manager import TransportManager
        from b2bua.transport.tls import client_context, server_context
        from b2bua.trunks.agent import TrunkAgent
        from b2bua.trunks.store import TrunkStatusStore

        config = self.config
        data_dir = Path(config.server.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.rules_clock = wall_clock_from_env()
        if config.store.url:
            # Several nodes over PostgreSQL (docs/cluster.md): SQLite is the node's local copy.
            from b2bua.pgstore.node import ClusterNode

            self.cluster = ClusterNode(self)
            self.db = await self.cluster.open()
        else:
            self.db = open_database(data_dir)
        # Every company served (docs/tenants.md), each with the settings stored for it.
        service = self.tenant_service = TenantService(config, self.db)
        configs = service.load()
        config = self.config = configs[""]
        self.settings = service.stores[""]
        tenant_users = service.registrar_users(configs)
        if self.cluster is not None:
            self.registrar = await self.cluster.build_registrar(
                config, time.time(), [s.host for s in self.listen], tenant_users)
        else:
            self.registrar = build_registrar(
                config, self.db, now=time.time(), local_addresses=[s.host for s in self.listen],
                connections_survived=not self.primary, tenants=tenant_users,
            )
        self.tenants = service.build(configs, lambda c: RuleBook(compile_rules(c)))
        self.rulebook = self.tenants.default.rules
        tokens = self.tokens = TokenSource(
            prefix=worker_prefix(self.role.index if self.role is not None else None))
        overload = config.overload
        self.layer = TransactionLayer(
            TimerConfig(), random_token=lambda: tokens.token(8),
            max_waiting=overload.max_waiting_transactions,
            max_waiting_clients=overload.max_waiting_client_transactions,
            max_transactions=overload.max_transactions,
        )
        self.stack = SipStack(self.layer)
        self.ingress = Ingress(self.stack, tokens)
        self.guard = GuardedReceiver(self.ingress, guard_settings(config, self.tenants),
                                     time.monotonic, tokens.tag)
        self.recorder = CallRecorder(self.db, batch_delay=0.1)
        self.directory = self.tenants.default.directory
        server_ssl = None
        if config.server.tls_cert and config.server.tls_key:
            server_ssl = server_context(Path(config.server.tls_cert), Path(config.server.tls_key))
        # The TLS peers we connect to (trunks, gateways, static contacts) are verified against
        # `tls_ca`, or the system's store when it is not set.
        tls_ca = Path(config.server.tls_ca) if config.server.tls_ca else None
        self.transports = TransportManager(self.guard, server_ssl, client_context(cafile=tls_ca))
        self.guard.send = self.transports.send
        self.transports.shared = self.role is not None
        self.transports.primary = self.primary
        self.ingress.transports = self.transports
        local = Local(self.transports, tokens)
        outbox = self.stack.outbox
        self.trunks = make_trunks(self._trunk_specs(), local, tokens, config.server.domain,
                                  source_for=interface_towards)
        self.trunk_status = TrunkStatusStore(self.db) if self.primary else None
        self.trunk_agent = TrunkAgent(self.trunks, outbox, local, self.save_trunk_status)
        self.calls = CallEngine(
            outbox, local, self.directory, self.registrar, self.rulebook, tokens, time.time,
            rules_clock=self.rules_clock,
            media=MediaMode.ANCHORED if config.media.anchor else MediaMode.DIRECT,
            trunks=self.trunks,
            session_expires=config.server.session_expires, min_se=config.server.min_se,
            tenants=self.tenants,
        )
        self.mwi = MessageWaiting(outbox, local, self.registrar, config.server.domain,
                                  self._voicemail_counts)
        self.core = Core(outbox, local, self.registrar, self.calls, config.server.domain,
                         time.time, self.mwi)
        from b2bua.registrar.timer import RegistrarTimer

        # Bindings expire, and NATed devices are probed (by the first worker), at their own
        # deadlines on the stack's timer.
        self.registrar_timer = RegistrarTimer(
            self.registrar, time.time, self.stack.now,
            self.core.send_keepalive if self.primary else None)
        self.stack.attach(self.transports, self.core, self.calls, self.calls,
                          coarse=(self.trunk_agent, self.registrar_timer))
        self.stack.recorder = self.recorder
        self._start_push(config)
        await self._start_media(data_dir)
        self._settings_revision = self.settings.revision()
        if self.primary:  # before any call can name them (the other workers start later)
            await self._import_announcements(config.announcements)
            for key, tenant_config in configs.items():
                if key:
                    await self._import_announcements(
                        tenant_config.announcements, service.library(key), tenant_config)
        if self.role is not None:
            self._start_channel(self.role)
            self._start_journal(self.role)
        if self.cluster is not None:
            self.cluster.attach()
        bound: list[ListenSpec] = []
        for spec in self.listen:
            if not self.primary and spec.transport != "udp":
                self.transports.advertise(spec)  # the first worker holds TCP/TLS
                continue
            address = await self.transports.listen(spec)
            bound.append(ListenSpec(spec.transport, address.host, address.port))
        if self.http:
            await self._start_http(self.http)
        if self.primary:  # one process registers to the trunks and pings them
            await self._resolve_trunks()
            self.trunk_agent.start(self.stack.now())
            self.stack.flush()
            self.save_trunk_status()
        if self.journal is not None:  # our calls and subscriptions of a previous life
            from b2bua.workers_journal import take_over

            take_over(self, self.journal)
        if self.role is not None and self.primary:
            # The others bind the very addresses bound here (a port 0 became a real one).
            argv = [*self._argv, *(f"--listen={spec}" for spec in bound)]
            self.supervisor = Supervisor(self.role, argv, self._channel_socks)
            self.supervisor.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._housekeeping()))
        self._tasks.append(asyncio.get_running_loop().create_task(self._watch_load()))
        log.info(
            "b2bua up: domain %s, %d users, %d bindings loaded%s",
            config.server.domain, len(config.users), len(self.registrar),
            f", {len(self.tenants) - 1} more tenants" if len(self.tenants) > 1 else "",
        )

    def _start_push(self, config: Config) -> None:
        """Push notifications and fork-late (docs/push.md), when [push] has a provider."""
        push = getattr(config, "push", None)
        if push is None or (push.apns is None and push.fcm is None):
            return  # no provider: the HTTP/2 and JWT clients are not loaded (8 MB of memory)
        from b2bua.push.settings import PushSettings, build_service
        from b2bua.push.waker import Waker, push_sender

        settings = PushSettings.from_config(getattr(config, "push", None))
        self.push = build_service(settings, Path(config.source).resolve().parent)
        if self.push is None:
            return
        waker = Waker(self.registrar, lambda command: None, settings.wait)
        waker.send = push_sender(self.push, waker)
        self.calls.waker = waker
        # A binding on a new flow reaches the engine through the stack's inbox: within the
        # drain of the REGISTER that made it, or in a drain of its own (another worker's).
        self.registrar.on_binding_appeared = self.stack.post
        log.info("push notifications: %s (a woken device is awaited %g s)",
                 ", ".join(settings.providers), settings.wait)

    async def _resolve_trunks(self) -> None:
        """The addresses of trunks named by host name, looked up without blocking the loop
        (UDP and TCP trunks are then reached at that address; a TLS trunk's connection looks
        its name up itself, to verify the certificate against it)."""
        loop = asyncio.get_running_loop()
        for spec in self.trunks.order:
            if spec.transport == "tls" or _is_address(spec.host):
                continue
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(spec.host, spec.target_port, type=socket.SOCK_DGRAM), 5.0)
            except (OSError, TimeoutError) as exc:
                log.warning("trunk %s: cannot resolve %s: %s", spec.name, spec.host, exc)
                continue
            if infos:
                self.trunks.addresses[spec.name] = str(infos[0][4][0])

    def save_trunk_status(self) -> None:
        """Store the trunks' status for `b2bua trunks` and the dashboard: written when it
        changed, and every 30 s at least (b2bua.trunks.store)."""
        if self.trunk_status is None:
            return
        try:
            self.trunk_status.save(self.trunks.status(), time.time())
        except Exception:  # the database is busy or gone: the next tick tries again
            log.exception("cannot store the trunks' status")

    async def _start_media(self, data_dir: Path) -> None:
        """Anchored RTP: every call's media goes through our ports (see docs/media.md)."""
        from b2bua.calls.media import MediaBridge
        from media.engine import MediaEngine
        from media.library import SoundLibrary

        config = self.config
        media = config.media
        ports = (media.rtp_ports.first, media.rtp_ports.last)
        if self.role is not None:
            ports = port_range(*ports, self.role.index, self.role.count)
        self.library = SoundLibrary(data_dir, language=config.server.language,
                                    recover=self.primary)
        self.media = MediaEngine(
            media_address(self.listen),
            ports,
            rtp_timeout=float(media.rtp_timeout),
            library=self.library,
            language=config.server.language,
        )
        await self.media.start()
        self.rtpengine = None
        if media.backend == "rtpengine":
            # rtpengine relays the calls; the built-in engine above still serves voicemail,
            # announcements and bounce prompts (docs/media.md, "rtpengine").
            from media.rtpengine_backend import RtpengineMedia

            self.rtpengine = RtpengineMedia(
                (media.rtpengine.host, media.rtpengine.port), library=self.library,
                music_dir=(data_dir / "rtpengine-music").resolve(),
                rtp_timeout=float(media.rtp_timeout),
            )
            await self.rtpengine.start()
        bridge = MediaBridge(self.media, self.library, data_dir, self.db,
                             float(media.voicemail_max_seconds), remote=self.rtpengine,
                             anchor=media.anchor)
        bridge.post = self.stack.post
        bridge.on_voicemail = self.message_left
        service = self.tenant_service
        service.library_factory = lambda path: SoundLibrary(
            path, language=config.server.language, recover=self.primary)
        bridge.tenant_library = service.library
        self.stack.media = bridge
        self.bridge = bridge
        for music in config.music if self.primary else ():
            task = asyncio.get_running_loop().create_task(self._import_music(music))
            self._tasks.append(task)
        for tenant in self.tenants if self.primary else ():
            for music in tenant.config.music if tenant.key else ():
                task = asyncio.get_running_loop().create_task(
                    self._import_music(music, service.library(tenant.key)))
                self._tasks.append(task)

    def _voicemail_counts(self, extension: str) -> tuple[int, int]:
        """New and old voice messages of a box (a scoped name, for message-waiting NOTIFYs)."""
        from b2bua.settings import list_voicemail

        try:
            messages = list_voicemail(self.db, extension)
        except Exception:  # no voicemail table yet: nothing waiting
            return 0, 0
        new = sum(1 for m in messages if not m.read)
        return new, len(messages) - new

    def message_left(self, box: str, tell_others: bool = True) -> None:
        """A voice message arrived in `box` (or was read or deleted): the phones subscribed to
        it are told, by every worker."""
        self.mwi.message_left(box)
        self.stack.flush()
        if tell_others and self.channel is not None:
            self.channel.tell_others(VOICEMAIL, box)

    def _start_channel(self, role: Role) -> None:
        """Wire this worker to the others (see b2bua.workers for what goes through)."""
        handlers = Handlers()
        own = self._channel_socks[0] if self._channel_socks else None
        channel = self.channel = Channel(role, handlers, own)
        handlers.sip = self.ingress.forwarded
        handlers.bindings = self._bindings_changed
        handlers.voicemail = lambda box: self.message_left(box, tell_others=False)
        handlers.sounds = lambda name: self.bridge.sounds_changed()
        handlers.settings = lambda text: self._check_settings()
        handlers.stats = self._peer_counters
        handlers.auth_failed = self._auth_failed
        handlers.closed = self._connection_closed
        if role.primary:
            handlers.send = self.transports.send
        else:
            self.transports.stream_relay = channel.send_via_primary
        self.registrar.on_change = lambda extension: channel.tell_others(BINDINGS, extension)
        self.registrar.on_failure = lambda host, when: channel.tell_others(
            AUTH_FAILED, f"{host} {when!r}")
        self.library.changed = lambda name: channel.tell_others(SOUNDS, name)
        self.ingress.channel = channel
        channel.start(asyncio.get_running_loop())
        log.info("worker %d of %d", role.index, role.count)

    def counters(self) -> dict[str, int]:
        """This process's counters, as /metrics names them."""
        ingress = self.ingress
        out = {
            "sip_messages_received_total": ingress.received,
            "sip_messages_dropped_total": ingress.dropped,
            # Hopeless requests the front door answers, and refusals the TU gives at once.
            "sip_stateless_replies_total": ingress.stateless_replies
            + self.layer.answered_statelessly,
            "sip_timer_wakeups_total": self.stack.timer_wakeups,
            "gc_objects_since_collection": gc.get_count()[0],
            "calls_active": len(self.calls.active),
        }
        for name, value in self.calls.counters.items():
            out[f"calls_total:{name}"] = value
        if self.push is not None:
            out.update(self.push.counters)
        waker = self.calls.waker
        if waker is not None:
            for name, value in waker.counters.items():
                out[f"push_fork_total:{name}"] = value
        # Names starting with b2bua_ go to /metrics as they are (summed over the workers).
        layer = self.layer
        out.update({
            "b2bua_sip_transactions": layer.transaction_count,
            "b2bua_sip_transactions_waiting": layer.waiting_count,
            "b2bua_sip_transactions_evicted_total": layer.evicted,
            "b2bua_sip_transactions_refused_total": layer.refused,
            "b2bua_sip_2xx_awaiting_ack": layer.pending_2xx,
            "b2bua_sip_dialogs": len(self.calls.dialogs),
            "b2bua_media_sessions": len(self.media.sessions),
            "b2bua_media_port_pairs_free": self.media.free_ports,
            "b2bua_auth_failures_total": self.registrar.counters["auth_failed"],
            "b2bua_auth_malformed_total": self.registrar.counters["auth_malformed"],
            "b2bua_lockouts_total": self.registrar.counters["lockouts"],
            "b2bua_process_resident_memory_bytes": resident_memory(),
            "b2bua_overloaded": int(self.guard.overload.overloaded),
            "b2bua_loop_busy_percent": round(self.guard.overload.busy * 100),
            "b2bua_loop_lag_ms": round(self.guard.overload.lag * 1000),
        })
        for name, value in self.guard.counters().items():
            out[f"b2bua_{name}"] = value
        return out

    def totals(self) -> dict[str, int]:
        """The counters of every worker added up (this process's alone with one worker). The
        others' are at most about a second old."""
        total = self.counters()
        for counters in self._peers_counters.values():
            for name, value in counters.items():
                total[name] = total.get(name, 0) + value
        return total

    def _peer_counters(self, index: int, text: str) -> None:
        self._peers_counters[index] = {str(k): int(v) for k, v in json.loads(text).items()}

    def _auth_failed(self, text: str) -> None:
        host, _, when = text.rpartition(" ")
        self.registrar.count_failure(host, float(when))

    def _start_journal(self, role: Role) -> None:
        """Journal this worker's answered calls and MWI subscriptions (b2bua.workers_journal)."""
        from b2bua.workers_journal import WorkerJournal

        journal = self.journal = WorkerJournal(self.db, role.index, role.count)
        journal.schedule = asyncio.get_running_loop().call_later
        self.calls.on_answered = journal.call_answered
        self.calls.on_ended = journal.call_ended
        self.mwi.on_change = journal.subscription

    def _connection_closed(self, flow: Flow) -> None:
        """The first worker's TCP/TLS connection closed: the transactions waiting on it fail
        now (its bindings are handled by the first worker, which tells us as for a REGISTER)."""
        self.layer.transport_error(flow, self.stack.now())
        self.stack.flush()

    def _bindings_changed(self, extension: str) -> None:
        self.registrar.reload(extension, time.time())
        self.stack.poll_coarse()  # their deadlines may come sooner: the timer is armed again
        self.stack.flush()

    def _check_settings(self) -> None:
        """In workers other than the first: apply the stored settings when their revision
        changed (the first worker, which serves the dashboard, stored them)."""
        if self.primary or (self._settings_task is not None and not self._settings_task.done()):
            return
        listed, moved = self.tenant_service.changed()
        if not listed and not moved:
            return
        self._settings_task = asyncio.get_running_loop().create_task(self._apply_settings())

    async def _apply_settings(self) -> None:
        try:
            self.refresh_settings()
        except Exception:  # a task boundary: keep serving the configuration in force
            log.exception("stored settings could not be applied")

    async def _import_music(self, music: Any, library: Any = None) -> None:
        try:
            await (library or self.library).ensure_music(music.name, list(music.files))
            log.info("hold music %r ready", music.name)
        except Exception as exc:  # a task boundary: a bad file must not stop the server
            log.error("hold music %r: %s", music.name, exc)

    async def _import_announcements(self, declared: Sequence[Announcement], library: Any = None,
                                    config: Config | None = None) -> None:
        """The configuration file's [[announcements]] into the sound library, where an
        `announcement` destination finds them: each file decoded once by ffmpeg (again only
        when it changed), as the language-neutral prompt of its name, which hides a shipped
        prompt of that name. A file that cannot be read is logged and skipped, never fatal.
        A prompt stored for an announcement the file no longer declares is removed (the shipped
        one plays again), or made again from the dashboard's upload of that name; so is the
        missing sound of an uploaded one."""
        library = library or self.library
        config = config or self.config
        names = {a.name for a in declared}

        async def one(name: str, file: Path, origin: str) -> None:
            try:
                sound = await library.ensure_prompt(name, file, origin)
                log.info("announcement %r ready: %s (%.1f s)", name, file, sound.duration)
            except Exception as exc:  # a bad file must not stop the server
                log.error("announcement %r: cannot use %s: %s", name, file, exc)

        await asyncio.gather(*(one(a.name, Path(a.file), "config") for a in declared))
        # The dashboard's (and `b2bua import`'s): made again when their sound is missing.
        uploads = {a.name: Path(a.file) for a in config.announcements if a.name not in names}
        stored = library.stored_prompts()
        for name, file in uploads.items():
            if stored.get(name, "config") == "config":
                await one(name, file, "upload")
        for name, origin in stored.items():
            if origin != "config" or name in names or name in uploads:
                continue
            try:
                library.delete_prompt(name)
                log.info("announcement %r is no longer in the configuration: removed", name)
            except Exception as exc:  # logged; the next start tries again
                log.error("announcement %r: cannot remove its old sound: %s", name, exc)

    def apply_config(self, config: Config, table: Any = None) -> None:
        """Install a new, already validated configuration of the top-level company live (see
        `apply_tenant`)."""
        self.apply_tenant("", config, table)

    def apply_tenant(self, key: str, config: Config, table: Any = None) -> None:
        """Install a new, already validated configuration of tenant `key` live: its rule table
        (`table`, else compiled here) is swapped, its registrar users and directory replaced,
        the trunk service told when its trunks changed. Other tenants are not touched. Calls
        in flight keep the decision they got; the next call follows the new rules."""
        from b2bua.registrar import users_from_config
        from b2bua.rules import RuleBook, compile_rules

        if table is None:
            table = compile_rules(config)  # raises before anything is swapped
        service = self.tenant_service
        served = self.tenants.get(key)
        tenant = service.tenant(key, config, served.rules if served is not None
                                else RuleBook(table))
        self.registrar.set_tenant(key, tenant.domain, users_from_config(config),
                                  tenant.limits.devices)
        self.stack.poll_coarse()  # the bindings of a user who is gone go at once
        self.stack.flush()
        tenant.rules.swap(table)
        old_specs = served.directory.trunk_specs if served is not None else ()
        self.tenants.install(tenant)
        if tenant.directory.trunk_specs != old_specs:
            self.trunk_agent.reconfigure(self._trunk_specs(), self.stack.now())
            self.stack.flush()
        if key == "":
            self.config = config
            self.directory = tenant.directory
        # What is installed now is this revision (a save installs inside its transaction).
        service.revisions[key] = service.read_revisions().get(key, 0)
        log.info("configuration of %s applied live: %d users", tenant.domain, len(config.users))
        if self.primary and self.channel is not None:
            # After the current callback: the dashboard installs a change inside the
            # transaction that stores it, and the others must read it committed.
            asyncio.get_running_loop().call_soon(self.channel.tell_others, SETTINGS)

    def remove_tenant(self, key: str) -> None:
        """Stop serving tenant `key` (deleted from the API): its new calls and registrations are
        refused from now on, its calls in progress end by themselves, its bindings go."""
        tenant = self.tenants.get(key)
        if tenant is None or key == "":
            return
        tenant.closing = True
        self.tenants.remove(key)
        self.registrar.drop_tenant(key)
        self.stack.poll_coarse()
        self.stack.flush()
        if tenant.directory.trunk_specs:
            self.trunk_agent.reconfigure(self._trunk_specs(), self.stack.now())
            self.stack.flush()
        self.tenant_service.forget(key)
        log.info("tenant %s removed (%d calls in progress end by themselves)", tenant.domain,
                 tenant.calls)
        if self.primary and self.channel is not None:
            asyncio.get_running_loop().call_soon(self.channel.tell_others, SETTINGS)

    def _trunk_specs(self) -> tuple[Any, ...]:
        """Every tenant's trunks (a tenant's named NAME@DOMAIN), for the trunk service."""
        return tuple(spec for tenant in self.tenants for spec in tenant.directory.trunk_specs)

    def refresh_settings(self) -> list[tuple[str, int]]:
        """Apply what another process stored since the last look (b2bua.tenants.service):
        tenants added, changed or removed, and each tenant whose settings revision moved.
        Returns the (tenant, revision) applied."""
        from b2bua.rules import compile_rules

        service = self.tenant_service
        listed, moved = service.changed()
        applied: list[tuple[str, int]] = []
        revisions = service.read_revisions()
        if listed:
            items, gone = service.reload_declarations()
            for key in gone:
                self.remove_tenant(key)
                applied.append((key, revisions.get(key, 0)))
            for item in items:
                if service.declared.get(item.key) != item or item.key not in self.tenants:
                    config = service.effective(item)
                    self.apply_tenant(item.key, config, compile_rules(config))
                    service.revisions[item.key] = revisions.get(item.key, 0)
                    applied.append((item.key, revisions.get(item.key, 0)))
                    if item.key in moved:
                        moved.remove(item.key)
        for key in moved:
            store = service.stores.get(key)
            if store is None:
                continue
            config = store.effective()
            self.apply_tenant(key, config, compile_rules(config))
            service.revisions[key] = revisions.get(key, 0)
            applied.append((key, revisions.get(key, 0)))
        return applied

    async def _start_http(self, address: str) -> None:
        from aiohttp import web

        from b2bua.api.app import build_app

        app = build_app(self)
        if self.cluster is not None:
            app.middlewares.append(self.cluster.http_middleware())
        host, _, port = address.rpartition(":")
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host.strip("[]"), int(port))
        await site.start()
        self.http_runner = runner
        log.info("dashboard and API on http://%s", address)

    async def _watch_load(self) -> None:
        """Tell the overload guard, ten times a second, how busy the loop was (its thread's
        CPU time over the wall time) and how late this task's own timer fired."""
        loop = asyncio.get_running_loop()
        overload = self.guard.overload
        wall, cpu = time.monotonic(), time.thread_time()
        while True:
            planned = loop.time() + LOAD_SAMPLE_INTERVAL
            await asyncio.sleep(LOAD_SAMPLE_INTERVAL)
            lag = max(0.0, loop.time() - planned)
            now_wall, now_cpu = time.monotonic(), time.thread_time()
            busy = min(1.0, (now_cpu - cpu) / max(now_wall - wall, 1e-6))
            wall, cpu = now_wall, now_cpu
            overload.sample(busy, lag, now_wall)

    def _release_memory_after_flood(self, policy: ReleasePolicy, now: float) -> None:
        """When the server is quiet again after its memory grew (a flood), hand the memory
        back to the system (see `release_memory` and `ReleasePolicy`)."""
        quiet = self.layer.transaction_count < QUIET_TRANSACTIONS
        before = resident_memory()
        if not policy.due(now, before, quiet):
            return
        release_memory()
        after = resident_memory()
        policy.released(now, after)
        log.info("memory handed back after a burst: %.0f MB -> %.0f MB in %.0f ms",
                 before / 1e6, after / 1e6, (time.monotonic() - now) * 1000)

    async def _housekeeping(self) -> None:
        """Once a second: the overload guard's report, memory handed back after a flood, the
        trunks' status, the workers. Collect cyclic garbage when it costs little, or when
        something leaks (see `serve`). Bindings expire on the stack's timer (RegistrarTimer)."""
        ticks = 0
        collected = time.monotonic()
        release = ReleasePolicy()
        while True:
            await asyncio.sleep(1.0)
            ticks += 1
            started = time.monotonic()
            for line in self.guard.report(started):
                log.warning("%s", line)
            if ticks % 5 == 0:
                self.guard.limiter.sweep(started)
            self._release_memory_after_flood(release, started)
            grown = gc.get_count()[0]
            quiet = self.layer.transaction_count < QUIET_TRANSACTIONS
            if grown > COLLECT_AFTER_GROWTH or (
                quiet and started - collected >= COLLECT_WHEN_QUIET_EVERY
            ):
                found = gc.collect()
                collected = time.monotonic()
                (log.warning if found > 10_000 or not quiet else log.debug)(
                    "cyclic garbage: %d objects found in %.2f s (%d more objects than at the "
                    "last collection)", found, collected - started, grown)
            try:
                if self.primary:
                    self.save_trunk_status()
                if self.supervisor is not None:
                    self.supervisor.check()
                if self.role is not None and not self.primary:
                    if parent_gone(self.role.group):
                        log.error("the first worker is gone: stopping")
                        self.stopped.set()
                    else:
                        assert self.channel is not None
                        self.channel.report(json.dumps(self.counters()))
                        if ticks % 5 == 0:
                            self._check_settings()  # in case a notice was lost
            except Exception:  # a task boundary: log and keep serving
                log.exception("housekeeping failed")

    async def _unregister_trunks(self, wait: float = 2.0) -> None:
        """Remove our registrations at the trunks (Expires: 0) and give the carriers `wait`
        seconds at most to confirm, so that they stop sending calls to a server that is gone."""
        if not self.primary or not hasattr(self, "trunk_agent"):
            return
        self.trunk_agent.stop(self.stack.now())
        self.stack.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while self.trunk_agent.unregistering and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.trunk_status is not None:
            try:
                self.trunk_status.clear()  # `b2bua trunks`: no server running
            except Exception:
                log.exception("cannot clear the trunks' status")
            self.trunk_status = None

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.supervisor is not None:
            await self.supervisor.stop()
        if self.channel is not None:
            channel = self.channel
            log.info("worker %d: %d calls; %d datagrams handed to other workers, %d taken from "
                     "them, %d not delivered", channel.role.index, self.calls.counters["calls"],
                     channel.forwarded, channel.received, channel.dropped)
            channel.close()
        if self.http_runner is not None:
            await self.http_runner.cleanup()
        await self._unregister_trunks()
        if self.push is not None:
            await self.push.aclose()
        await self.transports.close()
        if getattr(self, "rtpengine", None) is not None:
            await self.rtpengine.close()
        if getattr(self, "media", None) is not None:
            await self.media.close()
        self.recorder.flush()
        if self.journal is not None:
            self.journal.flush()
        if self.cluster is not None:
            await self.cluster.close()
        self.db.close()
        log.info("b2bua stopped")


def guard_settings(config: Config, tenants: Any = None) -> GuardSettings:
    """The overload guard's settings from `[overload]`; the trunks' `inbound_from` networks
    and the trunks' own addresses are trusted (a carrier may send more than a phone would),
    every tenant's (`tenants`) as the top-level company's."""
    o = config.overload
    trunks = [t for tenant in tenants for t in tenant.config.trunks] if tenants is not None \
        else list(config.trunks)
    trusted = tuple(o.trusted) + tuple(n for t in trunks for n in t.inbound_from)
    trusted += tuple(ipaddress.ip_network(t.address.host.strip("[]")) for t in trunks
                     if _is_address(t.address.host.strip("[]")))
    trusted = tuple(dict.fromkeys(trusted))
    return GuardSettings(
        source_rate=o.source_rate, block_seconds=float(o.block_seconds), action=o.action,
        trusted=trusted, busy=o.loop_busy_percent / 100, lag=o.loop_lag_ms / 1000,
        retry_after=o.retry_after,
    )


class ReleasePolicy:
    """When to hand memory back to the system (sans-IO: time and RSS are arguments).

    The first quiet moment sets a baseline. When the server is quiet and its RSS has grown
    `growth` bytes above the baseline, memory is released, then `follow_ups` more times
    `spacing` seconds apart (what a flood left with a longer life, such as the registrar's
    failure windows, ends later); the RSS after the last one is the new baseline, so memory
    that stays in use (more registrations, say) does not cause a release every time."""

    def __init__(self, growth: int = 8 << 20, follow_ups: int = 3, spacing: float = 20.0) -> None:
        self.growth = growth
        self.follow_ups = follow_ups
        self.spacing = spacing
        self.baseline: int | None = None
        self._left = 0
        self._next = 0.0

    def due(self, now: float, rss: int, quiet: bool) -> bool:
        if not quiet:
            return False
        if self.baseline is None:
            self.baseline = rss
            return False
        if self._left:
            return now >= self._next
        return rss >= self.baseline + self.growth

    def released(self, now: float, rss: int) -> None:
        self._left = self.follow_ups if self._left == 0 else self._left - 1
        self._next = now + self.spacing
        if self._left == 0:
            self.baseline = rss


def resident_memory() -> int:
    """This process's resident set size in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def release_memory() -> None:
    """Give memory freed after a flood back to the system: the parse caches are emptied, a
    full collection clears the interpreter's free lists, then the allocators return what is
    free (b2bua.allocator.give_back). On Python's own allocator a few long-lived objects made
    during the flood keep its arenas (b2bua.allocator). Meant for a quiet server: the
    collection walks every tracked object."""
    clear_caches()
    gc.collect()
    allocator.give_back()


def interface_towards(host: str) -> str | None:
    """Our address on the interface that reaches IP address `host` (found by routing: a UDP
    socket is connected, nothing is sent); None for a host name or no route."""
    if not _is_address(host):
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return str(s.getsockname()[0])
    except OSError:
        return None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def media_address(listen: list[ListenSpec]) -> str:
    """The address written into SDP: the first specific SIP listening address, else the host's
    primary address (found by routing, nothing is sent)."""
    for spec in listen:
        if spec.host not in ("0.0.0.0", "::", ""):
            return spec.host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: connect() on UDP only picks a route
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


async def serve(
    config: Config, listen: list[ListenSpec], http: str | None, role: Role | None = None,
    argv: list[str] | None = None, channel_socks: list[socket.socket] | None = None,
) -> None:
    server = Server(config, listen, http, role, argv, channel_socks)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before start: a stop asked meanwhile waits
        loop.add_signal_handler(sig, server.stopped.set)
    await server.start()
    # The cyclic garbage collector runs from housekeeping only. Under load, tens of thousands
    # of transactions wait out Timers D/J/K with their messages (about 3 million tracked
    # objects at 300 calls/s with 3 devices), and a pass over them stalls the loop: the
    # automatic passes put the p99 of call set-up at about 300 ms instead of 30, and a full
    # collection under that load takes about 3 s, enough to lose calls. The stack makes no
    # reference cycles in normal operation (tests/unit/test_call_engine_memory.py checks that
    # a call that is over leaves none), so memory is reclaimed by reference counting. A
    # collection only mops up what an error path may have left: when the server is quiet,
    # where it costs little, or when the heap grows as a leak would.
    gc.collect()
    gc.freeze()
    gc.disable()
    await server.stopped.wait()
    log.info("signal received, stopping")
    await server.stop()

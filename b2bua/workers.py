"""Several worker processes on one machine (`[server] workers = N`): one event loop per core.

Theory of operation
-------------------
Every worker binds the same UDP addresses with `SO_REUSEPORT`, and the kernel gives each
datagram to one of them by a hash of the remote and local address: everything one peer sends
lands on the same worker. That would put every call of a trunk on one worker, so a worker does
not keep what it reads: it first tells, from the raw bytes, which worker owns the message
(`route`), and hands it to that worker, with the flow it came on, through the channel between
workers (`Channel`, loopback UDP). The owner handles it as if it had read it itself.

- A new request (no tag of ours in To) belongs to the worker that the CRC-32 of its Call-ID
  names: a CANCEL follows its INVITE, and calls spread evenly even from a single trunk.
- Every token a worker makes starts with its letter (`b2bua.tokens`). A response belongs to
  the worker whose letter its branch carries (our Via, the top one). A request inside a dialog
  belongs to the worker whose letter its To tag (our tag) carries.
- When the raw bytes do not tell (an unusual layout), the message is parsed and the same rules
  are applied to the parsed message (`b2bua.transport.ingress.owner_of`).

Because all workers share the UDP address, any of them sends from it: a reply reaches a NATed
device through the pinhole it opened to that address, whichever worker sends it.

What the workers share goes through the SQLite database (WAL, so several processes read and
write it) and a message on the channel that says what changed:
- bindings: the worker that handled a REGISTER commits it, then tells the others, which read
  that extension's bindings back (`Registrar.reload`); each worker expires bindings itself;
- stored settings (dashboard, `b2bua import`): the first worker installs them, the others see
  the settings revision change and apply the same configuration;
- voice messages: the worker that recorded one tells the others, so every worker notifies the
  phones subscribed to it (MWI);
- sounds: an upload empties every worker's cache of decoded sounds;
- counters: every worker reports its own to the first once a second, and /metrics and /health
  add them up (`Server.totals`);
- RTP ports: each worker takes its own block of the configured range (`port_range`);
- lockouts: every worker counts every failed authentication, so a source is locked out by all
  of them at the same count;
- closed connections: the first worker, which holds the TCP/TLS connections, tells the others
  when one closes, and each fails at once its transactions on it (the bindings on it are
  removed or marked unreachable by the first worker, which tells the others as for a
  REGISTER);
- answered calls and MWI subscriptions: each worker journals its own, so that when it is
  started again it ends the calls it lost on both sides and takes its subscriptions back
  (b2bua.workers_journal).

The first worker (index 0, the process `b2bua run` started) also serves HTTP, the TCP and TLS
listeners and connections (other workers send on them through it), keep-alive probes and the
import of configured hold music; it makes every worker's channel socket, starts the other
workers, and starts any that dies again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from b2bua.sip.flow import Flow

log = logging.getLogger("b2bua.workers")

BUFFER = 4 * 1024 * 1024
MAX_FRAME = 65_535 + 512
FRAME_BUDGET = 60_000  # bytes of datagrams batched in one frame (a UDP payload is < 65,508)
STOP_GRACE = 5.0  # seconds a worker has to stop before it is killed
RESPAWN_DELAY = 1.0  # a worker that exits is started again after this...
RESPAWN_MAX_DELAY = 60.0  # ...doubled, up to this, while it keeps exiting within
STABLE_AFTER = 30.0  # this many seconds of its start

# Frame kinds: one byte, then the payload.
SIP = b"S"  # a datagram received by another worker: flow line, then the bytes
SEND = b"T"  # bytes to send on a TCP/TLS flow (to the first worker, which holds connections)
BINDINGS = b"B"  # an extension's bindings changed in the store
VOICEMAIL = b"V"  # a voice message was left in an extension's box
SOUNDS = b"L"  # stored sounds changed
SETTINGS = b"C"  # stored settings changed
STATS = b"K"  # a worker's counters (JSON), to the first worker once a second
AUTH_FAILED = b"X"  # an authentication failed ("HOST TIME")
CLOSED = b"Z"  # a TCP/TLS connection closed (its flow line), from the first worker


@dataclass(frozen=True, slots=True)
class Role:
    """This process's place: worker `index` of `count`; `group` is the first worker's PID (the
    parent of the others); `ports` are the loopback UDP ports of every worker's channel socket,
    and `fd` this worker's (inherited from the first worker, which made them all)."""

    index: int
    count: int
    group: int
    ports: tuple[int, ...]
    fd: int

    @property
    def primary(self) -> bool:
        return self.index == 0

    @classmethod
    def parse(cls, text: str) -> Role:
        """`INDEX:COUNT:GROUP:FD:PORT,PORT...`, as the first worker passes it to the others."""
        index, count, group, fd, ports = text.split(":")
        role = cls(int(index), int(count), int(group), tuple(int(p) for p in ports.split(",")),
                   int(fd))
        if not 0 <= role.index < role.count or len(role.ports) != role.count:
            raise ValueError(f"worker {text!r}: index or ports out of range")
        return role

    def __str__(self) -> str:
        ports = ",".join(str(p) for p in self.ports)
        return f"{self.index}:{self.count}:{self.group}:{self.fd}:{ports}"

    def of(self, index: int, fd: int) -> Role:
        return Role(index, self.count, self.group, self.ports, fd)


def channel_sockets(count: int) -> list[socket.socket]:
    """The channel sockets of `count` workers, made by the first one: UDP on 127.0.0.1, whose
    buffers hold bursts (a Unix datagram socket queues only `net.unix.max_dgram_qlen`
    datagrams, 10 by default)."""
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, BUFFER)
            except OSError:
                pass
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    return socks


def primary_role(count: int, socks: list[socket.socket]) -> Role:
    ports = tuple(s.getsockname()[1] for s in socks)
    return Role(0, count, os.getpid(), ports, socks[0].fileno())


_FIRST_MARK = ord("g")  # b2bua.tokens: worker 0's letter
_BRANCH = b";branch=z9hG4bK"
_TO = re.compile(rb"\n(?:to|t)[ \t]*:([^\r\n]*)")
_CALL_ID = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)")
HERE = -1  # `route`: whoever read it handles it (nobody's mark: a stray response)


def route(data: bytes, count: int) -> int | None:
    """The worker that owns a datagram, told from its bytes: the letter after our branch's
    magic cookie (a response), the letter of our To tag (a request in a dialog), else the
    CRC-32 of the Call-ID; `HERE` for a response with no mark of ours; None when the bytes do
    not tell (parse it, then `b2bua.transport.ingress.owner_of`)."""
    if data.startswith(b"SIP/2.0 "):
        at = data.find(_BRANCH)
        if at < 0 or at + 15 >= len(data):
            return None
        index = data[at + 15] - _FIRST_MARK
        return index if 0 <= index < count else HERE
    end = data.find(b"\r\n\r\n")
    head = data[: end + 2] if end >= 0 else data
    low = head.lower()  # same length: offsets in `low` are offsets in `head`
    to = _TO.search(low)
    if to is None:
        return None
    # the tag parameter follows the address: after its '>' when it has one (a quoted display
    # name may hold anything)
    close = low.rfind(b">", to.start(1), to.end(1))
    tag = low.find(b";tag=", close if close >= 0 else to.start(1), to.end(1))
    if tag >= 0 and tag + 5 < to.end(1):
        index = head[tag + 5] - _FIRST_MARK
        if 0 <= index < count:
            return index
    call_id = _CALL_ID.search(low)
    if call_id is None:
        return None
    value = head[call_id.start(1) : call_id.end(1)].rstrip()
    return zlib.crc32(value) % count if value else None


def call_id_owner(call_id: str, count: int) -> int:
    """The worker a new request with this Call-ID belongs to (as `route` computes it)."""
    return zlib.crc32(call_id.encode("utf-8", "surrogateescape")) % count


def port_range(first: int, last: int, index: int, count: int) -> tuple[int, int]:
    """Worker `index`'s share of the RTP ports `first`-`last`: a block of whole (even, odd)
    pairs, disjoint from the other workers' (each would otherwise try ports another holds,
    in the same order, and fail to bind them). A range too small to share stays whole."""
    start = first + (first % 2)
    per = (last - start + 1) // 2 // count
    if per < 1:
        return first, last
    low = start + 2 * per * index
    return low, low + 2 * per - 1


def encode_flow(flow: Flow) -> bytes:
    cid = "-" if flow.connection_id is None else str(flow.connection_id)
    lhost = "-" if flow.local_host is None else flow.local_host
    lport = "-" if flow.local_port is None else str(flow.local_port)
    return f"{flow.transport} {flow.host} {flow.port} {cid} {lhost} {lport}\n".encode()


def decode_flow(line: bytes) -> Flow:
    transport, host, port, cid, lhost, lport = line.decode().split(" ")
    return Flow(
        sys.intern(transport), host, int(port),
        None if cid == "-" else int(cid),
        None if lhost == "-" else lhost,
        None if lport == "-" else int(lport),
    )


class Handlers:
    """What a worker does with each kind of frame (the server sets what it serves)."""

    def __init__(self) -> None:
        self.sip: Callable[[bytes, Flow], None] = _ignore_flow
        self.send: Callable[[bytes, Flow], None] = _ignore_flow
        self.bindings: Callable[[str], None] = _ignore_text
        self.voicemail: Callable[[str], None] = _ignore_text
        self.sounds: Callable[[str], None] = _ignore_text
        self.settings: Callable[[str], None] = _ignore_text
        self.stats: Callable[[int, str], None] = _ignore_stats
        self.auth_failed: Callable[[str], None] = _ignore_text
        self.closed: Callable[[Flow], None] = _ignore_closed


def _ignore_flow(data: bytes, flow: Flow) -> None:
    pass


def _ignore_text(text: str) -> None:
    pass


def _ignore_stats(index: int, text: str) -> None:
    pass


def _ignore_closed(flow: Flow) -> None:
    pass


class Channel:
    """One loopback UDP socket per worker, for frames between workers. Only frames from the
    other workers' ports are taken. Sends never block: a frame that does not fit in a full
    buffer is dropped and counted (SIP retransmits; a lost change notice is repaired by the
    periodic re-read of the settings revision)."""

    def __init__(self, role: Role, handlers: Handlers, sock: socket.socket | None = None) -> None:
        self.role = role
        self.handlers = handlers
        if sock is None:
            sock = socket.socket(fileno=role.fd)
        sock.setblocking(False)
        self.sock = sock
        self._buffer = memoryview(bytearray(MAX_FRAME))
        self._peers = [("127.0.0.1", port) for port in role.ports]
        self._known = frozenset(self._peers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, list[bytes]] = {}  # worker -> frame parts not sent yet
        self._sizes: dict[int, int] = {}
        self.forwarded = 0  # datagrams handed to other workers
        self.received = 0  # datagrams and notices taken from them
        self.dropped = 0  # frames that could not be sent

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()

    # -- sending ---------------------------------------------------------------------------
    def _send(self, index: int, frame: bytes) -> None:
        try:
            self.sock.sendto(frame, self._peers[index])
        except (BlockingIOError, InterruptedError, ConnectionRefusedError):
            self.dropped += 1  # full, or that worker is (re)starting
        except OSError as exc:
            self.dropped += 1
            log.debug("worker channel to %d: %s", index, exc)

    def forward(self, index: int, data: bytes, flow: Flow) -> None:
        """A datagram that worker `index` owns, with the flow it came on. Datagrams for the
        same worker read in one batch go in one frame, sent when the batch is over (one
        system call and one wake-up of that worker for several datagrams under load)."""
        self.forwarded += 1
        item = encode_flow(flow) + b"%d\n" % len(data) + data
        pending = self._pending
        if not pending and self._loop is not None:
            self._loop.call_soon(self._flush)
        batch = pending.get(index)
        if batch is None:
            pending[index] = batch = [SIP]
            self._sizes[index] = 1
        elif self._sizes[index] + len(item) > FRAME_BUDGET:
            self._send(index, b"".join(batch))
            batch[1:] = []
            self._sizes[index] = 1
        batch.append(item)
        self._sizes[index] += len(item)
        if self._loop is None:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for index, batch in pending.items():
            self._send(index, b"".join(batch))

    def send_via_primary(self, data: bytes, flow: Flow) -> None:
        """Bytes for a TCP/TLS flow: the first worker holds the connections."""
        self._send(0, SEND + encode_flow(flow) + data)

    def report(self, text: str) -> None:
        """This worker's counters, to the first worker (which serves /metrics)."""
        self._send(0, STATS + str(self.role.index).encode() + b" " + text.encode())

    def tell_closed(self, flow: Flow) -> None:
        """In the first worker: a TCP/TLS connection closed. Every worker fails at once what
        it had on that flow (a transaction waiting for an answer on it), as the first does."""
        self.tell_others(CLOSED, encode_flow(flow).decode())

    def tell_others(self, kind: bytes, text: str = "") -> None:
        frame = kind + text.encode()
        for index in range(self.role.count):
            if index != self.role.index:
                self._send(index, frame)

    # -- receiving -------------------------------------------------------------------------
    def _readable(self) -> None:
        recv_into = self.sock.recvfrom_into
        buffer = self._buffer  # why a kept buffer: b2bua.transport.udp
        known = self._known
        for _ in range(64):
            try:
                size, sender = recv_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # ICMP unreachable from a worker that was restarting
            if sender not in known:
                continue
            frame = buffer[:size].tobytes()
            try:
                self._dispatch(frame)
            except Exception:  # a task boundary: one bad frame must not stop the worker
                log.exception("worker channel: frame %r failed", frame[:1])

    def _dispatch(self, frame: bytes) -> None:
        kind, body = frame[:1], frame[1:]
        handlers = self.handlers
        if kind == SIP:
            # flow line, length line, datagram; again and again
            sip = handlers.sip
            at, end = 1, len(frame)
            while at < end:
                eol = frame.index(b"\n", at)
                flow = decode_flow(frame[at:eol])
                eon = frame.index(b"\n", eol + 1)
                at = eon + 1 + int(frame[eol + 1 : eon])
                self.received += 1
                try:
                    sip(frame[eon + 1 : at], flow)
                except Exception:  # a task boundary: the next datagrams still count
                    log.exception("worker channel: a datagram from %s failed", flow)
            return
        self.received += 1
        if kind == SEND:
            end = body.index(b"\n")
            handlers.send(body[end + 1 :], decode_flow(body[:end]))
            return
        if kind == CLOSED:
            handlers.closed(decode_flow(body.rstrip(b"\n")))
            return
        text = body.decode()
        if kind == STATS:
            index, _, counters = text.partition(" ")
            handlers.stats(int(index), counters)
            return
        notice = {BINDINGS: handlers.bindings, VOICEMAIL: handlers.voicemail,
                  SOUNDS: handlers.sounds, SETTINGS: handlers.settings,
                  AUTH_FAILED: handlers.auth_failed}.get(kind)
        if notice is None:
            log.warning("worker channel: unknown frame kind %r", kind)
            return
        notice(text)


class Supervisor:
    """In the first worker: starts workers 1..N-1 as `b2bua run --worker ROLE` with the same
    configuration and the addresses actually bound, each with its channel socket, starts any
    that dies again, and stops them all (SIGTERM, then SIGKILL after `STOP_GRACE`)."""

    def __init__(self, role: Role, argv: Sequence[str], socks: list[socket.socket]) -> None:
        self.role = role
        self.argv = list(argv)  # the command line without --worker
        self.socks = socks  # every worker's channel socket, kept open for restarts
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.started_at: dict[int, float] = {}
        self.exited_at: dict[int, float] = {}  # seen exited, not started again yet
        self.delays: dict[int, float] = {}  # wait before the next start (backs off)
        self.respawns = 0
        self.stopping = False

    def start(self) -> None:
        for index in range(1, self.role.count):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        fd = self.socks[index].fileno()
        role = self.role.of(index, fd)
        self.procs[index] = subprocess.Popen([*self.argv, f"--worker={role}"], pass_fds=(fd,))
        self.started_at[index] = time.monotonic()
        log.info("worker %d started (pid %d)", index, self.procs[index].pid)

    def check(self) -> None:
        """Start again any worker that exited (called once a second)."""
        if self.stopping:
            return
        for index, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            now = time.monotonic()
            exited = self.exited_at.setdefault(index, now)
            delay = self.delays.get(index, RESPAWN_DELAY)
            if now - exited < delay:
                continue
            log.error("worker %d (pid %d) exited with status %s: starting it again",
                      index, proc.pid, code)
            lived = exited - self.started_at[index]
            self.delays[index] = RESPAWN_DELAY if lived >= STABLE_AFTER else min(
                2 * delay, RESPAWN_MAX_DELAY)
            del self.exited_at[index]
            self.respawns += 1
            self._spawn(index)

    async def stop(self) -> None:
        self.stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for index, proc in self.procs.items():
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if proc.poll() is None:
                log.error("worker %d did not stop: killed", index)
                proc.kill()
                proc.wait()


def parent_gone(parent: int) -> bool:
    """In workers 1..N-1: the first worker died (we were re-parented)."""
    return os.getppid() != parent

"""In-memory UAC - B2BUA - UAS triangles: the whole stack, no sockets.

`MemoryNetwork` stands in for the transports: what the stack sends is delivered to scripted
user agents keyed by address, and what they answer goes back into `stack.message_received`.
The B2BUA side is the real thing (stack, transaction layer, core, call engine, registrar, rules);
only the wire is replaced. Used by fast call-flow tests and by the CPU-per-call benchmark.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response, make_response, parse_message
from b2bua.transport.manager import LocalAddress

B2BUA = ("127.0.0.1", 5060)

SDP = (
    b"v=0\r\no=ua 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


class MemoryNetwork:
    """The transports' interface (`local_for`, `send`) over an in-memory queue."""

    def __init__(self) -> None:
        self.agents: dict[tuple[str, int], Agent] = {}
        self.queue: deque[tuple[bytes, Flow]] = deque()  # from agents to the B2BUA
        self.sent = 0
        self.stack: Any = None
        self.agent_cpu = 0.0  # CPU seconds spent in the scripted agents (not the B2BUA's)

    def local_for(self, flow: Flow) -> LocalAddress:
        return LocalAddress(flow.transport, *B2BUA)

    def send(self, data: bytes, flow: Flow) -> None:
        self.sent += 1
        agent = self.agents.get((flow.host, flow.port))
        if agent is not None:
            t0 = time.process_time()
            agent.receive(parse_message(data))
            self.agent_cpu += time.process_time() - t0

    def deliver(self, data: bytes, source: tuple[str, int]) -> None:
        self.queue.append((data, Flow("udp", source[0], source[1], None, *B2BUA)))

    def pump(self) -> int:
        """Feed queued datagrams to the stack until nothing is left; returns how many."""
        n = 0
        while self.queue:
            data, flow = self.queue.popleft()
            self.stack.message_received(data, flow)
            n += 1
        return n

    async def settle(self, rounds: int = 50) -> None:
        """Pump, and let the loop run callbacks (timers due now), until quiet."""
        for _ in range(rounds):
            if not self.pump():
                await asyncio.sleep(0)
                if not self.queue:
                    return


@dataclass(eq=False)
class Agent:
    """A scripted user agent at `address`; `behaviour` decides what it answers."""

    network: MemoryNetwork
    address: tuple[str, int]
    behaviour: str = "answer"  # answer | lose | busy | decline | silent
    received: list[Request | Response] = field(default_factory=list)
    tag: str = field(default_factory=lambda: secrets.token_hex(4))

    def __post_init__(self) -> None:
        self.network.agents[self.address] = self

    def send(self, message: Request | Response) -> None:
        self.network.deliver(bytes(message), self.address)

    def receive(self, message: Request | Response) -> None:
        self.received.append(message)
        if isinstance(message, Response):
            return
        method = message.method
        if method == "INVITE" and message.to.tag is None:
            if self.behaviour == "silent":
                return
            if self.behaviour == "busy":
                self.send(make_response(message, 486, to_tag=self.tag))
                return
            self.send(make_response(message, 180, to_tag=self.tag))
            if self.behaviour == "answer":
                self.send(
                    make_response(
                        message,
                        200,
                        to_tag=self.tag,
                        headers=[
                            ("Contact", f"<sip:ua@{self.address[0]}:{self.address[1]}>"),
                            ("Content-Type", "application/sdp"),
                        ],
                        body=SDP,
                    )
                )
            elif self.behaviour == "decline":
                self.send(make_response(message, 603, to_tag=self.tag))
            self._invite = message
        elif method == "CANCEL":
            self.send(make_response(message, 200, to_tag=self.tag))
            invite = getattr(self, "_invite", None)
            if invite is not None:
                self.send(make_response(invite, 487, to_tag=self.tag))
        elif method in ("BYE", "INFO", "UPDATE", "OPTIONS") or (method == "INVITE"):
            self.send(make_response(message, 200, to_tag=self.tag))

    def requests(self, method: str) -> list[Request]:
        return [m for m in self.received if isinstance(m, Request) and m.method == method]

    def responses(self) -> list[Response]:
        return [m for m in self.received if isinstance(m, Response)]


_calls = itertools.count(1)


def caller_invite(target: str, source: tuple[str, int], caller: str = "0611223344") -> Request:
    n = next(_calls)
    host, port = source
    return Request(
        "INVITE",
        f"sip:{target}@{B2BUA[0]}:{B2BUA[1]}",
        [
            ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-mem-{n};rport"),
            ("Max-Forwards", "70"),
            ("From", f'"Caller" <sip:{caller}@{host}>;tag=c{n}'),
            ("To", f"<sip:{target}@{B2BUA[0]}>"),
            ("Call-ID", f"mem-{n}-{time.monotonic_ns()}"),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:caller@{host}:{port}>"),
            ("Content-Type", "application/sdp"),
        ],
        SDP,
    )


def ack_and_bye(invite: Request, ok: Response, source: tuple[str, int]) -> tuple[Request, Request]:
    """The caller's ACK to a 200 and its BYE, within the dialog the 200 made."""
    host, port = source
    to_value = ok.headers.get("to") or ""
    common = [
        ("Max-Forwards", "70"),
        ("From", invite.headers.get("from") or ""),
        ("To", to_value),
        ("Call-ID", invite.call_id),
    ]
    target = ok.contacts[0].uri if ok.contacts else invite.request_uri
    ack = Request(
        "ACK",
        target,
        [("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{secrets.token_hex(6)}"), *common,
         ("CSeq", "1 ACK")],
    )
    bye = Request(
        "BYE",
        target,
        [("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{secrets.token_hex(6)}"), *common,
         ("CSeq", "2 BYE")],
    )
    return ack, bye


async def build_b2bua(config: Any, network: MemoryNetwork,
                      wall_clock: Callable[[], float] = time.time,
                      data_dir: str | None = None, media: bool = False) -> Any:
    """The real B2BUA layers over `network`, with their SQLite store in `data_dir` (by default a
    new temporary folder, removed when the engine is collected or the process exits).

    `media=True` anchors calls in the built-in relay as `b2bua run` does (real RTP sockets on
    127.0.0.1; `engine.media_hook.engine` is the MediaEngine, to close)."""
    import shutil
    import tempfile
    import weakref

    from b2bua.calls.directory import Directory
    from b2bua.calls.engine import CallEngine
    from b2bua.calls.records import CallRecorder
    from b2bua.core import Core
    from b2bua.registrar import build_registrar
    from b2bua.rules import RuleBook, compile_rules
    from b2bua.sip.transaction import TimerConfig, TransactionLayer
    from b2bua.stack import SipStack
    from b2bua.store import open_database

    directory = data_dir or tempfile.mkdtemp(prefix="b2bua-mem-")
    db = open_database(directory)

    registrar = build_registrar(config, db, now=wall_clock())
    layer = TransactionLayer(TimerConfig(), random_token=lambda: secrets.token_hex(8))
    stack = SipStack(layer)
    calls = CallEngine(stack, network, Directory(config), registrar,
                       RuleBook(compile_rules(config)), CallRecorder(db), wall_clock=wall_clock)
    core = Core(stack, registrar, calls, config.server.domain, wall_clock=wall_clock)
    stack.attach(network, core)  # type: ignore[arg-type]
    network.stack = stack
    if media:
        from pathlib import Path

        from b2bua.calls.media import MediaBridge
        from media.engine import MediaEngine
        from media.library import SoundLibrary

        library = SoundLibrary(Path(directory))
        relay = MediaEngine("127.0.0.1", (40000, 44999), library=library)
        await relay.start()
        bridge = MediaBridge(relay, library, Path(directory), db, 60.0)
        bridge.calls = calls
        calls.media_hook = bridge
    if not data_dir:
        weakref.finalize(calls, shutil.rmtree, directory, True)
    return calls

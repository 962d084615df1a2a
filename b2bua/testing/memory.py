"""In-memory UAC - B2BUA - UAS triangles: the whole stack, no sockets.

`MemoryNetwork` stands in for the transports: what the stack sends is delivered to scripted
user agents keyed by address, and what they answer goes back into the front door
(`Ingress.message_received`).
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

from b2bua.calls.engine import CallEngine
from b2bua.core import Core
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response, make_response, parse_message
from b2bua.stack import SipStack
from b2bua.testing.clock import FakeClock
from b2bua.tokens import TokenSource
from b2bua.transport.ingress import Ingress
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
        self.ingress: Any = None  # the B2BUA's front door (b2bua.transport.ingress.Ingress)
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
            self.ingress.message_received(data, flow)
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


@dataclass(eq=False)
class B2bua:
    """The real B2BUA layers, wired as `b2bua run` wires them, over a `MemoryNetwork`."""

    stack: SipStack
    ingress: Ingress
    engine: CallEngine
    core: Core
    registrar: Any
    db: Any
    clock: FakeClock | None = None
    network: MemoryNetwork | None = None
    bridge: Any = None  # the media port (b2bua.calls.media.MediaBridge), with media=True
    tokens: TokenSource = field(default_factory=TokenSource)
    trunks: Any = None  # b2bua.trunks.agent.TrunkAgent (started by the test: `start_trunks`)

    def start_trunks(self) -> None:
        """Register to the trunks and start their pings, as `b2bua run` does after start-up."""
        self.trunks.start(self.stack.now())
        self.stack.flush()

    @property
    def counters(self) -> dict[str, int]:
        return self.engine.counters

    @property
    def active(self) -> dict[str, Any]:
        return self.engine.calls

    def run_until(self, when: float) -> None:
        """Fake clock: serve every deadline up to `when`, each at its own instant, with what
        the agents send meanwhile delivered before the next one."""
        assert self.clock is not None
        stack = self.stack
        network = self.network
        if network is not None:
            network.pump()
        while (deadline := stack.next_deadline()) is not None and deadline <= when:
            self.clock.jump(max(deadline, self.clock.now()))
            stack.handle_deadline(self.clock.now())
            if network is not None:
                network.pump()
        self.clock.jump(max(when, self.clock.now()))

    def advance(self, seconds: float) -> None:
        assert self.clock is not None
        self.run_until(self.clock.now() + seconds)


def build_b2bua(config: Any, network: MemoryNetwork,
                wall_clock: Callable[[], float] = time.time,
                data_dir: str | None = None, media: Any = None,
                clock: FakeClock | None = None, seed: bytes | None = None) -> B2bua:
    """The real B2BUA layers over `network`, with their SQLite store in `data_dir` (by default a
    new temporary folder, removed when the B2BUA is collected or the process exits).

    `clock`: a fake clock the stack runs on (no event loop needed: the test serves deadlines
    with `run_until`); by default the running loop's. `media`: a media port (an object with
    `execute(command)`, wired to post its answers back); `True` anchors calls in the built-in
    relay as `b2bua run` does (real RTP sockets on 127.0.0.1; start it with `start_media`).
    """
    import shutil
    import tempfile
    import weakref

    from b2bua.addressing import Local
    from b2bua.calls.directory import Directory
    from b2bua.calls.model import MediaMode
    from b2bua.calls.mwi import MessageWaiting
    from b2bua.calls.records import CallRecorder
    from b2bua.calls.trunking import make_trunks
    from b2bua.registrar import build_registrar
    from b2bua.rules import RuleBook, compile_rules
    from b2bua.sip.transaction import TimerConfig, TransactionLayer
    from b2bua.store import open_database
    from b2bua.trunks.agent import TrunkAgent

    directory = data_dir or tempfile.mkdtemp(prefix="b2bua-mem-")
    db = open_database(directory)
    tokens = TokenSource(seed)
    registrar = build_registrar(config, db, now=wall_clock())
    layer = TransactionLayer(TimerConfig(), random_token=lambda: tokens.token(8))
    stack = SipStack(layer, clock=clock)
    ingress = Ingress(stack, tokens)
    ingress.transports = network
    local = Local(network, tokens)
    mode = MediaMode.NONE if media is None or media is False else (
        MediaMode.ANCHORED if getattr(media, "anchor", True) else MediaMode.DIRECT)
    directory_ = Directory(config)
    trunks = make_trunks(directory_.trunk_specs, local, tokens, config.server.domain)
    agent = TrunkAgent(trunks, stack.outbox, local)
    engine = CallEngine(stack.outbox, local, directory_, registrar,
                        RuleBook(compile_rules(config)), tokens, wall_clock, media=mode,
                        trunks=trunks)
    mwi = MessageWaiting(stack.outbox, local, registrar, config.server.domain,
                         lambda box: (0, 0), wall_clock)
    core = Core(stack.outbox, local, registrar, engine, config.server.domain, wall_clock, mwi)
    from b2bua.registrar.timer import RegistrarTimer

    registrar_timer = RegistrarTimer(registrar, wall_clock, stack.now, core.send_keepalive)
    stack.attach(network, core, engine, engine, coarse=(agent, registrar_timer))
    stack.recorder = CallRecorder(db)
    network.ingress = ingress
    b2bua = B2bua(stack, ingress, engine, core, registrar, db, clock, network, tokens=tokens,
                  trunks=agent)
    if media is True:
        from pathlib import Path

        from b2bua.calls.media import MediaBridge
        from media.engine import MediaEngine
        from media.library import SoundLibrary

        library = SoundLibrary(Path(directory))
        relay = MediaEngine("127.0.0.1", (40000, 44999), library=library)
        bridge = MediaBridge(relay, library, Path(directory), db, 60.0)
        bridge.post = stack.post
        b2bua.bridge = bridge
        stack.media = bridge
    elif media is not None and media is not False:
        b2bua.bridge = media
        stack.media = media
        if hasattr(media, "post"):
            media.post = stack.post
    if not data_dir:
        weakref.finalize(b2bua, shutil.rmtree, directory, True)
    return b2bua


async def start_media(b2bua: B2bua) -> None:
    """Start the built-in relay of a B2BUA built with `media=True`."""
    await b2bua.bridge.engine.start()


@dataclass(eq=False)
class Phone:
    """A user agent the test drives: it answers what a phone answers by itself (CANCEL: 200 and
    487; BYE: 200; in-dialog requests: 200, with SDP for an offer), and leaves the answers to a
    new INVITE to the test (`respond`)."""

    network: MemoryNetwork
    address: tuple[str, int]
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    received: list[Request | Response] = field(default_factory=list)
    invites: list[Request] = field(default_factory=list)  # new INVITEs, in order
    finals: dict[str, int] = field(default_factory=dict)  # Call-ID -> our final status
    answered: set[tuple[str, str]] = field(default_factory=set)  # (Call-ID, our tag) of a 2xx
    confirmed: set[tuple[str, str]] = field(default_factory=set)  # ... ACKed
    ended: set[tuple[str, str]] = field(default_factory=set)  # ... ended by a BYE
    answer_in_dialog: bool = True
    sent: list[Request] = field(default_factory=list)
    cseqs: dict[str, int] = field(default_factory=dict)  # Call-ID -> our last in-dialog CSeq

    def __post_init__(self) -> None:
        self.network.agents[self.address] = self

    def send(self, message: Request | Response) -> None:
        if isinstance(message, Request):
            self.sent.append(message)
        self.network.deliver(bytes(message), self.address)

    def receive(self, message: Request | Response) -> None:
        self.received.append(message)
        if isinstance(message, Response):
            if message.cseq.method == "INVITE" and message.status >= 300:
                # Our INVITE client transaction ACKs a failure (RFC 3261 §17.1.1.3).
                from b2bua.sip.transaction import make_ack

                invite = next((r for r in self.sent if r.method == "INVITE"
                               and r.call_id == message.call_id
                               and r.cseq.number == message.cseq.number), None)
                if invite is not None:
                    self.network.deliver(bytes(make_ack(invite, message)), self.address)
            return
        method = message.method
        if method == "INVITE" and message.to.tag is None:
            if all(i.call_id != message.call_id for i in self.invites):
                self.invites.append(message)
            return
        if method == "CANCEL":
            self.send(make_response(message, 200, to_tag=self.tag))
            invite = self.invite_of(message.call_id)
            if invite is not None and message.call_id not in self.finals:
                self.respond(487, invite)
        elif method == "ACK":
            if message.to.tag:
                self.confirmed.add((message.call_id, message.to.tag))
        elif method == "BYE":
            self.ended.add((message.call_id, message.to.tag or ""))
            self.send(make_response(message, 200))
        elif self.answer_in_dialog:
            body = SDP if method in ("INVITE", "UPDATE") and message.body else b""
            headers = [("Contact", f"<sip:ua@{self.address[0]}:{self.address[1]}>")]
            if body:
                headers.append(("Content-Type", "application/sdp"))
            self.send(make_response(message, 200, headers=headers, body=body))

    def invite_of(self, call_id: str) -> Request | None:
        return next((i for i in self.invites if i.call_id == call_id), None)

    def respond(self, status: int, invite: Request | None = None, tag: str | None = None,
                body: bytes | None = None) -> Response:
        """Answer `invite` (by default the last one) with `status`, from tag `tag`."""
        invite = invite or self.invites[-1]
        headers = [("Contact", f"<sip:ua@{self.address[0]}:{self.address[1]}>")]
        if body is None:
            body = SDP if status in (183, 200) else b""
        if body:
            headers.append(("Content-Type", "application/sdp"))
        response = make_response(invite, status, to_tag=tag or self.tag, headers=headers,
                                  body=body)
        if status >= 200 and invite.call_id not in self.finals:
            self.finals[invite.call_id] = status
        if 200 <= status < 300:
            self.answered.add((invite.call_id, tag or self.tag))
        self.send(response)
        return response

    def requests(self, method: str) -> list[Request]:
        return [m for m in self.received if isinstance(m, Request) and m.method == method]

    def responses(self) -> list[Response]:
        return [m for m in self.received if isinstance(m, Response)]

    def _next_cseq(self, call_id: str, cseq: int | None) -> int:
        number = cseq if cseq is not None else self.cseqs.get(call_id, 0) + 1
        self.cseqs[call_id] = max(number, self.cseqs.get(call_id, 0))
        return number

    def hang_up(self, invite: Request | None = None, tag: str | None = None) -> None:
        """BYE on the dialog our 2xx to `invite` made (we are its UAS)."""
        invite = invite or self.invites[-1]
        tag = tag or self.tag
        self.in_dialog("BYE", invite, tag)
        self.ended.add((invite.call_id, tag))

    def open_dialogs(self) -> set[tuple[str, str]]:
        """Dialogs our 2xx made that nobody ended."""
        return self.answered - self.ended

    def in_dialog(self, method: str, invite: Request | None = None, tag: str | None = None,
                  headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                  cseq: int | None = None) -> Request:
        """A request on the dialog our 2xx to `invite` made (we are its UAS); CSeq: the next
        of ours on that dialog unless given."""
        invite = invite or self.invites[-1]
        tag = tag or self.tag
        cseq = self._next_cseq(invite.call_id, cseq)
        host, port = self.address
        contacts = invite.contacts
        target = contacts[0].uri if contacts else invite.from_.uri
        request = Request(method, target, [
            ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{secrets.token_hex(6)}"),
            ("Max-Forwards", "70"),
            ("From", f"{invite.headers.get('to')};tag={tag}"),
            ("To", invite.headers.get("from") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:ua@{host}:{port}>"),
            *(headers or []),
        ], body)
        self.send(request)
        return request

    def call(self, to: str, username: str, password: str,
             headers: list[tuple[str, str]] | None = None, body: bytes = SDP,
             domain: str = "pbx.test") -> Request:
        """An INVITE from this phone as a device: sent, challenged (407), sent again with its
        credentials. Returns the INVITE that carried them (the network is pumped)."""
        from b2bua.trunks.digest import Credentials, authorization, choose_challenges

        host, port = self.address
        call_id = f"dev-{secrets.token_hex(6)}"
        uri = f"sip:{to}@{B2BUA[0]}:{B2BUA[1]}"

        def invite(cseq: int, extra: list[tuple[str, str]]) -> Request:
            return Request("INVITE", uri, [
                ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{secrets.token_hex(6)}"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{username}@{domain}>;tag={self.tag}"),
                ("To", f"<sip:{to}@{domain}>"),
                ("Call-ID", call_id),
                ("CSeq", f"{cseq} INVITE"),
                ("Contact", f"<sip:{username}@{host}:{port}>"),
                ("Content-Type", "application/sdp"),
                *(headers or []), *extra,
            ], body)

        self.send(invite(1, []))
        self.network.pump()
        challenge = next(r for r in self.responses()
                         if r.call_id == call_id and r.status == 407)
        (chosen,) = choose_challenges([], challenge.headers.get_all("proxy-authenticate"))
        name, value = authorization(chosen, Credentials(username, password), "INVITE", uri,
                                    secrets.token_hex(4))
        second = invite(2, [(name, value)])
        self.send(second)
        self.network.pump()
        return second

    def ack_2xx(self, invite: Request) -> None:
        """ACK the 2xx this phone received for `invite` (we are its UAC)."""
        ok = next(r for r in self.responses()
                  if r.call_id == invite.call_id and r.status == 200
                  and r.cseq.method == "INVITE")
        host, port = self.address
        target = ok.contacts[0].uri if ok.contacts else invite.request_uri
        self.send(Request("ACK", target, [
            ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{secrets.token_hex(6)}"),
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("from") or ""),
            ("To", ok.headers.get("to") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.number} ACK"),
        ]))
        mine = (invite.call_id, invite.from_.tag or "")  # a dialog is ours by our own tag
        self.answered.add(mine)
        self.confirmed.add(mine)

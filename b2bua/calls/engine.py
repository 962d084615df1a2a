"""The call engine: one inbound leg, a routing decision, branches, then a bridged call.

Theory of operation
-------------------
An INVITE outside a dialog becomes a `Call`. The caller is identified (a trunk by its source
address, else a device that proves itself with digest, 407), the callee resolved (a DID of the
trunk, an extension, or an external number), and the rule table decides where the call goes.
A destination that rings phones creates one `Branch` per target: a new dialog with its own
Call-ID, tags and CSeq, nothing of the caller's topology copied (no Via, Record-Route or Contact
of leg A reaches leg B and vice versa).

Forking follows RFC 3261 §16.7 as a B2BUA: provisional responses are relayed to A (the first
180, every 183 with its early-media SDP); the first 2xx wins, is ACKed, and answered to A; every
other branch is CANCELled at once with `Reason: SIP;cause=200;text="Call completed elsewhere"`
(RFC 3326); a late 2xx from another branch is ACKed and BYEd. When every branch failed, A gets
the best final response. A CANCEL is only sent on a branch that has sent a provisional response
(§9.1); before that it waits, flagged, for the first 1xx.

Once answered, the legs are bridged: BYE ends both; re-INVITE, UPDATE, INFO and in-dialog OPTIONS
are relayed to the other leg and their answers back (491 on glare). A transaction failing on one
leg ends the call on the other with a BYE.

Destinations that need media (voicemail, announcements, bounce) are delegated to a `media_hook`
when one is installed; without it they are answered 480 and logged. Every SDP body that crosses
goes through the hook (`_with_sdp`): at once with the built-in relay, in the call's order when
the backend answers later (rtpengine).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from b2bua.calls.directory import Directory, Trunk, normalize_number, to_e164
from b2bua.calls.records import CallRecord, CallRecorder
from b2bua.sip.dialog import Dialog
from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.grammar import split_list
from b2bua.sip.headers import parse_name_addr
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.uri import SipUri
from b2bua.tokens import tag, token
from media.errors import MediaError

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, SUBSCRIBE"
COMPLETED_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'
BUSY_EVERYWHERE = 'SIP;cause=600;text="Busy Everywhere"'

# Headers that cross from one leg to the other with a request or its response.
_RELAYED_REQUEST_HEADERS = (
    "content-type",
    "session-expires",
    "min-se",
    "reason",
    "event",
    "info-package",
    "recv-info",
    "accept",
    "content-disposition",
)
_RELAYED_RESPONSE_HEADERS = ("content-type", "session-expires", "require", "reason", "retry-after")


def refusal(request: Request, auth: Any) -> Response:
    """What a request that failed digest authentication gets: the challenge (407) when it
    carried no credentials or a stale nonce; 403 when its credentials do not verify (unknown
    user and wrong password alike, with nothing that tells the two apart)."""
    if "proxy-authorization" in request.headers and not auth.stale:
        return make_response(request, 403, to_tag=tag())
    response: Response = auth.response
    return response


def _best_response(statuses: list[int]) -> int:
    """RFC 3261 §16.7 step 6 (simplified): any 6xx, else the lowest class, 408/480 last."""
    if not statuses:
        return 480
    six = [s for s in statuses if s >= 600]
    if six:
        return min(six)
    best = min(statuses, key=lambda s: (s // 100, s in (408, 480, 503), s))
    return 480 if best == 503 else best


@dataclass(eq=False)
class Target:
    """One phone to ring: where to send the INVITE and what it is."""

    request_uri: SipUri
    flow: Flow
    label: str
    extension: str
    device_key: str | None = None


@dataclass(eq=False)
class Branch:
    call: Call
    target: Target
    invite: Request
    tx: Any = None
    state: str = "CALLING"  # CALLING, PROCEEDING, ANSWERED, FAILED
    status: int | None = None
    cancel_reason: str | None = None  # set when a CANCEL is wanted
    cancel_sent: bool = False
    bye_sent: bool = False
    dialog: Dialog | None = None
    ack: Request | None = None  # the ACK to its 2xx


@dataclass(eq=False)
class Leg:
    """One side of an established call, for relaying in-dialog requests."""

    name: str  # "a" or "b"
    dialog: Dialog
    flow: Flow
    pending_invite: bool = False


@dataclass(eq=False)
class Relay:
    """An in-dialog request relayed from one leg to the other, waiting for its answer."""

    call: Call
    from_leg: Leg
    to_leg: Leg
    server_tx: Any
    request: Request


@dataclass(eq=False)
class Call:
    id: str
    a_tx: Any
    a_request: Request
    a_flow: Flow
    a_tag: str
    caller: str
    caller_name: str | None
    callee: str
    did: str | None
    started: float
    decision: Any = None
    branches: list[Branch] = field(default_factory=list)
    winner: Branch | None = None
    state: str = "ROUTING"  # ROUTING, RINGING, ANSWERED, ENDED
    ring_timer: asyncio.TimerHandle | None = None
    provisional_sent: int = 0
    a_leg: Leg | None = None
    b_leg: Leg | None = None
    answered_at: float | None = None
    outcome: str | None = None
    answered_by: str | None = None
    user: Any = None
    a_acked: bool = False
    pending_b_ack: Request | None = None
    final_sent: bool = False
    via_trunk: Trunk | None = None
    notes: list[str] = field(default_factory=list)
    media: Any = None  # media.engine.MediaSession
    b_offer: bytes | None = None  # the caller's offer as the branches get it (anchored)
    bounce: asyncio.Future[bool] | None = None
    digits: list[tuple[str, str]] = field(default_factory=list)  # (leg, DTMF digit)
    sdp_queue: deque[Any] | None = None  # steps waiting for the media backend (`_with_sdp`)
    branch_headers: list[tuple[str, str]] | None = None  # A's headers every branch carries


class CallEngine:
    def __init__(
        self,
        stack: Any,
        transports: Any,
        directory: Directory,
        registrar: Any,
        rulebook: Any,
        recorder: CallRecorder | None,
        wall_clock: Callable[[], float] = time.time,
        rules_clock: Callable[[], float] | None = None,
    ) -> None:
        self.stack = stack
        self.transports = transports
        self.directory = directory
        self.registrar = registrar
        self.rulebook = rulebook
        self.recorder = recorder
        self.wall_clock = wall_clock
        self.rules_clock = rules_clock or wall_clock  # the instant rules decide at
        self.media_hook: Any = None  # b2bua.calls.media.MediaBridge when media is anchored
        self._tasks: set[asyncio.Task[None]] = set()
        self.voicemails = 0
        self.on_voicemail: Callable[[str], None] | None = None  # message-waiting indication
        self.on_dtmf: Callable[[Call, str, str], None] | None = None
        self.calls_by_tx: dict[Any, Call] = {}
        self.branch_by_tx: dict[Any, Branch] = {}
        # INVITE transactions of calls that are over, answered: each 2xx retransmission still
        # gets the ACK (RFC 6026 ACCEPTED, 64*T1), from these bytes (see `_reack_only`).
        self.reack_by_tx: dict[Any, tuple[bytes, Flow]] = {}
        self.relay_by_tx: dict[Any, Relay] = {}
        self.legs: dict[tuple[str, str], tuple[Call, Leg]] = {}
        self.active: set[Call] = set()
        self.counters: dict[str, int] = {
            "calls": 0,
            "answered": 0,
            "failed": 0,
            "cancelled": 0,
            "branches": 0,
        }

    # ================================================================ helpers
    def _respond(
        self,
        call: Call,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        if call.final_sent:
            return
        hdrs = list(headers or [])
        if status >= 200:
            call.final_sent = True
        if 100 < status < 300 and not any(h[0].lower() == "contact" for h in hdrs):
            hdrs.append(("Contact", self.stack.contact(call.a_flow)))
        resp = make_response(call.a_request, status, reason, to_tag=call.a_tag, headers=hdrs, body=body)
        if 200 <= status < 300:
            self.stack.respond_2xx(call.a_tx, resp)
        else:
            self.stack.respond(call.a_tx, resp)

    # ================================================================ new calls
    def invite_received(self, tx: Any, request: Request, flow: Flow) -> None:
        """An INVITE outside any dialog: authorise, decide, execute."""
        trunk = self._trunk_caller(request, flow)
        caller_ext: str | None = None
        if trunk is None:
            auth = self.registrar.authenticate(
                request, self.wall_clock(), header="Proxy-Authorization", flow=flow
            )
            if not auth.ok:
                self.stack.respond(tx, refusal(request, auth))
                return
            caller_ext = auth.extension
        uri = request.request_uri
        dialled = uri.user_unescaped if isinstance(uri, SipUri) else None
        if not dialled:
            self.stack.respond(tx, make_response(request, 404, to_tag=tag()))
            return
        cc = self.directory.country_code
        did: str | None = None
        if trunk is not None:
            caller = self._presented_number(request)
            caller_name = request.from_.display_name
            number = normalize_number(dialled, cc)
            callee = trunk.did.get(number) or (dialled if self.directory.is_extension(dialled) else None)
            did = number if number in trunk.did else None
            if callee is None:
                log.info("trunk %s: no DID %s", trunk.name, dialled)
                self.stack.respond(tx, make_response(request, 404, to_tag=tag()))
                return
        else:
            assert caller_ext is not None
            caller = caller_ext
            user = self.directory.user(caller_ext)
            caller_name = getattr(user, "name", None) if user else request.from_.display_name
            callee = dialled
        call = Call(
            id=token(8),
            a_tx=tx,
            a_request=request,
            a_flow=flow,
            a_tag=tag(),
            caller=caller,
            caller_name=caller_name,
            callee=callee,
            did=did,
            started=self.wall_clock(),
        )
        self.counters["calls"] += 1
        self.calls_by_tx[tx] = call
        self.active.add(call)
        if self.media_hook is not None and self.media_hook.anchor:
            # Anchor the call's media (ports, SDP) before any branch is created: at once with
            # the built-in relay, after a round trip with rtpengine.
            try:
                pending = self.media_hook.attach(call)
            except MediaError as exc:
                self._no_media(call, exc)
                return
            if pending is not None:
                task = asyncio.get_running_loop().create_task(
                    self._attach_media(call, trunk, pending))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
        self._route(call, trunk)

    async def _attach_media(self, call: Call, trunk: Trunk | None,
                            pending: Awaitable[None]) -> None:
        try:
            await pending
        except MediaError as exc:
            self._no_media(call, exc)
            return
        if call.state == "ENDED":  # the caller gave up meanwhile
            self.media_hook.ended(call)
            return
        self._route(call, trunk)

    def _no_media(self, call: Call, exc: MediaError) -> None:
        log.warning("call %s: no media: %s", call.id, exc)
        if call.state != "ENDED":
            self._fail(call, 488 if "SDP" in str(exc) or "codec" in str(exc) else 503,
                       f"media: {exc}")

    def _route(self, call: Call, trunk: Trunk | None) -> None:
        callee = call.callee
        if self.directory.is_extension(callee):
            self._route_to_extension(call, callee)
        elif trunk is None:
            # A device dialling out: through the trunk.
            self._dial_external(call, callee, diverted_from=None, private=False)
        else:
            self._fail(call, 404, "no such number")

    def _trunk_caller(self, request: Request, flow: Flow) -> Trunk | None:
        trunk = self.directory.trunk_for_source(flow.host)
        if trunk is None:
            return None
        # A device registered from a trunk-trusted address (everything on one host in a lab)
        # still calls as itself when it says so with credentials.
        if "proxy-authorization" in request.headers:
            return None
        return trunk

    def _presented_number(self, request: Request) -> str:
        """The caller's number as the rules see it: P-Asserted-Identity from a trusted trunk,
        else the From user; normalised (national form, "" when anonymous)."""
        cc = self.directory.country_code
        values = [request.headers.get("p-asserted-identity") or "", request.headers.get("from") or ""]
        for value in values:
            if not value:
                continue
            try:
                uri = parse_name_addr(split_list(value)[0]).uri
            except (SipParseError, IndexError):
                continue
            user = (uri.user_unescaped or "") if isinstance(uri, SipUri) else str(uri)
            return normalize_number(user, cc)
        return ""

    def _route_to_extension(self, call: Call, ext: str) -> None:
        if ext in self.directory.system:
            self._ring_group(call, ext)
            return
        call.user = self.directory.user(ext)
        table = self.rulebook.table
        try:
            decision = table.decide(ext, call.caller, self.rules_clock())  # UTC epoch seconds
        except KeyError:
            decision = None
        call.decision = decision
        if decision is None:
            self._ring_devices(call, [ext])
            return
        log.info(
            "call %s %s -> %s: %s (%s)",
            call.id,
            call.caller or "anonymous",
            ext,
            decision.destination.kind,
            decision.rule,
        )
        self._execute(call, ext, decision.destination)

    def _execute(self, call: Call, ext: str, dest: Any) -> None:
        kind = dest.kind
        if kind == "devices":
            self._ring_devices(call, [ext])
        elif kind == "extension":
            colleague = dest.extension
            if getattr(dest, "voicemail", False):
                self._media_destination(call, "voicemail", colleague, dest)
            elif colleague in self.directory.system:
                self._ring_group(call, colleague)
            else:
                self._ring_devices(call, [colleague], diverted_from=ext)
        elif kind == "system":
            self._ring_group(call, dest.extension)
        elif kind == "busy":
            self._fail(call, 486, "busy by rule")
        elif kind in ("mobile", "external"):
            number = dest.number if kind == "external" else getattr(call.user, "mobile", None)
            if not number:
                self._fail(call, 480, f"{kind} destination without a number")
                return
            if getattr(dest, "bounce", False):
                self._media_destination(call, "bounce", ext, dest)
            else:
                self._dial_external(call, number, diverted_from=ext, private=False)
        elif kind == "voicemail":
            box = getattr(dest, "extension", None) or ext
            self._media_destination(call, "voicemail", box, dest)
        elif kind == "announcement":
            self._media_destination(call, "announcement", ext, dest)
        else:
            self._fail(call, 500, f"unknown destination {kind}")

    def _media_destination(self, call: Call, what: str, ext: str, dest: Any) -> None:
        if self.media_hook is not None:
            self.media_hook(call, what, ext, dest)
            return
        log.warning("call %s: %s destination needs the media engine, not available: 480", call.id, what)
        call.notes.append(f"{what} not available")
        self._fail(call, 480, f"{what} unavailable")

    def _ring_group(self, call: Call, ext: str) -> None:
        group = self.directory.system[ext]
        call.notes.append(f"ring group {ext}")
        self._ring_devices(call, list(group.members))

    # ================================================================ forking
    def _targets(self, extensions: list[str]) -> list[Target]:
        now = self.wall_clock()
        seen: set[tuple[str, int, str]] = set()
        targets: list[Target] = []
        for ext in extensions:
            for binding in self.registrar.lookup(ext, now):
                uri, flow = self.registrar.target_for(binding)
                key = (flow.host, flow.port, str(uri))
                if key in seen:
                    continue
                seen.add(key)
                targets.append(Target(uri, flow, self._device_label(ext, binding), ext, binding.key))
        return targets

    def _device_label(self, ext: str, binding: Any) -> str:
        """"Bureau", "Teams"...: the configured device a binding is, for logs and records."""
        user = self.directory.user(ext)
        devices = getattr(user, "devices", ())
        index = binding.device
        if index is not None and 0 <= index < len(devices):
            return f"{devices[index].label} ({devices[index].type})"
        return binding.user_agent or binding.contact

    def _ring_devices(self, call: Call, extensions: list[str], diverted_from: str | None = None) -> None:
        targets = self._targets(extensions)
        if not targets:
            log.info("call %s: no reachable device for %s", call.id, ",".join(extensions))
            call.notes.append("no device registered")
            self._no_answer(call, "no device")
            return
        call.state = "RINGING"
        for target in targets:
            self._start_branch(call, target, diverted_from)
        timeout = float(getattr(call.user, "ring_timeout", 0) or 0) or 30.0
        loop = asyncio.get_running_loop()
        call.ring_timer = loop.call_later(timeout, self._ring_timeout, call)

    def _identity(self, call: Call, flow: Flow, private: bool = False) -> str:
        if private:
            return '"Anonymous" <sip:anonymous@anonymous.invalid>'
        local = self.transports.local_for(flow)
        user = call.caller or "anonymous"
        name = call.caller_name
        shown = f'"{name}" ' if name else ""
        return f"{shown}<sip:{user}@{local.hostport if user == 'anonymous' else self.directory.domain}>"

    def _branch_invite(
        self,
        call: Call,
        request_uri: SipUri,
        flow: Flow,
        to_value: str,
        extra: list[tuple[str, str]],
        private: bool = False,
    ) -> Request:
        inherited = call.branch_headers
        if inherited is None:  # what every branch takes from A's INVITE, read once per call
            a = call.a_request
            inherited = call.branch_headers = [
                ("Max-Forwards", str(max(0, (a.max_forwards or 70) - 1))),
                *((name, value)
                  for name in ("supported", "session-expires", "min-se", "content-type",
                               "content-disposition")
                  for value in a.headers.get_all(name)),
            ]
        headers: list[tuple[str, str]] = [
            ("Via", self.stack.via(flow)),
            inherited[0],
            ("From", f"{self._identity(call, flow, private)};tag={tag()}"),
            ("To", to_value),
            ("Call-ID", token(12)),
            ("CSeq", "1 INVITE"),
            ("Contact", self.stack.contact(flow)),
            ("Allow", ALLOW),
            *inherited[1:],
            *extra,
        ]
        body = call.a_request.body if call.b_offer is None else call.b_offer
        return Request("INVITE", request_uri, headers, body)

    def _start_branch(self, call: Call, target: Target, diverted_from: str | None) -> None:
        to_value = f"<sip:{target.extension}@{self.directory.domain}>"
        extra: list[tuple[str, str]] = []
        if diverted_from:
            extra += self._diversion(call, diverted_from)
        invite = self._branch_invite(call, target.request_uri, target.flow, to_value, extra)
        branch = Branch(call, target, invite)
        call.branches.append(branch)
        self.counters["branches"] += 1
        branch.tx = self.stack.send_request(invite, target.flow)
        self.branch_by_tx[branch.tx] = branch

    def _diversion(self, call: Call, ext: str) -> list[tuple[str, str]]:
        domain = self.directory.domain
        reason = "unconditional"
        if call.decision is not None:
            reason = {
                "closed": "time-of-day",
                "exceptional": "time-of-day",
                "exception": "unconditional",
                "forward": "unconditional",
            }.get(call.decision.rule, "unconditional")
        return [
            ("Diversion", f"<sip:{ext}@{domain}>;reason={reason};counter=1"),
            ("History-Info", f"<sip:{call.callee}@{domain}>;index=1"),
        ]

    def _dial_external(self, call: Call, number: str, diverted_from: str | None, private: bool) -> None:
        trunk = self.directory.outbound_trunk()
        if trunk is None:
            self._fail(call, 503, "no trunk configured")
            return
        cc = self.directory.country_code
        dialled = to_e164(number, cc) if trunk.number_format == "e164" else normalize_number(number, cc)
        hostport = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
        uri = SipUri(f"{hostport}" if ":" not in trunk.host else hostport, user=dialled, port=trunk.port)
        flow = Flow("udp", trunk.host, trunk.port)
        extra: list[tuple[str, str]] = []
        if diverted_from:
            extra += self._diversion(call, diverted_from)
        if private:
            extra += [("Privacy", "id"), ("P-Asserted-Identity", f"<sip:{call.caller}@{self.directory.domain}>")]
        to_value = f"<sip:{dialled}@{hostport}:{trunk.port}>"
        invite = self._branch_invite(call, uri, flow, to_value, extra, private)
        call.via_trunk = trunk
        call.state = "RINGING"
        branch = Branch(call, Target(uri, flow, f"trunk {trunk.name}", dialled), invite)
        call.branches.append(branch)
        self.counters["branches"] += 1
        branch.tx = self.stack.send_request(invite, flow)
        self.branch_by_tx[branch.tx] = branch

    # ================================================================ branch responses
    def response_received(self, tx: Any, response: Response, flow: Flow) -> None:
        branch = self.branch_by_tx.get(tx)
        if branch is not None:
            self._branch_response(branch, response)
            return
        reack = self.reack_by_tx.get(tx)
        if reack is not None:
            if 200 <= response.status < 300:
                self.stack.send_bytes(*reack)
            return
        relay = self.relay_by_tx.pop(tx, None)
        if relay is not None:
            self._relay_response(relay, response)
        # responses to our BYEs and CANCELs need nothing more

    def _branch_response(self, branch: Branch, response: Response) -> None:
        call = branch.call
        status = response.status
        if status < 200:
            if status == 100:
                if branch.state == "CALLING":
                    branch.state = "PROCEEDING"
                    self._send_pending_cancel(branch)
                return
            if branch.state == "CALLING":
                branch.state = "PROCEEDING"
            self._send_pending_cancel(branch)
            if call.state == "RINGING" and not branch.cancel_reason:
                self._relay_provisional(call, response)
            return
        if status < 300:
            self._branch_answered(branch, response)
            return
        branch.state = "FAILED"
        branch.status = status
        self._branch_done(branch)
        if call.state != "RINGING":
            return
        user = call.user
        if status in (600, 603) and getattr(user, "decline", "all") == "all" and not branch.cancel_reason:
            log.info("call %s: declined (%s) on %s: stopping every device", call.id, status, branch.target.label)
            call.notes.append(f"declined by {branch.target.label or 'a device'}")
            self._cancel_branches(call, BUSY_EVERYWHERE)
            self._no_answer(call, "declined")
            return
        if all(b.state == "FAILED" for b in call.branches):
            if self._bounce_failed(call):
                return
            statuses = [b.status or 500 for b in call.branches]
            best = _best_response(statuses)
            if best == 486 and call.via_trunk is None and len(call.branches) > 0:
                self._fail(call, 486, "every device busy", reason_header=response.headers.get("reason"))
            else:
                self._fail(call, best, f"every branch failed ({','.join(map(str, statuses))})",
                           reason_header=response.headers.get("reason"))

    def _relay_provisional(self, call: Call, response: Response) -> None:
        status = response.status
        body = response.body if response.body and status in (180, 183) else b""
        self._with_sdp(call, "b", body, "answer", self._send_provisional, call, response)

    def _send_provisional(self, call: Call, response: Response, body: bytes) -> None:
        status = response.status
        if not body and call.provisional_sent == 180 and status == 180:
            return  # one 180 to A is enough (several phones ring)
        headers: list[tuple[str, str]] = [("Allow", ALLOW)]
        if body:
            ctype = response.headers.get("content-type") or "application/sdp"
            headers.append(("Content-Type", ctype))
        call.provisional_sent = status
        self._respond(call, status, response.reason if status not in (180, 183) else None, headers, body)

    def _branch_answered(self, branch: Branch, response: Response) -> None:
        call = branch.call
        try:
            dialog = Dialog.as_uac(branch.invite, response)
        except SipParseError:
            log.info("call %s: unusable 2xx from %s", call.id, branch.target.label)
            return
        ack = dialog.request("ACK", self.stack.via(branch.target.flow), cseq=branch.invite.cseq.number)
        if branch.state == "ANSWERED" or call.winner is not None or call.state != "RINGING":
            # A retransmitted 2xx (ACK it again), or an answer that comes too late: another
            # branch won, or the caller left. ACK it, then BYE it once.
            self.stack.send_stateless(ack, branch.target.flow)
            if call.winner is not branch and not branch.bye_sent:
                log.info("call %s: late answer from %s: ACK then BYE", call.id, branch.target.label)
                branch.state = "ANSWERED"
                branch.ack = ack
                branch.bye_sent = True
                reason = [("Reason", COMPLETED_ELSEWHERE)] if call.winner is not None else []
                bye = dialog.request("BYE", self.stack.via(branch.target.flow), headers=reason)
                self.stack.send_request(bye, branch.target.flow)
                if call.state == "ENDED":
                    self._reack_only(branch)
            return
        branch.state = "ANSWERED"
        branch.ack = ack
        branch.dialog = dialog
        call.winner = branch
        call.state = "ANSWERED"
        call.answered_at = self.wall_clock()
        call.answered_by = branch.target.label or branch.target.extension
        self.counters["answered"] += 1
        self._stop_ring_timer(call)
        self._cancel_branches(call, COMPLETED_ELSEWHERE)
        call.b_leg = Leg("b", dialog, branch.target.flow)
        self.legs[(dialog.call_id, dialog.local_tag)] = (call, call.b_leg)
        if call.bounce is not None:
            # A bounce: the caller was answered by us already; its media joins the far end's.
            self._with_sdp(call, "b", response.body, "answer", self._bounce_answered, call,
                           branch, ack)
            return
        if call.a_request.body:
            self.stack.send_stateless(ack, branch.target.flow)
            kind = "answer"
        else:
            call.pending_b_ack = ack  # late offer: the ACK carries A's answer
            kind = "offer"
        self._with_sdp(call, "b", response.body, kind, self._bridge, call, response)

    def _bounce_answered(self, call: Call, branch: Branch, ack: Request, _body: bytes) -> None:
        self.stack.send_stateless(ack, branch.target.flow)
        if call.bounce is not None and not call.bounce.done():
            call.bounce.set_result(True)
        log.info("call %s: bounce answered by %s", call.id, branch.target.extension)

    def _bridge(self, call: Call, response: Response, body: bytes) -> None:
        """Answer the caller with the winning branch's (rewritten) answer: the legs are bridged."""
        a_dialog = Dialog.as_uas(call.a_request, call.a_tag)
        a_dialog.state = "CONFIRMED"
        call.a_leg = Leg("a", a_dialog, call.a_flow)
        self.legs[(a_dialog.call_id, a_dialog.local_tag)] = (call, call.a_leg)
        headers: list[tuple[str, str]] = [("Allow", ALLOW)]
        for name in ("content-type", "session-expires", "require"):
            value = response.headers.get(name)
            if value:
                headers.append((name, value))
        self._respond(call, 200, None, headers, body)
        log.info("call %s answered by %s", call.id, call.answered_by)

    # ================================================================ media
    def _with_sdp(self, call: Call, from_leg: str, body: bytes, kind: str,
                  then: Callable[..., None], *args: Any,
                  answer_on_failure: tuple[Any, Request] | None = None) -> None:
        """Pass `body` (an SDP offer or answer from `from_leg`, or b"") through the media hook,
        then `then(*args, body_for_the_other_side)`.

        The built-in relay rewrites at once: `then` runs now, no task and no await. A backend
        that answers later (rtpengine: the hook returns an awaitable) puts the step into the
        call's queue, and every later step of the call joins the queue while it is not empty:
        a call's messages leave in the order they came (a 183 before the 200 of its branch, a 2xx
        before the ACK that follows it). If the backend fails, the call ends cleanly (503 to a
        caller not answered yet, BYE to the established legs, 500 to the in-dialog request in
        `answer_on_failure`)."""
        result: Any = body
        if body and self.media_hook is not None:
            result = self.media_hook.sdp(call, from_leg, body, kind)
        queue = call.sdp_queue
        if queue is None:
            if isinstance(result, bytes):
                then(*args, result)
                return
            queue = call.sdp_queue = deque()
            task = asyncio.get_running_loop().create_task(self._drain_sdp(call, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.append((result, then, args, answer_on_failure))

    async def _drain_sdp(self, call: Call, queue: deque[Any]) -> None:
        """Run the call's queued steps in order, waiting for the media backend's answers."""
        try:
            while queue:
                result, then, args, on_failure = queue[0]
                if call.state == "ENDED":
                    queue.popleft()
                    if asyncio.iscoroutine(result):
                        result.close()
                    if on_failure is not None:
                        self.stack.respond(on_failure[0], make_response(on_failure[1], 487))
                    continue
                if not isinstance(result, bytes):
                    try:
                        result = await result
                    except MediaError as exc:
                        self._media_backend_failed(call, queue, str(exc))
                        return
                queue.popleft()
                if call.state != "ENDED":
                    then(*args, result)
                elif on_failure is not None:
                    self.stack.respond(on_failure[0], make_response(on_failure[1], 487))
            if call.state == "ENDED" and not call.final_sent:
                self._respond(call, 487)  # the call ended while its answer was on the way
        except Exception:  # a task boundary: one broken call must not stop the others
            log.exception("call %s: a media step failed", call.id)
            self._media_backend_failed(call, queue, "internal error")
        finally:
            if call.sdp_queue is queue:
                call.sdp_queue = None

    def _media_backend_failed(self, call: Call, queue: deque[Any], why: str) -> None:
        log.warning("call %s: the media backend failed (%s): ending the call", call.id, why)
        pending = list(queue)
        queue.clear()
        for result, _then, _args, on_failure in pending:
            if asyncio.iscoroutine(result):
                result.close()
            if on_failure is not None:
                self.stack.respond(on_failure[0], make_response(on_failure[1], 500))
        if call.state != "ENDED":
            call.notes.append(f"media backend: {why}")
            self.counters["failed"] += 1
            self._respond(call, 503)  # nothing if the caller was answered already
            self.hangup(call, "failed")

    def answer_locally(self, call: Call, sdp: bytes) -> None:
        """Answer the caller ourselves (voicemail, announcement, bounce): 200 with our SDP."""
        a_dialog = Dialog.as_uas(call.a_request, call.a_tag)
        a_dialog.state = "CONFIRMED"
        call.a_leg = Leg("a", a_dialog, call.a_flow)
        self.legs[(a_dialog.call_id, a_dialog.local_tag)] = (call, call.a_leg)
        call.state = "MEDIA"
        call.answered_at = self.wall_clock()
        self._stop_ring_timer(call)
        self._respond(call, 200, None, [("Allow", ALLOW), ("Content-Type", "application/sdp")], sdp)

    def media_failed(self, call: Call, status: int) -> None:
        if call.final_sent:
            self.hangup(call, "failed")
        else:
            self._fail(call, status, "media failure")

    def dtmf_received(self, call: Call, leg: str, event: Any) -> None:
        """A DTMF digit from a leg (RFC 4733, relayed to the other leg by the media engine).
        Kept on the call (`call.digits`, in the record's trace) for menus to come."""
        digit = getattr(event, "digit", None) or str(getattr(event, "event", "?"))
        call.digits.append((leg, digit))
        log.debug("call %s: DTMF %s from leg %s", call.id, digit, leg)
        if self.on_dtmf is not None:
            self.on_dtmf(call, leg, digit)

    def voicemail_left(self, box: str) -> None:
        self.voicemails += 1
        if self.on_voicemail is not None:
            self.on_voicemail(box)

    def hangup(self, call: Call, outcome: str) -> None:
        """End the call from our side: BYE every established leg."""
        if call.state == "ENDED":
            return
        self._cancel_branches(call, None)
        if call.outcome is None:
            call.outcome = outcome
        self._hangup(call, outcome)

    def dial_bounce(self, call: Call, number: str | None, ext: str, offer: bytes) -> asyncio.Future[bool]:
        """Call `number` through the trunk as a private call with our own SDP offer; the future
        says whether it was answered before the ring timeout."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        call.bounce = future
        if not number:
            future.set_result(False)
            return future
        call.b_offer = offer
        call.state = "RINGING"
        self._dial_external(call, number, diverted_from=ext, private=True)
        if call.state == "RINGING":
            timeout = float(getattr(call.user, "ring_timeout", 0) or 0) or 30.0
            call.ring_timer = asyncio.get_running_loop().call_later(timeout, self._ring_timeout, call)
        elif not future.done():
            future.set_result(False)
        return future

    def _bounce_failed(self, call: Call) -> bool:
        """When a bounce fails, the media task takes over (prompt, then voicemail)."""
        if call.bounce is None:
            return False
        self._stop_ring_timer(call)
        self._cancel_branches(call, None)
        call.state = "MEDIA"
        if not call.bounce.done():
            call.bounce.set_result(False)
        return True

    def _cancel_branches(self, call: Call, reason: str | None) -> None:
        for branch in call.branches:
            if branch.state in ("CALLING", "PROCEEDING") and branch.cancel_reason is None:
                branch.cancel_reason = reason or ""
                self._send_pending_cancel(branch)

    def _send_pending_cancel(self, branch: Branch) -> None:
        # RFC 3261 §9.1: "If no provisional response has been received, the CANCEL request
        # MUST NOT be sent; rather, the client MUST wait for the arrival of a provisional response."
        if branch.cancel_reason is None or branch.cancel_sent or branch.state != "PROCEEDING":
            return
        branch.cancel_sent = True
        invite = branch.invite
        headers: list[tuple[str, str]] = [
            ("Via", invite.headers.get("via") or ""),
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("from") or ""),
            ("To", invite.headers.get("to") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.number} CANCEL"),
        ]
        if branch.cancel_reason:
            headers.append(("Reason", branch.cancel_reason))
        cancel = Request("CANCEL", invite.request_uri, headers)
        self.stack.send_request(cancel, branch.target.flow)

    def _ring_timeout(self, call: Call) -> None:
        call.ring_timer = None
        if call.state != "RINGING":
            return
        log.info("call %s: no answer within the ring timeout", call.id)
        call.notes.append("ring timeout")
        if self._bounce_failed(call):
            return
        self._cancel_branches(call, None)
        self._no_answer(call, "ring timeout")

    def _stop_ring_timer(self, call: Call) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None

    def _no_answer(self, call: Call, why: str) -> None:
        """The callee did not answer (timeout, decline, no device): the no_answer destination."""
        self._stop_ring_timer(call)
        user = call.user
        dest = getattr(user, "no_answer", None) if user is not None else None
        call.state = "ROUTING"
        if dest is not None and getattr(dest, "kind", "voicemail") != "devices":
            if dest.kind in ("voicemail", "announcement") or getattr(dest, "bounce", False):
                if self.media_hook is not None:
                    self._execute(call, call.callee, dest)
                    return
                log.warning("call %s: %s, no_answer is %s but the media engine is not available: 480",
                            call.id, why, dest.kind)
                self._fail(call, 480, why, outcome="no_answer")
                return
            self._execute(call, call.callee, dest)
            return
        self._fail(call, 480, why, outcome="no_answer")

    def _fail(self, call: Call, status: int, why: str, reason_header: str | None = None,
              outcome: str | None = None) -> None:
        self._stop_ring_timer(call)
        headers = [("Reason", reason_header)] if reason_header else []
        self._respond(call, status, None, headers)
        if outcome is None:
            outcome = {486: "busy", 600: "busy", 603: "declined", 480: "no_answer", 408: "no_answer"}.get(status, "failed")
        call.notes.append(why)
        self.counters["failed"] += 1
        self._end(call, outcome)

    # ================================================================ caller's CANCEL
    def cancel_received(self, invite_tx: Any, cancel_tx: Any, request: Request) -> None:
        call = self.calls_by_tx.get(invite_tx)
        if call is None:
            self.stack.respond(cancel_tx, make_response(request, 481, to_tag=tag()))
            return
        self.stack.respond(cancel_tx, make_response(request, 200))
        if call.state in ("ANSWERED", "ENDED"):
            return
        log.info("call %s: caller cancelled", call.id)
        self.counters["cancelled"] += 1
        # The caller's own Reason (if any) travels on; never "completed elsewhere" here, so
        # phones log a missed call.
        self._cancel_branches(call, request.headers.get("reason") or "")
        self._stop_ring_timer(call)
        if self.media_hook is not None and hasattr(self.media_hook, "cancel"):
            self.media_hook.cancel(call)
        self._respond(call, 487)
        self._end(call, "cancelled")

    # ================================================================ in-dialog requests
    def in_dialog_request(self, tx: Any, request: Request, flow: Flow) -> None:
        to_tag = request.to.tag or ""
        found = self.legs.get((request.call_id, to_tag))
        method = request.method
        if found is None:
            if method != "ACK":
                self.stack.respond(tx, make_response(request, 481))
            return
        call, leg = found
        other = call.b_leg if leg is call.a_leg else call.a_leg
        if method == "ACK":
            self._ack_received(call, leg, request)
            return
        seq = request.cseq.number
        if leg.dialog.remote_cseq is not None and seq < leg.dialog.remote_cseq:
            self.stack.respond(tx, make_response(request, 500, "CSeq out of order"))
            return
        leg.dialog.remote_cseq = seq
        if method == "BYE":
            self.stack.respond(tx, make_response(request, 200))
            if other is not None:
                headers = [("Reason", v) for v in request.headers.get_all("reason")]
                self._send_in_dialog(other, "BYE", headers=headers)
            self._cancel_branches(call, request.headers.get("reason") or "")
            self._end(call, "answered", ended_by=leg.name)
            return
        if other is None:
            # Only our media talks to this leg (voicemail, announcement, a bounce still ringing).
            self._answer_media_only(call, leg, tx, request)
            return
        if method == "INVITE":
            if leg.pending_invite or other.pending_invite:
                self.stack.respond(tx, make_response(request, 491))
                return
            leg.dialog.update_target(request)
            leg.pending_invite = True
        elif method == "UPDATE":
            leg.dialog.update_target(request)
        headers = []
        for name in _RELAYED_REQUEST_HEADERS:
            for value in request.headers.get_all(name):
                headers.append((name, value))
        if method in ("INVITE", "UPDATE"):
            headers.append(("Contact", self.stack.contact(other.flow)))
        if method == "INVITE":
            headers.append(("Allow", ALLOW))
        self._with_sdp(call, leg.name, request.body if method in ("INVITE", "UPDATE") else b"",
                       "offer", self._relay_request, call, leg, other, tx, request, headers,
                       answer_on_failure=(tx, request))

    def _relay_request(self, call: Call, leg: Leg, other: Leg, tx: Any, request: Request,
                       headers: list[tuple[str, str]], body: bytes) -> None:
        method = request.method
        if method not in ("INVITE", "UPDATE"):
            body = request.body
        relayed = self._send_in_dialog(other, method, headers=headers, body=body)
        if method == "INVITE":
            other.pending_invite = True
        self.relay_by_tx[relayed] = Relay(call, leg, other, tx, request)

    def _answer_media_only(self, call: Call, leg: Leg, tx: Any, request: Request) -> None:
        method = request.method
        if method in ("INVITE", "UPDATE") and request.body and call.media is not None:
            try:
                sdp = call.media.local_answer(leg.name, request.body)
            except MediaError:
                self.stack.respond(tx, make_response(request, 488))
                return
            resp = make_response(request, 200, headers=[
                ("Contact", self.stack.contact(leg.flow)), ("Content-Type", "application/sdp")], body=sdp)
            if method == "INVITE":
                self.stack.respond_2xx(tx, resp)
            else:
                self.stack.respond(tx, resp)
            return
        resp = make_response(request, 200, headers=[("Contact", self.stack.contact(leg.flow))]
                             if method == "INVITE" else [])
        if method == "INVITE":
            self.stack.respond_2xx(tx, resp)
        else:
            self.stack.respond(tx, resp)

    def _send_in_dialog(
        self, leg: Leg, method: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> Any:
        request = leg.dialog.request(method, self.stack.via(leg.flow), headers=headers or [], body=body)
        return self.stack.send_request(request, leg.flow)

    def _relay_response(self, relay: Relay, response: Response) -> None:
        status = response.status
        req = relay.request
        if status >= 200 and req.method == "INVITE":
            relay.from_leg.pending_invite = False
            relay.to_leg.pending_invite = False
        if status < 200:
            if status == 100:
                return
        headers: list[tuple[str, str]] = []
        for name in _RELAYED_RESPONSE_HEADERS:
            value = response.headers.get(name)
            if value:
                headers.append((name, value))
        if req.method in ("INVITE", "UPDATE") and 100 < status < 300:
            headers.append(("Contact", self.stack.contact(relay.from_leg.flow)))
            relay.to_leg.dialog.update_target(response)
        body = response.body
        if not (body and req.method in ("INVITE", "UPDATE") and 100 < status < 300):
            self._send_relayed_response(relay, response, headers, body)
            return
        self._with_sdp(relay.call, relay.to_leg.name, body, "answer" if req.body else "offer",
                       self._send_relayed_response, relay, response, headers,
                       answer_on_failure=(relay.server_tx, req))

    def _send_relayed_response(self, relay: Relay, response: Response,
                               headers: list[tuple[str, str]], body: bytes) -> None:
        status = response.status
        req = relay.request
        resp = make_response(req, status, response.reason, headers=headers, body=body)
        if req.method == "INVITE" and 200 <= status < 300:
            to_dialog = relay.to_leg.dialog
            ack = to_dialog.request("ACK", self.stack.via(relay.to_leg.flow), cseq=response.cseq.number)
            if req.body:
                self.stack.send_stateless(ack, relay.to_leg.flow)
            else:
                relay.call.pending_b_ack = ack  # late-offer re-INVITE: ACK carries the answer
            self.stack.respond_2xx(relay.server_tx, resp)
        else:
            self.stack.respond(relay.server_tx, resp)

    def _ack_received(self, call: Call, leg: Leg, ack: Request) -> None:
        pending = call.pending_b_ack
        if pending is not None:
            call.pending_b_ack = None
            other = call.b_leg if leg is call.a_leg else call.a_leg
            assert other is not None
            self._with_sdp(call, leg.name, ack.body, "answer", self._send_pending_ack, pending,
                           ack, other)

    def _send_pending_ack(self, pending: Request, ack: Request, other: Leg, body: bytes) -> None:
        if ack.body:
            pending.body = body
            pending.headers.set("Content-Type", ack.headers.get("content-type") or "application/sdp")
        self.stack.send_stateless(pending, other.flow)

    # ================================================================ failures and the end
    def transaction_failed(self, tx: Any, why: str) -> None:
        branch = self.branch_by_tx.get(tx)
        if branch is not None:
            self._branch_done(branch)
            # A dead device never drags the others down: only this branch fails.
            branch.state = "FAILED"
            branch.status = 408
            call = branch.call
            log.info("call %s: branch %s %s", call.id, branch.target.label, why)
            if call.state == "RINGING" and all(b.state == "FAILED" for b in call.branches):
                if self._bounce_failed(call):
                    return
                statuses = [b.status or 500 for b in call.branches]
                if all(s == 408 for s in statuses):
                    self._no_answer(call, "no device responded")
                else:
                    self._fail(call, _best_response(statuses), "every branch failed")
            return
        relay = self.relay_by_tx.pop(tx, None)
        if relay is not None:
            call = relay.call
            log.info("call %s: relayed %s %s: ending the call", call.id, relay.request.method, why)
            self.stack.respond(relay.server_tx, make_response(relay.request, 408))
            self._hangup(call, "failed")
            return
        call = self.calls_by_tx.get(tx)
        if call is not None and why == "ack timeout":
            log.info("call %s: the caller never ACKed the 200: ending", call.id)
            self._hangup(call, "failed")

    def _hangup(self, call: Call, outcome: str) -> None:
        for leg in (call.a_leg, call.b_leg):
            if leg is not None:
                self._send_in_dialog(leg, "BYE")
        self._end(call, outcome)

    def _end(self, call: Call, outcome: str, ended_by: str | None = None) -> None:
        if call.state == "ENDED":
            return
        if call.outcome is None:
            call.outcome = "answered" if call.answered_at is not None else outcome
        call.state = "ENDED"
        self._stop_ring_timer(call)
        self.active.discard(call)
        self.calls_by_tx.pop(call.a_tx, None)
        # Branches still ringing stay known until their final response (a CANCEL may still wait
        # for their first provisional, RFC 3261 §9.1); `transaction_terminated` forgets them.
        for leg in (call.a_leg, call.b_leg):
            if leg is not None:
                self.legs.pop((leg.dialog.call_id, leg.dialog.local_tag), None)
        if self.media_hook is not None and hasattr(self.media_hook, "ended"):
            self.media_hook.ended(call)
        if self.recorder is not None:
            self.recorder.write(self._record(call, ended_by))
        # Branches no response can reach any more go now; answered ones keep only their ACK;
        # the others (still ringing) go in `_branch_done`.
        live = self.branch_by_tx
        call.branches = [b for b in call.branches if b.tx in live]
        if call.winner is not None and call.winner.tx not in live:
            call.winner = None
        for branch in [b for b in call.branches if b.state == "ANSWERED" and b.ack is not None]:
            self._reack_only(branch)

    def _reack_only(self, branch: Branch) -> None:
        """`branch`'s call is over, but its INVITE transaction passes 2xx retransmissions up
        for 64*T1 more (RFC 6026 ACCEPTED): they get the same ACK again, from its bytes. The
        branch and its call are let go of now rather than half a minute later: under load
        that is most of what the server holds."""
        assert branch.ack is not None
        self.reack_by_tx[branch.tx] = (bytes(branch.ack), branch.target.flow)
        self._branch_done(branch)

    def _record(self, call: Call, ended_by: str | None) -> CallRecord:
        decision = call.decision
        trace: list[str] = []
        rule = None
        destination = None
        if decision is not None:
            rule = decision.rule
            try:
                trace = list(decision.trace)
                destination = decision.destination.to_config_dict()
            except AttributeError:
                pass
        return CallRecord(
            call_id=call.a_request.call_id,
            caller=call.caller,
            callee=call.callee,
            did=call.did,
            started=call.started,
            answered=call.answered_at,
            ended=self.wall_clock(),
            outcome=call.outcome or "failed",
            answered_by=call.answered_by,
            rule=rule,
            destination=destination,
            trace=trace + call.notes + (
                [f"DTMF {''.join(d for _, d in call.digits)}"] if call.digits else []
            ),
            ended_by=ended_by,
        )

    def transaction_terminated(self, tx: Any) -> None:
        """The transaction layer forgot `tx`: so do we."""
        branch = self.branch_by_tx.get(tx)
        if branch is not None:
            self._branch_done(branch)
        self.reack_by_tx.pop(tx, None)
        self.relay_by_tx.pop(tx, None)
        self.calls_by_tx.pop(tx, None)

    def _branch_done(self, branch: Branch) -> None:
        """No response can reach `branch` any more. Once its call has ended, the call lets go
        of it: a call and its branches refer to each other, and the server runs with the
        cyclic garbage collector off (b2bua.server), so only references broken here free
        them as soon as the call is over."""
        self.branch_by_tx.pop(branch.tx, None)
        call = branch.call
        if call.state == "ENDED":
            if branch in call.branches:
                call.branches.remove(branch)
            if call.winner is branch:
                call.winner = None

    def ack_timed_out(self, tx: Any) -> None:
        self.transaction_failed(tx, "ack timeout")

    def connection_lost(self, flow: Flow) -> None:
        return

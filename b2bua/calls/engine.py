"""The call engine, sans-IO: one inbound leg, a routing decision, branches, a bridged call.

Theory of operation
-------------------
`CallEngine.handle(event, now)` takes what happened (b2bua.calls.events: a new INVITE, an
in-dialog request, a CANCEL, an answer of the media port) and `on_transaction_event(event,
now)` the events of the client transactions it started. It appends what must be done to its
`Outbox` (b2bua.commands: send a request, respond, a media command, write the call record); the
shell drains the outbox after the transaction layer. The engine never calls the stack, never
reads a clock (`now` is given; the wall clock for records and rules is injected), never draws a
random number itself (the token source is injected), and imports no asyncio. Its deadlines (ring
timeouts, the wait after a CANCEL) sit on its own timer heap, which the shell serves with the
transaction layer's through `next_deadline()` / `handle_deadline(now)`.

A call and its branches are state machines written as data (b2bua.calls.table); `_call_input`
and `_branch_input` are their only interpreters. The engine's other methods turn SIP and media
events into inputs, and implement the actions the tables name.

An INVITE outside a dialog becomes a `Call`: the caller is identified (a trunk by its source
address, else a device that proves itself with digest, 407), the callee resolved (a DID of the
trunk, an extension, or an external number), the media anchored (MediaOpen), then the rules
decide (ROUTE).

Every call belongs to one tenant (b2bua.tenants): the company of the device that proved itself
(the registrar names it by the realm), or the owner of the DID a carrier called. The call reads
that tenant's directory and rules only (`call.tenant`), and names its extensions to the
registrar, the media port and the records as that tenant's (`Tenant.aor`): an extension of
another company is never rung, picked up, transferred to or replaced. A destination that rings phones makes one `Branch` per target: a new dialog with
its own Call-ID, tags and CSeq; no Via, Record-Route or Contact of the caller's leg reaches a
branch, and none of a branch's reaches the caller.

Forking follows RFC 3261 §16.7 as a B2BUA: 180/183 are relayed (one 180, every 183 with its
SDP); the first 2xx wins and every other branch is CANCELled with `Reason: SIP;cause=200;
text="Call completed elsewhere"` (RFC 3326); a 2xx the call does not want (too late, or a second
dialog of a branch that forked downstream, §13.2.2.4) is ACKed and BYEd; when every branch
failed the caller gets the best final response.

Every SDP body that crosses goes through the media port (MediaRewrite) and comes back as
`SdpReady`. What a call sends is kept in its order meanwhile: each message that carries SDP, and
any message behind one still waiting, is a `Step` in the call's queue, sent when it reaches the
front with its body. The built-in relay answers within the same drain of the outbox, so the
queue holds at most one step; rtpengine answers after a round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from b2bua.addressing import Local
from b2bua.calls.directory import Directory, Trunk, normalize_number
from b2bua.calls.events import (
    AckNeverCame,
    AppFinished,
    CallerCancelled,
    DtmfReceived,
    HangUp,
    InDialogRequest,
    InviteReceived,
    MediaFailed,
    MediaOpened,
    RtpTimedOut,
    SdpReady,
)
from b2bua.calls.model import (
    ALLOW,
    AppPlan,
    Branch,
    Call,
    Leg,
    MediaMode,
    Plan,
    Relay,
    Step,
    StepKind,
    Target,
)
from b2bua.calls.ports import Location, Rules
from b2bua.calls.records import CallRecord, steps_of
from b2bua.calls.table import (
    BRANCH_TABLE,
    CALL_TABLE,
    RINGING_BRANCHES,
    BranchAction,
    BranchInput,
    BranchState,
    CallAction,
    CallInput,
    CallState,
)
from b2bua.calls.timers import DEFAULT_INTERVAL, MIN_SE, SessionTimers, allows_update
from b2bua.calls.transfer import Transfers
from b2bua.calls.trunking import NO_FREE_LINE, Trunking, make_trunks
from b2bua.commands import (
    Abandon,
    AppKind,
    MediaClose,
    MediaLocalAnswer,
    MediaLocalOffer,
    MediaPlay,
    MediaResume,
    MediaRewrite,
    MediaRunApp,
    Outbox,
    Respond,
    SdpKind,
    SendBytes,
    SendRequest,
    WriteRecord,
)
from b2bua.registrar.location import BindingAppeared
from b2bua.registrar.model import AuthResult
from b2bua.rules.i18n import trace_lines
from b2bua.rules.model import Destination
from b2bua.rules.model import Step as Step_
from b2bua.sip.dialog import Answer, ClientInvite, Dialog, DialogRegistry, DialogState, InviteState
from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.grammar import split_list
from b2bua.sip.headers import parse_name_addr
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.timers import TimerConfig, TimerEntry, TimerHeap
from b2bua.sip.transaction import (
    ResponseReceived,
    ServerTransaction,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from b2bua.sip.uri import SipUri
from b2bua.tenants.model import Tenant
from b2bua.tenants.names import split
from b2bua.tenants.registry import Tenants
from b2bua.tokens import TokenSource
from b2bua.trunks.service import Trunks
from media.sdp import holds

if TYPE_CHECKING:
    from b2bua.push.fork import RingDevice
    from b2bua.push.waker import Waker

log = logging.getLogger(__name__)

COMPLETED_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'
BUSY_EVERYWHERE = 'SIP;cause=600;text="Busy Everywhere"'
DEFAULT_RING_TIMEOUT = 30.0

# Headers that cross from one leg to the other with a request or its response.
_RELAYED_REQUEST_HEADERS = (
    "content-type",
    "reason",
    "event",
    "info-package",
    "recv-info",
    "accept",
    "content-disposition",
)
_RELAYED_RESPONSE_HEADERS = ("content-type", "reason", "retry-after")
# What every branch's INVITE takes from the caller's.
_INHERITED = ("supported", "content-type", "content-disposition")
# Where a branch's first 2xx is the call's answer (elsewhere it comes too late).
_RINGING_STATES = frozenset({CallState.RINGING, CallState.BOUNCING, CallState.TRANSFERRING})
_OUTCOME_OF_STATUS = {486: "busy", 600: "busy", 603: "declined", 480: "no_answer",
                      408: "no_answer"}


class _Timer(Enum):
    __hash__ = object.__hash__

    RING = "RING"  # a call's ring timeout
    GIVE_UP = "GIVE_UP"  # 64*T1 after a branch's CANCEL
    RELEASE = "RELEASE"  # a transferor's dialog, when it has not ended it itself
    SESSION = "SESSION"  # a leg's session timer (RFC 4028): refresh it, or it expired


@dataclass(frozen=True, slots=True)
class Refusal:
    """A final response for a caller we do not connect."""

    status: int
    why: str
    reason_header: str = ""
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class LegRequest:
    """An in-dialog request and the leg it came on."""

    event: InDialogRequest
    leg: Leg


def refusal(request: Request, auth: AuthResult, tag: str) -> Response:
    """What a request that failed digest authentication gets: the challenge (407) when it
    carried no credentials or a stale nonce; 403 when its credentials do not verify (unknown
    user and wrong password alike, with nothing that tells the two apart)."""
    if "proxy-authorization" in request.headers and not auth.stale:
        return make_response(request, 403, to_tag=tag)
    assert auth.response is not None
    return auth.response


def best_response(statuses: list[int]) -> int:
    """RFC 3261 §16.7 step 6 (simplified): any 6xx, else the lowest class, 408/480/503 last."""
    if not statuses:
        return 480
    six = [s for s in statuses if s >= 600]
    if six:
        return min(six)
    best = min(statuses, key=lambda s: (s // 100, s in (408, 480, 503), s))
    return 480 if best == 503 else best


# Why a ring stopped, as the push that ends a woken iOS device's call says it.
_PUSH_REASONS = {
    CallInput.ANSWERED: "answered_elsewhere",
    CallInput.CANCELLED: "cancelled",
    CallInput.RING_TIMEOUT: "timeout",
    CallInput.NO_ANSWER: "timeout",
    CallInput.REJECTED: "timeout",
    CallInput.DECLINED: "declined",
}

CallActionFn = Callable[["CallEngine", Call, Any], None]
BranchActionFn = Callable[["CallEngine", Branch, Any], None]


class CallEngine:
    def __init__(
        self,
        outbox: Outbox,
        local: Local,
        directory: Directory,
        location: Location,
        rules: Rules,
        tokens: TokenSource,
        wall_clock: Callable[[], float],
        rules_clock: Callable[[], float] | None = None,
        media: MediaMode = MediaMode.NONE,
        timers: TimerConfig | None = None,
        trunks: Trunks | None = None,
        session_expires: int = DEFAULT_INTERVAL,
        min_se: int = MIN_SE,
        tenants: Tenants | None = None,
    ) -> None:
        self.outbox = outbox
        self.local = local
        # The companies served (b2bua.tenants); `directory` and `rules` are the top-level one's.
        self.tenants = tenants if tenants is not None else Tenants(
            [Tenant("", directory.domain, "", None, directory, rules)])
        self.location = location
        self.tokens = tokens
        self.wall_clock = wall_clock
        self.rules_clock = rules_clock or wall_clock  # the instant rules decide at
        self.media = media
        self.timers = timers or TimerConfig()
        # Calls through trunks: choice, lines, challenges, failover (b2bua.calls.trunking).
        self.trunking = Trunking(trunks if trunks is not None else make_trunks(
            directory.trunk_specs, local, tokens, directory.domain))
        self.calls: dict[str, Call] = {}
        self.branches: dict[str, Branch] = {}  # by the Via branch of their INVITE
        self.relays: dict[str, Relay] = {}  # by the Via branch of the relayed request
        # Answered branches of calls that are over: a 2xx retransmission still gets the same
        # ACK (RFC 6026 ACCEPTED, 64*T1), from these bytes (by To tag).
        self.reacks: dict[str, tuple[Flow, dict[str, bytes]]] = {}
        self.dialogs: DialogRegistry[Call] = DialogRegistry()
        self._heap: TimerHeap[tuple[_Timer, str]] = TimerHeap()
        self._ticket = 0
        self._now = 0.0
        self.ignored_inputs = 0
        self.transfers = Transfers(self)
        self.session_timers = SessionTimers(self, session_expires, min_se)
        self.counters: dict[str, int] = {
            "calls": 0,
            "answered": 0,
            "failed": 0,
            "cancelled": 0,
            "branches": 0,
            "transfers": 0,
            "pickups": 0,
            "session_refreshes": 0,
            "sessions_expired": 0,
        }
        # Fork-late (b2bua.push.waker): devices woken by push join a ringing call. Set by the
        # server when [push] has a provider.
        self.waker: Waker | None = None
        self._waker_seen = 0  # its `scheduled` when `earliest_added` last looked
        # The dialog journal of a node in a cluster (b2bua.pgstore.journal): told when a call
        # is answered (both legs confirmed) and when it ends.
        self.on_answered: Callable[[Call], None] | None = None
        self.on_ended: Callable[[Call], None] | None = None
        self._handlers: dict[type, Callable[[Any], None]] = {
            InviteReceived: self._invite,
            InDialogRequest: self._in_dialog,
            CallerCancelled: self._caller_cancelled,
            AckNeverCame: self._ack_never_came,
            MediaOpened: self._media_opened,
            SdpReady: self._sdp_ready,
            MediaFailed: self._media_failed,
            AppFinished: self._app_finished,
            RtpTimedOut: self._rtp_timed_out,
            DtmfReceived: self._dtmf,
            HangUp: self._hang_up,
            BindingAppeared: self._binding_appeared,
        }

    @property
    def directory(self) -> Directory:
        """The top-level company's directory."""
        return self.tenants.default.directory

    @directory.setter
    def directory(self, directory: Directory) -> None:
        default = self.tenants.default
        self.tenants.install(Tenant("", directory.domain, default.name, default.config,
                                    directory, default.rules, default.limits))

    @property
    def rules(self) -> Rules:
        """The top-level company's rule book."""
        return self.tenants.default.rules

    # ================================================================ the sans-IO interface
    @property
    def active(self) -> dict[str, Call]:
        """Calls not over yet."""
        return self.calls

    def handle(self, event: object, now: float) -> None:
        """Take one event (b2bua.calls.events)."""
        self._now = now
        self._handlers[type(event)](event)

    def on_transaction_event(self, event: object, now: float) -> None:
        """An event of a client transaction the engine started (a branch's INVITE, a relayed
        request): a response, a timeout, a transport failure, its end."""
        self._now = now
        if type(event) is ResponseReceived:
            self._response(event.transaction.branch, event.response)
        elif type(event) is TransactionTimedOut or type(event) is TransportFailed:
            self._transaction_failed(event.transaction.branch,
                                     "timed out" if type(event) is TransactionTimedOut else
                                     "transport failed")
        elif type(event) is TransactionTerminated:
            key = event.transaction.branch
            self.branches.pop(key, None)
            self.reacks.pop(key, None)
            self.relays.pop(key, None)

    def earliest_added(self) -> float:
        """The earliest deadline added since the last call (b2bua.stack.Watched); minus
        infinity when the push waker added one (it keeps wall-clock time: look again)."""
        waker = self.waker
        if waker is not None and waker.scheduled != self._waker_seen:
            self._waker_seen = waker.scheduled
            self._heap.earliest_added()
            return float("-inf")
        return self._heap.earliest_added()

    def next_deadline(self) -> float | None:
        deadline = self._heap.next_deadline()
        waker = self.waker
        if waker is not None and (wake := waker.next_deadline()) is not None:
            # The waker keeps wall-clock time (that of bindings), the heap the stack's clock.
            local = self._now + (wake - self.wall_clock())
            deadline = local if deadline is None else min(deadline, local)
        return deadline

    def handle_deadline(self, now: float) -> None:
        self._now = now
        while (entry := self._heap.pop_due(now)) is not None:
            kind, key = entry.payload
            if kind is _Timer.RING:
                call = self.calls.get(key)
                if call is not None and call.ring_timer is entry:
                    call.ring_timer = None
                    log.info("call %s: no answer within the ring timeout", call.key)
                    call.notes.append("ring timeout")
                    self._call_input(call, CallInput.RING_TIMEOUT)
            elif kind is _Timer.GIVE_UP:
                branch = self.branches.get(key)
                if branch is not None:
                    self._branch_input(branch, BranchInput.GIVE_UP, None)
            elif kind is _Timer.SESSION:
                call_key, _, leg = key.rpartition(":")
                call = self.calls.get(call_key)
                if call is not None:
                    self.session_timers.due(call, leg)
            else:
                call = self.calls.get(key)
                if call is not None:
                    self.transfers.end_transferor(call)
        if self.waker is not None:
            for waited in self.waker.handle_deadline(self.wall_clock()):
                call = self.calls.get(str(waited))
                if call is not None and call.state is CallState.RINGING:
                    self._wait_over(call)

    def arm_session_timer(self, call: Call, leg: str, seconds: float) -> TimerEntry[Any]:
        """A leg's session timer, due in `seconds`."""
        return self._heap.schedule(self._now + seconds, (_Timer.SESSION, f"{call.key}:{leg}"))

    def cancel_timer(self, entry: TimerEntry[Any]) -> None:
        self._heap.cancel(entry)

    def arm_release(self, call: Call, seconds: float) -> None:
        """End a transferor's dialog in `seconds` unless it ends it itself."""
        self._heap.schedule(self._now + seconds, (_Timer.RELEASE, call.key))

    def knows_dialog(self, call_id: str, local_tag: str) -> bool:
        """Whether an in-dialog request names one of our calls' dialogs."""
        return self.dialogs.knows(call_id, local_tag)

    # ================================================================ the interpreters
    def _call_input(self, call: Call, what: CallInput, ctx: Any = None) -> None:
        transition = CALL_TABLE.get((call.state, what))
        if transition is None:
            self.ignored_inputs += 1
            log.debug("call %s: %s ignored in %s", call.key, what.value, call.state.value)
            return
        if call.state is CallState.RINGING and transition.target is not CallState.RINGING and (
                self.waker is not None):
            # The devices still being woken for this ring are told it is over (iOS).
            self.waker.call_over(call.key, _PUSH_REASONS.get(what, "cancelled"),
                                 self.wall_clock())
        call.state = transition.target
        if transition.outcome is not None and call.outcome is None:
            call.outcome = transition.outcome
        actions = self._CALL_ACTIONS
        for action in transition.actions:
            actions[action](self, call, ctx)

    def _branch_input(self, branch: Branch, what: BranchInput, response: Response | None) -> None:
        transition = BRANCH_TABLE.get((branch.state, what))
        if transition is None:
            self.ignored_inputs += 1
            return
        branch.state = transition.target
        actions = self._BRANCH_ACTIONS
        for action in transition.actions:
            actions[action](self, branch, response)

    # ================================================================ helpers
    def _respond(self, tx: ServerTransaction, response: Response) -> None:
        self.outbox.append(Respond(tx, response))

    def _refuse_at_once(self, tx: ServerTransaction, response: Response) -> None:
        """A refusal given at once that the same request would get again: the transaction
        ends with it (RFC 3261 §8.2.7; an INVITE's 100 still queued is taken back)."""
        self.outbox.append(Respond(tx, response, stateless=True))

    def _respond_caller(self, call: Call, status: int, reason: str | None = None,
                        headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        hdrs = headers if headers is not None else []
        if 100 < status < 300:
            hdrs.append(("Contact", self.local.contact(call.a_flow)))
            # §12.1.1: the UAS "MUST copy all Record-Route header field values from the
            # request into the response" that establishes a dialog (a carrier's proxy).
            hdrs.extend(("Record-Route", v) for v in call.a_request.headers.get_all("record-route"))
        self.outbox.append(Respond(call.a_tx, make_response(
            call.a_request, status, reason, to_tag=call.a_tag, headers=hdrs, body=body)))

    @staticmethod
    def note(call: Call, code: str, /, **params: Any) -> None:
        """A line of the call's record, as a step (worded in the reader's language)."""
        call.notes.extend(trace_lines([Step_(code, params)]))

    def _send(self, request: Request, flow: Flow, owned: bool = False) -> None:
        self.outbox.append(SendRequest(request, flow, self if owned else None))

    def _in_dialog_request(self, leg: Leg, method: str, headers: list[tuple[str, str]],
                           body: bytes = b"") -> tuple[Request, str]:
        via, branch = self.local.via(leg.flow)
        return leg.dialog.request(method, via, headers=headers, body=body), branch

    def _bye(self, leg: Leg | None, headers: list[tuple[str, str]] | None = None) -> None:
        if leg is None or leg.dialog.state is DialogState.TERMINATED:
            return
        request, _ = self._in_dialog_request(leg, "BYE", headers or [])
        leg.dialog.state = DialogState.TERMINATED
        self._send(request, leg.flow)

    def _ticket_for(self) -> int:
        self._ticket += 1
        return self._ticket

    # ================================================================ new calls
    def _invite(self, event: InviteReceived) -> None:
        """An INVITE outside any dialog: authorise, identify, anchor, route."""
        request, tx, flow = event.request, event.transaction, event.flow
        trunk = self._trunk_caller(request, flow)
        caller_ext: str | None = None
        tenant = self.tenants.only
        if trunk is None:
            auth = self.location.authenticate(request, self.wall_clock(),
                                              "Proxy-Authorization", flow=flow)
            if not auth.ok:
                answer = refusal(request, auth, self.tokens.tag())
                if auth.counted:
                    self._respond(tx, answer)  # counted towards lockout: absorb its repeats
                else:
                    # A challenge, or a locked-out source's 403: the same every time.
                    self._refuse_at_once(tx, answer)
                return
            caller_ext = auth.extension
            if tenant is None and caller_ext is not None:
                # The registrar names a tenant's extensions `EXT@DOMAIN`.
                tenant = self.tenants.of(caller_ext)
                caller_ext = split(caller_ext)[1]
        uri = request.request_uri
        dialled = uri.user_unescaped if isinstance(uri, SipUri) else None
        if not dialled:
            self._refuse_at_once(tx, make_response(request, 404, to_tag=self.tokens.tag()))
            return
        too_small = self.session_timers.too_small(request)
        if too_small is not None:
            self._refuse_at_once(tx, too_small)
            return
        did: str | None = None
        if trunk is not None:
            dialled = self.trunking.dialled(request, dialled)
            if tenant is None:  # a carrier's call is the DID owner's
                tenant, trunk = self.tenants.inbound(trunk, dialled, flow.host)
            caller = self._presented_number(request)
            caller_name = request.from_.display_name
            directory = tenant.directory
            number = normalize_number(dialled, directory.country_code)
            callee = trunk.did.get(number) or (dialled if directory.is_extension(dialled)
                                               else None)
            did = number if number in trunk.did else None
            if callee is None:
                log.info("trunk %s: no DID %s", trunk.name, dialled)
                self._refuse_at_once(tx, make_response(request, 404, to_tag=self.tokens.tag()))
                return
        else:
            assert caller_ext is not None
            if tenant is None or tenant.closing:  # a tenant deleted meanwhile
                self._refuse_at_once(tx, make_response(request, 403, "Tenant Not Served",
                                                       to_tag=self.tokens.tag()))
                return
            directory = tenant.directory
            if self.tenants.only is None and not self._own_domain(request, tenant):
                self._refuse_at_once(tx, make_response(
                    request, 403, "Another Tenant's Domain", to_tag=self.tokens.tag()))
                return
            if dialled[0] in "*#" and self.transfers.pickup(tx, request, flow, caller_ext,
                                                            dialled, tenant):
                return
            if "replaces" in request.headers:
                self.transfers.invite_with_replaces(tx, request, flow, tenant)
                return
            caller = caller_ext
            user = directory.user(caller_ext)
            caller_name = getattr(user, "name", None) if user else request.from_.display_name
            callee = dialled
        if tenant.at_call_limit() or tenant.closing:
            # The tenant's limit of calls in progress (docs/tenants.md, Limits).
            log.info("tenant %s: %d calls in progress, new call refused", tenant.domain,
                     tenant.calls)
            self.counters["tenant_limited"] = self.counters.get("tenant_limited", 0) + 1
            self._respond(tx, make_response(
                request, 503, "Tenant Call Limit Reached" if not tenant.closing
                else "Tenant Not Served", to_tag=self.tokens.tag()))
            return
        call = Call(
            key=self.tokens.token(8),
            a_tx=tx,
            a_request=request,
            a_flow=flow,
            a_tag=self.tokens.tag(),
            caller=caller,
            caller_name=caller_name,
            callee=callee,
            did=did,
            started=self.wall_clock(),
            tenant=tenant,
            trunk=trunk,
        )
        tx.context = call.key  # its CANCEL and the caller's missing ACK find the call
        tenant.calls += 1
        self.counters["calls"] += 1
        self.calls[call.key] = call
        if trunk is not None and not self.trunking.take_inbound_line(call):
            call.state = CallState.ROUTING
            self._refuse(call, 486, NO_FREE_LINE)
            return
        if self.media is MediaMode.ANCHORED:
            call.state = CallState.ANCHORING
            self.outbox.append(self.trunking.media_open(self, call, flow))
            return
        call.b_offer = request.body
        call.state = CallState.ROUTING
        self._route(call, None)

    def _music_of(self, call: Call, extension: str) -> str:
        """The hold music of `extension` of the call's company, as the media port names it."""
        tenant = call.tenant
        user = tenant.directory.user(extension)
        return tenant.aor(str(getattr(user, "hold_music", None) or "default"))

    def _own_domain(self, request: Request, tenant: Tenant) -> bool:
        """A device calls within its own company: a Request-URI that names another tenant's
        domain is refused."""
        uri = request.request_uri
        if not isinstance(uri, SipUri):
            return True
        other = self.tenants.for_domain(uri.host)
        return other is None or other is tenant

    def _trunk_caller(self, request: Request, flow: Flow) -> Trunk | None:
        trunk = self.trunking.by_line(self.tenants, request)  # sent to our registered Contact
        if trunk is not None:
            return trunk
        trunk = self.tenants.trunk_for_source(flow.host)
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
        for value in (request.headers.get("p-asserted-identity") or "",
                      request.headers.get("from") or ""):
            if not value:
                continue
            try:
                uri = parse_name_addr(split_list(value)[0]).uri
            except (SipParseError, IndexError):
                continue
            user = (uri.user_unescaped or "") if isinstance(uri, SipUri) else str(uri)
            return normalize_number(user, cc)
        return ""

    def _media_opened(self, event: MediaOpened) -> None:
        call = self.calls.get(event.call)
        if call is not None:
            call.b_offer = event.offer
            self.trunking.media_opened(call, event)
            self._call_input(call, CallInput.ANCHORED)

    # ================================================================ routing
    def _route(self, call: Call, _ctx: Any) -> None:
        """ROUTE: where the call goes, given as the input of its route."""
        callee = call.callee
        if call.tenant.directory.is_extension(callee):
            self._route_to_extension(call, callee)
        elif call.trunk is None:
            self._route_external(call, callee, diverted_from=None)  # a device dialling out
        else:
            self._refuse(call, 404, "no such number")

    def _route_to_extension(self, call: Call, ext: str) -> None:
        tenant = call.tenant
        if ext in tenant.directory.system:
            self._ring_group(call, ext)
            return
        call.user = tenant.directory.user(ext)
        try:
            decision = tenant.rules.table.decide(ext, call.caller, self.rules_clock())
        except KeyError:
            self._ring(call, [ext])
            return
        call.decision = decision
        destination = decision.destination
        log.info("call %s %s -> %s: %s (%s)", call.key, call.caller or "anonymous", ext,
                 destination.kind, decision.rule)
        self._go(call, ext, destination)

    def _go(self, call: Call, ext: str, dest: Destination) -> None:
        """Take destination `dest` of extension `ext`'s rules."""
        kind = dest.kind
        if kind == "devices":
            self._ring(call, [ext])
        elif kind == "extension":
            colleague = dest.extension or ext
            if dest.voicemail:
                self._answer_here(call, AppPlan.VOICEMAIL, colleague)
            elif colleague in call.tenant.directory.system:
                self._ring_group(call, colleague)
            else:
                self._ring(call, [colleague], diverted_from=ext)
        elif kind == "system":
            self._ring_group(call, dest.extension or ext)
        elif kind == "busy":
            self._refuse(call, 486, "busy by rule")
        elif kind in ("mobile", "external"):
            number = dest.number if kind == "external" else getattr(call.user, "mobile", None)
            if not number:
                self._refuse(call, 480, f"{kind} destination without a number")
            elif dest.bounce:
                call.bounce_number = number
                self._answer_here(call, AppPlan.BOUNCE, ext)
            else:
                self._route_external(call, number, diverted_from=ext)
        elif kind == "voicemail":
            self._answer_here(call, AppPlan.VOICEMAIL, dest.extension or ext)
        elif kind == "announcement":
            self._answer_here(call, AppPlan.ANNOUNCEMENT, ext, dest.message)
        else:
            self._refuse(call, 500, f"unknown destination {kind}")

    def _refuse(self, call: Call, status: int, why: str, reason_header: str = "",
                outcome: str | None = None) -> None:
        self._call_input(call, CallInput.REFUSED, Refusal(status, why, reason_header, outcome))

    def _answer_here(self, call: Call, app: AppPlan, ext: str,
                     message: str | None = None) -> None:
        if self.media is MediaMode.NONE:
            log.warning("call %s: %s destination needs the media engine, not available: 480",
                        call.key, app.value)
            call.notes.append(f"{app.value} not available")
            self._refuse(call, 480, f"{app.value} unavailable")
            return
        call.app = app
        call.app_extension = ext
        call.app_message = message
        self._call_input(call, CallInput.ROUTE_HERE)

    def _ring_group(self, call: Call, ext: str) -> None:
        group = call.tenant.directory.system[ext]
        call.notes.append(f"ring group {ext}")
        self._ring(call, list(group.members))

    def _ring(self, call: Call, extensions: list[str], diverted_from: str | None = None) -> None:
        targets = self._targets(call, extensions)
        woken = self._wake(call, extensions)
        if not targets and not woken:
            log.info("call %s: no reachable device for %s", call.key, ",".join(extensions))
            call.notes.append("no device registered")
            self._route_no_answer(call, "no device")
            return
        timeout = float(getattr(call.user, "ring_timeout", 0) or 0) or DEFAULT_RING_TIMEOUT
        extra = self._diversion(call, diverted_from) if diverted_from else []
        call.plan = Plan(targets, timeout, extra)
        self._call_input(call, CallInput.ROUTE_DEVICES)
        if woken and call.state is CallState.RINGING and not call.provisional_sent:
            # Devices are being woken: the caller hears ringback meanwhile.
            call.provisional_sent = 180
            self._respond_caller(call, 180, headers=[("Allow", ALLOW)])

    def _wake(self, call: Call, extensions: list[str]) -> int:
        """Push to the extensions' devices that must be woken (b2bua.push.fork); each push
        announces the Call-ID of the INVITE that device will get."""
        waker = self.waker
        if waker is None:
            return 0
        ids = call.push_ids

        def call_id(binding: Any) -> str:
            known = ids.get(binding.key)
            if known is None:
                known = ids[binding.key] = self.tokens.token(12)
            return known

        now = self.wall_clock()
        woken = 0
        aor = call.tenant.aor
        for ext in extensions:
            woken += waker.call_ringing(call.key, aor(ext), call_id, call.caller or "anonymous",
                                        call.caller_name or "", now)
        if woken:
            call.notes.append(f"{woken} device(s) woken by push")
        return woken

    def _binding_appeared(self, event: BindingAppeared) -> None:
        """A binding registered from a new flow (the registrar): a device woken by push joins
        the calls that wait for it."""
        waker = self.waker
        if waker is None:
            return
        for waiting, ring in waker.binding_appeared(event, self.wall_clock()):
            call = self.calls.get(str(waiting))
            if call is not None:
                self._call_input(call, CallInput.DEVICE_WOKEN, ring)

    def _add_branch(self, call: Call, ctx: Any) -> None:
        """ADD_BRANCH: ring a device woken by push, on its new flow, with the Call-ID its push
        announced."""
        ring: RingDevice = ctx
        binding = ring.binding
        plan = call.plan
        assert plan is not None
        if any(b.target.device_key == binding.key and b.state in RINGING_BRANCHES
               for b in call.branches):
            return  # already ringing there
        uri, flow = self.location.target_for(binding)
        ext = split(binding.aor)[1]
        target = Target(uri, flow, self._device_label(call, ext, binding), ext,
                        f"<sip:{ext}@{call.tenant.domain}>", binding.key,
                        route=tuple(binding.path))
        call.notes.append(f"{target.label} woke up")
        self._start_branch(call, target, plan, ring.call_id)

    def _wait_over(self, call: Call) -> None:
        """No device is awaited any more: a call whose branches all failed (or that had none)
        fails now."""
        if not call.branches:
            self._call_input(call, CallInput.NO_ANSWER, "no device woke up")
        elif all(b.state is BranchState.FAILED for b in call.branches):
            self._every_branch_failed(call, call.branches[-1])

    def _targets(self, call: Call, extensions: list[str]) -> list[Target]:
        now = self.wall_clock()
        seen: set[tuple[str, int, str]] = set()
        targets: list[Target] = []
        tenant = call.tenant
        directory = tenant.directory
        domain = tenant.domain
        for ext in extensions:
            for binding in self.location.lookup(tenant.aor(ext), now):
                uri, flow = self.location.target_for(binding)
                key = (flow.host, flow.port, str(uri))
                if key in seen:
                    continue
                seen.add(key)
                targets.append(Target(uri, flow, self._device_label(call, ext, binding), ext,
                                      f"<sip:{ext}@{domain}>", binding.key,
                                      route=tuple(binding.path),
                                      encryption=directory.device_encryption(
                                          ext, binding.device)))
        return targets

    def _device_label(self, call: Call, ext: str, binding: Any) -> str:
        """"Bureau (sip)", "Teams (teams)"...: the configured device a binding is."""
        user = call.tenant.directory.user(ext)
        devices = getattr(user, "devices", ())
        index = binding.device
        if index is not None and 0 <= index < len(devices):
            return f"{devices[index].label} ({devices[index].type})"
        return str(binding.user_agent or binding.contact)

    def _route_external(self, call: Call, number: str, diverted_from: str | None,
                        private: bool = False, ring_timeout: float | None = None) -> None:
        plan = self._external_plan(call, number, diverted_from, private, ring_timeout)
        if not isinstance(plan, Plan):  # why no trunk takes the call
            if plan == NO_FREE_LINE and diverted_from is not None:
                call.notes.append(plan)  # a forward: the user's no-answer destination
                self._route_no_answer(call, plan)
                return
            self._refuse(call, 503, plan)
            return
        call.plan = plan
        self._call_input(call, CallInput.ROUTE_DEVICES)

    def _external_plan(self, call: Call, number: str, diverted_from: str | None,
                       private: bool, ring_timeout: float | None) -> Plan | str:
        """A plan through the trunks (b2bua.calls.trunking), or why there is none."""
        return self.trunking.plan(self, call, number, diverted_from, private, ring_timeout)

    def _diversion(self, call: Call, ext: str) -> list[tuple[str, str]]:
        """RFC 5806 Diversion and RFC 7044 History-Info for a forwarded call."""
        domain = call.tenant.domain
        reason = "unconditional"
        if call.decision is not None and call.decision.rule in ("closed", "exceptional"):
            reason = "time-of-day"
        return [
            ("Diversion", f"<sip:{ext}@{domain}>;reason={reason};counter=1"),
            ("History-Info", f"<sip:{call.callee}@{domain}>;index=1"),
        ]

    def _route_no_answer(self, call: Call, why: str) -> None:
        """ROUTE_NO_ANSWER: the callee did not answer (timeout, decline, no device): its
        no-answer destination, taken once per call."""
        user = call.user
        config = getattr(user, "no_answer", None) if user is not None else None
        dest = Destination.from_config(config) if config is not None else None
        call.no_answer_routes += 1
        if dest is None or dest.kind == "devices" or call.no_answer_routes > 1:
            self._refuse(call, 480, why, outcome="no_answer")
            return
        needs_media = dest.kind in ("voicemail", "announcement") or dest.bounce or (
            dest.kind == "extension" and dest.voicemail)
        if needs_media and self.media is MediaMode.NONE:
            log.warning("call %s: %s, no_answer is %s but the media engine is not available: "
                        "480", call.key, why, dest.kind)
            self._refuse(call, 480, why, outcome="no_answer")
            return
        self._go(call, call.routed or call.callee, dest)

    # ================================================================ ringing
    def _start_ringing(self, call: Call, _ctx: Any) -> None:
        """RING: one branch per planned target; the ring timer if the plan has one."""
        plan = call.plan
        assert plan is not None
        call.branches = []
        for target in plan.targets:
            self._start_branch(call, target, plan)
        if plan.ring_timeout:
            call.ring_timer = self._heap.schedule(self._now + plan.ring_timeout,
                                                  (_Timer.RING, call.key))

    def _start_branch(self, call: Call, target: Target, plan: Plan,
                      call_id: str | None = None) -> None:
        via, key = self.local.via(target.flow)
        if call_id is None and target.device_key is not None:
            call_id = call.push_ids.get(target.device_key)  # a device also pushed to (iOS)
        invite = self._branch_invite(call, target, via, plan, call_id)
        branch = Branch(key, call.key, target, invite, ClientInvite(invite))
        call.branches.append(branch)
        self.branches[key] = branch
        self.counters["branches"] += 1
        self._send(invite, target.flow, owned=True)

    def _shown(self, call: Call, number: str, name: str | None) -> str:
        shown = f'"{name}" ' if name else ""
        return f"{shown}<sip:{number or 'anonymous'}@{call.tenant.domain}>"

    def _identity(self, call: Call, flow: Flow, private: bool) -> str:
        if private:
            return '"Anonymous" <sip:anonymous@anonymous.invalid>'
        user = call.caller or "anonymous"
        name = call.caller_name
        shown = f'"{name}" ' if name else ""
        host = self.local.hostport(flow) if user == "anonymous" else call.tenant.domain
        return f"{shown}<sip:{user}@{host}>"

    def _branch_invite(self, call: Call, target: Target, via: str, plan: Plan,
                       call_id: str | None = None) -> Request:
        inherited = call.branch_headers
        if inherited is None:  # what every branch takes from A's INVITE, read once per call
            a = call.a_request
            inherited = call.branch_headers = [
                ("Max-Forwards", str(max(0, (a.max_forwards or 70) - 1))),
                *((name, value) for name in _INHERITED for value in a.headers.get_all(name)),
            ]
        flow = target.flow
        # A transfer shows its transferee; a call through a trunk the number the trunk
        # presents (b2bua.calls.trunking); else the caller.
        identity = (self._shown(call, *plan.caller) if plan.caller is not None
                    else target.identity or self._identity(call, flow, plan.private))
        headers: list[tuple[str, str]] = [
            ("Via", via),
            inherited[0],
            ("From", f"{identity};tag={self.tokens.tag()}"),
            ("To", target.to),
            ("Call-ID", call_id or self.tokens.token(12)),
            ("CSeq", "1 INVITE"),
            ("Contact", self.local.contact(flow)),
            ("Allow", ALLOW),
            *inherited[1:],
            *self.session_timers.invite_headers,
            *plan.extra_headers,
            *target.headers,
            # RFC 3327 (procedures at the home proxy): a request for a contact registered with
            # a Path carries that Path as its preloaded Route set, in the order stored.
            *(("Route", value) for value in target.route),
        ]
        if call.b_offer and not any(h[0] == "content-type" for h in inherited):
            headers.append(("Content-Type", "application/sdp"))
        return Request("INVITE", target.request_uri, headers,
                       self.trunking.offer_for(call, target))

    def _stop_ring_timer(self, call: Call, _ctx: Any) -> None:
        entry = call.ring_timer
        if isinstance(entry, TimerEntry):
            self._heap.cancel(entry)
        call.ring_timer = None

    def _cancel_branches(self, call: Call, reason: str) -> None:
        for branch in call.branches:
            if branch.state in RINGING_BRANCHES:
                branch.cancel_reason = reason
                self._branch_input(branch, BranchInput.CANCEL, None)

    def _cancel_elsewhere(self, call: Call, _ctx: Any) -> None:
        self._cancel_branches(call, COMPLETED_ELSEWHERE)

    def _cancel_busy_everywhere(self, call: Call, _ctx: Any) -> None:
        self._cancel_branches(call, BUSY_EVERYWHERE)

    def _cancel_silently(self, call: Call, _ctx: Any) -> None:
        self._cancel_branches(call, "")

    def _cancel_as_caller(self, call: Call, ctx: Any) -> None:
        assert isinstance(ctx, Request)
        self._cancel_branches(call, ctx.headers.get("reason") or "")

    # ================================================================ branch events
    def _response(self, key: str, response: Response) -> None:
        branch = self.branches.get(key)
        if branch is not None:
            self._branch_response(branch, response)
            return
        reack = self.reacks.get(key)
        if reack is not None:
            if 200 <= response.status < 300:
                self._late_2xx(reack, response)
            return
        if self.transfers.reinvite_response(key, response):
            return
        if self.session_timers.response(key, response):
            return
        relay = self.relays.get(key)
        if relay is not None and response.status >= 200:
            del self.relays[key]
            self._relay_response(relay, response)
        elif relay is not None and response.status > 100:
            self._relay_response(relay, response)

    def _branch_response(self, branch: Branch, response: Response) -> None:
        status = response.status
        if status < 200:
            if status > 100:
                try:
                    branch.client.provisional(response)  # its early dialog (one per To tag)
                except SipParseError:
                    pass
            self._branch_input(branch, BranchInput.TRYING if status == 100
                               else BranchInput.PROVISIONAL, response)
            return
        if status < 300:
            try:
                kind, dialog = branch.client.answered(response)
            except SipParseError:
                log.info("call %s: unusable 2xx from %s", branch.call, branch.target.label)
                return
            branch.dialog = dialog
            if kind is Answer.FIRST:
                call = self.calls.get(branch.call)
                wanted = call is not None and call.state in _RINGING_STATES
                self._branch_input(branch, BranchInput.ANSWER if wanted
                                   else BranchInput.LATE_ANSWER, response)
            elif kind is Answer.RETRANSMISSION:
                self._branch_input(branch, BranchInput.ANSWER_AGAIN, response)
            else:
                log.info("call %s: a second dialog answered on %s: ACK then BYE", branch.call,
                         branch.target.label)
                self._branch_input(branch, BranchInput.EXTRA_ANSWER, response)
            return
        branch.status = status
        branch.reason = response.headers.get("reason") or ""
        self._branch_input(branch, BranchInput.REJECT if branch.target.trunk is None
                           else self.trunking.final_input(self, branch, response), response)

    def _transaction_failed(self, key: str, why: str) -> None:
        branch = self.branches.get(key)
        if branch is not None:
            branch.status = 408
            log.info("call %s: branch %s %s", branch.call, branch.target.label, why)
            self._branch_input(branch, BranchInput.TIMEOUT if branch.target.trunk is None
                               else self.trunking.failed_input(self, branch, why), None)
            return
        if self.transfers.reinvite_failed(key) or self.session_timers.failed(key):
            return
        relay = self.relays.pop(key, None)
        if relay is not None:
            call = self.calls.get(relay.call)
            log.info("call %s: relayed %s %s: ending the call", relay.call,
                     relay.request.method, why)
            self._respond(relay.server_tx, make_response(relay.request, 408))
            if call is not None:
                self._clear_invite(call, relay)
                self._call_input(call, CallInput.LEG_FAILED)

    # -- branch actions --------------------------------------------------------------------
    def _report_early(self, branch: Branch, response: Any) -> None:
        call = self.calls.get(branch.call)
        if call is not None:
            self._call_input(call, CallInput.EARLY, response)

    def _win(self, branch: Branch, response: Any) -> None:
        call = self.calls.get(branch.call)
        assert call is not None and branch.dialog is not None
        call.winner = branch
        transfer = call.transfer
        if transfer is not None:  # a transfer's target takes the transferor's place
            leg = Leg(transfer.side, branch.dialog, branch.target.flow)
            if transfer.side == "a":
                call.a_leg = leg
            else:
                call.b_leg = leg
        else:
            call.answered_at = self.wall_clock()
            call.answered_by = branch.target.label or branch.target.extension
            self.counters["answered"] += 1
            leg = call.b_leg = Leg("b", branch.dialog, branch.target.flow)
        if isinstance(response, Response):
            leg.last_sdp = call.b_offer
            leg.allows_update = allows_update(response)
            self.session_timers.branch_answered(call, leg, response)
        self.dialogs.add(branch.dialog, call)
        self.trunking.won(self, call, branch)
        self._call_input(call, CallInput.ANSWERED, response)

    def _report_failure(self, branch: Branch, response: Any) -> None:
        call = self.calls.get(branch.call)
        if call is None or branch not in call.branches:
            return  # an earlier ring's branch, or a call that is over
        status = branch.status or 500
        if status in (600, 603) and getattr(call.user, "decline", "all") == "all":
            log.info("call %s: declined (%s) on %s: stopping every device", call.key, status,
                     branch.target.label)
            call.notes.append(f"declined by {branch.target.label or 'a device'}")
            self._call_input(call, CallInput.DECLINED)
            return
        if any(b.state is not BranchState.FAILED for b in call.branches):
            return
        if self.waker is not None and self.waker.awaiting(call.key):
            return  # a device woken by push may still join (fork-late)
        self._every_branch_failed(call, branch)

    def _every_branch_failed(self, call: Call, branch: Branch) -> None:
        statuses = [b.status or 500 for b in call.branches]
        if all(s == 408 for s in statuses):
            self._call_input(call, CallInput.NO_ANSWER, "no device responded")
            return
        best = best_response(statuses)
        why = ("every device busy" if best == 486 and call.trunk is None
               else f"every branch failed ({','.join(map(str, statuses))})")
        self._call_input(call, CallInput.REJECTED, Refusal(best, why, branch.reason))

    def _send_cancel(self, branch: Branch, _response: Any) -> None:
        invite = branch.invite
        headers: list[tuple[str, str]] = [
            ("Via", invite.headers.get("via") or ""),
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("from") or ""),
            ("To", invite.headers.get("to") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.number} CANCEL"),
            # RFC 3261 §9.1: the CANCEL carries the Route header fields of the INVITE.
            *(("Route", value) for value in invite.headers.get_all("route")),
        ]
        if branch.cancel_reason:
            headers.append(("Reason", branch.cancel_reason))
        self._send(Request("CANCEL", invite.request_uri, headers), branch.target.flow)

    def _arm_give_up(self, branch: Branch, _response: Any) -> None:
        self._heap.schedule(self._now + self.timers.transaction_timeout,
                            (_Timer.GIVE_UP, branch.key))

    def _ack(self, branch: Branch, _response: Any) -> None:
        dialog = branch.dialog
        assert dialog is not None
        via, _ = self.local.via(branch.target.flow)
        data = bytes(branch.client.ack(dialog, via))
        branch.client.remember_ack(dialog, data)
        self.outbox.append(SendBytes(data, branch.target.flow))

    def _re_ack(self, branch: Branch, _response: Any) -> None:
        dialog = branch.dialog
        data = branch.client.ack_bytes(dialog) if dialog is not None else None
        if data is not None:
            self.outbox.append(SendBytes(data, branch.target.flow))

    def _bye_dialog(self, branch: Branch, _response: Any) -> None:
        dialog = branch.dialog
        assert dialog is not None
        call = self.calls.get(branch.call)
        headers = ([("Reason", COMPLETED_ELSEWHERE)]
                   if call is not None and call.winner is not None else [])
        via, _ = self.local.via(branch.target.flow)
        dialog.state = DialogState.TERMINATED
        self._send(dialog.request("BYE", via, headers=headers), branch.target.flow)
        if call is None:
            self._keep_ack_only(branch)

    def _abandon(self, branch: Branch, _response: Any) -> None:
        self.outbox.append(Abandon(branch.key))

    def _keep_ack_only(self, branch: Branch) -> None:
        """`branch`'s call is over, but its INVITE transaction passes 2xx retransmissions up
        for 64*T1 more (RFC 6026 ACCEPTED): they get the same ACK again, from its bytes. The
        branch itself is let go of now: under load that is most of what the server holds."""
        acks = {tag: data for tag, dialog in branch.client.dialogs.items()
                if (data := branch.client.ack_bytes(dialog)) is not None}
        if acks and self.branches.pop(branch.key, None) is branch:
            self.reacks[branch.key] = (branch.target.flow, acks)

    def _late_2xx(self, reack: tuple[Flow, dict[str, bytes]], response: Response) -> None:
        """A 2xx for a branch of a call that is over: the same ACK again, or, from a dialog
        not seen yet (a fork downstream), an ACK and a BYE (§13.2.2.4)."""
        flow, acks = reack
        try:
            tag = response.to.tag or ""
            data = acks.get(tag)
            if data is None:
                dialog = Dialog.from_2xx(response)
                via, _ = self.local.via(flow)
                data = acks[tag] = bytes(dialog.request("ACK", via, cseq=dialog.local_cseq))
                self.outbox.append(SendBytes(data, flow))
                via, _ = self.local.via(flow)
                self._send(dialog.request("BYE", via), flow)
                return
        except SipParseError:
            return
        self.outbox.append(SendBytes(data, flow))

    # ================================================================ answering
    def _relay_early(self, call: Call, ctx: Any) -> None:
        """RELAY_EARLY: a branch's 180/183 to the caller (its SDP through media)."""
        assert isinstance(ctx, Response)
        status = ctx.status
        body = ctx.body if status in (180, 183) else b""
        self._queue(call, Step(StepKind.PROVISIONAL, 0, response=ctx), body, "b", SdpKind.ANSWER)

    def _send_provisional(self, call: Call, step: Step) -> None:
        response = step.response
        assert response is not None
        status = response.status
        if not step.body and call.provisional_sent == 180 and status == 180:
            return  # one 180 to A is enough (several phones ring)
        headers: list[tuple[str, str]] = [("Allow", ALLOW)]
        if step.body:
            headers.append(("Content-Type",
                            response.headers.get("content-type") or "application/sdp"))
        call.provisional_sent = status
        self._respond_caller(call, status, response.reason if status not in (180, 183) else None,
                             headers, step.body)

    def _answer_caller(self, call: Call, ctx: Any) -> None:
        """ANSWER_CALLER: ACK the winner (at once when the caller made the offer; a late offer's
        ACK waits for the caller's answer), its SDP through media, then ANSWER_READY."""
        assert isinstance(ctx, Response)
        branch = call.winner
        assert branch is not None and branch.dialog is not None and call.b_leg is not None
        via, _ = self.local.via(branch.target.flow)
        ack = branch.client.ack(branch.dialog, via)
        if call.a_request.body:
            data = bytes(ack)
            branch.client.remember_ack(branch.dialog, data)
            self.outbox.append(SendBytes(data, branch.target.flow))
            kind = SdpKind.ANSWER
        else:
            call.b_leg.ack_due = ack  # late offer: the ACK carries the caller's answer
            kind = SdpKind.OFFER
        self._queue(call, Step(StepKind.ANSWER, 0, response=ctx), ctx.body, "b", kind)

    def _local_answer(self, call: Call, _ctx: Any) -> None:
        """LOCAL_ANSWER: we answer the caller's offer ourselves (ANSWER_READY follows)."""
        offer = call.a_request.body
        if not offer:
            self._call_input(call, CallInput.MEDIA_FAILED, MediaFailed(
                call.key, 488, "the caller sent no SDP offer: cannot answer with media"))
            return
        ticket = self._ticket_for()
        call.steps.append(Step(StepKind.ANSWER, ticket))
        self.outbox.append(MediaLocalAnswer(call.key, ticket, "a", offer,
                                            self._music_of(call, call.callee)))

    def _send_200(self, call: Call, ctx: Any) -> None:
        """SEND_200: the caller's leg is confirmed; the 200 carries the SDP of `ctx` (a Step)."""
        assert isinstance(ctx, Step)
        dialog = Dialog.as_uas(call.a_request, call.a_tag)
        dialog.state = DialogState.CONFIRMED
        call.a_leg = Leg("a", dialog, call.a_flow)
        self.dialogs.add(dialog, call)
        headers: list[tuple[str, str]] = [("Allow", ALLOW)]
        call.a_leg.last_sdp = ctx.body
        call.a_leg.allows_update = allows_update(call.a_request)
        headers += self.session_timers.answer_headers(call, call.a_leg)
        response = ctx.response
        if response is not None:
            value = response.headers.get("content-type")
            if value:
                headers.append(("content-type", value))
            log.info("call %s answered by %s", call.key, call.answered_by)
        else:
            headers.append(("Content-Type", "application/sdp"))
            if call.answered_at is None:
                call.answered_at = self.wall_clock()
        self._respond_caller(call, 200, None, headers, ctx.body)
        if self.on_answered is not None and call.b_leg is not None:
            self.on_answered(call)

    def _start_app(self, call: Call, _ctx: Any) -> None:
        """START_APP: what a call we answered ourselves does now."""
        ext = call.app_extension
        tenant = call.tenant
        user = tenant.directory.user(ext)
        language = getattr(user, "language", None)
        # The media port knows the box and the sounds by the tenant's names.
        box = tenant.aor(ext)
        if call.app is AppPlan.VOICEMAIL:
            call.notes.append(f"voicemail of {ext}")
            call.outcome = "voicemail"
            self.outbox.append(MediaRunApp(call.key, AppKind.VOICEMAIL, box, call.caller,
                                           language=language, leg=call.transferee_leg))
        elif call.app is AppPlan.ANNOUNCEMENT:
            call.notes.append(f"announcement {call.app_message}")
            message = tenant.aor(call.app_message) if call.app_message else None
            self.outbox.append(MediaRunApp(call.key, AppKind.ANNOUNCEMENT, box, call.caller,
                                           message=message, language=language,
                                           leg=call.transferee_leg))
        else:
            call.notes.append(f"bounce to {call.bounce_number}")
            self.outbox.append(MediaPlay(call.key, "a", "locate", box, language))
            ticket = self._ticket_for()
            call.steps.append(Step(StepKind.OFFER, ticket))
            self.outbox.append(MediaLocalOffer(call.key, ticket, "b"))

    def _dial_bounce(self, call: Call, ctx: Any) -> None:
        """DIAL_BOUNCE: the number, privately, with our own offer."""
        assert isinstance(ctx, Step)
        call.b_offer = ctx.body
        timeout = float(getattr(call.user, "ring_timeout", 0) or 0) or DEFAULT_RING_TIMEOUT
        number = call.bounce_number or ""
        plan = self._external_plan(call, number, call.app_extension, True, timeout)
        if not isinstance(plan, Plan):
            call.notes.append(plan)
            self._call_input(call, CallInput.REJECTED, Refusal(503, plan))
            return
        call.plan = plan
        self._start_ringing(call, None)

    def _bridge_bounce(self, call: Call, ctx: Any) -> None:
        """BRIDGE_BOUNCE: the far end's answer to our offer goes to media; then its ACK, and
        the caller hears it instead of the prompt."""
        assert isinstance(ctx, Response)
        branch = call.winner
        assert branch is not None
        log.info("call %s: bounce answered by %s", call.key, branch.target.extension)
        self._queue(call, Step(StepKind.JOIN, 0, response=ctx), ctx.body, "b",
                    SdpKind.ANSWER)

    def _run_unavailable(self, call: Call, _ctx: Any) -> None:
        call.notes.append("bounce not answered: voicemail")
        call.outcome = "voicemail"
        tenant = call.tenant
        user = tenant.directory.user(call.app_extension)
        self.outbox.append(MediaRunApp(call.key, AppKind.UNAVAILABLE,
                                       tenant.aor(call.app_extension), call.caller,
                                       language=getattr(user, "language", None),
                                       leg=call.transferee_leg))

    # ================================================================ final responses, BYEs
    def _respond_487(self, call: Call, _ctx: Any) -> None:
        log.info("call %s: caller cancelled", call.key)
        self.counters["cancelled"] += 1
        self._respond_caller(call, 487)

    def _respond_refusal(self, call: Call, ctx: Any) -> None:
        assert isinstance(ctx, Refusal)
        headers = [("Reason", ctx.reason_header)] if ctx.reason_header else []
        self._respond_caller(call, ctx.status, None, headers)
        call.notes.append(ctx.why)
        self.counters["failed"] += 1
        if call.outcome is None:
            call.outcome = ctx.outcome or _OUTCOME_OF_STATUS.get(ctx.status, "failed")

    def _respond_media_failure(self, call: Call, ctx: Any) -> None:
        assert isinstance(ctx, MediaFailed)
        log.warning("call %s: media: %s", call.key, ctx.reason)
        call.notes.append(f"media: {ctx.reason}")
        self.counters["failed"] += 1
        self._respond_caller(call, ctx.status)

    def _respond_unavailable(self, call: Call, _ctx: Any) -> None:
        self._respond_caller(call, 503)

    def _answer_bye(self, call: Call, ctx: Any) -> None:
        assert isinstance(ctx, LegRequest)
        tx = ctx.event.transaction
        if tx is not None:
            self._respond(tx, make_response(ctx.event.request, 200))
        call.ended_by = ctx.leg.name
        ctx.leg.dialog.state = DialogState.TERMINATED

    def _bye_other(self, call: Call, ctx: Any) -> None:
        assert isinstance(ctx, LegRequest)
        other = call.b_leg if ctx.leg is call.a_leg else call.a_leg
        headers = [("Reason", v) for v in ctx.event.request.headers.get_all("reason")]
        self._bye(other, headers)

    def _bye_caller(self, call: Call, _ctx: Any) -> None:
        """The party we answered ourselves (the caller, or a transferee)."""
        self._bye(self._leg(call, call.transferee_leg))

    def _bye_callee(self, call: Call, _ctx: Any) -> None:
        self._bye(call.b_leg)

    def _bye_all(self, call: Call, _ctx: Any) -> None:
        self._bye(call.a_leg)
        self._bye(call.b_leg)

    def _end(self, call: Call, _ctx: Any) -> None:
        """END: close media, write the record, forget the call."""
        self._stop_ring_timer(call, None)
        self.trunking.call_ended(call)  # its trunk lines
        for step in call.steps:  # requests still waiting for media get their answer
            relay = step.relay
            if relay is not None:
                self._respond(relay.server_tx, make_response(relay.request, 487))
        call.steps.clear()
        if call.outcome is None:
            call.outcome = "answered" if call.answered_at is not None else "failed"
        for leg in (call.a_leg, call.b_leg):
            if leg is not None:
                self.dialogs.end(leg.dialog, self._now)
        self.transfers.end_transferor(call)
        self.session_timers.cancel(call)
        if self.media is not MediaMode.NONE:
            self.outbox.append(MediaClose(call.key))
        self.outbox.append(WriteRecord(self._record(call)))
        if self.on_ended is not None and call.a_leg is not None:
            self.on_ended(call)
        if self.calls.pop(call.key, None) is not None:
            call.tenant.calls -= 1
        for branch in call.branches:
            if branch.state in (BranchState.ANSWERED, BranchState.ENDING):
                self._keep_ack_only(branch)
        call.branches = []
        call.winner = None

    def _record(self, call: Call) -> CallRecord:
        """The call's record: its decision's steps and its notes' (no English is rendered
        here: a record is read far less often than a call ends)."""
        decision = call.decision
        steps: list[Step_] = []
        rule = None
        destination = None
        if decision is not None:
            rule = decision.rule
            steps.extend(decision.steps)
            destination = decision.destination.to_config_dict()
        notes = call.notes
        if call.digits:
            notes = [*notes, "DTMF " + "".join(d for _, d in call.digits)]
        if notes:
            steps.extend(steps_of(notes))
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
            trace=[],
            ended_by=call.ended_by,
            steps=steps,
            tenant=call.tenant.key,
        )

    # ================================================================ the call's ordered steps
    def _queue(self, call: Call, step: Step, body: bytes, leg: str, kind: SdpKind) -> None:
        """Send `step` in the call's order: its `body` (SDP from `leg`) goes through the media
        port first when media is anchored."""
        if body and self.media is MediaMode.ANCHORED:
            step.ticket = self._ticket_for()
            source = call.a_flow.host if leg == "a" else (
                call.b_leg.flow.host if call.b_leg is not None else None)
            self.outbox.append(MediaRewrite(call.key, step.ticket, leg, body, kind, source))
        else:
            step.body = body
        if call.steps or step.ticket:
            call.steps.append(step)
            self._run_steps(call)
        else:
            self._run_step(call, step)

    def _sdp_ready(self, event: SdpReady) -> None:
        call = self.calls.get(event.call)
        if call is None:
            return
        for step in call.steps:
            if step.ticket == event.ticket:
                step.body = event.body
                step.ticket = 0
                break
        self._run_steps(call)

    def _run_steps(self, call: Call) -> None:
        steps = call.steps
        while steps and steps[0].ticket == 0 and call.state is not CallState.ENDED:
            self._run_step(call, steps.popleft())

    def _run_step(self, call: Call, step: Step) -> None:
        kind = step.kind
        if kind is StepKind.PROVISIONAL:
            self._send_provisional(call, step)
        elif kind is StepKind.ANSWER:
            self._call_input(call, CallInput.ANSWER_READY, step)
        elif kind is StepKind.OFFER:
            self._call_input(call, CallInput.OFFER_READY, step)
        elif kind is StepKind.RELAY_REQUEST:
            self._send_relayed_request(call, step)
        elif kind is StepKind.RELAY_RESPONSE:
            self._send_relayed_response(call, step)
        elif kind is StepKind.ACK:
            self._send_late_ack(call, step)
        elif kind is StepKind.LOCAL_REPLY:
            self._send_local_reply(call, step)
        elif kind is StepKind.REINVITE:
            self.transfers.send_reinvite(call, step)
        elif kind is StepKind.REBRIDGED:
            self._call_input(call, CallInput.REBRIDGED, step)
        elif kind is StepKind.UNHELD:
            leg = self._leg(call, step.leg)
            if leg is not None:
                leg.held = False
        else:
            self._send_join_ack(call, step)

    def _send_join_ack(self, call: Call, step: Step) -> None:
        """The winner's 2xx ACKed once media took its answer; the party that waited (the
        bounced caller, a transferee) hears it instead of the prompt or music."""
        branch = call.winner
        if branch is None or branch.dialog is None:
            return
        via, _ = self.local.via(branch.target.flow)
        data = bytes(branch.client.ack(branch.dialog, via))
        branch.client.remember_ack(branch.dialog, data)
        self.outbox.append(SendBytes(data, branch.target.flow))
        self.outbox.append(MediaResume(call.key, call.transferee_leg))
        self.transfers.unhold(call)

    # ================================================================ media events
    def _media_failed(self, event: MediaFailed) -> None:
        call = self.calls.get(event.call)
        if call is None:
            return
        if event.status == 488 and event.ticket and self._refuse_one_offer(call, event):
            return
        log.warning("call %s: the media backend failed (%s): ending the call", call.key,
                    event.reason)
        for step in call.steps:
            relay = step.relay
            if relay is not None:
                self._respond(relay.server_tx, make_response(relay.request, 500))
                self._clear_invite(call, relay)
        call.steps.clear()
        self._call_input(call, CallInput.MEDIA_FAILED, event)

    def _refuse_one_offer(self, call: Call, event: MediaFailed) -> bool:
        """An SDP our media refused (488: no codec, an unknown crypto suite) inside a call
        that goes on: a re-INVITE or UPDATE gets 488 and is not relayed; a branch's 183 is
        not relayed. False when the refused body is the one the call needs to connect."""
        step = next((s for s in call.steps if s.ticket == event.ticket), None)
        if step is None:
            return False
        relay = step.relay
        if step.kind in (StepKind.RELAY_REQUEST, StepKind.LOCAL_REPLY) and relay is not None:
            log.info("call %s: %s refused: %s", call.key, relay.request.method, event.reason)
            self._respond(relay.server_tx, make_response(relay.request, 488))
            self._clear_invite(call, relay)
        elif step.kind is not StepKind.PROVISIONAL:
            return False
        call.steps.remove(step)
        self._run_steps(call)
        return True

    def _app_finished(self, event: AppFinished) -> None:
        call = self.calls.get(event.call)
        if call is None:
            return
        if event.outcome is not None:
            call.outcome = event.outcome
        if event.note:
            call.notes.append(event.note)
        if call.outcome is None:
            call.outcome = "answered"
        self._call_input(call, CallInput.APP_DONE)

    def _rtp_timed_out(self, event: RtpTimedOut) -> None:
        call = self.calls.get(event.call)
        if call is not None:
            log.info("call %s: no RTP from leg %s: ending the call", call.key, event.leg)
            self.note(call, "rtp_timeout", leg=event.leg)
            self._call_input(call, CallInput.RTP_TIMEOUT)

    def _dtmf(self, event: DtmfReceived) -> None:
        """A DTMF digit from a leg (RFC 4733, relayed by the media engine): kept for the call
        record (and the menus to come)."""
        call = self.calls.get(event.call)
        if call is not None:
            call.digits.append((event.leg, event.digit))

    def _hang_up(self, event: HangUp) -> None:
        call = self.calls.get(event.call)
        if call is not None:
            if call.outcome is None:
                call.outcome = event.outcome
            self._call_input(call, CallInput.HANGUP)

    # ================================================================ the caller's CANCEL
    def _caller_cancelled(self, event: CallerCancelled) -> None:
        invite_tx = event.invite_transaction
        if invite_tx is None:  # no such INVITE: the same answer each time, nothing kept
            self._refuse_at_once(event.cancel_transaction,
                                 make_response(event.request, 481, to_tag=self.tokens.tag()))
            return
        # §9.2: the CANCEL gets its 200 whatever the INVITE's state.
        self._respond(event.cancel_transaction, make_response(event.request, 200))
        key = invite_tx.context
        call = self.calls.get(key) if isinstance(key, str) else None
        if call is not None:
            self._call_input(call, CallInput.CANCELLED, event.request)

    def _ack_never_came(self, event: AckNeverCame) -> None:
        key = event.transaction.context
        call = self.calls.get(key) if isinstance(key, str) else None
        if call is not None:
            log.info("call %s: the caller never ACKed the 200: ending", call.key)
            self._call_input(call, CallInput.ACK_TIMEOUT)

    # ================================================================ in-dialog requests
    def _in_dialog(self, event: InDialogRequest) -> None:
        request = event.request
        method = request.method
        found = self.dialogs.match(request)
        if found is None:
            if method != "ACK" and event.transaction is not None:
                # A BYE sent again after its 200 was lost (its transaction no longer kept).
                if method == "BYE" and self.dialogs.ended_recently(request, self._now):
                    self._respond(event.transaction, make_response(request, 200))
                else:  # no such dialog: the same answer each time, nothing kept
                    self._refuse_at_once(event.transaction, make_response(request, 481))
            return
        dialog, call = found
        tx = event.transaction
        leg = self._leg_of(call, dialog)
        if leg is None:  # a transferor's dialog, out of the bridge since its REFER
            transfer = call.transfer
            if transfer is not None and transfer.transferor is not None and \
                    transfer.transferor.dialog is dialog and tx is not None and method != "ACK":
                if dialog.check_request(request) is None:
                    self.transfers.transferor_request(call, transfer.transferor, tx, request)
                else:
                    self._respond(tx, make_response(request, 500, "CSeq out of order"))
            return
        other = call.b_leg if leg is call.a_leg else call.a_leg
        if method == "ACK" or tx is None:
            if other is not None and other.ack_due is not None:
                self._queue(call, Step(StepKind.ACK, 0, request=request, leg=other.name),
                            request.body, leg.name, SdpKind.ANSWER)
            return
        problem = dialog.check_request(request)
        if problem is not None:
            headers = [("Retry-After", "1")] if problem[0] == 500 and method == "INVITE" else []
            self._respond(tx, make_response(request, problem[0], problem[1], headers=headers))
            return
        if method == "REFER":
            self.transfers.refer(call, leg, tx, request)
            return
        if method == "BYE":
            what = CallInput.BYE_CALLER if leg.name == "a" else CallInput.BYE_CALLEE
            before = call.state
            self._call_input(call, what, LegRequest(event, leg))
            if call.state is before:  # the call's state does not take a BYE now
                self._respond(tx, make_response(request, 200))
            return
        if other is None or other.dialog.state is DialogState.TERMINATED:
            # Only our media talks to this leg (voicemail, an announcement, a bounce ringing).
            self._answer_media_only(call, leg, tx, request)
            return
        if method in ("INVITE", "UPDATE") and request.body:
            other.held = holds(request.body)
        if method == "INVITE":
            dialog.invite = InviteState.INCOMING
            other.dialog.invite = InviteState.OUTGOING
            dialog.refresh_target(request)
        elif method == "UPDATE":
            dialog.refresh_target(request)
        headers = [(name, value) for name in _RELAYED_REQUEST_HEADERS
                   for value in request.headers.get_all(name)]
        if method in ("INVITE", "UPDATE"):
            headers.append(("Contact", self.local.contact(other.flow)))
            headers += self.session_timers.request_headers(other)
        if method == "INVITE":
            headers.append(("Allow", ALLOW))
        relay = Relay(call.key, leg.name, other.name, tx, request)
        step = Step(StepKind.RELAY_REQUEST, 0, request=request, relay=relay, leg=other.name,
                    headers=headers)
        if method in ("INVITE", "UPDATE"):
            self._queue(call, step, request.body, leg.name, SdpKind.OFFER)
        else:
            self._queue_plain(call, step, request.body)

    def _leg(self, call: Call, name: str) -> Leg | None:
        return call.a_leg if name == "a" else call.b_leg

    @staticmethod
    def _leg_of(call: Call, dialog: Dialog) -> Leg | None:
        """The bridged leg `dialog` is, if any."""
        for leg in (call.a_leg, call.b_leg):
            if leg is not None and leg.dialog is dialog:
                return leg
        return None

    def _send_relayed_request(self, call: Call, step: Step) -> None:
        relay = step.relay
        request = step.request
        assert relay is not None and request is not None
        other = self._leg(call, relay.to_leg)
        if other is None:
            return
        body = step.body if request.method in ("INVITE", "UPDATE") else request.body
        relayed, key = self._in_dialog_request(other, request.method, step.headers, body)
        self.relays[key] = relay
        self._send(relayed, other.flow, owned=True)

    def _relay_response(self, relay: Relay, response: Response) -> None:
        call = self.calls.get(relay.call)
        if call is None:
            return
        status = response.status
        request = relay.request
        method = request.method
        if status >= 200 and method == "INVITE":
            self._clear_invite(call, relay)
        to_leg = self._leg(call, relay.to_leg)
        from_leg = self._leg(call, relay.from_leg)
        headers: list[tuple[str, str]] = []
        for name in _RELAYED_RESPONSE_HEADERS:
            value = response.headers.get(name)
            if value:
                headers.append((name, value))
        sdp = method in ("INVITE", "UPDATE") and 100 < status < 300
        if sdp and from_leg is not None:
            headers.append(("Contact", self.local.contact(from_leg.flow)))
            if to_leg is not None and status >= 200:
                to_leg.dialog.refresh_target(response)
            if status >= 200:
                headers += self.session_timers.response_headers(from_leg)
                self.session_timers.refreshed(call, from_leg)
                self.session_timers.refreshed(call, to_leg)
        step = Step(StepKind.RELAY_RESPONSE, 0, response=response, relay=relay,
                    headers=headers)
        if sdp and response.body:
            self._queue(call, step, response.body, relay.to_leg,
                        SdpKind.ANSWER if request.body else SdpKind.OFFER)
        else:
            self._queue_plain(call, step, response.body)

    def _queue_plain(self, call: Call, step: Step, body: bytes) -> None:
        step.body = body
        if call.steps:
            call.steps.append(step)
            self._run_steps(call)
        else:
            self._run_step(call, step)

    def _send_relayed_response(self, call: Call, step: Step) -> None:
        relay = step.relay
        response = step.response
        assert relay is not None and response is not None
        request = relay.request
        status = response.status
        out = make_response(request, status, response.reason, headers=step.headers,
                            body=step.body)
        if request.method == "INVITE" and 200 <= status < 300:
            to_leg = self._leg(call, relay.to_leg)
            if to_leg is not None:
                via, _ = self.local.via(to_leg.flow)
                ack = to_leg.dialog.request("ACK", via, cseq=response.cseq.number)
                if request.body:
                    self.outbox.append(SendBytes(bytes(ack), to_leg.flow))
                else:
                    to_leg.ack_due = ack  # late-offer re-INVITE: the ACK carries the answer
        self._respond(relay.server_tx, out)

    def _send_late_ack(self, call: Call, step: Step) -> None:
        """The ACK that waited for the other leg's ACK: it carries that ACK's answer."""
        leg = self._leg(call, step.leg)
        if leg is None or leg.ack_due is None:
            return
        ack, leg.ack_due = leg.ack_due, None
        request = step.request
        if request is not None and request.body:
            ack.body = step.body
            ack.headers.set("Content-Type",
                            request.headers.get("content-type") or "application/sdp")
        data = bytes(ack)
        winner = call.winner
        if leg is call.b_leg and winner is not None and winner.dialog is leg.dialog:
            winner.client.remember_ack(leg.dialog, data)
        self.outbox.append(SendBytes(data, leg.flow))

    def _clear_invite(self, call: Call, relay: Relay) -> None:
        if relay.request.method != "INVITE":
            return
        for name in (relay.from_leg, relay.to_leg):
            leg = self._leg(call, name)
            if leg is not None:
                leg.dialog.invite = InviteState.IDLE

    def _answer_media_only(self, call: Call, leg: Leg, tx: ServerTransaction,
                           request: Request) -> None:
        """A request on a leg only our media talks to: we answer it, an offer with our own
        answer (a phone that puts the voicemail on hold)."""
        relay = Relay(call.key, leg.name, "", tx, request)
        step = Step(StepKind.LOCAL_REPLY, 0, request=request, relay=relay, leg=leg.name)
        if request.method in ("INVITE", "UPDATE") and request.body and \
                self.media is not MediaMode.NONE:
            step.ticket = self._ticket_for()
            call.steps.append(step)
            self.outbox.append(MediaLocalAnswer(call.key, step.ticket, leg.name, request.body,
                                                self._music_of(call, call.callee)))
            self._run_steps(call)
        else:
            self._queue_plain(call, step, b"")

    def _send_local_reply(self, call: Call, step: Step) -> None:
        relay = step.relay
        assert relay is not None
        request = relay.request
        headers: list[tuple[str, str]] = []
        if request.method in ("INVITE", "UPDATE"):
            leg = self._leg(call, relay.from_leg)
            if leg is not None:
                headers.append(("Contact", self.local.contact(leg.flow)))
            if step.body:
                headers.append(("Content-Type", "application/sdp"))
        self._respond(relay.server_tx, make_response(request, 200, headers=headers,
                                                     body=step.body, to_tag=step.tag or None))

    # ================================================================ dispatch tables
    _CALL_ACTIONS: ClassVar[dict[CallAction, CallActionFn]] = {
        CallAction.ROUTE: _route,
        CallAction.ROUTE_NO_ANSWER: lambda self, call, ctx: self._route_no_answer(
            call, ctx if isinstance(ctx, str) else "no answer"),  # ctx: why, when told
        CallAction.RING: _start_ringing,
        CallAction.STOP_RING_TIMER: _stop_ring_timer,
        CallAction.RELAY_EARLY: _relay_early,
        CallAction.CANCEL_ELSEWHERE: _cancel_elsewhere,
        CallAction.CANCEL_BUSY_EVERYWHERE: _cancel_busy_everywhere,
        CallAction.CANCEL_SILENTLY: _cancel_silently,
        CallAction.CANCEL_AS_CALLER: _cancel_as_caller,
        CallAction.ANSWER_CALLER: _answer_caller,
        CallAction.LOCAL_ANSWER: _local_answer,
        CallAction.SEND_200: _send_200,
        CallAction.START_APP: _start_app,
        CallAction.DIAL_BOUNCE: _dial_bounce,
        CallAction.BRIDGE_BOUNCE: _bridge_bounce,
        CallAction.RUN_UNAVAILABLE: _run_unavailable,
        CallAction.RESPOND_487: _respond_487,
        CallAction.RESPOND_REFUSAL: _respond_refusal,
        CallAction.RESPOND_BEST: _respond_refusal,
        CallAction.RESPOND_MEDIA_FAILURE: _respond_media_failure,
        CallAction.RESPOND_UNAVAILABLE: _respond_unavailable,
        CallAction.ANSWER_BYE: _answer_bye,
        CallAction.BYE_OTHER: _bye_other,
        CallAction.BYE_CALLER: _bye_caller,
        CallAction.BYE_CALLEE: _bye_callee,
        CallAction.BYE_ALL: _bye_all,
        CallAction.END: _end,
        CallAction.ADD_BRANCH: _add_branch,
        CallAction.DETACH_TRANSFEROR: lambda self, call, ctx: self.transfers.detach_transferor(
            call, ctx),
        CallAction.HOLD_TRANSFEREE: lambda self, call, ctx: self.transfers.hold_transferee(
            call, ctx),
        CallAction.ROUTE_TRANSFER: lambda self, call, ctx: self.transfers.route_transfer(
            call, ctx),
        CallAction.TRANSFER_OFFER: lambda self, call, ctx: self.transfers.transfer_offer(
            call, ctx),
        CallAction.DIAL_TRANSFER: lambda self, call, ctx: self.transfers.dial_transfer(
            call, ctx),
        CallAction.NOTIFY_PROGRESS: lambda self, call, ctx: self.transfers.notify_progress(
            call, ctx),
        CallAction.NOTIFY_SUCCESS: lambda self, call, ctx: self.transfers.notify_success(
            call, ctx),
        CallAction.NOTIFY_FAILURE: lambda self, call, ctx: self.transfers.notify_failure(
            call, ctx),
        CallAction.BRIDGE_TRANSFER: lambda self, call, ctx: self.transfers.bridge_transfer(
            call, ctx),
        CallAction.RELEASE_TRANSFEROR: lambda self, call, ctx: self.transfers.release_transferor(
            call, ctx),
        CallAction.TRANSFER_NO_ANSWER: lambda self, call, ctx: self.transfers.transfer_no_answer(
            call, ctx),
        CallAction.TRANSFER_FAILED: lambda self, call, ctx: self.transfers.transfer_failed(
            call, ctx),
        CallAction.REATTACH: lambda self, call, ctx: self.transfers.reattach(call, ctx),
        CallAction.RUN_GOODBYE: lambda self, call, ctx: self.transfers.run_goodbye(call, ctx),
        CallAction.ATTENDED_REBRIDGE: lambda self, call, ctx: self.transfers.attended_rebridge(
            call, ctx),
        CallAction.FINISH_REBRIDGE: lambda self, call, ctx: self.transfers.finish_rebridge(
            call, ctx),
        CallAction.PICKUP: lambda self, call, ctx: self.transfers.picked_up(call, ctx),
        CallAction.REPLACE_LEG: lambda self, call, ctx: self.transfers.replace_leg(call, ctx),
    }
    _BRANCH_ACTIONS: ClassVar[dict[BranchAction, BranchActionFn]] = {
        BranchAction.REPORT_EARLY: _report_early,
        BranchAction.WIN: _win,
        BranchAction.REPORT_FAILURE: _report_failure,
        BranchAction.SEND_CANCEL: _send_cancel,
        BranchAction.ARM_GIVE_UP: _arm_give_up,
        BranchAction.ACK: _ack,
        BranchAction.RE_ACK: _re_ack,
        BranchAction.BYE_DIALOG: _bye_dialog,
        BranchAction.ABANDON: _abandon,
        # -- trunk branches (b2bua.calls.trunking) --
        BranchAction.ANSWER_CHALLENGE: lambda self, branch, response:
            self.trunking.answer_challenge(self, branch, response),
        BranchAction.FAIL_OVER: lambda self, branch, response:
            self.trunking.fail_over(self, branch, response),
    }


assert set(CallEngine._CALL_ACTIONS) == set(CallAction), "every call action has its function"
assert set(CallEngine._BRANCH_ACTIONS) == set(BranchAction), "every branch action has one"

"""Transfer and pickup: RFC 3515 (REFER), RFC 3891 (Replaces), RFC 3892 (Referred-By),
RFC 4488 (Refer-Sub), RFC 5589 (call transfer), and directed and group pickup.

Theory of operation
-------------------
The call engine owns the calls; this module is its part that moves legs between them. Every
action here is an action of the call table (b2bua.calls.table) and runs from the engine's
interpreter; what it sends is a command in the engine's outbox.

Blind transfer. A party of a bridged call sends REFER on its dialog with us. We answer 202,
send NOTIFY "SIP/2.0 100 Trying" on the implicit subscription (RFC 3515 §2.4.4), take the
transferor's leg out of the bridge (its dialog lives on for the NOTIFYs), play the target's hold
music to the transferee, and route the target as a call to it would be routed (its rules, its
devices, a ring group, an external number through the trunk). The target is offered our own
SDP for the transferor's side of the call's media session: the transferee's media never moves,
so it needs no re-INVITE. When the target answers, it takes the transferor's place; the
NOTIFY says "200 OK" and ends the subscription; the transferor's dialog ends (its own BYE, or
ours a little later, RFC 5589 §6). When the target does not answer, the transferee goes to the
target's no-answer destination (voicemail); when there is none, the transferor gets the call
back if it is still there, else the transferee hears "unavailable" and the call ends. An unknown
target is a NOTIFY "404 Not Found" and the call goes on as it was.

Attended transfer. The transferor calls the target first (another call of ours), then sends
REFER whose Refer-To carries `Replaces` naming its dialog of that other call. The other call's
far party is moved into this call, at the transferor's place: it is re-INVITEd with our offer
for that side, and once its answer is taken the transferee hears it. Both of the transferor's
dialogs end. An INVITE with Replaces from a device (RFC 3891) puts that device in the place of
the party of the dialog it names.

Pickup. A device dialling `**1001` (`[server] pickup_prefix`) takes a call ringing on 1001's
devices; `*8` (`group_pickup`) one ringing on a member of one of the caller's ring groups. The
ringing branches are cancelled with "Call completed elsewhere"; we answer the picker and the
caller ourselves, on the two sides of the call's media session.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from b2bua.calls.model import ALLOW, AppPlan, Call, Leg, MediaMode, Relay, Step, StepKind, Transfer
from b2bua.calls.table import RINGING_BRANCHES, CallInput, CallState
from b2bua.commands import (
    AppKind,
    MediaLocalAnswer,
    MediaLocalOffer,
    MediaPlay,
    MediaResume,
    MediaRunApp,
    SdpKind,
    SendBytes,
    SendRequest,
)
from b2bua.sip.dialog import Dialog, DialogState, InviteState
from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.headers import parse_name_addr
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.transaction import ServerTransaction
from b2bua.sip.uri import AbsoluteUri, SipUri

if TYPE_CHECKING:
    from b2bua.calls.engine import CallEngine
    from b2bua.tenants.model import Tenant

log = logging.getLogger(__name__)

SIPFRAG = "message/sipfrag;version=2.0"
RELEASE_AFTER = 2.0  # seconds the transferor has to end its dialog itself (RFC 5589 §6)


@dataclass(frozen=True, slots=True)
class Replaces:
    """A Replaces value (RFC 3891 §6.1): the dialog as the receiving UA knows it."""

    call_id: str
    to_tag: str  # our tag
    from_tag: str  # the other side's tag
    early_only: bool = False


def parse_replaces(text: str) -> Replaces:
    """`callid;to-tag=X;from-tag=Y[;early-only]`; SipParseError when a part is missing."""
    call_id, _, rest = text.strip().partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        name, _, value = item.strip().partition("=")
        if name:
            params[name.lower()] = value.strip()
    if not call_id.strip() or not params.get("to-tag") or not params.get("from-tag"):
        raise SipParseError("Replaces needs a Call-ID, to-tag and from-tag")
    return Replaces(call_id.strip(), params["to-tag"], params["from-tag"], "early-only" in params)


def sipfrag(status: int, reason: str) -> bytes:
    """The body of a NOTIFY of a REFER subscription (RFC 3515 §2.4.5)."""
    return f"SIP/2.0 {status} {reason}\r\n".encode()


@dataclass(frozen=True, slots=True)
class Pickup:
    transaction: ServerTransaction
    request: Request
    flow: Flow
    picker: str  # the picking extension


@dataclass(frozen=True, slots=True)
class Replacement:
    transaction: ServerTransaction
    request: Request
    flow: Flow
    leg: Leg  # the leg whose dialog the INVITE replaces


class Transfers:
    """The call engine's transfer and pickup actions."""

    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine
        # Our re-INVITEs, by branch: (call, leg, whether it brings another call's party in).
        self.reinvites: dict[str, tuple[str, str, bool]] = {}

    # ================================================================ REFER
    def refer(self, call: Call, leg: Leg, tx: ServerTransaction, request: Request) -> None:
        """A REFER on one of `call`'s legs: answered, then the transfer starts (or not)."""
        e = self.engine
        if call.transfer is not None:
            # One transfer at a time on a call: a second REFER waits its turn.
            e._respond(tx, make_response(request, 491, "A transfer is in progress"))
            return
        other = e._leg(call, "b" if leg.name == "a" else "a")
        if call.state is not CallState.ANSWERED or other is None:
            e._respond(tx, make_response(request, 403, "Not in a connected call"))
            return
        if e.media is not MediaMode.ANCHORED:
            e._respond(tx, make_response(request, 403, "Transfer needs anchored media"))
            return
        values = request.headers.get_all("refer-to")
        if len(values) != 1:
            e._respond(tx, make_response(request, 400, "Exactly one Refer-To"))
            return
        try:
            uri = parse_name_addr(values[0]).uri
            replaces_text = uri.header_fields().get("replaces") if isinstance(uri, SipUri) \
                else None
            replaces = parse_replaces(replaces_text) if replaces_text else None
        except (SipParseError, ValueError):
            e._respond(tx, make_response(request, 400, "Bad Refer-To"))
            return
        if not isinstance(uri, SipUri) or not uri.user_unescaped:
            e._respond(tx, make_response(request, 400, "Refer-To names no one"))
            return
        subscribe = (request.headers.get("refer-sub") or "true").strip().lower() != "false"
        by = self._number_of(call, leg.name)
        transfer = Transfer(
            transferor=leg, side=leg.name, target=uri.user_unescaped or "", by=by,
            event_id=request.cseq.number, notify=subscribe,
            referred_by=request.headers.get("referred-by")
            or f"<sip:{by}@{call.tenant.domain}>",
        )
        joined: tuple[Call, Leg] | None = None
        if replaces is not None:
            joined = self._replaced_party(call, leg, replaces)
            if joined is None:
                e._respond(tx, make_response(request, 400, "Replaces names no call of ours"))
                return
        headers = [("Contact", e.local.contact(leg.flow))]
        if not subscribe:
            headers.append(("Refer-Sub", "false"))
        e._respond(tx, make_response(request, 202, headers=headers))
        call.transfer = transfer
        self._notify(call, 100, "Trying")
        if joined is not None:
            log.info("call %s: attended transfer by %s to call %s", call.key, by, joined[0].key)
            transfer.replaces = (joined[0].key, joined[1])
            e._call_input(call, CallInput.REFERRED_ATTENDED, joined)
            return
        if not self._known_target(call, transfer.target, uri):
            log.info("call %s: transfer by %s to unknown %s", call.key, by, transfer.target)
            self._notify(call, 404, "Not Found", final=True)
            call.transfer = None
            return
        log.info("call %s: blind transfer by %s to %s", call.key, by, transfer.target)
        e._call_input(call, CallInput.REFERRED, transfer)

    def _known_target(self, call: Call, target: str, uri: SipUri) -> bool:
        """An extension of the call's company, or a number its trunks can take."""
        directory = call.tenant.directory
        if directory.is_extension(target):
            return True
        digits = target.lstrip("+")
        return bool(digits) and digits.isdigit() and directory.outbound_trunk() is not None

    def _replaced_party(self, call: Call, transferor: Leg,
                        replaces: Replaces) -> tuple[Call, Leg] | None:
        """The other call the transferor's Replaces names, and its far party."""
        e = self.engine
        found = e.dialogs.match_ids(replaces.call_id, replaces.to_tag, replaces.from_tag)
        if found is None:
            return None
        dialog, other = found
        if other is call or other.state is not CallState.ANSWERED or other.transfer is not None:
            return None
        if other.tenant is not call.tenant:  # another company's call is never joined
            return None
        if other.a_leg is not None and other.a_leg.dialog is dialog:
            party = other.b_leg
        elif other.b_leg is not None and other.b_leg.dialog is dialog:
            party = other.a_leg
        else:
            return None
        if party is None or party.dialog.invite is not InviteState.IDLE:
            return None
        return other, party

    def _number_of(self, call: Call, side: str) -> str:
        """Who is on `side` of the call: the caller's number, or the answering extension."""
        if side == "a":
            return call.caller
        winner = call.winner
        return winner.target.extension if winner is not None else call.callee

    # ================================================================ NOTIFY (RFC 3515 §2.4.4)
    def _notify(self, call: Call, status: int, reason: str, final: bool = False) -> None:
        e = self.engine
        transfer = call.transfer
        if transfer is None or not transfer.notify or transfer.notified_final:
            return
        leg = transfer.transferor
        if leg is None or leg.dialog.state is DialogState.TERMINATED:
            return
        state = "terminated;reason=noresource" if final else "active;expires=60"
        transfer.notified_final = final
        # RFC 3515 §2.4.6: the subscription a REFER made is named by the REFER's CSeq.
        event = f"refer;id={transfer.event_id}"
        request, _ = e._in_dialog_request(leg, "NOTIFY", [
            ("Contact", e.local.contact(leg.flow)), ("Event", event),
            ("Subscription-State", state), ("Content-Type", SIPFRAG),
        ], sipfrag(status, reason))
        e._send(request, leg.flow)

    def notify_progress(self, call: Call, ctx: Any) -> None:
        status = ctx.status if isinstance(ctx, Response) else 180
        self._notify(call, status if status in (180, 183) else 180,
                     "Ringing" if status != 183 else "Session Progress")

    def notify_success(self, call: Call, _ctx: Any) -> None:
        self._notify(call, 200, "OK", final=True)

    def notify_failure(self, call: Call, ctx: Any) -> None:
        status = getattr(ctx, "status", None) or 487
        reason = {404: "Not Found", 486: "Busy Here", 480: "Temporarily Unavailable",
                  487: "Request Terminated", 503: "Service Unavailable",
                  603: "Decline"}.get(status, "Failed")
        self._notify(call, status, reason, final=True)

    # ================================================================ blind transfer
    def detach_transferor(self, call: Call, _ctx: Any) -> None:
        """DETACH_TRANSFEROR: the transferor leaves the bridge; its dialog stays ours."""
        transfer = call.transfer
        assert transfer is not None
        self.engine.counters["transfers"] += 1
        if transfer.side == "a":
            call.a_leg = None
            call.transferee_leg = "b"
        else:
            call.b_leg = None
            call.transferee_leg = "a"
            winner = call.winner
            if winner is not None:  # its INVITE's 2xx retransmissions keep their ACK
                self.engine._keep_ack_only(winner)
                call.winner = None
        e = self.engine
        e.note(call, "transferred", by=transfer.by, to=transfer.target)

    def hold_transferee(self, call: Call, ctx: Any) -> None:
        """HOLD_TRANSFEREE: the target's hold music while it rings (never silence)."""
        e = self.engine
        transfer = call.transfer
        attended = isinstance(ctx, tuple)
        extension = transfer.target if transfer is not None and not attended else ""
        e.outbox.append(MediaPlay(call.key, call.transferee_leg, e._music_of(call, extension),
                                  "", None, music=True))

    def route_transfer(self, call: Call, ctx: Any) -> None:
        """ROUTE_TRANSFER: the target's rules decide, as for a call to it."""
        e = self.engine
        transfer = call.transfer
        assert transfer is not None
        target = transfer.target
        call.branches = []
        call.plan = None
        call.app = None
        call.no_answer_routes = 0
        call.routed = target
        tenant = call.tenant
        if not tenant.directory.is_extension(target):
            e._route_external(call, target, diverted_from=None)
            return
        if target in tenant.directory.system:
            call.user = None
            e._ring_group(call, target)
            return
        call.user = tenant.directory.user(target)
        try:
            decision = tenant.rules.table.decide(
                target, self._number_of(call, call.transferee_leg), e.rules_clock())
        except KeyError:
            e._ring(call, [target])
            return
        destination = decision.destination
        if destination.bounce:  # the transferee is connected already: no "please wait"
            destination = dataclasses.replace(destination, bounce=False)
        e._go(call, target, destination)

    def transfer_offer(self, call: Call, _ctx: Any) -> None:
        """TRANSFER_OFFER: our offer for the transferor's side, for the target's INVITEs."""
        e = self.engine
        transfer = call.transfer
        assert transfer is not None
        ticket = e._ticket_for()
        call.steps.append(Step(StepKind.OFFER, ticket))
        e.outbox.append(MediaLocalOffer(call.key, ticket, transfer.side))

    def dial_transfer(self, call: Call, ctx: Any) -> None:
        """DIAL_TRANSFER: the target's branches, showing the transferee and who referred."""
        e = self.engine
        assert isinstance(ctx, Step) and call.plan is not None and call.transfer is not None
        call.b_offer = ctx.body
        transferee = call.transferee_leg
        name = call.caller_name if transferee == "a" else None
        call.plan.caller = (self._number_of(call, transferee), name)
        call.plan.extra_headers.append(("Referred-By", call.transfer.referred_by))
        e._start_ringing(call, None)

    def bridge_transfer(self, call: Call, ctx: Any) -> None:
        """BRIDGE_TRANSFER: the target's answer goes to media, then its ACK, and the
        transferee hears it."""
        e = self.engine
        assert isinstance(ctx, Response)
        transfer = call.transfer
        winner = call.winner
        assert transfer is not None and winner is not None
        e.note(call, "transfer_answered", by=winner.target.label or winner.target.extension)
        e._queue(call, Step(StepKind.JOIN, 0, response=ctx), ctx.body, transfer.side,
                 SdpKind.ANSWER)

    def release_transferor(self, call: Call, _ctx: Any) -> None:
        """RELEASE_TRANSFEROR: the transfer is over; the transferor's dialog ends (its own BYE
        if it sends one soon, RFC 5589 §6, else ours)."""
        e = self.engine
        transfer = call.transfer
        if transfer is None:
            return
        if call.state is CallState.ENDED:
            self.end_transferor(call)
            return
        e.arm_release(call, RELEASE_AFTER)

    def end_transferor(self, call: Call) -> None:
        """BYE the transferor's dialog if it still lives; the transfer is forgotten."""
        transfer = call.transfer
        if transfer is None:
            return
        call.transfer = None
        leg = transfer.transferor
        if leg is not None and leg.dialog.state is not DialogState.TERMINATED:
            self.engine._bye(leg)
        if leg is not None:
            self.engine.dialogs.end(leg.dialog, self.engine._now)

    def transferor_request(self, call: Call, leg: Leg, tx: ServerTransaction,
                           request: Request) -> None:
        """A request on the transferor's dialog once it left the bridge."""
        e = self.engine
        method = request.method
        if method == "BYE":
            e._respond(tx, make_response(request, 200))
            leg.dialog.state = DialogState.TERMINATED
            e.dialogs.end(leg.dialog, e._now)
            if call.transfer is not None and call.transfer.transferor is leg:
                call.transfer.transferor = None
                if call.transfer.notified_final or call.state is CallState.ANSWERED:
                    call.transfer = None
            return
        if method == "INVITE":
            e._respond(tx, make_response(request, 488, "This call is being transferred"))
            return
        if method == "REFER":
            e._respond(tx, make_response(request, 491, "A transfer is in progress"))
            return
        e._respond(tx, make_response(request, 200))

    def transfer_no_answer(self, call: Call, ctx: Any) -> None:
        """TRANSFER_NO_ANSWER: the target's no-answer destination takes the transferee."""
        e = self.engine
        e._route_no_answer(call, ctx if isinstance(ctx, str) else "transfer not answered")

    def transfer_failed(self, call: Call, ctx: Any) -> None:
        """TRANSFER_FAILED: the NOTIFY says why; the transferor gets the call back if it is
        still there (RESUMED), else the transferee hears "unavailable" (GIVE_UP)."""
        e = self.engine
        transfer = call.transfer
        status = getattr(ctx, "status", 480)
        why = getattr(ctx, "why", "transfer failed")
        e.note(call, "transfer_failed", why=why)
        self.notify_failure(call, ctx if hasattr(ctx, "status") else None)
        if transfer is not None and transfer.transferor is not None and \
                transfer.transferor.dialog.state is not DialogState.TERMINATED:
            e._call_input(call, CallInput.RESUMED)
        else:
            log.info("call %s: transfer failed (%s), the transferor is gone", call.key, status)
            e._call_input(call, CallInput.GIVE_UP)

    def reattach(self, call: Call, _ctx: Any) -> None:
        """REATTACH: the transferor's leg is bridged again, as before the REFER."""
        e = self.engine
        transfer = call.transfer
        assert transfer is not None and transfer.transferor is not None
        leg = transfer.transferor
        if leg.name == "a":
            call.a_leg = leg
        else:
            call.b_leg = leg
        call.transfer = None
        call.transferee_leg = "a"
        e.outbox.append(MediaResume(call.key, "b" if leg.name == "a" else "a"))

    def run_goodbye(self, call: Call, _ctx: Any) -> None:
        e = self.engine
        call.app = AppPlan.ANNOUNCEMENT
        e.outbox.append(MediaRunApp(call.key, AppKind.GOODBYE, call.routed or call.callee,
                                    call.caller, leg=call.transferee_leg))

    # ================================================================ attended transfer
    def attended_rebridge(self, call: Call, ctx: Any) -> None:
        """ATTENDED_REBRIDGE: the other call's party comes to the transferor's place; the
        other call is over; the party is re-INVITEd with our offer for that side."""
        e = self.engine
        other, party = ctx
        transfer = call.transfer
        assert transfer is not None
        side = transfer.side
        who = self._number_of(other, "a" if other.a_leg is party else "b")
        joined = self._number_of(call, "b" if side == "a" else "a")
        if other.a_leg is party:
            other.a_leg = None
        else:
            other.b_leg = None
        e.dialogs.remove(party.dialog)
        leg = Leg(side, party.dialog, party.flow)
        if side == "a":
            call.a_leg = leg
        else:
            call.b_leg = leg
        e.dialogs.add(leg.dialog, call)
        e.note(other, "joined_call", by=transfer.by, to=joined)
        e.note(call, "attended_transfer", to=who)
        other.outcome = "answered"
        e._call_input(other, CallInput.HANGUP)  # the transferor's leg there is ended
        self._reinvite(call, leg, rebridge=True)

    def _reinvite(self, call: Call, leg: Leg, rebridge: bool) -> None:
        """Re-INVITE `leg` with our own offer for its side of the media session."""
        e = self.engine
        leg.dialog.invite = InviteState.OUTGOING
        ticket = e._ticket_for()
        call.steps.append(Step(StepKind.REINVITE, ticket, leg=leg.name, rebridge=rebridge))
        e.outbox.append(MediaLocalOffer(call.key, ticket, leg.name))

    def unhold(self, call: Call) -> None:
        """The transfer is done: a transferee the transferor had put on hold is re-INVITEd
        with our own offer, sendrecv, so that it talks to the target (RFC 5589 §7.1)."""
        leg = self.engine._leg(call, call.transferee_leg)
        if leg is not None and leg.held and leg.dialog.invite is InviteState.IDLE:
            self._reinvite(call, leg, rebridge=False)

    def send_reinvite(self, call: Call, step: Step) -> None:
        """The re-INVITE that brings the party's media to our side of this call."""
        e = self.engine
        leg = e._leg(call, step.leg)
        if leg is None:
            return
        request, key = e._in_dialog_request(leg, "INVITE", [
            ("Contact", e.local.contact(leg.flow)), ("Allow", ALLOW),
            ("Content-Type", "application/sdp"),
        ], step.body)
        self.reinvites[key] = (call.key, step.leg, step.rebridge)
        e.outbox.append(SendRequest(request, leg.flow, e))

    def reinvite_response(self, key: str, response: Response) -> bool:
        """A response to one of our re-INVITEs; False when `key` is none of them."""
        e = self.engine
        found = self.reinvites.get(key)
        if found is None:
            return False
        if response.status < 200:
            return True
        del self.reinvites[key]
        call = e.calls.get(found[0])
        leg = e._leg(call, found[1]) if call is not None else None
        if call is None or leg is None:
            return True
        leg.dialog.invite = InviteState.IDLE
        rebridge = found[2]
        if response.status >= 300:
            e.note(call, "reinvite_refused", status=response.status)
            if rebridge:
                e._call_input(call, CallInput.LEG_FAILED)
            return True
        leg.dialog.refresh_target(response)
        via, _ = e.local.via(leg.flow)
        ack = leg.dialog.request("ACK", via, cseq=response.cseq.number)
        e.outbox.append(SendBytes(bytes(ack), leg.flow))
        kind = StepKind.REBRIDGED if rebridge else StepKind.UNHELD
        e._queue(call, Step(kind, 0, response=response, leg=found[1]), response.body, found[1],
                 SdpKind.ANSWER)
        return True

    def reinvite_failed(self, key: str) -> bool:
        found = self.reinvites.pop(key, None)
        if found is None:
            return False
        call = self.engine.calls.get(found[0])
        if call is not None and found[2]:
            self.engine.note(call, "reinvite_unanswered")
            self.engine._call_input(call, CallInput.LEG_FAILED)
        return True

    def finish_rebridge(self, call: Call, _ctx: Any) -> None:
        self.engine.outbox.append(MediaResume(call.key, call.transferee_leg))
        self.unhold(call)

    # ================================================================ pickup
    def pickup(self, tx: ServerTransaction, request: Request, flow: Flow, picker: str,
               dialled: str, tenant: Tenant | None = None) -> bool:
        """A device dialled a pickup code: True when it was one (answered either way). Only a
        call of the picker's company (`tenant`) is picked up."""
        e = self.engine
        tenant = tenant if tenant is not None else e.tenants.default
        directory = tenant.directory
        if dialled == directory.group_pickup:
            groups = [g for g in directory.system.values()
                      if picker in getattr(g, "members", ())]
            wanted = {m for g in groups for m in g.members} - {picker}
        elif dialled.startswith(directory.pickup_prefix) and \
                len(dialled) > len(directory.pickup_prefix):
            wanted = {dialled[len(directory.pickup_prefix):]}
        else:
            return False
        call = self._ringing_for(wanted, tenant)
        if call is None:
            e._respond(tx, make_response(request, 480, "No call to pick up",
                                         to_tag=e.tokens.tag()))
            return True
        if not request.body or e.media is MediaMode.NONE:
            e._respond(tx, make_response(request, 488, to_tag=e.tokens.tag()))
            return True
        log.info("call %s: picked up by %s", call.key, picker)
        e.counters["pickups"] += 1
        e._call_input(call, CallInput.PICKED_UP, Pickup(tx, request, flow, picker))
        return True

    def _ringing_for(self, extensions: set[str], tenant: Tenant) -> Call | None:
        """The oldest call of `tenant` ringing on a device of one of `extensions`."""
        best: Call | None = None
        for call in self.engine.calls.values():
            if call.state is not CallState.RINGING or call.transfer is not None:
                continue
            if call.tenant is not tenant:
                continue
            if any(b.target.extension in extensions and b.state in RINGING_BRANCHES
                   for b in call.branches):
                if best is None or call.started < best.started:
                    best = call
        return best

    def picked_up(self, call: Call, ctx: Any) -> None:
        """PICKUP: the picker takes the callee's place; we answer the picker's offer and the
        caller's, on the two sides of the call's media session."""
        e = self.engine
        assert isinstance(ctx, Pickup)
        call.answered_at = e.wall_clock()
        call.answered_by = f"pickup by {ctx.picker}"
        e.note(call, "picked_up", by=ctx.picker)
        e.counters["answered"] += 1
        self._take_leg(call, "b", ctx.transaction, ctx.request, ctx.flow)
        ticket = e._ticket_for()
        call.steps.append(Step(StepKind.ANSWER, ticket))
        e.outbox.append(MediaLocalAnswer(call.key, ticket, "a", call.a_request.body,
                                         e._music_of(call, call.callee)))

    def _take_leg(self, call: Call, side: str, tx: ServerTransaction, request: Request,
                  flow: Flow) -> None:
        """A new device's INVITE becomes `side` of the call: our answer to its offer comes
        from that side of the media session."""
        e = self.engine
        tag = e.tokens.tag()
        tx.context = call.key
        dialog = Dialog.as_uas(request, tag)
        dialog.state = DialogState.CONFIRMED
        leg = Leg(side, dialog, flow)
        if side == "a":
            call.a_leg = leg
        else:
            call.b_leg = leg
        e.dialogs.add(dialog, call)
        ticket = e._ticket_for()
        relay = Relay(call.key, side, "", tx, request)
        call.steps.append(Step(StepKind.LOCAL_REPLY, ticket, request=request, relay=relay,
                               leg=side, tag=tag))
        e.outbox.append(MediaLocalAnswer(call.key, ticket, side, request.body,
                                         e._music_of(call, call.callee)))

    # ================================================================ INVITE with Replaces
    def invite_with_replaces(self, tx: ServerTransaction, request: Request, flow: Flow,
                             tenant: Tenant | None = None) -> None:
        """RFC 3891: the new INVITE takes the place of the party of the dialog it names (a
        dialog of a call of the caller's company, `tenant`)."""
        e = self.engine
        try:
            replaces = parse_replaces(request.headers.get("replaces") or "")
        except SipParseError as exc:
            e._respond(tx, make_response(request, 400, exc.reason, to_tag=e.tokens.tag()))
            return
        found = e.dialogs.match_ids(replaces.call_id, replaces.to_tag, replaces.from_tag)
        # §3: "If no match is found, the UAS rejects the INVITE and returns a 481"; an early
        # dialog of ours is not replaced either (only a confirmed one).
        if found is None or found[1].state is not CallState.ANSWERED or (
                tenant is not None and found[1].tenant is not tenant):
            e._respond(tx, make_response(request, 481, "No such dialog to replace",
                                         to_tag=e.tokens.tag()))
            return
        dialog, call = found
        leg = call.a_leg if call.a_leg is not None and call.a_leg.dialog is dialog \
            else call.b_leg
        if leg is None or leg.dialog is not dialog or not request.body:
            e._respond(tx, make_response(request, 488, to_tag=e.tokens.tag()))
            return
        e._call_input(call, CallInput.REPLACED, Replacement(tx, request, flow, leg))

    def replace_leg(self, call: Call, ctx: Any) -> None:
        """REPLACE_LEG: the replaced dialog ends (BYE, §3); the new one takes its place."""
        e = self.engine
        assert isinstance(ctx, Replacement)
        old = ctx.leg
        e.note(call, "replaced", old=_user_of(old.dialog.remote_uri),
               by=_number(ctx.request.from_.uri))
        e._bye(old, [("Reason", 'SIP;cause=200;text="Call completed elsewhere"')])
        e.dialogs.end(old.dialog, e._now)
        self._take_leg(call, old.name, ctx.transaction, ctx.request, ctx.flow)


def _user_of(name_addr: str) -> str:
    """The user part of a dialog's remote URI (its number), else the URI itself."""
    try:
        uri = parse_name_addr(name_addr).uri
    except (SipParseError, ValueError):
        return name_addr
    return _number(uri)


def _number(uri: SipUri | AbsoluteUri) -> str:
    """A URI's user part (the number it names), else the URI as written."""
    return (uri.user_unescaped if isinstance(uri, SipUri) else None) or str(uri)

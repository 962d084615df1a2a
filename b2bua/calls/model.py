"""The call engine's data: calls, branches, legs, relayed requests, and the steps that wait for
the media port.

Nothing here refers back up: a branch names its call by key, never holds it, so a call that is
over is freed at once by reference counting (the server runs with the cyclic collector off,
b2bua.server), while its branches may live on until their transactions end.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from b2bua.calls.table import BranchState, CallState
from b2bua.sip.dialog import ClientInvite, Dialog
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response
from b2bua.sip.transaction import ServerTransaction
from b2bua.sip.uri import SipUri

if TYPE_CHECKING:
    from b2bua.calls.directory import Trunk
    from b2bua.rules.model import Decision
    from b2bua.tenants.model import Tenant


@dataclass(eq=False, slots=True)
class Target:
    """One phone (or trunk) to ring: where the INVITE goes and what it is."""

    request_uri: SipUri
    flow: Flow
    label: str
    extension: str
    to: str  # the To header value
    device_key: str | None = None
    # RFC 3327: the Path a device registered through (an edge proxy), sent as the Route set.
    route: tuple[str, ...] = ()
    # Trunks and SRTP (b2bua.calls.trunking): the trunk it goes to, the callee's
    # media_encryption, the From it presents and headers of its own (P-Asserted-Identity).
    trunk: str | None = None
    encryption: str = "optional"
    identity: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(eq=False, slots=True)
class Plan:
    """Where a call rings: the route's targets and how (decided by ROUTE, run by RING)."""

    targets: list[Target]
    ring_timeout: float | None  # None: the far end decides (a trunk)
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    private: bool = False  # presented as an anonymous caller (a bounce)
    trunk: Trunk | None = None
    caller: tuple[str, str | None] | None = None  # who the branches show, if not the caller


ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, SUBSCRIBE, REFER"


class MediaMode(Enum):
    """What the engine may ask of the media port."""

    __hash__ = object.__hash__

    NONE = "none"  # no media port: media destinations are answered 480
    DIRECT = "direct"  # RTP flows between the phones; media destinations are served
    ANCHORED = "anchored"  # every call's RTP goes through the media port


class AppPlan(Enum):
    """What we do with a caller we answer ourselves."""

    __hash__ = object.__hash__

    VOICEMAIL = "voicemail"
    ANNOUNCEMENT = "announcement"
    BOUNCE = "bounce"


@dataclass(eq=False, slots=True)
class Branch:
    key: str  # the top Via branch of its INVITE: how its responses find it
    call: str  # the call's key
    target: Target
    invite: Request
    client: ClientInvite
    state: BranchState = BranchState.CALLING
    status: int | None = None  # the final response that failed it
    reason: str = ""  # a failure's Reason header, relayed to the caller with the best response
    cancel_reason: str | None = None  # the Reason its CANCEL carries
    dialog: Dialog | None = None  # the dialog of the 2xx being handled


@dataclass(eq=False, slots=True)
class Leg:
    """One side of an answered call: its dialog and the flow it lives on."""

    name: str  # "a" (the caller) or "b"
    dialog: Dialog
    flow: Flow
    ack_due: Request | None = None  # an ACK that waits for the other leg's ACK (late offer)
    held: bool = False  # the last offer it got from us put it on hold
    last_sdp: bytes = b""  # the SDP it last got from us (a re-INVITE refresh sends it again)
    allows_update: bool = False  # its Allow lists UPDATE (refreshes use it)
    session_interval: int = 0  # RFC 4028 on this leg: seconds, 0 when none
    we_refresh: bool = False  # we are this leg's refresher
    session_timer: object | None = None  # its TimerEntry on the engine's heap


@dataclass(eq=False, slots=True)
class Transfer:
    """A transfer in progress (RFC 3515): who asked, who is transferred, to whom.

    The transferor's leg leaves the bridge when the REFER is accepted (`transferor`), but its
    dialog lives on for the NOTIFYs of the implicit subscription, until it hangs up or we end
    it once the transfer is over (RFC 5589)."""

    transferor: Leg | None  # None once its dialog is over
    side: str  # the slot ("a" or "b") the transferor left, where the target goes
    target: str  # what Refer-To named (an extension, a number)
    by: str  # the transferor's number (Referred-By, the record)
    event_id: int  # the REFER's CSeq: `Event: refer;id=N` of the NOTIFYs
    notify: bool = True  # false with `Refer-Sub: false` (RFC 4488): no NOTIFY
    referred_by: str = ""  # the Referred-By header the target's INVITE carries (RFC 3892)
    notified_final: bool = False
    replaces: tuple[str, Leg] | None = None  # an attended transfer: the other call, its party


@dataclass(eq=False, slots=True)
class Relay:
    """An in-dialog request relayed from one leg to the other, waiting for its answer."""

    call: str
    from_leg: str
    to_leg: str
    server_tx: ServerTransaction
    request: Request


class StepKind(Enum):
    """Something a call sends that may wait for the media port; kept in the call's order."""

    __hash__ = object.__hash__

    PROVISIONAL = "PROVISIONAL"  # a 180/183 to the caller
    ANSWER = "ANSWER"  # the SDP of the caller's 200 (gives ANSWER_READY)
    OFFER = "OFFER"  # our own offer for a bounce's call (gives OFFER_READY)
    RELAY_REQUEST = "RELAY_REQUEST"  # an in-dialog request to the other leg
    RELAY_RESPONSE = "RELAY_RESPONSE"  # its response back
    ACK = "ACK"  # the ACK that carries a late offer's answer
    LOCAL_REPLY = "LOCAL_REPLY"  # our own answer to a request on a leg only media talks to
    JOIN = "JOIN"  # the ACK of a 2xx whose answer media took: the waiting leg hears it
    REINVITE = "REINVITE"  # our re-INVITE with our own offer (an attended transfer)
    REBRIDGED = "REBRIDGED"  # its answer taken (gives REBRIDGED)
    UNHELD = "UNHELD"  # the answer to our re-INVITE that took a transferee off hold, taken


@dataclass(eq=False, slots=True)
class Step:
    kind: StepKind
    ticket: int  # the media port's answer it waits for (0: ready)
    body: bytes = b""
    response: Response | None = None
    request: Request | None = None
    relay: Relay | None = None
    leg: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    tag: str = ""  # the To tag of a response that makes a dialog
    rebridge: bool = False  # a REINVITE that brings another call's party (else: an unhold)


@dataclass(eq=False, slots=True, weakref_slot=True)
class Call:
    key: str
    a_tx: ServerTransaction
    a_request: Request
    a_flow: Flow
    a_tag: str
    caller: str
    caller_name: str | None
    callee: str
    did: str | None
    started: float
    tenant: Tenant  # the company of the call: its directory, rules and limits (b2bua.tenants)
    state: CallState = CallState.ROUTING
    trunk: Trunk | None = None  # the trunk the caller came from
    decision: Decision | None = None
    user: Any = None  # the callee's configuration (b2bua.config.User), None for a group
    plan: Plan | None = None
    app: AppPlan | None = None
    app_extension: str = ""
    app_message: str | None = None
    bounce_number: str | None = None
    no_answer_routes: int = 0  # the no-answer destination is taken once per call
    branches: list[Branch] = field(default_factory=list)  # this ring's, in order
    winner: Branch | None = None
    provisional_sent: int = 0  # the last 18x relayed to the caller
    b_offer: bytes = b""  # the caller's offer as the callees get it
    a_leg: Leg | None = None
    b_leg: Leg | None = None
    answered_at: float | None = None
    answered_by: str | None = None
    outcome: str | None = None
    ended_by: str | None = None
    notes: list[str] = field(default_factory=list)
    digits: list[tuple[str, str]] = field(default_factory=list)  # (leg, DTMF digit)
    steps: deque[Step] = field(default_factory=deque)
    ring_timer: object | None = None  # its TimerEntry on the engine's heap
    transfer: Transfer | None = None
    transferee_leg: str = "a"  # whom the media applications talk to
    routed: str = ""  # the extension whose rules route the call now (a transfer's target)
    branch_headers: list[tuple[str, str]] | None = None  # what every branch takes from A
    # Call-IDs announced by push to devices being woken (by binding key): their branches use them.
    push_ids: dict[str, str] = field(default_factory=dict)

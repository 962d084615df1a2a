"""The call and its branches as state machines, written as data.

Theory of operation
-------------------
A call has one state (`CallState`) and each of its branches one (`BranchState`). What may
happen to them is listed in two tables, `CALL_TABLE` and `BRANCH_TABLE`, that map (state, input)
to a `Transition`: the new state and the actions to run, in order. One interpreter
(`CallEngine._call_input`, `CallEngine._branch_input`) applies them; nothing else changes a
state. An input that a table does not list for the current state is discarded (and counted):
a 180 after the call was answered, a CANCEL after the 200, a second BYE.

Branch actions may give the call an input (a branch's 2xx is the call's ANSWERED when the call
still rings): the two machines talk only that way.

The RFC text that decides an entry is quoted beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class CallState(Enum):
    __hash__ = object.__hash__

    ANCHORING = "ANCHORING"  # the media port opens the call's session (rtpengine: a round trip)
    ROUTING = "ROUTING"  # passing: the rules decide, or the no-answer destination is taken
    RINGING = "RINGING"  # branches ring; the caller may have had a 180/183
    CONNECTING = "CONNECTING"  # a branch answered; the caller's 200 waits for its SDP
    ANSWERED = "ANSWERED"  # the two legs are bridged
    ANSWERING = "ANSWERING"  # we answer the caller ourselves; the 200 waits for our SDP
    MEDIA = "MEDIA"  # answered by us: voicemail, an announcement, a bounce's prompt
    BOUNCING = "BOUNCING"  # answered by us, the caller hears "please wait", a number rings
    TRANSFER_ROUTING = "TRANSFER_ROUTING"  # passing: where a transfer's target takes the call
    TRANSFERRING = "TRANSFERRING"  # the transferee hears music while the target rings
    REBRIDGING = "REBRIDGING"  # an attended transfer: the other call's party is re-INVITEd to us
    ENDED = "ENDED"


class CallInput(Enum):
    __hash__ = object.__hash__

    ANCHORED = "ANCHORED"
    ROUTE_DEVICES = "ROUTE_DEVICES"  # branches to ring (devices, a ring group, a trunk)
    ROUTE_HERE = "ROUTE_HERE"  # we answer: voicemail, announcement, bounce
    REFUSED = "REFUSED"  # the route ends in a final response (404, 480, 486...)
    EARLY = "EARLY"  # a branch's 180/183 to relay
    ANSWERED = "ANSWERED"  # a branch's first 2xx, while the call rings
    DECLINED = "DECLINED"  # a 600/603 when the callee's decline policy is "all"
    REJECTED = "REJECTED"  # every branch failed
    NO_ANSWER = "NO_ANSWER"  # every branch timed out, or no device to ring
    RING_TIMEOUT = "RING_TIMEOUT"
    CANCELLED = "CANCELLED"  # the caller's CANCEL
    ANSWER_READY = "ANSWER_READY"  # the SDP of the caller's 200 is ready
    OFFER_READY = "OFFER_READY"  # our own offer for a bounce's call is ready
    BYE_CALLER = "BYE_CALLER"
    BYE_CALLEE = "BYE_CALLEE"
    ACK_TIMEOUT = "ACK_TIMEOUT"  # the caller never ACKed our 200
    LEG_FAILED = "LEG_FAILED"  # a request relayed between the legs failed
    MEDIA_FAILED = "MEDIA_FAILED"
    RTP_TIMEOUT = "RTP_TIMEOUT"
    APP_DONE = "APP_DONE"
    HANGUP = "HANGUP"
    DEVICE_WOKEN = "DEVICE_WOKEN"  # a device woken by push registered again (fork-late)
    REFERRED = "REFERRED"  # a blind transfer (REFER) was accepted
    REFERRED_ATTENDED = "REFERRED_ATTENDED"  # a REFER with Replaces: join another call's party
    REBRIDGED = "REBRIDGED"  # that party's re-INVITE was answered and its SDP taken
    RESUMED = "RESUMED"  # the transfer failed and the transferor is still there
    GIVE_UP = "GIVE_UP"  # the transfer failed and the transferor is gone
    PICKED_UP = "PICKED_UP"  # a device dialled the pickup code for this ringing call
    REPLACED = "REPLACED"  # an INVITE with Replaces takes one of the legs (RFC 3891)
    SESSION_EXPIRED = "SESSION_EXPIRED"  # a leg's session timer ran out (RFC 4028 §10)


class CallAction(Enum):
    __hash__ = object.__hash__

    ROUTE = "ROUTE"  # decide where the call goes (the rules), then give the route's input
    ROUTE_NO_ANSWER = "ROUTE_NO_ANSWER"  # the callee's no-answer destination
    RING = "RING"  # start the planned branches (and the ring timer, if the plan has one)
    STOP_RING_TIMER = "STOP_RING_TIMER"
    RELAY_EARLY = "RELAY_EARLY"
    CANCEL_ELSEWHERE = "CANCEL_ELSEWHERE"  # Reason: cause=200 "Call completed elsewhere"
    CANCEL_BUSY_EVERYWHERE = "CANCEL_BUSY_EVERYWHERE"  # Reason: cause=600 "Busy Everywhere"
    CANCEL_SILENTLY = "CANCEL_SILENTLY"  # no Reason: the phones log a missed call
    CANCEL_AS_CALLER = "CANCEL_AS_CALLER"  # the caller's own Reason, if any
    ANSWER_CALLER = "ANSWER_CALLER"  # the winner's SDP through media, then ANSWER_READY
    LOCAL_ANSWER = "LOCAL_ANSWER"  # our own SDP answer, then ANSWER_READY
    SEND_200 = "SEND_200"
    START_APP = "START_APP"  # voicemail, announcement, or a bounce's prompt and offer
    DIAL_BOUNCE = "DIAL_BOUNCE"  # the bounce's private call
    BRIDGE_BOUNCE = "BRIDGE_BOUNCE"  # the bounce was answered: the caller joins it
    RUN_UNAVAILABLE = "RUN_UNAVAILABLE"  # "user unavailable", then voicemail
    RESPOND_487 = "RESPOND_487"
    RESPOND_REFUSAL = "RESPOND_REFUSAL"  # the route's final status
    RESPOND_BEST = "RESPOND_BEST"  # the best of the branches' responses (RFC 3261 §16.7)
    RESPOND_MEDIA_FAILURE = "RESPOND_MEDIA_FAILURE"
    RESPOND_UNAVAILABLE = "RESPOND_UNAVAILABLE"  # 503 to a caller we give up on
    ANSWER_BYE = "ANSWER_BYE"  # 200 to the BYE that ends the call
    BYE_OTHER = "BYE_OTHER"  # the BYE crosses to the other leg (its Reason too)
    BYE_CALLER = "BYE_CALLER"
    BYE_CALLEE = "BYE_CALLEE"
    BYE_ALL = "BYE_ALL"
    END = "END"  # close media, write the call record, forget the call
    ADD_BRANCH = "ADD_BRANCH"  # ring one more device: one woken by push (fork-late)
    # transfer (RFC 3515, 3891, 3892, 5589) and pickup
    DETACH_TRANSFEROR = "DETACH_TRANSFEROR"  # the transferor leaves the bridge (its dialog lives)
    HOLD_TRANSFEREE = "HOLD_TRANSFEREE"  # the transferee hears the target's hold music
    ROUTE_TRANSFER = "ROUTE_TRANSFER"  # the target's rules decide
    TRANSFER_OFFER = "TRANSFER_OFFER"  # our offer for the target, then OFFER_READY
    DIAL_TRANSFER = "DIAL_TRANSFER"  # the target's branches
    NOTIFY_PROGRESS = "NOTIFY_PROGRESS"  # sipfrag 180 to the transferor
    NOTIFY_SUCCESS = "NOTIFY_SUCCESS"  # sipfrag 200, the subscription ends
    NOTIFY_FAILURE = "NOTIFY_FAILURE"  # sipfrag with the failure, the subscription ends
    BRIDGE_TRANSFER = "BRIDGE_TRANSFER"  # the target's answer: it takes the transferor's place
    RELEASE_TRANSFEROR = "RELEASE_TRANSFEROR"  # the transferor's dialog ends (BYE, RFC 5589)
    TRANSFER_NO_ANSWER = "TRANSFER_NO_ANSWER"  # the target's no-answer destination
    TRANSFER_FAILED = "TRANSFER_FAILED"  # RESUMED or GIVE_UP
    REATTACH = "REATTACH"  # the transferor is bridged again
    RUN_GOODBYE = "RUN_GOODBYE"  # "unavailable", then the call ends
    ATTENDED_REBRIDGE = "ATTENDED_REBRIDGE"  # take the other call's party, re-INVITE it
    FINISH_REBRIDGE = "FINISH_REBRIDGE"  # its answer taken: the transferee hears it
    PICKUP = "PICKUP"  # the picker's leg takes the callee's place
    REPLACE_LEG = "REPLACE_LEG"  # the new device takes the replaced dialog's place


@dataclass(frozen=True, slots=True)
class Transition:
    target: CallState
    actions: tuple[CallAction, ...] = ()
    outcome: str | None = None  # the call record's outcome, when this transition decides it


_S = CallState
_I = CallInput
_A = CallAction


def _end(*actions: CallAction, outcome: str | None = None) -> Transition:
    return Transition(_S.ENDED, (*actions, _A.END), outcome)


_FAILED = "failed"
# What every state that has answered the caller does when the call must stop.
_HANG_UP_ANSWERED = _end(_A.BYE_ALL, outcome=_FAILED)

CALL_TABLE: dict[tuple[CallState, CallInput], Transition] = {
    # -- before routing: the media session (rtpengine answers later) ------------------------
    (_S.ANCHORING, _I.ANCHORED): Transition(_S.ROUTING, (_A.ROUTE,)),
    (_S.ANCHORING, _I.MEDIA_FAILED): _end(_A.RESPOND_MEDIA_FAILURE, outcome=_FAILED),
    (_S.ANCHORING, _I.CANCELLED): _end(_A.RESPOND_487, outcome="cancelled"),
    (_S.ANCHORING, _I.HANGUP): _end(_A.RESPOND_UNAVAILABLE, outcome=_FAILED),
    # -- the route (ROUTE and ROUTE_NO_ANSWER give one of these at once) ---------------------
    (_S.ROUTING, _I.ROUTE_DEVICES): Transition(_S.RINGING, (_A.RING,)),
    (_S.ROUTING, _I.ROUTE_HERE): Transition(_S.ANSWERING, (_A.LOCAL_ANSWER,)),
    (_S.ROUTING, _I.REFUSED): _end(_A.RESPOND_REFUSAL),
    # -- ringing ----------------------------------------------------------------------------
    (_S.RINGING, _I.EARLY): Transition(_S.RINGING, (_A.RELAY_EARLY,)),
    # RFC 8599: a UA woken by a push registers again; the proxy then forwards the request to it.
    (_S.RINGING, _I.DEVICE_WOKEN): Transition(_S.RINGING, (_A.ADD_BRANCH,)),
    # The first 2xx wins; every other branch is cancelled with RFC 3326's Reason.
    (_S.RINGING, _I.ANSWERED): Transition(
        _S.CONNECTING, (_A.STOP_RING_TIMER, _A.CANCEL_ELSEWHERE, _A.ANSWER_CALLER)
    ),
    (_S.RINGING, _I.DECLINED): Transition(
        _S.ROUTING, (_A.STOP_RING_TIMER, _A.CANCEL_BUSY_EVERYWHERE, _A.ROUTE_NO_ANSWER)
    ),
    (_S.RINGING, _I.REJECTED): _end(_A.STOP_RING_TIMER, _A.RESPOND_BEST),
    (_S.RINGING, _I.NO_ANSWER): Transition(_S.ROUTING, (_A.STOP_RING_TIMER, _A.ROUTE_NO_ANSWER)),
    # No Reason on a ring timeout: the phones must log a missed call.
    (_S.RINGING, _I.RING_TIMEOUT): Transition(
        _S.ROUTING, (_A.CANCEL_SILENTLY, _A.ROUTE_NO_ANSWER)
    ),
    # RFC 3261 §9.2: the UAS "SHOULD then respond to the INVITE with a 487"; our branches get
    # the caller's CANCEL (its Reason, never "completed elsewhere": a missed call is shown).
    (_S.RINGING, _I.CANCELLED): _end(
        _A.STOP_RING_TIMER, _A.CANCEL_AS_CALLER, _A.RESPOND_487, outcome="cancelled"
    ),
    (_S.RINGING, _I.MEDIA_FAILED): _end(
        _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.RESPOND_MEDIA_FAILURE, outcome=_FAILED
    ),
    (_S.RINGING, _I.HANGUP): _end(
        _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.RESPOND_UNAVAILABLE, outcome=_FAILED
    ),
    # -- a branch answered; the caller's 200 is on its way ----------------------------------
    (_S.CONNECTING, _I.ANSWER_READY): Transition(_S.ANSWERED, (_A.SEND_200,)),
    (_S.CONNECTING, _I.CANCELLED): _end(_A.RESPOND_487, _A.BYE_CALLEE, outcome="cancelled"),
    (_S.CONNECTING, _I.BYE_CALLEE): _end(_A.ANSWER_BYE, _A.RESPOND_487),
    (_S.CONNECTING, _I.LEG_FAILED): _end(_A.RESPOND_UNAVAILABLE, _A.BYE_CALLEE, outcome=_FAILED),
    (_S.CONNECTING, _I.MEDIA_FAILED): _end(
        _A.RESPOND_MEDIA_FAILURE, _A.BYE_CALLEE, outcome=_FAILED
    ),
    (_S.CONNECTING, _I.HANGUP): _end(_A.RESPOND_UNAVAILABLE, _A.BYE_CALLEE, outcome=_FAILED),
    # -- bridged ----------------------------------------------------------------------------
    # "BYE (either side) ends both legs (its Reason travels)."
    (_S.ANSWERED, _I.BYE_CALLER): _end(_A.ANSWER_BYE, _A.BYE_OTHER),
    (_S.ANSWERED, _I.BYE_CALLEE): _end(_A.ANSWER_BYE, _A.BYE_OTHER),
    # §13.3.1.4: "If the server retransmits the 2xx response for 64*T1 seconds without
    # receiving an ACK, the dialog is confirmed, but the session SHOULD be terminated."
    (_S.ANSWERED, _I.ACK_TIMEOUT): _HANG_UP_ANSWERED,
    (_S.ANSWERED, _I.LEG_FAILED): _HANG_UP_ANSWERED,
    (_S.ANSWERED, _I.MEDIA_FAILED): _HANG_UP_ANSWERED,
    (_S.ANSWERED, _I.RTP_TIMEOUT): _HANG_UP_ANSWERED,
    (_S.ANSWERED, _I.HANGUP): _HANG_UP_ANSWERED,
    # -- answered by us ---------------------------------------------------------------------
    (_S.ANSWERING, _I.ANSWER_READY): Transition(_S.MEDIA, (_A.SEND_200, _A.START_APP)),
    (_S.ANSWERING, _I.CANCELLED): _end(_A.RESPOND_487, outcome="cancelled"),
    (_S.ANSWERING, _I.MEDIA_FAILED): _end(_A.RESPOND_MEDIA_FAILURE, outcome=_FAILED),
    (_S.ANSWERING, _I.HANGUP): _end(_A.RESPOND_UNAVAILABLE, outcome=_FAILED),
    (_S.MEDIA, _I.OFFER_READY): Transition(_S.BOUNCING, (_A.DIAL_BOUNCE,)),
    (_S.MEDIA, _I.APP_DONE): _end(_A.BYE_CALLER),
    (_S.MEDIA, _I.BYE_CALLER): _end(_A.ANSWER_BYE),
    (_S.MEDIA, _I.ACK_TIMEOUT): _end(_A.BYE_CALLER, outcome=_FAILED),
    (_S.MEDIA, _I.MEDIA_FAILED): _end(_A.BYE_CALLER, outcome=_FAILED),
    (_S.MEDIA, _I.RTP_TIMEOUT): _end(_A.BYE_CALLER, outcome=_FAILED),
    (_S.MEDIA, _I.HANGUP): _end(_A.BYE_CALLER, outcome=_FAILED),
    # -- a bounce: answered by us, a private call rings -------------------------------------
    (_S.BOUNCING, _I.ANSWERED): Transition(_S.ANSWERED, (_A.STOP_RING_TIMER, _A.BRIDGE_BOUNCE)),
    (_S.BOUNCING, _I.RING_TIMEOUT): Transition(
        _S.MEDIA, (_A.CANCEL_SILENTLY, _A.RUN_UNAVAILABLE)
    ),
    (_S.BOUNCING, _I.DECLINED): Transition(
        _S.MEDIA, (_A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.RUN_UNAVAILABLE)
    ),
    (_S.BOUNCING, _I.REJECTED): Transition(_S.MEDIA, (_A.STOP_RING_TIMER, _A.RUN_UNAVAILABLE)),
    (_S.BOUNCING, _I.NO_ANSWER): Transition(_S.MEDIA, (_A.STOP_RING_TIMER, _A.RUN_UNAVAILABLE)),
    (_S.BOUNCING, _I.BYE_CALLER): _end(_A.ANSWER_BYE, _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY),
    (_S.BOUNCING, _I.ACK_TIMEOUT): _end(
        _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.BYE_CALLER, outcome=_FAILED
    ),
    (_S.BOUNCING, _I.MEDIA_FAILED): _end(
        _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.BYE_CALLER, outcome=_FAILED
    ),
    (_S.BOUNCING, _I.RTP_TIMEOUT): _end(
        _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.BYE_CALLER, outcome=_FAILED
    ),
    (_S.BOUNCING, _I.HANGUP): _end(
        _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.BYE_CALLER, outcome=_FAILED
    ),
    # -- transfer (RFC 3515): the REFER was answered 202 and NOTIFY 100 Trying went -----------
    (_S.ANSWERED, _I.REFERRED): Transition(
        _S.TRANSFER_ROUTING, (_A.DETACH_TRANSFEROR, _A.HOLD_TRANSFEREE, _A.ROUTE_TRANSFER)
    ),
    (_S.TRANSFER_ROUTING, _I.ROUTE_DEVICES): Transition(_S.TRANSFERRING, (_A.TRANSFER_OFFER,)),
    (_S.TRANSFER_ROUTING, _I.ROUTE_HERE): Transition(
        _S.MEDIA, (_A.NOTIFY_SUCCESS, _A.RELEASE_TRANSFEROR, _A.START_APP)
    ),
    (_S.TRANSFER_ROUTING, _I.REFUSED): Transition(_S.TRANSFER_ROUTING, (_A.TRANSFER_FAILED,)),
    (_S.TRANSFER_ROUTING, _I.RESUMED): Transition(_S.ANSWERED, (_A.REATTACH,)),
    (_S.TRANSFER_ROUTING, _I.GIVE_UP): Transition(_S.MEDIA, (_A.RUN_GOODBYE,)),
    (_S.TRANSFER_ROUTING, _I.BYE_CALLER): _end(_A.ANSWER_BYE, _A.NOTIFY_FAILURE,
                                                _A.RELEASE_TRANSFEROR),
    (_S.TRANSFER_ROUTING, _I.BYE_CALLEE): _end(_A.ANSWER_BYE, _A.NOTIFY_FAILURE,
                                                _A.RELEASE_TRANSFEROR),
    (_S.TRANSFERRING, _I.OFFER_READY): Transition(_S.TRANSFERRING, (_A.DIAL_TRANSFER,)),
    (_S.TRANSFERRING, _I.EARLY): Transition(_S.TRANSFERRING, (_A.NOTIFY_PROGRESS,)),
    # The target answers: it takes the transferor's place, whose dialog then ends (RFC 5589).
    (_S.TRANSFERRING, _I.ANSWERED): Transition(_S.ANSWERED, (
        _A.STOP_RING_TIMER, _A.CANCEL_ELSEWHERE, _A.BRIDGE_TRANSFER, _A.NOTIFY_SUCCESS,
        _A.RELEASE_TRANSFEROR,
    )),
    # Not answered: the target's no-answer destination takes the transferee, never silence.
    (_S.TRANSFERRING, _I.RING_TIMEOUT): Transition(
        _S.TRANSFER_ROUTING, (_A.CANCEL_SILENTLY, _A.TRANSFER_NO_ANSWER)
    ),
    (_S.TRANSFERRING, _I.DECLINED): Transition(_S.TRANSFER_ROUTING, (
        _A.STOP_RING_TIMER, _A.CANCEL_BUSY_EVERYWHERE, _A.TRANSFER_NO_ANSWER,
    )),
    (_S.TRANSFERRING, _I.REJECTED): Transition(
        _S.TRANSFER_ROUTING, (_A.STOP_RING_TIMER, _A.TRANSFER_NO_ANSWER)
    ),
    (_S.TRANSFERRING, _I.NO_ANSWER): Transition(
        _S.TRANSFER_ROUTING, (_A.STOP_RING_TIMER, _A.TRANSFER_NO_ANSWER)
    ),
    (_S.TRANSFERRING, _I.REFUSED): Transition(_S.TRANSFER_ROUTING, (_A.TRANSFER_FAILED,)),
    (_S.TRANSFERRING, _I.BYE_CALLER): _end(
        _A.ANSWER_BYE, _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.NOTIFY_FAILURE,
        _A.RELEASE_TRANSFEROR,
    ),
    (_S.TRANSFERRING, _I.BYE_CALLEE): _end(
        _A.ANSWER_BYE, _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.NOTIFY_FAILURE,
        _A.RELEASE_TRANSFEROR,
    ),
    (_S.TRANSFERRING, _I.ACK_TIMEOUT): _end(
        _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.RELEASE_TRANSFEROR, _A.BYE_ALL,
        outcome=_FAILED,
    ),
    (_S.TRANSFERRING, _I.MEDIA_FAILED): _end(
        _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.NOTIFY_FAILURE, _A.RELEASE_TRANSFEROR,
        _A.BYE_ALL, outcome=_FAILED,
    ),
    (_S.TRANSFERRING, _I.HANGUP): _end(
        _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.NOTIFY_FAILURE, _A.RELEASE_TRANSFEROR,
        _A.BYE_ALL, outcome=_FAILED,
    ),
    # -- attended transfer: REFER with Replaces (RFC 3891) names another call of ours --------
    (_S.ANSWERED, _I.REFERRED_ATTENDED): Transition(
        _S.REBRIDGING, (_A.DETACH_TRANSFEROR, _A.HOLD_TRANSFEREE, _A.ATTENDED_REBRIDGE)
    ),
    (_S.REBRIDGING, _I.REBRIDGED): Transition(
        _S.ANSWERED, (_A.FINISH_REBRIDGE, _A.NOTIFY_SUCCESS, _A.RELEASE_TRANSFEROR)
    ),
    (_S.REBRIDGING, _I.LEG_FAILED): _end(
        _A.NOTIFY_FAILURE, _A.RELEASE_TRANSFEROR, _A.BYE_ALL, outcome=_FAILED
    ),
    (_S.REBRIDGING, _I.MEDIA_FAILED): _end(
        _A.NOTIFY_FAILURE, _A.RELEASE_TRANSFEROR, _A.BYE_ALL, outcome=_FAILED
    ),
    (_S.REBRIDGING, _I.BYE_CALLER): _end(
        _A.ANSWER_BYE, _A.BYE_OTHER, _A.NOTIFY_FAILURE, _A.RELEASE_TRANSFEROR
    ),
    (_S.REBRIDGING, _I.BYE_CALLEE): _end(
        _A.ANSWER_BYE, _A.BYE_OTHER, _A.NOTIFY_FAILURE, _A.RELEASE_TRANSFEROR
    ),
    (_S.REBRIDGING, _I.HANGUP): _end(
        _A.NOTIFY_FAILURE, _A.RELEASE_TRANSFEROR, _A.BYE_ALL, outcome=_FAILED
    ),
    # -- pickup: a device dialled **EXT (or the group code) while this call rang -------------
    (_S.RINGING, _I.PICKED_UP): Transition(
        _S.CONNECTING, (_A.STOP_RING_TIMER, _A.CANCEL_ELSEWHERE, _A.PICKUP)
    ),
    # -- RFC 4028 §10: "the UA ... SHOULD send a BYE" when the session expires ----------------
    (_S.ANSWERED, _I.SESSION_EXPIRED): _end(_A.BYE_ALL),
    (_S.MEDIA, _I.SESSION_EXPIRED): _end(_A.BYE_CALLER),
    (_S.BOUNCING, _I.SESSION_EXPIRED): _end(_A.STOP_RING_TIMER, _A.CANCEL_SILENTLY,
                                            _A.BYE_CALLER),
    (_S.TRANSFERRING, _I.SESSION_EXPIRED): _end(
        _A.STOP_RING_TIMER, _A.CANCEL_SILENTLY, _A.NOTIFY_FAILURE, _A.RELEASE_TRANSFEROR,
        _A.BYE_ALL,
    ),
    (_S.REBRIDGING, _I.SESSION_EXPIRED): _end(_A.NOTIFY_FAILURE, _A.RELEASE_TRANSFEROR,
                                              _A.BYE_ALL),
    # -- RFC 3891: a new INVITE replaces one of the legs of a bridged call -------------------
    (_S.ANSWERED, _I.REPLACED): Transition(_S.ANSWERED, (_A.REPLACE_LEG,)),
}


# -- branches --------------------------------------------------------------------------------


class BranchState(Enum):
    __hash__ = object.__hash__

    CALLING = "CALLING"  # INVITE sent, nothing heard
    PROCEEDING = "PROCEEDING"  # a provisional response came
    CANCEL_PENDING = "CANCEL_PENDING"  # to be cancelled, but nothing heard yet
    CANCELLING = "CANCELLING"  # CANCEL sent, waiting for the INVITE's final response
    ANSWERED = "ANSWERED"  # the call's winner
    ENDING = "ENDING"  # a 2xx the call did not want: ACKed and BYEd
    FAILED = "FAILED"  # a final response >= 300, a timeout, or given up after CANCEL


class BranchInput(Enum):
    __hash__ = object.__hash__

    TRYING = "TRYING"  # 100
    PROVISIONAL = "PROVISIONAL"  # 101-199
    ANSWER = "ANSWER"  # the first 2xx, while the call can take it
    LATE_ANSWER = "LATE_ANSWER"  # the first 2xx, when the call has a winner or is over
    ANSWER_AGAIN = "ANSWER_AGAIN"  # a 2xx for a dialog already confirmed (retransmission)
    EXTRA_ANSWER = "EXTRA_ANSWER"  # a 2xx with another To tag (a fork downstream)
    REJECT = "REJECT"  # 300-699
    TIMEOUT = "TIMEOUT"  # Timer B, or the transport failed
    CANCEL = "CANCEL"  # the call wants this branch to stop ringing
    GIVE_UP = "GIVE_UP"  # 64*T1 after our CANCEL, still no final response
    # -- trunk branches (b2bua.calls.trunking) --
    CHALLENGED = "CHALLENGED"  # a 401/407 we answer with the trunk's credentials
    AUTH_REFUSED = "AUTH_REFUSED"  # a challenge again after our credentials, or unanswerable
    TRUNK_FAILED = "TRUNK_FAILED"  # 503, 408, Timer B or a transport failure


class BranchAction(Enum):
    __hash__ = object.__hash__

    REPORT_EARLY = "REPORT_EARLY"  # the call's EARLY
    WIN = "WIN"  # the call's ANSWERED
    REPORT_FAILURE = "REPORT_FAILURE"  # the call's DECLINED, REJECTED or NO_ANSWER, if due
    SEND_CANCEL = "SEND_CANCEL"
    ARM_GIVE_UP = "ARM_GIVE_UP"
    ACK = "ACK"
    RE_ACK = "RE_ACK"  # the same ACK bytes again
    BYE_DIALOG = "BYE_DIALOG"  # end the dialog that 2xx made
    ABANDON = "ABANDON"
    # -- trunk branches (b2bua.calls.trunking) --
    ANSWER_CHALLENGE = "ANSWER_CHALLENGE"  # the INVITE again, with credentials
    FAIL_OVER = "FAIL_OVER"  # the next trunk, or REPORT_FAILURE when none is left


@dataclass(frozen=True, slots=True)
class BranchTransition:
    target: BranchState
    actions: tuple[BranchAction, ...] = ()


_B = BranchState
_BI = BranchInput
_BA = BranchAction

# §15: "a UA that receives a 2xx after it sent a CANCEL ... the UAC MUST ACK it and then send
# a BYE"; §13.2.2.4 for a 2xx the call does not want or a second dialog.
_ACK_AND_BYE = BranchTransition(_B.ENDING, (_BA.ACK, _BA.BYE_DIALOG))
# §9.1: "If no provisional response has been received, the CANCEL request MUST NOT be sent;
# rather, the client MUST wait for the arrival of a provisional response before sending the
# request."
_CANCEL_NOW = BranchTransition(_B.CANCELLING, (_BA.SEND_CANCEL, _BA.ARM_GIVE_UP))

BRANCH_TABLE: dict[tuple[BranchState, BranchInput], BranchTransition] = {
    (_B.CALLING, _BI.TRYING): BranchTransition(_B.PROCEEDING),
    (_B.CALLING, _BI.PROVISIONAL): BranchTransition(_B.PROCEEDING, (_BA.REPORT_EARLY,)),
    (_B.CALLING, _BI.ANSWER): BranchTransition(_B.ANSWERED, (_BA.WIN,)),
    (_B.CALLING, _BI.LATE_ANSWER): _ACK_AND_BYE,
    (_B.CALLING, _BI.REJECT): BranchTransition(_B.FAILED, (_BA.REPORT_FAILURE,)),
    (_B.CALLING, _BI.TIMEOUT): BranchTransition(_B.FAILED, (_BA.REPORT_FAILURE,)),
    (_B.CALLING, _BI.CANCEL): BranchTransition(_B.CANCEL_PENDING),
    (_B.PROCEEDING, _BI.TRYING): BranchTransition(_B.PROCEEDING),
    (_B.PROCEEDING, _BI.PROVISIONAL): BranchTransition(_B.PROCEEDING, (_BA.REPORT_EARLY,)),
    (_B.PROCEEDING, _BI.ANSWER): BranchTransition(_B.ANSWERED, (_BA.WIN,)),
    (_B.PROCEEDING, _BI.LATE_ANSWER): _ACK_AND_BYE,
    (_B.PROCEEDING, _BI.REJECT): BranchTransition(_B.FAILED, (_BA.REPORT_FAILURE,)),
    (_B.PROCEEDING, _BI.TIMEOUT): BranchTransition(_B.FAILED, (_BA.REPORT_FAILURE,)),
    (_B.PROCEEDING, _BI.CANCEL): _CANCEL_NOW,
    (_B.CANCEL_PENDING, _BI.TRYING): _CANCEL_NOW,
    (_B.CANCEL_PENDING, _BI.PROVISIONAL): _CANCEL_NOW,
    (_B.CANCEL_PENDING, _BI.ANSWER): _ACK_AND_BYE,
    (_B.CANCEL_PENDING, _BI.LATE_ANSWER): _ACK_AND_BYE,
    (_B.CANCEL_PENDING, _BI.REJECT): BranchTransition(_B.FAILED),
    (_B.CANCEL_PENDING, _BI.TIMEOUT): BranchTransition(_B.FAILED),
    (_B.CANCELLING, _BI.TRYING): BranchTransition(_B.CANCELLING),
    (_B.CANCELLING, _BI.PROVISIONAL): BranchTransition(_B.CANCELLING),
    (_B.CANCELLING, _BI.ANSWER): _ACK_AND_BYE,
    (_B.CANCELLING, _BI.LATE_ANSWER): _ACK_AND_BYE,
    (_B.CANCELLING, _BI.REJECT): BranchTransition(_B.FAILED),
    (_B.CANCELLING, _BI.TIMEOUT): BranchTransition(_B.FAILED),
    (_B.CANCELLING, _BI.GIVE_UP): BranchTransition(_B.FAILED, (_BA.ABANDON,)),
    (_B.ANSWERED, _BI.ANSWER_AGAIN): BranchTransition(_B.ANSWERED, (_BA.RE_ACK,)),
    (_B.ANSWERED, _BI.EXTRA_ANSWER): BranchTransition(_B.ANSWERED, (_BA.ACK, _BA.BYE_DIALOG)),
    (_B.ENDING, _BI.ANSWER_AGAIN): BranchTransition(_B.ENDING, (_BA.RE_ACK,)),
    (_B.ENDING, _BI.EXTRA_ANSWER): _ACK_AND_BYE,
}

# -- trunk branches (b2bua.calls.trunking) -----------------------------------------------------
# RFC 3261 §22.2: "When a UAC resubmits a request with its credentials after receiving a 401
# (Unauthorized) or 407 (Proxy Authentication Required) response, it MUST increment the CSeq
# header field value as it would normally when sending an updated request." The branch rings
# on with a new INVITE client transaction (CALLING again: RFC 3261 §9.1 forbids a CANCEL until
# that transaction hears a provisional). A challenge again to the credentials we just sent
# means they were refused (RFC 7235 §3.1: "If the request included authentication
# credentials, then the 401 response indicates that authorization has been refused for those
# credentials"): the branch fails (AUTH_REFUSED), as does a challenge we cannot answer.
# A trunk that cannot take the call (503, 408, no response, transport failure) hands it to the
# next trunk (FAIL_OVER), a new branch; a branch already being cancelled just ends.
_ANSWER_CHALLENGE = BranchTransition(_B.CALLING, (_BA.ANSWER_CHALLENGE,))
_AUTH_REFUSED = BranchTransition(_B.FAILED, (_BA.REPORT_FAILURE,))
_FAIL_OVER = BranchTransition(_B.FAILED, (_BA.FAIL_OVER,))
BRANCH_TABLE.update({
    (_B.CALLING, _BI.CHALLENGED): _ANSWER_CHALLENGE,
    (_B.PROCEEDING, _BI.CHALLENGED): _ANSWER_CHALLENGE,
    (_B.CANCEL_PENDING, _BI.CHALLENGED): BranchTransition(_B.FAILED),
    (_B.CANCELLING, _BI.CHALLENGED): BranchTransition(_B.FAILED),
    (_B.CALLING, _BI.AUTH_REFUSED): _AUTH_REFUSED,
    (_B.PROCEEDING, _BI.AUTH_REFUSED): _AUTH_REFUSED,
    (_B.CANCEL_PENDING, _BI.AUTH_REFUSED): BranchTransition(_B.FAILED),
    (_B.CANCELLING, _BI.AUTH_REFUSED): BranchTransition(_B.FAILED),
    (_B.CALLING, _BI.TRUNK_FAILED): _FAIL_OVER,
    (_B.PROCEEDING, _BI.TRUNK_FAILED): _FAIL_OVER,
    (_B.CANCEL_PENDING, _BI.TRUNK_FAILED): BranchTransition(_B.FAILED),
    (_B.CANCELLING, _BI.TRUNK_FAILED): BranchTransition(_B.FAILED),
})

# Branches that still ring (a CANCEL is due to them when the call stops ringing).
RINGING_BRANCHES = frozenset({_B.CALLING, _B.PROCEEDING})
# Branches whose INVITE transaction may still hear a final response.
LIVE_BRANCHES = frozenset({_B.CALLING, _B.PROCEEDING, _B.CANCEL_PENDING, _B.CANCELLING})

"""What the call engine is told: the input side of `CallEngine.handle(event, now)`.

SIP requests reach the engine through the core (which sorts them by method and dialog); the
events of the client transactions the engine started come straight from the transaction layer
(b2bua.sip.transaction: ResponseReceived, TransactionTimedOut, TransportFailed,
TransactionTerminated), because the engine owns them. The media port answers the engine's
media commands (b2bua.commands) with the events below, and reports what happens on the wire
(RTP timeout, DTMF). All are frozen: the engine treats an event as a fact.
"""

from __future__ import annotations

from dataclasses import dataclass

from b2bua.sip.flow import Flow
from b2bua.sip.message import Request
from b2bua.sip.transaction import ServerTransaction

# -- from the core ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InviteReceived:
    """An INVITE outside any dialog: a new call."""

    transaction: ServerTransaction
    request: Request
    flow: Flow


@dataclass(frozen=True, slots=True)
class InDialogRequest:
    """A request with a To tag of ours (`transaction` is None for the ACK of a 2xx)."""

    transaction: ServerTransaction | None
    request: Request
    flow: Flow


@dataclass(frozen=True, slots=True)
class CallerCancelled:
    """A CANCEL for an INVITE server transaction (RFC 3261 §9.2); `invite_transaction` is None
    when it matches none."""

    invite_transaction: ServerTransaction | None
    cancel_transaction: ServerTransaction
    request: Request


@dataclass(frozen=True, slots=True)
class AckNeverCame:
    """Our 2xx to a caller's INVITE went unacknowledged for 64*T1 (§13.3.1.4)."""

    transaction: ServerTransaction


# -- from the media port ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaOpened:
    """The call's media is anchored; `offer` is what the callees are offered (empty when the
    caller made no offer)."""

    call: str
    offer: bytes
    secure_offer: bytes = b""  # the same offer in SRTP (MediaOpen.secure_offer), or nothing


@dataclass(frozen=True, slots=True)
class SdpReady:
    """The answer to a MediaRewrite, MediaLocalAnswer or MediaLocalOffer of the same ticket."""

    call: str
    ticket: int
    body: bytes


@dataclass(frozen=True, slots=True)
class MediaFailed:
    """The media port could not do what a command of this call asked (`ticket`, or 0 for the
    session itself): the call cannot go on. `status` is what an unanswered caller gets."""

    call: str
    status: int
    reason: str
    ticket: int = 0


@dataclass(frozen=True, slots=True)
class AppFinished:
    """A media application (voicemail, announcement...) is over; `outcome` overrides the
    call record's when set (a message was left: "voicemail")."""

    call: str
    outcome: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class RtpTimedOut:
    call: str
    leg: str


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    call: str
    leg: str
    digit: str


@dataclass(frozen=True, slots=True)
class HangUp:
    """End a call from our side (an administrator, a shutdown)."""

    call: str
    outcome: str = "failed"

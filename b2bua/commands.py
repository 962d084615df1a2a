"""What the transaction user asks the shell to do: the output side of the sans-IO layers above
the transaction layer (the core, the call engine, message waiting).

Theory of operation
-------------------
The call engine and its neighbours never call into the stack, the media engine or the store.
They append commands to an `Outbox`; the shell (`b2bua.stack.SipStack`) drains it after the
transaction layer, the way aioquic's protocol drains `datagrams_to_send()`: SIP commands go to
the transaction layer, media commands to the media port (b2bua.calls.media), a call record to
the recorder. Media answers come back as events (b2bua.calls.events) into the engine's
`handle`. Nothing here does I/O: the classes are plain data.

A client transaction started by `SendRequest` carries `owner` as its context: the responses,
timeouts and end of that transaction go back to that owner's `on_transaction_event`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response
from b2bua.sip.transaction import ServerTransaction

if TYPE_CHECKING:
    from b2bua.calls.records import CallRecord


class TransactionOwner(Protocol):
    """Who gets the events of a client transaction it started (responses, timeout, end)."""

    def on_transaction_event(self, event: object, now: float) -> None: ...


# -- SIP -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Start a client transaction; `owner` hears of its responses (None: nobody needs them)."""

    request: Request
    flow: Flow
    owner: TransactionOwner | None = None


@dataclass(frozen=True, slots=True)
class Respond:
    """Send a response on a server transaction (a 2xx to an INVITE is retransmitted until its
    ACK, RFC 3261 §13.3.1.4). `stateless`: a refusal given at once that the same request would
    get again (a challenge, 404, 405...): the transaction ends with it instead of waiting to
    absorb retransmissions (RFC 3261 §8.2.7, `TransactionLayer.answer_statelessly`)."""

    transaction: ServerTransaction
    response: Response
    stateless: bool = False


@dataclass(frozen=True, slots=True)
class SendBytes:
    """Send bytes outside any transaction (the ACK of a 2xx, again the same one)."""

    data: bytes
    flow: Flow


@dataclass(frozen=True, slots=True)
class Abandon:
    """Forget our INVITE transaction `branch`: no final response came 64*T1 after its CANCEL
    (RFC 3261 §9.1: "the client SHOULD then consider the INVITE transaction terminated")."""

    branch: str


# -- media -----------------------------------------------------------------------------------


class SdpKind(Enum):
    __hash__ = object.__hash__

    OFFER = "offer"
    ANSWER = "answer"


@dataclass(frozen=True, slots=True)
class MediaOpen:
    """Anchor a new call's media. Answered by `MediaOpened` (with the offer the callees get,
    when the caller made one) or `MediaFailed`."""

    call: str
    offer: bytes
    music: str  # the callee's hold music class
    source: str  # where the caller's SIP comes from (NAT detection)
    # The caller's `media_encryption` (docs/trunks.md) when it is not "optional", and whether
    # some callee may need an SRTP offer: MediaOpened then carries one in `secure_offer`.
    encryption: str = "optional"
    secure_offer: bool = False


@dataclass(frozen=True, slots=True)
class MediaRewrite:
    """An SDP offer or answer from `leg`, to be rewritten for the other leg. Answered by
    `SdpReady` with the same ticket (the body passes unchanged when the call has no media
    session) or `MediaFailed`."""

    call: str
    ticket: int
    leg: str
    body: bytes
    kind: SdpKind
    source: str | None


@dataclass(frozen=True, slots=True)
class MediaLocalAnswer:
    """We answer `leg`'s offer ourselves (voicemail, announcement, bounce). `SdpReady` or
    `MediaFailed` (488 when no codec fits)."""

    call: str
    ticket: int
    leg: str
    offer: bytes
    music: str


@dataclass(frozen=True, slots=True)
class MediaLocalOffer:
    """An offer from us to `leg` (a bounce's private call). `SdpReady` or `MediaFailed`."""

    call: str
    ticket: int
    leg: str


@dataclass(frozen=True, slots=True)
class MediaPlay:
    """`leg` hears a prompt (by name, in `language`) or a music class (`music`) instead of the
    other leg, looped."""

    call: str
    leg: str
    prompt: str
    extension: str
    language: str | None
    music: bool = False


@dataclass(frozen=True, slots=True)
class MediaResume:
    """`leg` hears the other leg again."""

    call: str
    leg: str


class AppKind(Enum):
    __hash__ = object.__hash__

    VOICEMAIL = "voicemail"
    ANNOUNCEMENT = "announcement"
    UNAVAILABLE = "unavailable"  # "user unavailable", then voicemail (a bounce not answered)
    GOODBYE = "goodbye"  # "user unavailable", then the call ends (a transfer that failed)


@dataclass(frozen=True, slots=True)
class MediaRunApp:
    """Run a media application on a call we answered; `AppFinished` when it is over."""

    call: str
    app: AppKind
    extension: str  # the voicebox, or whose announcement
    caller: str
    message: str | None = None  # the announcement's name
    language: str | None = None
    leg: str = "a"  # whom it talks to (the caller, or a transferee on the callee's side)


@dataclass(frozen=True, slots=True)
class MediaEncrypt:
    """From now on, `leg`'s SDP follows `mode` ("sdes", "optional", "none"): the leg a
    branch answered on is that device's or trunk's (docs/trunks.md). No answer."""

    call: str
    leg: str
    mode: str


@dataclass(frozen=True, slots=True)
class MediaClose:
    """The call is over: release its media."""

    call: str


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteRecord:
    record: CallRecord


Command = (
    SendRequest | Respond | SendBytes | Abandon | MediaOpen | MediaRewrite | MediaLocalAnswer
    | MediaLocalOffer | MediaPlay | MediaResume | MediaRunApp | MediaEncrypt | MediaClose
    | WriteRecord
)
MEDIA_COMMANDS = (MediaOpen, MediaRewrite, MediaLocalAnswer, MediaLocalOffer, MediaPlay,
                  MediaResume, MediaRunApp, MediaEncrypt, MediaClose)


class Outbox(deque[Command]):
    """The commands waiting for the shell, in the order they were made."""

    __slots__ = ()

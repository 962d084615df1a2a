"""Dialogs (RFC 3261 §12, §13.2.2.4, §14), sans-IO.

Theory of operation
-------------------
A B2BUA holds one dialog per leg. The UAS side (the caller's leg) is created from the INVITE we
answer (`Dialog.as_uas`); the UAC side of an INVITE we send is a `ClientInvite`, which makes one
dialog per To tag: forking downstream (a trunk, a gateway, a proxy in front of several phones)
creates several early dialogs, and may confirm more than one of them with a 2xx.

`ClientInvite.answered` tells the three cases of a 2xx apart:
- FIRST: the first 2xx: its dialog is confirmed, and is the one the call goes on with;
- RETRANSMISSION: a 2xx for a dialog already confirmed: the same ACK goes again, from its bytes
  (RFC 6026: the transaction passes every 2xx up while it is ACCEPTED);
- ADDITIONAL: a 2xx with another To tag after the first. §13.2.2.4: "If, after acknowledging
  the first 2xx response to an INVITE, the UAC does not want to continue with that dialog, then
  the UAC MUST terminate the dialog by sending a BYE request": the extra dialog is ACKed, then
  ended.

A dialog checks what comes in on it (`check_request`): a CSeq lower than the last one is
answered 500 (§12.2.2), and at most one INVITE may be in progress each way (§14.1, §14.2:
491 when ours is pending, 500 with Retry-After when theirs is). Target refresh requests and
their 2xx replace the remote target (§12.2.1.2, §12.2.2).

`DialogRegistry` matches in-dialog requests to the dialog (and its owner) they belong to by
Call-ID, local tag and remote tag (§12.2.2). It also remembers, for 64*T1 and in a few hundred
bytes each, the identifiers of dialogs that just ended: a BYE whose 200 was lost is sent again
for up to 64*T1 (§17.1.2.2), and its server transaction, which would absorb it, may already be
gone under load (the transaction layer bounds how many it keeps). Such a BYE gets 200 again
rather than a 481 that would make its sender report a failed hang-up.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import Generic, TypeVar

from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Request, Response
from b2bua.sip.uri import SipUri, Uri, parse_uri


class DialogState(Enum):
    __hash__ = object.__hash__

    EARLY = "EARLY"
    CONFIRMED = "CONFIRMED"
    TERMINATED = "TERMINATED"


class InviteState(Enum):
    """The INVITE transaction in progress on a dialog, if any (§14)."""

    __hash__ = object.__hash__

    IDLE = "IDLE"
    INCOMING = "INCOMING"  # the peer's re-INVITE waits for our final response
    OUTGOING = "OUTGOING"  # our re-INVITE waits for the peer's final response


class Dialog:
    __slots__ = (
        "call_id",
        "invite",
        "local_cseq",
        "local_tag",
        "local_uri",
        "remote_cseq",
        "remote_tag",
        "remote_target",
        "remote_uri",
        "route_set",
        "state",
    )

    def __init__(
        self,
        call_id: str,
        local_tag: str,
        remote_tag: str | None,
        local_uri: str,
        remote_uri: str,
        remote_target: Uri,
        route_set: list[str],
        local_cseq: int,
        remote_cseq: int | None,
        state: DialogState = DialogState.EARLY,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri  # the From (UAC) or To (UAS) value without tag
        self.remote_uri = remote_uri
        self.remote_target = remote_target
        self.route_set = route_set  # name-addr strings, in the order requests use them
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.state = state
        self.invite = InviteState.IDLE

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} {self.local_tag}/{self.remote_tag} {self.state.value}>"

    @property
    def key(self) -> tuple[str, str]:
        """What an in-dialog request names us by: its Call-ID and its To tag (ours)."""
        return (self.call_id, self.local_tag)

    # -- creation --------------------------------------------------------------------------
    @classmethod
    def as_uas(cls, request: Request, local_tag: str) -> Dialog:
        """The dialog of a request we answer with a To tag (RFC 3261 §12.1.1)."""
        contacts = request.contacts
        target: Uri = contacts[0].uri if contacts else request.from_.uri
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag,
            local_uri=_strip_tag(request.headers.get("to") or ""),
            remote_uri=_strip_tag(request.headers.get("from") or ""),
            remote_target=target,
            route_set=request.headers.values("record-route"),
            local_cseq=0,
            remote_cseq=request.cseq.number,
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog our request and a response with a To tag make (§12.1.2)."""
        contacts = response.contacts
        target: Uri = contacts[0].uri if contacts else request.request_uri
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=response.to.tag,
            local_uri=_strip_tag(request.headers.get("from") or ""),
            remote_uri=_strip_tag(request.headers.get("to") or ""),
            remote_target=target,
            route_set=list(reversed(response.headers.values("record-route"))),
            local_cseq=request.cseq.number,
            remote_cseq=None,
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
        )

    @classmethod
    def from_2xx(cls, response: Response) -> Dialog:
        """The dialog a 2xx to our INVITE makes, from the response alone (it echoes our From,
        Call-ID and CSeq): for a 2xx that comes once we have let go of the INVITE."""
        contacts = response.contacts
        if not contacts:
            raise SipParseError("a 2xx to an INVITE without a Contact")
        return cls(
            call_id=response.call_id,
            local_tag=response.from_.tag or "",
            remote_tag=response.to.tag,
            local_uri=_strip_tag(response.headers.get("from") or ""),
            remote_uri=_strip_tag(response.headers.get("to") or ""),
            remote_target=contacts[0].uri,
            route_set=list(reversed(response.headers.values("record-route"))),
            local_cseq=response.cseq.number,
            remote_cseq=None,
            state=DialogState.CONFIRMED,
        )

    # -- what comes in ---------------------------------------------------------------------
    def check_request(self, request: Request) -> tuple[int, str] | None:
        """Check an in-dialog request (not an ACK) against the dialog; None when it is
        acceptable (and the dialog has taken its CSeq), else the status and reason to answer.

        §12.2.2: "If the remote sequence number was not empty, but the sequence number of the
        request is lower than the remote sequence number, the request is out of order and MUST
        be rejected with a 500 (Server Internal Error) response."
        """
        number = request.cseq.number
        if self.remote_cseq is not None and number < self.remote_cseq:
            return (500, "CSeq out of order")
        if request.method == "INVITE":
            if self.invite is InviteState.OUTGOING:
                # §14.2: "A UAS that receives an INVITE on a dialog while an INVITE it had sent
                # on that dialog is in progress MUST return a 491 (Request Pending)".
                return (491, "Request Pending")
            if self.invite is InviteState.INCOMING:
                # §14.2: "A UAS that receives a second INVITE before it sends the final
                # response to a first INVITE with a lower CSeq sequence number on the same
                # dialog MUST return a 500 (Server Internal Error) response".
                return (500, "Previous INVITE still in progress")
        self.remote_cseq = number
        return None

    def refresh_target(self, message: Request | Response) -> None:
        """A target refresh request (re-INVITE, UPDATE...) or its 2xx carries the new remote
        target in its Contact (§12.2.1.2, §12.2.2)."""
        try:
            contacts = message.contacts
        except SipParseError:
            return
        if contacts:
            self.remote_target = contacts[0].uri

    # -- what goes out ---------------------------------------------------------------------
    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq

    def request(
        self,
        method: str,
        via: str,
        contact: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        cseq: int | None = None,
    ) -> Request:
        """A request within the dialog (RFC 3261 §12.2.1.1), loose routing only."""
        if cseq is None:
            cseq = self.local_cseq if method in ("ACK", "CANCEL") else self.next_cseq()
        remote = self.remote_uri + (f";tag={self.remote_tag}" if self.remote_tag else "")
        fields: list[tuple[str, str]] = [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"{self.local_uri};tag={self.local_tag}"),
            ("To", remote),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        fields.extend(("Route", r) for r in self.route_set)
        if contact is not None:
            fields.append(("Contact", contact))
        fields.extend(headers)
        return Request(method, self.remote_target, fields, body)

    def next_hop(self) -> Uri:
        """Where the request goes first: the first Route, else the remote target."""
        if self.route_set:
            text = self.route_set[0]
            start, end = text.find("<"), text.find(">")
            return parse_uri(text[start + 1 : end] if start >= 0 else text.split(";")[0])
        return self.remote_target


class Answer(Enum):
    """What a 2xx to an INVITE we sent is (see `ClientInvite.answered`)."""

    __hash__ = object.__hash__

    FIRST = "FIRST"
    RETRANSMISSION = "RETRANSMISSION"
    ADDITIONAL = "ADDITIONAL"


class ClientInvite:
    """The UAC side of one INVITE we sent: its early dialogs, one per To tag, the dialogs its
    2xx responses confirmed, and the bytes of the ACK each of those got (a retransmitted 2xx
    gets the same ACK again).

    An early dialog is kept as the first provisional response that made it, and becomes a
    `Dialog` when something needs it (`early`): most early dialogs of a forked call only ever
    ring, and are over when another phone answers."""

    __slots__ = ("_acks", "_early", "confirmed", "dialogs", "request")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.dialogs: dict[str, Dialog] = {}  # To tag -> dialog (confirmed, or early in use)
        self.confirmed: Dialog | None = None  # the first dialog a 2xx confirmed
        self._early: dict[str, Response] = {}  # To tag -> the 1xx that made its early dialog
        self._acks: dict[str, bytes] = {}

    def provisional(self, response: Response) -> None:
        """A 1xx with a To tag makes the early dialog of that tag (§12.1.2: a response without
        one makes none; 100 never does)."""
        if response.status == 100:
            return
        tag = response.to.tag
        if tag and tag not in self._early and tag not in self.dialogs:
            self._early[tag] = response

    @property
    def early_tags(self) -> list[str]:
        """The To tags of the early dialogs, in the order they appeared."""
        return [t for t in self._early if t not in self.dialogs] + [
            t for t, d in self.dialogs.items() if d.state is DialogState.EARLY]

    def early(self, tag: str) -> Dialog | None:
        """The early dialog of `tag`, made now if it was only a provisional response so far."""
        dialog = self.dialogs.get(tag)
        if dialog is None:
            response = self._early.pop(tag, None)
            if response is None:
                return None
            dialog = self.dialogs[tag] = Dialog.as_uac(self.request, response)
        return dialog if dialog.state is DialogState.EARLY else None

    def answered(self, response: Response) -> tuple[Answer, Dialog]:
        """A 2xx: which of the three cases it is, and the dialog it confirms."""
        tag = response.to.tag or ""
        dialog = self.dialogs.get(tag)
        if dialog is not None and dialog.state is DialogState.CONFIRMED:
            return Answer.RETRANSMISSION, dialog
        self._early.pop(tag, None)
        if dialog is None:
            dialog = self.dialogs[tag] = Dialog.as_uac(self.request, response)
        else:
            dialog.state = DialogState.CONFIRMED
            dialog.refresh_target(response)
            dialog.route_set = list(reversed(response.headers.values("record-route")))
        if self.confirmed is None:
            self.confirmed = dialog
            return Answer.FIRST, dialog
        return Answer.ADDITIONAL, dialog

    def ack(self, dialog: Dialog, via: str, body: bytes = b"",
            headers: Iterable[tuple[str, str]] = ()) -> Request:
        """The ACK of `dialog`'s 2xx (§13.2.2.4: same CSeq number as the INVITE, method ACK)."""
        return dialog.request("ACK", via, headers=headers, body=body,
                              cseq=self.request.cseq.number)

    def remember_ack(self, dialog: Dialog, data: bytes) -> None:
        self._acks[dialog.remote_tag or ""] = data

    def ack_bytes(self, dialog: Dialog) -> bytes | None:
        return self._acks.get(dialog.remote_tag or "")


T = TypeVar("T")

# How long an ended dialog is remembered: 64*T1, as long as a request sent on it is retransmitted.
ENDED_KEPT = 32.0
# At most this many (about 300 bytes each): 30 s of calls at 275 calls/s, two dialogs each.
MAX_ENDED = 16_384


class DialogRegistry(Generic[T]):
    """The dialogs we hold, with what each belongs to, matched as §12.2.2 says: "If the request
    has a tag in the To header field, the UAS core computes the dialog identifier
    corresponding to the request and compares it with existing dialogs." """

    __slots__ = ("_dialogs", "_ended", "max_ended")

    def __init__(self, max_ended: int = MAX_ENDED) -> None:
        self._dialogs: dict[tuple[str, str], tuple[Dialog, T]] = {}
        # Dialogs ended within ENDED_KEPT: (Call-ID, local tag) -> (remote tag, until), oldest
        # first, at most `max_ended`.
        self._ended: OrderedDict[tuple[str, str], tuple[str | None, float]] = OrderedDict()
        self.max_ended = max_ended

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[tuple[Dialog, T]]:
        return iter(list(self._dialogs.values()))

    def add(self, dialog: Dialog, owner: T) -> None:
        self._dialogs[dialog.key] = (dialog, owner)

    def remove(self, dialog: Dialog) -> bool:
        """Forget `dialog` (it ends, or moves to another owner); whether it was held."""
        key = dialog.key
        found = self._dialogs.get(key)
        if found is None or found[0] is not dialog:
            return False
        del self._dialogs[key]
        return True

    def end(self, dialog: Dialog, now: float) -> None:
        """Forget `dialog`, and remember for ENDED_KEPT that it ended."""
        if not self.remove(dialog):
            return
        ended = self._ended
        ended[dialog.key] = (dialog.remote_tag, now + ENDED_KEPT)
        while ended and (len(ended) > self.max_ended or next(iter(ended.values()))[1] <= now):
            ended.popitem(last=False)

    def ended_recently(self, request: Request, now: float) -> bool:
        """Whether `request` belongs to a dialog that ended less than ENDED_KEPT ago."""
        found = self._ended.get((request.call_id, request.to.tag or ""))
        if found is None or found[1] <= now:
            return False
        return found[0] is None or found[0] == request.from_.tag

    @property
    def ended_count(self) -> int:
        return len(self._ended)

    def knows(self, call_id: str, local_tag: str) -> bool:
        return (call_id, local_tag) in self._dialogs

    def match_ids(self, call_id: str, local_tag: str, remote_tag: str) -> tuple[Dialog, T] | None:
        """The dialog of these identifiers (a Replaces header names one so, RFC 3891 §3)."""
        found = self._dialogs.get((call_id, local_tag))
        if found is None or found[0].remote_tag != remote_tag:
            return None
        return found

    def match(self, request: Request) -> tuple[Dialog, T] | None:
        """The dialog an in-dialog request belongs to (Call-ID, To tag, From tag), or None."""
        to_tag = request.to.tag
        if not to_tag:
            return None
        found = self._dialogs.get((request.call_id, to_tag))
        if found is None:
            return None
        remote = found[0].remote_tag
        if remote is not None and request.from_.tag != remote:
            return None
        return found


def _strip_tag(value: str) -> str:
    """A From/To value without its tag parameter (kept as written otherwise)."""
    lower = value.lower()
    idx = lower.find(";tag=")
    if idx < 0:
        return value
    end = value.find(";", idx + 1)
    return value[:idx] + ("" if end < 0 else value[end:])


def uri_hostport(uri: Uri) -> tuple[str, int | None, str | None]:
    """Host, port and transport param of a SIP URI (for sending to it without DNS)."""
    if isinstance(uri, SipUri):
        return uri.host_for_socket, uri.port, uri.transport
    raise ValueError(f"cannot send to {uri}")

"""Dialog state (RFC 3261 §12) and building requests inside a dialog.

A B2BUA holds one dialog per leg. The UAS side (leg A) is created from the INVITE we answer; the
UAC side (each branch B) from the INVITE we send and the response that carries a To tag. Forking
creates several early dialogs on the UAC side: one per To tag, each with its own remote target.
"""

from __future__ import annotations

from collections.abc import Iterable

from b2bua.sip.message import Request, Response
from b2bua.sip.uri import SipUri, Uri, parse_uri

EARLY = "EARLY"
CONFIRMED = "CONFIRMED"
TERMINATED = "TERMINATED"


class Dialog:
    __slots__ = (
        "call_id",
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
        state: str = EARLY,
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

    @classmethod
    def as_uas(cls, request: Request, local_tag: str) -> Dialog:
        """The dialog of the leg whose INVITE we answer (RFC 3261 §12.1.1)."""
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
        """The dialog of a branch, from our INVITE and a response with a To tag (§12.1.2)."""
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
            state=CONFIRMED if 200 <= response.status < 300 else EARLY,
        )

    def update_target(self, message: Request | Response) -> None:
        """A target refresh (re-INVITE, UPDATE, their 2xx) may carry a new Contact."""
        contacts = message.contacts
        if contacts:
            self.remote_target = contacts[0].uri

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

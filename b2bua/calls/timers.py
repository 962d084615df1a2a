"""Session timers (RFC 4028) on each leg of a call, as a B2BUA: negotiated per leg, refreshed
when we are the refresher, and the call ended when the other side's refresh does not come.

Theory of operation
-------------------
Each leg is a dialog of its own, so each gets its own session interval and refresher:

- The caller's leg (we are its UAS). An INVITE whose Session-Expires is below our Min-SE gets
  422 with our Min-SE (§6). Our 200 says the interval (the caller's, or ours when it asked for
  none) and who refreshes: the caller when it supports `timer` (it then must, `Require:
  timer`), else us (§9).
- Each branch (we are its UAC). Our INVITE offers our interval with `Supported: timer`. The
  2xx says who refreshes; without Session-Expires in it (a callee that does not know session
  timers) we refresh (§7.2: the UAC may refresh anyway).

Any INVITE or UPDATE that succeeds on a leg refreshes it: the phones' own refreshes pass
through us and refresh both legs. When we are a leg's refresher and nothing refreshed it for
half the interval, we send a refresh: UPDATE when the leg allows it, else a re-INVITE with the
SDP it last got from us, unchanged (§7.4, §10). When the other side is the refresher and no
refresh came for the interval less min(32, interval/3) seconds (§10), or when our own refresh
gets 408 or 481 or no answer, the far end is gone: both legs get BYE. A leg without RTP (media
not anchored, rtpengine, a phone that stopped sending) is thus never left open for ever.

Session-Expires and Min-SE do not cross from one leg to the other: each leg's are ours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from b2bua.calls.model import ALLOW, Call, Leg
from b2bua.calls.table import CallInput, CallState
from b2bua.commands import SendBytes, SendRequest
from b2bua.sip.dialog import DialogState, InviteState
from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.timers import TimerEntry

if TYPE_CHECKING:
    from b2bua.calls.engine import CallEngine

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 1800  # seconds (§4: "recommended default value of 1800 seconds")
MIN_SE = 90  # §4: "the minimum allowed value is 90 seconds"
_BYE_STATES = frozenset({CallState.ANSWERED, CallState.MEDIA, CallState.BOUNCING,
                         CallState.TRANSFERRING, CallState.TRANSFER_ROUTING,
                         CallState.REBRIDGING})


@dataclass(frozen=True, slots=True)
class SessionExpires:
    seconds: int
    refresher: str | None  # "uac", "uas" or None


def session_expires(message: Request | Response) -> SessionExpires | None:
    """Session-Expires (compact form `x`), or None when absent or malformed."""
    value = message.headers.get("session-expires")
    if not value:
        return None
    head, *params = value.split(";")
    head = head.strip()
    if not head.isdigit():
        return None
    refresher = None
    for param in params:
        name, _, text = param.strip().partition("=")
        if name.lower() == "refresher" and text.strip().lower() in ("uac", "uas"):
            refresher = text.strip().lower()
    return SessionExpires(int(head), refresher)


def supports_timer(message: Request | Response) -> bool:
    """Whether Supported (or Require) names the `timer` option tag."""
    for name in ("supported", "require"):
        for value in message.headers.get_all(name):
            if any(tag.strip().lower() == "timer" for tag in value.split(",")):
                return True
    return False


def min_se(message: Request | Response) -> int | None:
    value = (message.headers.get("min-se") or "").split(";")[0].strip()
    return int(value) if value.isdigit() else None


class SessionTimers:
    """The call engine's session timers (see the module's theory of operation)."""

    def __init__(self, engine: CallEngine, interval: int = DEFAULT_INTERVAL,
                 minimum: int = MIN_SE) -> None:
        self.engine = engine
        self.minimum = minimum
        # 0: we neither ask for nor keep session timers; never below our own Min-SE.
        self.interval = max(interval, minimum) if interval else 0
        self.refreshes: dict[str, tuple[str, str]] = {}  # branch -> (call, leg) we refresh
        self.invite_headers: list[tuple[str, str]] = (
            [("Session-Expires", str(self.interval)), ("Min-SE", str(minimum))]
            if self.interval else [])

    # -- the caller's INVITE and our 200 -----------------------------------------------------
    def too_small(self, request: Request) -> Response | None:
        """§6: "If the Session-Expires value is less than the Min-SE, the UAS MUST reject the
        request with a 422 response ... [with] a Min-SE header field containing its minimum";
        None when the request is acceptable."""
        if not self.interval:
            return None
        asked = session_expires(request)
        if asked is None or asked.seconds >= self.minimum:
            return None
        return make_response(request, 422, to_tag=self.engine.tokens.tag(),
                             headers=[("Min-SE", str(self.minimum))])

    def answer_headers(self, call: Call, leg: Leg) -> list[tuple[str, str]]:
        """The caller's leg is answered: its interval and refresher, and what our 200 says."""
        if not self.interval:
            return []
        request = call.a_request
        asked = session_expires(request)
        timer = supports_timer(request)
        seconds = max(asked.seconds, self.minimum) if asked is not None else self.interval
        if asked is not None and asked.refresher is not None and timer:
            refresher = asked.refresher
        else:
            refresher = "uac" if timer else "uas"
        self._arm(call, leg, seconds, we_refresh=refresher == "uas")
        if not timer:
            return []  # §9: no Session-Expires to a UAC that does not support timers
        headers = [("Session-Expires", f"{seconds};refresher={refresher}")]
        if refresher == "uac":
            headers.append(("Require", "timer"))
        return headers

    # -- a branch's 2xx ----------------------------------------------------------------------
    def branch_answered(self, call: Call, leg: Leg, response: Response) -> None:
        """Our INVITE to a callee was answered: who refreshes leg `leg` (§7.2)."""
        if not self.interval:
            return
        granted = session_expires(response)
        if granted is None:
            self._arm(call, leg, self.interval, we_refresh=True)  # it knows no session timer
            return
        seconds = max(granted.seconds, self.minimum)
        self._arm(call, leg, seconds, we_refresh=granted.refresher != "uas")

    # -- refreshes ---------------------------------------------------------------------------
    def refreshed(self, call: Call, leg: Leg | None) -> None:
        """A re-INVITE or UPDATE on `leg` succeeded: its session is refreshed."""
        if leg is not None and leg.session_interval:
            self._arm(call, leg, leg.session_interval, leg.we_refresh)

    def request_headers(self, leg: Leg) -> list[tuple[str, str]]:
        """What a re-INVITE or UPDATE we send on `leg` says of its session timer."""
        if not leg.session_interval:
            return []
        refresher = "uac" if leg.we_refresh else "uas"
        return [("Session-Expires", f"{leg.session_interval};refresher={refresher}"),
                ("Supported", "timer")]

    def response_headers(self, leg: Leg) -> list[tuple[str, str]]:
        """What our 2xx to a re-INVITE or UPDATE from `leg` says of its session timer."""
        if not leg.session_interval or leg.we_refresh:
            return []
        return [("Session-Expires", f"{leg.session_interval};refresher=uac"),
                ("Require", "timer")]

    def _arm(self, call: Call, leg: Leg, seconds: int, we_refresh: bool) -> None:
        e = self.engine
        if isinstance(leg.session_timer, TimerEntry):
            e.cancel_timer(leg.session_timer)
        leg.session_interval = seconds
        leg.we_refresh = we_refresh
        # §10: the refresher refreshes at half the interval; the other side waits for the
        # interval less min(32, interval/3) before it ends the session.
        wait = seconds / 2 if we_refresh else seconds - min(32, seconds / 3)
        leg.session_timer = e.arm_session_timer(call, leg.name, wait)

    def cancel(self, call: Call) -> None:
        for leg in (call.a_leg, call.b_leg):
            if leg is not None and isinstance(leg.session_timer, TimerEntry):
                self.engine.cancel_timer(leg.session_timer)
                leg.session_timer = None

    def due(self, call: Call, name: str) -> None:
        """A leg's session timer ran out: refresh it (ours), or end the call (theirs)."""
        e = self.engine
        leg = e._leg(call, name)
        if leg is None or leg.session_timer is None:
            return
        leg.session_timer = None
        if call.state not in _BYE_STATES:
            return
        if not leg.we_refresh:
            self._expired(call, leg, "no refresh came")
            return
        if leg.dialog.invite is not InviteState.IDLE or leg.dialog.state is \
                DialogState.TERMINATED:
            self._arm(call, leg, leg.session_interval, True)  # an INVITE is under way: later
            return
        headers = [("Contact", e.local.contact(leg.flow)), *self.request_headers(leg)]
        if leg.allows_update:
            method, body = "UPDATE", b""
        else:
            method, body = "INVITE", leg.last_sdp
            headers += [("Allow", ALLOW)]
            if body:
                headers.append(("Content-Type", "application/sdp"))
            leg.dialog.invite = InviteState.OUTGOING
        request, key = e._in_dialog_request(leg, method, headers, body)
        self.refreshes[key] = (call.key, name)
        e.counters["session_refreshes"] += 1
        e.outbox.append(SendRequest(request, leg.flow, e))

    def response(self, key: str, response: Response) -> bool:
        """A response to one of our refreshes; False when `key` is none of them."""
        found = self.refreshes.get(key)
        if found is None:
            return False
        if response.status < 200:
            return True
        del self.refreshes[key]
        e = self.engine
        call = e.calls.get(found[0])
        leg = e._leg(call, found[1]) if call is not None else None
        if call is None or leg is None:
            return True
        if response.cseq.method == "INVITE":
            leg.dialog.invite = InviteState.IDLE
            if 200 <= response.status < 300:
                via, _ = e.local.via(leg.flow)
                ack = leg.dialog.request("ACK", via, cseq=response.cseq.number)
                e.outbox.append(SendBytes(bytes(ack), leg.flow))
        if 200 <= response.status < 300:
            self._arm(call, leg, leg.session_interval, True)
        elif response.status in (408, 481):
            # §10: "If the session refresh request transaction times out or generates a 408
            # or 481 response, then the UAC sends a BYE request".
            self._expired(call, leg, f"refresh answered {response.status}")
        else:
            self._arm(call, leg, leg.session_interval, True)  # refused (491...): try again
        return True

    def failed(self, key: str) -> bool:
        found = self.refreshes.pop(key, None)
        if found is None:
            return False
        call = self.engine.calls.get(found[0])
        leg = self.engine._leg(call, found[1]) if call is not None else None
        if call is not None and leg is not None:
            leg.dialog.invite = InviteState.IDLE
            self._expired(call, leg, "refresh not answered")
        return True

    def _expired(self, call: Call, leg: Leg, why: str) -> None:
        log.info("call %s: session timer of leg %s: %s: ending the call", call.key, leg.name,
                 why)
        self.engine.counters["sessions_expired"] += 1
        self.engine.note(call, "session_expired", leg=leg.name)
        self.engine._call_input(call, CallInput.SESSION_EXPIRED)


def allows_update(message: Request | Response) -> bool:
    """Whether the Allow header of a dialog's INVITE or 2xx lists UPDATE."""
    try:
        values = message.headers.get_all("allow")
    except SipParseError:
        return False
    return any(m.strip().upper() == "UPDATE" for v in values for m in v.split(","))
